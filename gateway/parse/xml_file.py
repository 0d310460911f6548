"""Safe, streaming parsing of XML submissions (guide section 3).

Nothing is ever expanded or fetched: a DOCTYPE, an entity declaration or an XInclude is F004,
found in the raw bytes before the parser sees them and checked again on the parsed prolog. The
file is read with a pull parser fed in chunks: each ``Application`` (and each ``Cancellation``,
contract 1.1, which becomes an ``Application`` with ``cancel`` set) is validated against the XSD
on its own (one bad application never rejects the others), handed on, and freed, so memory does
not grow with the file. Nor does it grow with one application: past its fields and 999 product
lines (and one more, so that "more than 999" is seen) the completed children of the element
being read are counted and dropped between chunks, so an application of a million product lines
(A190) or of a million stray elements (A101) costs no more memory than one of 1,000 lines.
Nor with attributes: the bytes pass ``parse.xml_guard.XmlBytes`` (one tag keeps 128; a UTF-16,
UTF-32 or UTF-7 file transcoded to UTF-8 first, so that the cut sees its attributes), and the
attributes an application may not have are cut and counted past the first 101
(``_cut_attributes``), so that only 100 findings and one that counts the rest are kept.
Each element read is handed to ``gateway.parse.xml_model``, which maps it to the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from lxml import etree

from gateway.errors import RejectedSubmission
from gateway.findings import MAX_FINDINGS, Finding, finding
from gateway.model import APPLICATION_FIELDS, MAX_LINES, Application, SubmissionHeader
from gateway.parse.detect import bom_encoding
from gateway.parse.encoding import find_bad_byte
from gateway.parse.xml_guard import MARK, XmlBytes
from gateway.parse.xml_model import (
    APPLICATION_TAG,
    CANCELLATION_TAG,
    HEADER_TAG,
    NS,
    PRODUCT_TAG,
    ROOT_TAG,
    SCHEMA_VERSIONS,
    ParsedApplication,
    read_application,
    read_header,
)
from gateway.schemas import submission_schema

XINCLUDE_NS = "http://www.w3.org/2001/XInclude"
_XINCLUDE_ANY = "{" + XINCLUDE_NS + "}*"
_PROLOG_BYTES = 256 * 1024
_FIRST_PIECE = 1024  # bytes of the file first parsed for its root (``_check_prolog``)
_CHUNK = 64 * 1024
# Children kept of the Header or Application being read: an application's fields (and its
# LicenseNumber, contract 1.1), 999 lines and one more. Completed children past these are
# counted and dropped (see the module docstring).
_KEEP = len(APPLICATION_FIELDS) + 1 + MAX_LINES + 1
# The elements read one by one under the root: the requests of the file (guide 3, 5.1b).
_REQUESTS = (APPLICATION_TAG, CANCELLATION_TAG)
# The elements allowed directly under the root (mypyc cannot compile `(HEADER_TAG, *_REQUESTS)`
# inside an expression: an internal error in its star-expression lowering).
_ROOT_CHILDREN = (HEADER_TAG, *_REQUESTS)
# Unexpected attributes held in the application being read before they are cut and counted.
_CUT_WHILE_READING = 20_000
# libxml2's messages for its size and depth limits (huge_tree=False), which are not syntax errors.
_LIMIT_MESSAGES = ("XML_PARSE_HUGE", "limit exceeded", "Excessive depth", "huge text node",
                   "too long", "Huge input lookup")
_FORBIDDEN = (b"<!DOCTYPE", b"<!ENTITY", b"<!doctype", b"<!entity")


def _f004(detail: str) -> RejectedSubmission:
    return RejectedSubmission(
        finding("F004", f"{detail}: DOCTYPE, entity declarations, external references and "
                "XInclude are not accepted. Send plain XML without them.")
    )


def prescan(path: Path) -> tuple[str, str | None, int | None] | None:
    """F004 from the raw bytes of the prolog, before any parser runs, then from a parse up to
    the root element's start tag (``_check_prolog``); returns the root's tag, schemaVersion
    and line, or None when that parse did not reach it (errors are the full parse's)."""
    with open(path, "rb") as fh:
        raw = fh.read(_PROLOG_BYTES)
    head = raw
    encoding, skip = bom_encoding(head)
    if encoding and encoding != "utf-8":
        head = head[skip:].decode(encoding, errors="ignore").encode("utf-8")
    for marker in _FORBIDDEN:
        if marker in head:
            kind = "DOCTYPE" if b"DOCTYPE" in marker.upper() else "entity declaration"
            raise _f004(f"The file has a {kind}")
    if XINCLUDE_NS.encode() in head:
        raise _f004("The file uses XInclude")
    return _check_prolog(path, raw)


def _pieces(path: Path, raw: bytes) -> Iterator[bytes]:
    """The file in pieces growing from ``_FIRST_PIECE`` to ``_CHUNK``: from ``raw`` (its
    first bytes, read already), then from the file past them when ``raw`` was not all of it
    (a file of more than ``_PROLOG_BYTES``: opened again only then)."""
    piece, at = _FIRST_PIECE, 0
    while at < len(raw):
        yield raw[at:at + piece]
        at += piece
        piece = min(piece * 4, _CHUNK)
    if len(raw) < _PROLOG_BYTES:
        return
    with open(path, "rb") as fh:
        fh.seek(len(raw))
        while chunk := fh.read(_CHUNK):
            yield chunk


def _check_prolog(path: Path, raw: bytes) -> tuple[str, str | None, int | None] | None:
    """F004 for a DOCTYPE in an encoding the byte search cannot see (UTF-16 without a BOM,
    UTF-7, ...) or past the first bytes: parse up to the root element's start tag only, with
    nothing loaded, expanded or fetched; the root's tag, schemaVersion and line (so that a
    file with the wrong root is F005 at once, instead of being parsed whole), or None. Other
    errors are left to the full parse.

    Fed in pieces growing from ``_FIRST_PIECE``: the root's start tag is usually in the first
    few hundred bytes, and a parser fed a whole small file builds all of it (a 3-application
    file: about 100 us, where this and a second such parse of the prolog took 180 us of a
    small file's few ms, measured). ``raw``: the file's first bytes, which ``prescan`` read
    (a small file is read once for both)."""
    guard = XmlBytes(raw)  # a root tag of a million attributes is not built whole
    parser = etree.XMLPullParser(events=("start",), resolve_entities=False, no_network=True,
                                 load_dtd=False, huge_tree=False, remove_comments=True,
                                 remove_pis=True, encoding=guard.encoding)
    for chunk in _pieces(path, raw):
        try:
            parser.feed(guard.feed(chunk))
            broken = False
        except etree.XMLSyntaxError:
            broken = True  # the root may be in this piece, before the error: read on
        try:
            for _, el in parser.read_events():
                if el.getroottree().docinfo.doctype:
                    raise _f004("The file has a DOCTYPE")
                return str(el.tag), el.get("schemaVersion"), el.sourceline
        except etree.XMLSyntaxError:
            return None
        if broken:
            return None
    return None


def _check_child(el: etree._Element) -> None:
    """Only Header, Application and Cancellation elements belong directly under the root
    (else F005)."""
    if el.tag not in _ROOT_CHILDREN:
        raise RejectedSubmission(finding(
            "F005", f"Unexpected element {el.tag!s} under LicenseSubmission: only one Header "
            "and Application and Cancellation elements belong there.",
            source_line=el.sourceline))


def _utf8_or_unmarked(path: Path) -> bool:
    with open(path, "rb") as fh:
        return bom_encoding(fh.read(4))[0] in (None, "utf-8")


def syntax_error(err: etree.XMLSyntaxError, path: Path | None = None) -> RejectedSubmission:
    message = str(err)
    line = err.lineno if err.lineno else None
    if "UTF-8" in message or "encoding" in message.lower() or "Document labelled" in message:
        # The first byte that is not UTF-8 (the encoding a file without a BOM or declaration
        # has), named by offset too: libxml2's column counts characters, editors differ.
        bad = find_bad_byte(path, "utf-8") if path is not None and _utf8_or_unmarked(path) \
            else None
        where = f" The first byte that is not UTF-8 is at {bad.where()}." if bad else ""
        return RejectedSubmission(finding("F009", f"The text is not valid in its encoding: "
                                          f"{message}.{where} Save the file as UTF-8.",
                                          source_line=line))
    if "Detected an entity reference loop" in message or "entity" in message.lower():
        return _f004(f"The file uses entities ({message})")
    if any(limit in message for limit in _LIMIT_MESSAGES):
        detail = re.sub(r",? *(try|use) XML_PARSE_HUGE( option)?", "", message).strip()
        return RejectedSubmission(finding(
            "F001", f"The XML exceeds the gateway's parser limits: {detail}. At most 256 levels "
            "of nesting and 10 MB in one text or attribute value are read.", source_line=line))
    return RejectedSubmission(finding("F001", f"The XML is not well formed: {message}. Fix the "
                                      "file so that it parses.", source_line=line))


class XmlSubmission:
    """One XML submission, read once, front to back.

    ``header`` is available after the first application is yielded (or after iteration for an
    empty file). Raises ``RejectedSubmission`` (F001, F004, F005, F008, F009) while iterating.
    A Cancellation is yielded as an application (``cancel`` set), in file order, and counts as
    one (``application_count``, F008).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: SubmissionHeader | None = None
        self.application_count = 0

    def applications(self) -> Iterator[ParsedApplication]:
        root_tag = prescan(self.path)
        if root_tag is not None:
            self._check_root(*root_tag)
        schema = submission_schema()
        root: etree._Element | None = None
        reading: etree._Element | None = None  # the Header or Application still open
        last: etree._Element | None = None  # the Header or request read last (checked)
        dropped = _Dropped()
        try:
            with open(self.path, "rb") as fh:
                chunk = fh.read(_CHUNK)
                guard = XmlBytes(chunk)  # its first bytes, from the first chunk: one open
                # Only Header, Application and Cancellation events reach Python: a product
                # line costs no Python work until its application is complete.
                parser = etree.XMLPullParser(
                    events=("start", "end"),
                    tag=_ROOT_CHILDREN,
                    resolve_entities=False,
                    load_dtd=False,
                    no_network=True,
                    huge_tree=False,
                    remove_comments=True,
                    remove_pis=True,
                    collect_ids=False,
                    encoding=guard.encoding,
                )
                while True:
                    if chunk:
                        parser.feed(guard.feed(chunk))
                    else:
                        parser.feed(guard.close())
                        closed = parser.close()
                        if root is None:
                            root = closed
                    for event, el in parser.read_events():
                        parent = el.getparent()
                        if root is None:
                            root = parent
                        if parent is not root or root is None:
                            continue  # nested: the enclosing application's XSD check reports it
                        if event == "start":
                            reading, dropped = el, _Dropped()
                            continue
                        reading = None
                        # Usually the only sibling before ``el`` is the element read last (the
                        # ones before it were deleted), checked already: no walk then.
                        if el.getprevious() is not last:
                            for before in el.itersiblings(preceding=True):
                                _check_child(before)
                        last = el
                        if el.tag in _REQUESTS:
                            if self.header is None:
                                raise RejectedSubmission(finding(
                                    "F005", "The Header must come first, before any "
                                    "Application or Cancellation.", source_line=el.sourceline))
                            self.application_count += 1
                            yield self._application(el, schema, dropped)
                        elif self.header is None:
                            if dropped.elements:
                                raise RejectedSubmission(finding(
                                    "F005", f"The Header is not valid: it holds more than "
                                    f"{_KEEP + dropped.elements:,} elements.", field="Header",
                                    source_line=el.sourceline))
                            self.header = replace(read_header(el, schema),
                                                  schema_version=root.get("schemaVersion"))
                        else:
                            raise RejectedSubmission(finding(
                                "F005", "A second Header: a file holds one submission.",
                                source_line=el.sourceline))
                        el.clear()
                        while el.getprevious() is not None:
                            del root[0]
                    if not chunk:
                        break
                    if root is not None:
                        # Completed children of the root that are neither Header nor
                        # Application: F005 now, before a flood of them fills memory.
                        for child in root[:-1]:
                            _check_child(child)
                    if reading is not None:
                        dropped.add(_trim(reading))
                        # Attributes spread over many elements (each under the byte guard's
                        # cut): removed and counted as they come, not held to the end.
                        dropped.attributes += _cut_attributes(reading, _CUT_WHILE_READING)
                    chunk = fh.read(_CHUNK)
        except etree.XMLSyntaxError as err:
            raise syntax_error(err, self.path) from None
        if root is not None:
            if root.getroottree().docinfo.doctype:
                raise _f004("The file has a DOCTYPE")
            self._check_root(root.tag, root.get("schemaVersion"), root.sourceline)
            for child in root:
                _check_child(child)
        if self.header is None:
            raise RejectedSubmission(finding("F005", "The submission has no Header: add "
                                             "<Header><SubmissionId>…</SubmissionId></Header>."))
        if self.application_count == 0:
            raise RejectedSubmission(finding("F008", "The file holds no Application (and no "
                                             "Cancellation): nothing to license."))

    @staticmethod
    def _check_root(tag: object, version: str | None, line: int | None = None) -> None:
        if tag != ROOT_TAG:
            raise RejectedSubmission(finding(
                "F005", f"The root element is {tag!s}; it must be LicenseSubmission in "
                f"namespace {NS}.", field="root", value=str(tag), source_line=line))
        if version not in SCHEMA_VERSIONS:
            raise RejectedSubmission(finding(
                "F005", "schemaVersion must be " + " or ".join(f'"{v}"' for v in SCHEMA_VERSIONS)
                + ".", field="schemaVersion",
                value=version, source_line=line))

    @staticmethod
    def _application(el: etree._Element, schema: etree.XMLSchema,
                     dropped: _Dropped | None = None) -> ParsedApplication:
        unlisted = dropped.attributes if dropped is not None else 0
        # The XSD first: an element it accepts holds no XInclude and no attribute to cut (the
        # schema has no wildcard, and beside its own attributes only xsi:* pass, which
        # ``_cut_attributes`` keeps), so these two checks run on the elements it rejects only:
        # 6-8 us an application saved (2 of a 5-line one's 60 us of parse and model, measured).
        valid = not unlisted and schema.validate(el)
        if not valid:
            if next(el.iter(_XINCLUDE_ANY), None) is not None:
                raise _f004("The file uses XInclude")
            unlisted += _cut_attributes(el)
        parsed = read_application(el, schema, unlisted, valid)
        if dropped is not None and dropped.elements:
            parsed.findings.extend(dropped.findings(parsed.app, el.sourceline))
        return parsed

class _Dropped:
    """What was dropped, unread, from the Header or Application being read (see ``_trim``)."""

    __slots__ = ("attributes", "elements", "lines")

    def __init__(self) -> None:
        self.elements = 0  # completed children dropped, at any depth
        self.lines = 0  # of which Product lines of the application itself
        self.attributes = 0  # attributes not allowed there, removed (``_cut_attributes``)

    def add(self, counts: tuple[int, int]) -> None:
        self.elements += counts[0]
        self.lines += counts[1]

    def findings(self, app: Application, source_line: int | None) -> list[Finding]:
        """A190 for more than 999 lines (with their true number), A101 for stray elements.

        Only for an application that lost elements: the lines kept past the 999th are cut too,
        so that the rules check 999 lines and report no second A190 with a wrong count.
        """
        out = []
        total = len(app.lines) + self.lines
        if app.cancel:  # no lines at all: whatever was dropped is stray (A101)
            total = 0
        if total > MAX_LINES:
            del app.lines[MAX_LINES:]
            out.append(finding(
                "A190", f"An application holds at most {MAX_LINES} product lines; this one has "
                f"{total:,}: split it. Only the first {MAX_LINES} were read.", ref=app.ref,
                field="line_no", value=str(total), source_line=source_line))
        others = self.elements - (0 if app.cancel else self.lines)
        if others:
            out.append(finding(
                "A101", f"This application holds {others:,} more elements than its fields and "
                f"{MAX_LINES} product lines can: they were not read. Send only the elements of "
                "the schema.", ref=app.ref, source_line=source_line))
        return out


def _trim(el: etree._Element) -> tuple[int, int]:
    """Drop the completed children of ``el`` past the first ``_KEEP``, and so on down the
    branch still open; return (elements dropped, Product children of ``el`` among them).

    Only completed elements go: the last child at each level may still be open in the parser,
    so it stays (as in the usual iterparse idiom of deleting preceding siblings).
    """
    elements = lines = 0
    node: etree._Element | None = el
    while node is not None:
        count = len(node)
        if count > _KEEP + 1:
            elements += count - 1 - _KEEP
            if node is el:
                lines += sum(1 for v in node[_KEEP:count - 1] if v.tag == PRODUCT_TAG)
            del node[_KEEP:count - 1]
        node = node[-1] if count else None
    return elements, lines


# The attributes of the request element itself that its schema may allow (an Application's
# ref, kind, corrects; a Cancellation's ref, licenseNumber) are not counted: one count fits both.
_ATTRIBUTES = etree.XPath("count(descendant-or-self::*/@*) - count(@ref) - count(@kind) - "
                          "count(@corrects) - count(@licenseNumber) - count(p:Product/@line)",
                          namespaces={"p": NS})
# Every attribute of the request, allowed or not: never fewer than ``_ATTRIBUTES`` counts, and
# half its cost (1.1 us against 2.3 us an application of one line, 4.6 us against 7.2 us one of
# 20, measured): counted first, so that the exact count runs only past ``threshold`` of them.
_ALL_ATTRIBUTES = etree.XPath("count(descendant-or-self::*/@*)")
_ALLOWED_ATTRIBUTES = {APPLICATION_TAG: ("ref", "kind", "corrects"),
                       CANCELLATION_TAG: ("ref", "licenseNumber"), PRODUCT_TAG: ("line",)}
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"


def _cut_attributes(el: etree._Element, threshold: int = MAX_FINDINGS) -> int:
    """Attributes the schema does not allow, past the first ``MAX_FINDINGS`` + 1 of the
    application, are removed before the XSD check, and counted (with those the byte guard
    cut: its marker's number): so that a flood of them costs neither memory nor an XSD error
    nor a finding each. Nothing is done while there are at most ``threshold`` of them (one
    XPath count: the usual case). Returns the count removed."""
    if _ALL_ATTRIBUTES(el) <= threshold or _ATTRIBUTES(el) <= threshold:
        return 0
    budget = MAX_FINDINGS + 1  # enough for the XSD to name the first ones
    cut = 0
    for node in el.iter():
        if not isinstance(node.tag, str) or not len(node.attrib):
            continue
        allowed = _ALLOWED_ATTRIBUTES.get(node.tag, ())
        kept: list[tuple[str, str]] = []
        here = 0
        for name, value in node.attrib.items():
            if name in allowed or name.startswith(_XSI):
                kept.append((name, value))
            elif name == MARK:
                here += max(int(value), 1) if value.isdigit() else 1
            elif budget > 0:
                budget -= 1
                kept.append((name, value))
            else:
                here += 1
        if here:
            node.attrib.clear()  # one pass, not a search per attribute removed
            node.attrib.update(kept)
            cut += here
    return cut


