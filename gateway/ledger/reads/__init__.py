"""The read model: what admins (CLI, web page) and partners (status files) read from the
ledger, as typed rows. ``files`` (one file filter, quarantine marks), ``licenses`` (one
license search), ``story`` (one file's whole story), ``health`` (one partner state)."""
