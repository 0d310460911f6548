"""The service: one file's processing, a whole poll (runner), quarantine, alerts, and the
scheduler that repeats polls."""
