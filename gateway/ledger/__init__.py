"""The ledger: SQLite or PostgreSQL, its migrations, and the event log."""
