"""Parsing: format detection, the streaming XML parser, canonical CSV, partner mappings."""
