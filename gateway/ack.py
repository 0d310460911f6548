"""XML acknowledgments (guide section 7): rendered purely, written atomically.

The counts and the file status come first in the document but are known only at the end, so
``AckXmlWriter`` spools the application entries to a temp file and writes the head last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from lxml import etree

from gateway.findings import Finding
from gateway.results import AppOutcome, FileSummary
from gateway.storage import SpooledOutput
from gateway.textsafe import printable

ACK_NS = "urn:aimgw:license-ack:1"
ACK_SCHEMA_VERSION = "1.0"

_XML_UNSAFE = re.compile(r"[&<>\"\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def esc(value: object) -> str:
    """Escape text for element content and double-quoted attributes; drop non-XML chars."""
    text = str(value)
    if not _XML_UNSAFE.search(text):
        return text
    text = _XML_INVALID.sub("", text)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


@lru_cache(maxsize=64)
def _group_attr(product_group: str) -> str:
    return f' productGroup="{esc(product_group)}"'


def render_finding(f: Finding, indent: str) -> str:
    attrs = f'code="{f.code}" severity="{f.severity.value}"'
    if f.line is not None:
        attrs += f' line="{f.line}"'
    if f.field:
        attrs += f' field="{esc(f.field)}"'
    if f.value is not None:
        attrs += f' value="{esc(f.value)}"'
    if f.source_line:
        attrs += f' sourceLine="{f.source_line}"'
    return f"{indent}<Finding {attrs}>{esc(f.message)}</Finding>\n"


def render_application(o: AppOutcome) -> str:
    """One ``Application`` entry: status, license, derived product data, findings."""
    parts = [f'  <Application ref="{esc(o.ref or "")}" status="{o.status.value}">\n']
    if o.license_number:
        parts.append(f"    <LicenseNumber>{o.license_number}</LicenseNumber>\n")
        if o.valid_from and o.valid_through:
            parts.append(f"    <ValidFrom>{o.valid_from.isoformat()}</ValidFrom>\n"
                         f"    <ValidThrough>{o.valid_through.isoformat()}</ValidThrough>\n")
    for r in o.lines:
        line = r.line
        line_no, hts = line.line_no or "", line.hts or ""
        # Digits need no escaping (the usual case): skip the regex for them.
        attrs = (f'line="{line_no if line_no.isdigit() else esc(line_no)}" '
                 f'hts="{hts if hts.isdigit() else esc(hts)}"')
        if r.covered is not None:
            attrs += _group_attr(r.covered.product_group)
        if r.unit_value is not None:
            attrs += f' unitValueUsdPerMt="{r.unit_value}"'
        attrs += ' covered="true"' if r.covered is not None else ' covered="false"'
        parts.append(f"    <Product {attrs}/>\n")
    parts.extend(render_finding(f, "    ") for f in o.findings)
    parts.append("  </Application>\n")
    return "".join(parts)


def render_head(s: FileSummary) -> str:
    """Everything before the first ``Application``."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<LicenseAck xmlns="{ACK_NS}" schemaVersion="{ACK_SCHEMA_VERSION}">\n',
    ]
    if s.submission_id:
        parts.append(f"  <SubmissionId>{esc(s.submission_id)}</SubmissionId>\n")
    parts += [
        f"  <FileName>{esc(printable(s.file_name))}</FileName>\n",
        f"  <FileSha256>{s.sha256}</FileSha256>\n",
        f"  <ReceivedAt>{s.received_at.isoformat(timespec='seconds')}</ReceivedAt>\n",
        f"  <ProcessedAt>{s.processed_at.isoformat(timespec='seconds')}</ProcessedAt>\n",
        f"  <RuleSetDate>{s.rule_set_date.isoformat()}</RuleSetDate>\n",
        f"  <Status>{s.status.value}</Status>\n",
        "  <Counts>\n",
        f"    <Applications>{s.applications}</Applications>\n",
        f"    <Licensed>{s.licensed}</Licensed>\n",
        f"    <NotRequired>{s.not_required}</NotRequired>\n",
        f"    <Rejected>{s.rejected}</Rejected>\n",
        "  </Counts>\n",
    ]
    parts.extend(render_finding(f, "  ") for f in s.findings)
    return "".join(parts)


TAIL = "</LicenseAck>\n"


def render_ack(summary: FileSummary, outcomes: Iterable[AppOutcome]) -> bytes:
    """A whole acknowledgment in memory (small files, tests, `check` of a rejected file)."""
    body = "".join(render_application(o) for o in outcomes)
    return (render_head(summary) + body + TAIL).encode("utf-8")


class AckXmlWriter:
    """Stream application entries to a spool; ``finish`` writes the whole ack atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = SpooledOutput(path)

    def add(self, outcome: AppOutcome) -> None:
        self._out.body.write(render_application(outcome))

    def finish(self, summary: FileSummary) -> None:
        self._out.publish(render_head(summary), TAIL)

    def discard(self) -> None:
        self._out.discard()


def duplicate_ack(original: Path, file_name: str, received_at: str, processed_at: datetime,
                  notice: Finding) -> bytes:
    """The original acknowledgment again, for a re-sent file: DUPLICATE status plus F006.

    The applications, licenses and counts stay those of the original, so the partner gets its
    licenses again; only the file's own facts change.
    """
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    tree = etree.parse(str(original), parser)  # our own output, never partner input
    root = tree.getroot()
    q = "{" + ACK_NS + "}"

    def set_text(tag: str, text: str) -> None:
        el = root.find(q + tag)
        if el is not None:
            el.text = text

    set_text("FileName", printable(file_name))  # lxml refuses what XML cannot hold
    set_text("ReceivedAt", received_at)
    set_text("ProcessedAt", processed_at.isoformat(timespec="seconds"))
    set_text("Status", "DUPLICATE")
    note = etree.fromstring(
        render_finding(notice, "").replace("<Finding ", f'<Finding xmlns="{ACK_NS}" ', 1))
    note.tail = "\n  "
    counts = root.find(q + "Counts")
    if counts is not None:
        counts.addnext(note)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8") + b"\n"
