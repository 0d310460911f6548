"""The XSDs of the partner contract, loaded once, with a parser that fetches nothing."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
# Files of schemaVersion 1.0 and 1.1 are both validated with 1.1, a compatible extension of 1.0
# (guide section 3); license-submission-1.0.xsd stays published as it was.
SUBMISSION_XSD = SCHEMA_DIR / "license-submission-1.1.xsd"
ACK_XSD = SCHEMA_DIR / "license-ack-1.0.xsd"


def _load(path: Path) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(path), parser))


@cache
def submission_schema() -> etree.XMLSchema:
    return _load(SUBMISSION_XSD)


@cache
def ack_schema() -> etree.XMLSchema:
    return _load(ACK_XSD)
