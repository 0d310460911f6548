"""XML acknowledgments (guide section 7): rendered purely, written atomically.

The counts and the file status come first in the document but are known only at the end, so
``AckXmlWriter`` spools the application entries to a temp file and writes the head last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

from lxml import etree

from gateway.caching import short_cache
from gateway.findings import Finding
from gateway.licensing.results import AppOutcome, FileSummary
from gateway.model import Application, AppStatus
from gateway.storage import SpooledOutput
from gateway.textsafe import printable

ACK_NS = "urn:aimgw:license-ack:1"
ACK_SCHEMA_VERSION = "1.0"
# Contract 1.1: the version of the ack of a submission that says schemaVersion="1.1" or uses
# what 1.1 added (a cancellation, a correction, a license kind or number): it has the
# Cancelled count. Every other ack stays "1.0", as a partner that uses none of it got it.
ACK_SCHEMA_VERSION_1_1 = "1.1"

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


@short_cache(maxsize=8192)  # every application's lines, rejected ones too: short values only
def _product_head(line_no: str | None, hts: str | None, product_group: str | None) -> str:
    """A ``Product`` entry up to its unit value: the same few (line, HTS, group) come back
    entry after entry, so each is escaped and put together once."""
    line_no, hts = line_no or "", hts or ""
    # Digits need no escaping (the usual case): skip the regex for them.
    group = "" if product_group is None else f' productGroup="{esc(product_group)}"'
    return (f'    <Product line="{line_no if line_no.isdigit() else esc(line_no)}" '
            f'hts="{hts if hts.isdigit() else esc(hts)}"{group}')


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
    parts = ['  <Application ref="', esc(o.ref or ""), _STATUS_OPEN[o.status]]
    if o.license_number:
        parts.append(f"    <LicenseNumber>{o.license_number}</LicenseNumber>\n")
        # A cancellation names the license it cancelled, which is valid no more: no dates.
        if o.valid_from and o.valid_through and o.status is AppStatus.LICENSED:
            parts.append(_validity(o.valid_from, o.valid_through))
    for r in o.lines:
        line = r.line
        covered, unit_value = r.covered, r.unit_value
        head = _product_head(line.line_no, line.hts,
                             None if covered is None else covered.product_group)
        end = _NOT_COVERED_END if covered is None else _COVERED_END
        # str() of the Decimal, which is what format() with no spec writes (for every finite
        # and special value), at a fourth of the time of str.format (0.6 us a line).
        parts.append(f"{head}{end}" if unit_value is None else
                     f'{head}{_UNIT_VALUE}{unit_value!s}"{end}')
    if o.findings:  # most have none: no generator made for them (0.25 us of 2.9 per entry)
        parts.extend(render_finding(f, "    ") for f in o.findings)
    parts.append("  </Application>\n")
    return "".join(parts)


# The constant pieces of an entry, made once: per entry, the status's text, the validity
# dates (the same for every license of a run) and the piece-by-piece "+=" of the attributes
# cost about a third of ``render_application`` (0.25 of 0.93 s profiled for 50,000 one-line
# applications, issue 15).
_STATUS_OPEN = {status: f'" status="{status.value}">\n' for status in AppStatus}
_UNIT_VALUE = ' unitValueUsdPerMt="'
_COVERED_END = ' covered="true"/>\n'
_NOT_COVERED_END = ' covered="false"/>\n'


@lru_cache(maxsize=64)
def _validity(valid_from: date, valid_through: date) -> str:
    return (f"    <ValidFrom>{valid_from.isoformat()}</ValidFrom>\n"
            f"    <ValidThrough>{valid_through.isoformat()}</ValidThrough>\n")


def render_head(s: FileSummary, v1_1: bool = False) -> str:
    """Everything before the first ``Application``; ``v1_1``: an application of the file
    used what contract 1.1 added, whatever became of it."""
    v1_1 = v1_1 or s.cancelled > 0 or s.schema_version == ACK_SCHEMA_VERSION_1_1
    version = ACK_SCHEMA_VERSION_1_1 if v1_1 else ACK_SCHEMA_VERSION
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<LicenseAck xmlns="{ACK_NS}" schemaVersion="{version}">\n',
    ]
    if s.submission_id:
        parts.append(f"  <SubmissionId>{esc(s.submission_id)}</SubmissionId>\n")
    parts += [
        f"  <FileName>{esc(printable(s.file_name))}</FileName>\n",
        f"  <FileSha256>{s.sha256}</FileSha256>\n",
        f"  <ReceivedAt>{s.received_at.isoformat(timespec='seconds')}</ReceivedAt>\n",
        f"  <ProcessedAt>{s.processed_at.isoformat(timespec='seconds')}</ProcessedAt>\n",
        f"  <RuleSetDate>{s.rule_set_date.isoformat()}</RuleSetDate>\n",
        *_reference_edition(s),
        *([f"  <Replaces>{esc(printable(s.replaces))}</Replaces>\n"] if s.replaces else []),
        f"  <Status>{s.status.value}</Status>\n",
        "  <Counts>\n",
        f"    <Applications>{s.applications}</Applications>\n",
        f"    <Licensed>{s.licensed}</Licensed>\n",
        f"    <NotRequired>{s.not_required}</NotRequired>\n",
        f"    <Rejected>{s.rejected}</Rejected>\n",
        *([f"    <Cancelled>{s.cancelled}</Cancelled>\n"] if v1_1 else []),
        "  </Counts>\n",
    ]
    parts.extend(render_finding(f, "  ") for f in s.findings)
    return "".join(parts)


def _reference_edition(s: FileSummary) -> list[str]:
    """The covered-list edition the rules used (guide 2.4; absent in a 1.0 ack)."""
    e = s.reference_edition
    if e is None:
        return []
    return [f'  <ReferenceEdition effectiveFrom="{e.effective_from.isoformat()}">'
            f"{esc(e.edition)}</ReferenceEdition>\n"]


TAIL = "</LicenseAck>\n"


def render_ack(summary: FileSummary,
               outcomes: Iterable[tuple[AppOutcome, Application | None]]) -> bytes:
    """A whole acknowledgment in memory (a file rejected whole, tests): each outcome with its
    application."""
    decided = list(outcomes)
    body = "".join(render_application(o) for o, _ in decided)
    head = render_head(summary, any(app is not None and app.contract_1_1 for _, app in decided))
    return (head + body + TAIL).encode("utf-8")


class AckXmlWriter:
    """Stream application entries to a spool; ``finish`` writes the whole ack atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = SpooledOutput(path)
        self._v1_1 = False  # an application using what contract 1.1 added was added

    def add(self, outcome: AppOutcome, app: Application | None = None) -> None:
        """``outcome`` of ``app`` (None: not known, a plain application)."""
        self._v1_1 = self._v1_1 or (app is not None and app.contract_1_1)
        self._out.body.write(render_application(outcome))

    def finish(self, summary: FileSummary) -> None:
        self._out.publish(render_head(summary, self._v1_1), TAIL)

    def discard(self) -> None:
        self._out.discard()


