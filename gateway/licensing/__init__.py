"""Licensing: phase 2, deciding each application against the file and the ledger and
numbering its license; what processing decided (results)."""
