"""The XSDs of the partner contract, loaded once per thread, with a parser that fetches
nothing."""

from __future__ import annotations

import threading
from pathlib import Path

from lxml import etree

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
# Files of schemaVersion 1.0 and 1.1 are both validated with 1.1, a compatible extension of 1.0
# (guide section 3); license-submission-1.0.xsd stays published as it was.
SUBMISSION_XSD = SCHEMA_DIR / "license-submission-1.1.xsd"
ACK_XSD = SCHEMA_DIR / "license-ack-1.0.xsd"

# One XMLSchema object per thread: it keeps its last validation's error log on itself, so two
# threads sharing one (serve polls partners in threads) read each other's findings, and a
# partner's acknowledgment named another partner's values (tests/test_schema_threads.py).
_per_thread = threading.local()
# Compiling a schema or a stylesheet is one thread at a time: libxml2's schema parser, run in
# several threads at once while others validated, failed here with "Document is not valid XML
# Schema" (tests/test_schema_threads.py). Rare (once a thread and file version), so cheap.
compiling = threading.Lock()


def _load(path: Path) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    with compiling:
        return etree.XMLSchema(etree.parse(str(path), parser))


def _schema(path: Path) -> etree.XMLSchema:
    loaded: dict[Path, etree.XMLSchema] | None = getattr(_per_thread, "schemas", None)
    if loaded is None:
        loaded = _per_thread.schemas = {}
    schema = loaded.get(path)
    if schema is None:
        schema = loaded[path] = _load(path)
    return schema


def submission_schema() -> etree.XMLSchema:
    """This thread's submission XSD (1.1)."""
    return _schema(SUBMISSION_XSD)


def ack_schema() -> etree.XMLSchema:
    """This thread's acknowledgment XSD."""
    return _schema(ACK_XSD)