_COPY_CHUNK = 1 << 20
_HEAD_LIMIT = 1 << 20  # the head of an ack (names, ids, counts) is far smaller
_COUNTS_END = b"</Counts>"


def duplicate_ack(original: Path, file_name: str, received_at: str, processed_at: datetime,
                  notice: Finding) -> bytes:
    """``duplicate_ack_chunks`` in one piece (``check``: the ack goes to stdout)."""
    return b"".join(duplicate_ack_chunks(original, file_name, received_at, processed_at,
                                         notice))


def duplicate_ack_chunks(original: Path, file_name: str, received_at: str,
                         processed_at: datetime, notice: Finding) -> Iterator[bytes]:
    """The original acknowledgment again, for a re-sent file: DUPLICATE status plus F006.

    The applications, licenses and counts stay those of the original, so the partner gets its
    licenses again; only the file's own facts change, and they are all in the head (up to
    ``</Counts>``). So only the head is parsed and rewritten; the rest is copied in chunks, as
    stored: an ack of any size costs a chunk of memory (issue 10, item 3).
    """
    with open(original, "rb") as fh:  # our own output, never partner input
        head = fh.read(_HEAD_LIMIT)
        cut = head.find(_COUNTS_END)
        if cut < 0:
            raise ValueError(f"{original}: no </Counts> in the first {_HEAD_LIMIT} bytes")
        cut += len(_COUNTS_END)
        rest = head[cut:]
        space = len(rest) - len(rest.lstrip())  # Counts' tail: the F006 finding goes after it
        yield _duplicate_head(head[:cut], file_name, received_at, processed_at)
        yield rest[:space] + _lxml_finding(notice) + b"\n  "
        yield rest[space:]
        while chunk := fh.read(_COPY_CHUNK):
            yield chunk


def _duplicate_head(head: bytes, file_name: str, received_at: str,
                    processed_at: datetime) -> bytes:
    """The head up to ``</Counts>`` with the re-sent file's facts, serialised by lxml (as the
    whole ack was before it was streamed: the same bytes)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.fromstring(head + b"</LicenseAck>", parser)
    q = "{" + ACK_NS + "}"
    # lxml refuses what XML cannot hold: the name is escaped (textsafe.printable).
    for tag, text in (("FileName", printable(file_name)), ("ReceivedAt", received_at),
                      ("ProcessedAt", processed_at.isoformat(timespec="seconds")),
                      ("Status", "DUPLICATE")):
        el = root.find(q + tag)
        if el is not None:
            el.text = text
    out = etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
    return out[:-len(b"</LicenseAck>")]


def _lxml_finding(f: Finding) -> bytes:
    """``render_finding`` as lxml serialises it (its escaping, no indent)."""
    el = etree.fromstring(render_finding(f, "").encode("utf-8"))
    el.tail = None
    return etree.tostring(el, encoding="UTF-8", xml_declaration=False)
