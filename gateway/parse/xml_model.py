"""XML submission elements to the model (guide section 3): the namespace's names, the
Header with its optional Filer, an Application or a Cancellation (contract 1.1, guide 5.1b)
checked against the XSD and read into ``model.Application``, and the XSD's messages turned
into findings. The streaming reader that
hands elements here is ``gateway.parse.xml_file``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from lxml import etree

from gateway.errors import RejectedSubmission
from gateway.findings import Finding, finding
from gateway.model import (
    APPLICATION_FIELDS,
    LINE_FIELDS,
    Application,
    Filer,
    ProductLine,
    SubmissionHeader,
    line_number,
)

NS = "urn:aimgw:license-submission:1"
# Both are read with the 1.1 schema, a compatible extension of 1.0 (guide section 3).
SCHEMA_VERSIONS = ("1.0", "1.1")
_Q = "{" + NS + "}"
ROOT_TAG = _Q + "LicenseSubmission"
HEADER_TAG = _Q + "Header"
APPLICATION_TAG = _Q + "Application"
PRODUCT_TAG = _Q + "Product"
CANCELLATION_TAG = _Q + "Cancellation"  # contract 1.1: a sibling of Application
ENTRY_NUMBER_TAG = _Q + "EntryNumber"
REASON_TAG = _Q + "Reason"
# A Cancellation's Reason (XSD: at most 200 characters). An invalid one is kept only this long:
# it is A101 anyway, and a 10 MB reason must not travel on through staging.
REASON_LIMIT = 200

# XML element name -> model attribute, for applications and product lines. Keyed by object:
# lxml types a tag as str, bytes or QName (a comment's is a function), and any is looked up.
APP_TAGS: Mapping[object, str] = {
    **{_Q + xml: attr for attr, xml in APPLICATION_FIELDS},
    _Q + "LicenseNumber": "license_number",  # contract 1.1, after PortOfEntry
}
LINE_TAGS: Mapping[object, str] = {_Q + xml: attr for attr, xml in LINE_FIELDS}
XML_NAME_TO_FIELD = {xml: attr for attr, xml in APPLICATION_FIELDS + LINE_FIELDS}
XML_NAME_TO_FIELD.update({"ref": "ref", "line": "line_no", "kind": "kind",
                          "corrects": "corrects", "LicenseNumber": "license_number",
                          "licenseNumber": "license_number", "Reason": "reason"})

_ELEMENT_IN_MESSAGE = re.compile(r"Element '(?:\{[^}]*\})?([\w.-]+)'(?:, attribute '([\w.-]+)')?")
_EXPECTED_IN_MESSAGE = re.compile(r"Expected is (?:one of )?\( ([^)]*) \)")
_MISSING_ATTRIBUTE_IN_MESSAGE = re.compile(r"The attribute '([\w.-]+)' is required but missing")
# The offending value, where libxml2's message quotes it (guide 6: a finding carries it):
# "[facet 'pattern'] The value 'ab12' is not accepted ...", "'x' is not a valid value of ...".
_VALUE_IN_MESSAGE = re.compile(r"\] The value '([^']*)'|: '([^']*)' is not a valid value")


@dataclass(slots=True)
class ParsedApplication:
    """An application as read, with the XSD findings that no value rule can name better."""

    app: Application
    xsd_errors: list[tuple[int | None, str]]  # (line in file, validator message)
    element_fields: dict[int, tuple[str | None, str]] | None  # sourceline -> (line_no, field)
    findings: list[Finding] = field(default_factory=list)  # the parser's own (A190, A101)
    unlisted: int = 0  # attributes not allowed there that were cut unread (A101 each)


def read_header(el: etree._Element, schema: etree.XMLSchema) -> SubmissionHeader:
    """The Header (F005 when the XSD rejects it); a ``Filer`` in it replaces the partner's
    profile as a whole (guide 2.3), so every child is required by the schema."""
    if not schema.validate(el):
        err = schema.error_log.last_error
        raise RejectedSubmission(finding(
            "F005", f"The Header is not valid: {err.message if err else 'invalid'}.",
            field="Header", source_line=err.line if err else el.sourceline))
    submission_id = _strip(el.findtext(_Q + "SubmissionId"))
    created = _strip(el.findtext(_Q + "Created"))
    filer_el = el.find(_Q + "Filer")
    filer = None
    if filer_el is not None:
        values = {
            "name": "Name", "street": "Street", "city": "City", "state": "State",
            "postal_code": "PostalCode", "contact_name": "ContactName",
            "phone": "Phone", "email": "Email",
        }
        filer = Filer(**{k: (filer_el.findtext(_Q + v) or "").strip()
                         for k, v in values.items()})
    return SubmissionHeader(submission_id, created, filer)


def read_application(el: etree._Element, schema: etree.XMLSchema,
                     unlisted: int = 0, valid: bool | None = None) -> ParsedApplication:
    """An Application or Cancellation element as the model, checked against the XSD;
    ``unlisted``: the attributes not allowed there that the reader cut unread (the XSD is run
    again then); ``valid``: what ``schema.validate(el)`` just said, its error log still the
    schema's (None: it is run here)."""
    cancel = el.tag == CANCELLATION_TAG
    if valid is None and not unlisted:
        valid = schema.validate(el)
    if valid and not unlisted:
        return ParsedApplication(_cancellation(el) if cancel else _valid_application(el), [],
                                 None)
    if unlisted:
        schema.validate(el)
    app = _cancellation(el) if cancel else _any_application(el)
    errors: list[tuple[int | None, str]] = [(e.line, e.message) for e in schema.error_log]
    # Slow path, only for invalid applications: map file lines to (line_no, field).
    fields: dict[int, tuple[str | None, str]] = {}
    for child in el.iter():
        if not isinstance(child.tag, str):
            continue
        local = etree.QName(child).localname
        parent = child.getparent()
        line_no = None
        if child.tag == PRODUCT_TAG:
            line_no = child.get("line")
        elif parent is not None and parent.tag == PRODUCT_TAG:
            line_no = parent.get("line")
        if child.sourceline is not None:
            fields.setdefault(child.sourceline, (line_no, XML_NAME_TO_FIELD.get(local, local)))
    return ParsedApplication(app, errors, fields, unlisted=unlisted)


