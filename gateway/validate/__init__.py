"""Validation: phase 1 (staging: XSD and the AIM rules, every application checked and
spooled)."""
