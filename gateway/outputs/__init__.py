"""Outputs: the ACE file for CBP, acknowledgments (XML, CSV), partner status files."""