def _strip(text: str | None) -> str | None:
    return (text.strip() or None) if text else None


def _cancellation(el: etree._Element) -> Application:
    """A Cancellation (valid or not): a request to cancel ``license_number``, no lines."""
    reason = None
    for child in el:
        if child.tag == REASON_TAG and reason is None:
            reason = _strip(child.text)
    if reason is not None and len(reason) > REASON_LIMIT:
        reason = reason[:REASON_LIMIT]
    return Application(ref=_strip(el.get("ref")), source_line=el.sourceline, cancel=True,
                       license_number=_strip(el.get("licenseNumber")), reason=reason)


def _attributes(el: etree._Element, app: Application) -> Application:
    """The contract 1.1 attributes of an Application (guide 5.1a, 5.1b), as sent."""
    app.kind = _strip(el.get("kind"))
    app.corrects = _strip(el.get("corrects"))
    return app


def _valid_application(el: etree._Element) -> Application:
    """Read an application the XSD accepted: element order is known (the hot path).

    The XSD's sequence: EntryType, EntryNumber?, Importer, Exporter, Manufacturer,
    CountryOfOrigin, CountryOfExport, ExpectedExportDate, ExpectedImportDate, PortOfEntry,
    LicenseNumber?, then Product+ (HTS, Description?, and 5 more). So the fields are told
    apart by their count and position (one more tag read when just one of the two optional
    ones is there), not looked up by name one by one.
    """
    texts: list[str | None] = []
    lines: list[ProductLine] = []
    for child in el:
        if child.tag == PRODUCT_TAG:
            leaves = [(text.strip() or None) if (text := leaf.text) else None for leaf in child]
            if len(leaves) == 6:  # no Description
                leaves.insert(1, None)
            hts, description, largest, second, cast, quantity, value = leaves
            lines.append(ProductLine(child.get("line"), hts, description, largest, second,
                                     cast, quantity, value, child.sourceline))
        else:
            texts.append((text.strip() or None) if (text := child.text) else None)
    entry_number = license_number = None
    if len(texts) == 11:
        entry_number = texts.pop(1)
        license_number = texts.pop()
    elif len(texts) == 10:
        if el[1].tag == ENTRY_NUMBER_TAG:
            entry_number = texts.pop(1)
        else:
            license_number = texts.pop()
    (entry_type, importer, exporter, manufacturer, origin, export_country, export_date,
     import_date, port) = texts
    return Application(_strip(el.get("ref")), entry_type, entry_number, importer, exporter,
                       manufacturer, origin, export_country, export_date, import_date, port,
                       lines, el.sourceline, _strip(el.get("kind")), _strip(el.get("corrects")),
                       license_number)


def _any_application(el: etree._Element) -> Application:
    """Read an application the XSD rejected: take what can be recognised, by name."""
    app = _attributes(el, Application(ref=el.get("ref"), source_line=el.sourceline))
    for child in el:
        if child.tag == PRODUCT_TAG:
            line = ProductLine(child.get("line"), source_line=child.sourceline)
            for leaf in child:
                name = LINE_TAGS.get(leaf.tag)
                if name is not None:
                    setattr(line, name, _strip(leaf.text))
            app.lines.append(line)
        else:
            name = APP_TAGS.get(child.tag)
            if name is not None:
                setattr(app, name, _strip(child.text))
    return app


def xsd_findings(parsed: ParsedApplication, reported: list[Finding]) -> list[Finding]:
    """A101 for each XSD error that no finding in ``reported`` already names.

    A missing element is A102 and a value with its own rule code carries that code; the XSD's
    message about the same element (or about the element that followed a missing one) is then
    dropped, so that every problem is reported once, with its most precise code.
    """
    if not parsed.xsd_errors:
        return []
    app = parsed.app
    named = {(f.line, f.field) for f in reported}
    named_fields = {f.field for f in reported}
    missing = {f.field for f in reported if f.code == "A102"}
    out: list[Finding] = []
    for line, message in parsed.xsd_errors:
        match = _ELEMENT_IN_MESSAGE.search(message)
        element = attribute = None
        if match:
            element, attribute = match.group(1), match.group(2)
        missing_attribute = _MISSING_ATTRIBUTE_IN_MESSAGE.search(message)
        if missing_attribute:  # a missing ref or line attribute: A102 names it
            attribute = missing_attribute.group(1)
        name = attribute or element or ""
        fld = XML_NAME_TO_FIELD.get(name, name)
        line_no, _ = (parsed.element_fields or {}).get(line or -1, (None, fld))
        number = line_number(line_no)
        if (number, fld) in named or (number is None and fld in named_fields):
            continue
        expected = _EXPECTED_IN_MESSAGE.search(message)
        if expected:
            names = {XML_NAME_TO_FIELD.get(n.split("}")[-1].strip(), n)
                     for n in expected.group(1).split(",")}
            if names & missing:
                continue
        if attribute is None and fld in missing and "Missing child" not in message:
            continue
        quoted = _VALUE_IN_MESSAGE.search(message)
        value = next((v for v in quoted.groups() if v is not None), None) if quoted else None
        out.append(finding("A101", f"XSD: {message.rstrip('.')} (line {line}).", ref=app.ref,
                           line=number, field=fld or None, value=value, source_line=line))
    return out
