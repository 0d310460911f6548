"""For admins: ledger reads, reports, reprocess/purge, `check`, and the web page."""
