"""Partner mappings: turn a partner's CSV dialect, or its XML shape, into ours without code.

A mapping lives in ``mappings/`` and is named by the partner's ``mapping`` key:

- ``*.toml`` — a CSV mapping: delimiter, encoding, column names, constants, date and number
  formats, units, country names, and the partner's words for UNKNOWN / NOT_APPLICABLE.
- ``*.xsl`` — an XSLT 1.0 stylesheet that turns the partner's XML into a
  ``urn:aimgw:license-submission:1`` document before validation; it runs with every file
  and network access denied.

Mappings are loaded and checked when the configuration loads (``load_mapping``): an error in
one is reported then, never in the middle of a run. Values a mapping cannot convert are left
as the partner wrote them, so that the rules report them with the partner's own value.
"""

from __future__ import annotations

import re
import threading
import tomllib
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from functools import lru_cache
from pathlib import Path

import pycountry
from lxml import etree

from gateway.caching import short_cache
from gateway.countries import ISO_COUNTRIES, NOT_APPLICABLE, UNKNOWN
from gateway.errors import GatewayError, RejectedSubmission
from gateway.findings import finding
from gateway.model import Application, ProductLine
from gateway.parse.csv_file import ALL_COLUMNS, KNOWN_COLUMNS, CsvDialect
from gateway.parse.detect import canonical_content
from gateway.parse.unconverted import COUNTRY_APP_FIELDS, COUNTRY_LINE_FIELDS, unconverted
from gateway.parse.xml_guard import XmlBytes
from gateway.schemas import compiling
from gateway.textsafe import suggest

# kg per unit of the partner's quantity column.
UNITS = {"kg": Decimal(1), "t": Decimal(1000), "lb": Decimal("0.45359237")}
# [0-9], never \d: int() would turn another script's digits into an ASCII date.
DATE_TOKENS = {"YYYY": r"(?P<y>[0-9]{4})", "YY": r"(?P<yy>[0-9]{2})",
               "MM": r"(?P<m>[0-9]{1,2})", "DD": r"(?P<d>[0-9]{1,2})"}
_SECTIONS = {"description", "csv", "columns", "constants", "units", "countries", "values"}
_CSV_KEYS = {"delimiter", "encoding", "date_format", "decimal_separator", "thousands_separator",
             "ack_delimiter"}
_MILLIGRAM = Decimal("0.001")
_CHUNK = 64 * 1024


class MappingError(GatewayError):
    """A mapping file is wrong; ``problems`` lists every problem in it."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


def _suggest(word: str, choices: set[str] | tuple[str, ...]) -> str:
    return suggest(word, sorted(choices))  # the one "did you mean" (gateway.textsafe)


def _date_pattern(fmt: str) -> re.Pattern[str]:
    pattern = re.escape(fmt)
    for token in ("YYYY", "YY", "MM", "DD"):  # longest first: YYYY before YY
        pattern = pattern.replace(token, DATE_TOKENS[token], 1)
    return re.compile(pattern)


@dataclass(frozen=True, eq=False)  # compared (and cached) by identity
class CsvMapping:
    """How one partner's CSV rows become canonical rows."""

    path: Path
    description: str = ""
    delimiter: str = ","
    encoding: str = "utf-8"
    date_format: str = "YYYY-MM-DD"
    decimal_separator: str = "."
    thousands_separator: str = ""
    ack_delimiter: str = ","  # the partner's CSV acks (issue 14, 9b); "," = the guide's
    columns: dict[str, str] = field(default_factory=dict)  # partner name -> canonical
    constants: dict[str, str] = field(default_factory=dict)  # canonical -> value
    quantity_unit: str = "kg"
    countries: dict[str, str] = field(default_factory=dict)  # casefolded word -> alpha-2
    unknown_words: frozenset[str] = frozenset()
    not_applicable_words: frozenset[str] = frozenset()

    @property
    def dialect(self) -> CsvDialect:
        return CsvDialect(self.delimiter, self.encoding)

    @property
    def reads_canonical(self) -> bool:
        """Whether a canonical CSV header is this partner's own too: the mapping renames no
        column and keeps the comma, so it only converts the values (its dates, numbers). Any
        other mapping leaves a canonical file as it is (``applicable``)."""
        return self.delimiter == "," and all(n.lower() in KNOWN_COLUMNS for n in self.columns)

    @property
    def headers(self) -> frozenset[str]:
        """Lower-case names that mark a header row of this partner (format detection)."""
        return frozenset(n.lower() for n in self.columns) | frozenset(KNOWN_COLUMNS)

    # -- values ------------------------------------------------------------------------------

    def to_date(self, text: str | None) -> str | None:
        if text is None or self.date_format == "YYYY-MM-DD":
            return text
        match = _date_pattern(self.date_format).fullmatch(text)
        if not match:
            return text
        parts = match.groupdict()
        year = int(parts["y"]) if parts.get("y") else 2000 + int(parts["yy"])
        try:
            return date(year, int(parts["m"]), int(parts["d"])).isoformat()
        except ValueError:
            return text

    def to_number(self, text: str | None) -> str | None:
        if text is None:
            return None
        plain = text.replace(" ", "")
        if self.thousands_separator:
            plain = plain.replace(self.thousands_separator, "")
        if self.decimal_separator != ".":
            plain = plain.replace(self.decimal_separator, ".")
        if not plain.isascii():  # Decimal reads other scripts' digits: left as written (A101)
            return text
        try:
            Decimal(plain)
        except InvalidOperation:
            return text
        return plain

    def to_kg(self, text: str | None) -> str | None:
        number = self.to_number(text)
        if number is None or self.quantity_unit == "kg":
            return number
        try:
            quantity = Decimal(number)
        except InvalidOperation:
            return number
        if not quantity.is_finite() or quantity.adjusted() > 30:
            return number  # not a weight (no shipment weighs 10^30): left as written
        # Exact: the default 28 digits would round a long product before the grams (or fail).
        with localcontext(prec=len(quantity.as_tuple().digits) + 45):
            kg = quantity * UNITS[self.quantity_unit]
            # A140 allows 3 decimals: convert to whole grams, rounded half up.
            return format(kg.quantize(_MILLIGRAM, rounding=ROUND_HALF_UP).normalize(), "f")

    def to_country(self, text: str | None, special: bool) -> str | None:
        """ISO alpha-2 for a code, alpha-3, name or alias; UNKNOWN/NOT_APPLICABLE words."""
        if text is None:
            return None
        return _country(self, text, special)

    def special_word(self, text: str | None) -> str | None:
        if text is None:
            return None
        word = text.strip().casefold()
        if word in self.unknown_words:
            return UNKNOWN
        if word in self.not_applicable_words:
            return NOT_APPLICABLE
        return text

    # -- rows --------------------------------------------------------------------------------

    def apply_application(self, app: Application) -> None:
        app.expected_export_date = self.to_date(app.expected_export_date)
        app.expected_import_date = self.to_date(app.expected_import_date)
        for name in COUNTRY_APP_FIELDS:
            setattr(app, name, self.to_country(getattr(app, name), special=False))
        if app.manufacturer is not None and self.special_word(app.manufacturer) == UNKNOWN:
            app.manufacturer = UNKNOWN

    def apply_line(self, line: ProductLine) -> None:
        line.quantity_kg = self.to_kg(line.quantity_kg)
        line.value_usd = self.to_number(line.value_usd)
        for name in COUNTRY_LINE_FIELDS:
            setattr(line, name, self.to_country(getattr(line, name), special=True))


@short_cache(maxsize=4096)  # a CSV cell can be megabytes long: short values only
def _country(mapping: CsvMapping, text: str, special: bool) -> str:
    value = text.strip()
    if special:
        word = mapping.special_word(value)
        if word in (UNKNOWN, NOT_APPLICABLE):
            return word
    upper = value.upper()
    if upper in ISO_COUNTRIES or (special and upper in (UNKNOWN, NOT_APPLICABLE)):
        return upper
    alias = mapping.countries.get(value.casefold())
    if alias:
        return alias
    if len(upper) == 3 and upper.isalpha():
        country = pycountry.countries.get(alpha_3=upper)
        if country is not None:
            return country.alpha_2
    try:
        return pycountry.countries.lookup(value).alpha_2
    except LookupError:
        return text


@dataclass(frozen=True)
class XsltMapping:
    """An XSLT 1.0 stylesheet applied to a partner's XML before validation."""

    path: Path
    transform: etree.XSLT = field(compare=False)

    def apply(self, source: Path, target: Path) -> None:
        """Transform ``source`` into ``target`` (the caller has checked it for F004)."""
        guard = XmlBytes.of(source)  # an attribute flood is cut before libxml2 builds it
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                 huge_tree=False, remove_pis=True, encoding=guard.encoding)
        with open(source, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                parser.feed(guard.feed(chunk))
        parser.feed(guard.close())
        document = parser.close().getroottree()
        result = self.transform(document)
        result.write_output(str(target))

    def to_submission(self, source: Path, target: Path) -> None:
        """``apply`` as processing runs it: ``source`` checked for F004 on the partner's own
        bytes first, then transformed into ``target`` (removed again when it fails).

        Raises ``RejectedSubmission``: F004, F001/F009 for what the parser meets, F005 when
        the stylesheet cannot turn the document into a submission. The one place for it:
        processing (``validate.prepare``) and ``mapping test`` (``preview``) say the same.
        """
        # Imported here: the configuration loads this module, and needs no XML reader.
        from gateway.parse.xml_file import prescan, syntax_error

        prescan(source)
        try:
            self.apply(source, target)
        except etree.XMLSyntaxError as err:
            target.unlink(missing_ok=True)
            raise syntax_error(err, source) from None
        except etree.XSLTError as err:
            target.unlink(missing_ok=True)
            raise RejectedSubmission(finding(
                "F005", f"The partner mapping {self.path.name} could not turn this document "
                f"into a submission: {err}.")) from None


Mapping = CsvMapping | XsltMapping


def ack_delimiter(mapping: Mapping | None, path: Path) -> str:
    """The delimiter of ``path``'s CSV ack: its CSV mapping's ``ack_delimiter`` when that
    mapping reads it (``applicable``), else the guide's comma. An unreadable file (gone,
    a folder) gets the comma: its F-code is found where it is read."""
    try:
        chosen = applicable(mapping, path)
    except OSError:
        return ","
    return chosen.ack_delimiter if isinstance(chosen, CsvMapping) else ","


def applicable(mapping: Mapping | None, path: Path) -> Mapping | None:
    """The mapping to read ``path`` with: None for canonical content (a document of our
    namespace, a canonical CSV header), which is read as it is whatever the partner's own
    exports need (issue 14 item 6), else ``mapping``."""
    if mapping is None:
        return None
    canonical = canonical_content(path)
    if canonical == "xml" and isinstance(mapping, XsltMapping):
        return None
    if canonical == "csv" and isinstance(mapping, CsvMapping) and not mapping.reads_canonical:
        return None
    return mapping

# XSLT with every outside access denied: no document(), no xsl:result-document, no network.
_ACCESS = etree.XSLTAccessControl.DENY_ALL


def load_mapping(path: Path) -> Mapping:
    """Load and check a mapping; ``MappingError`` lists every problem."""
    if not path.is_file():
        raise MappingError(path, ["file not found"])
    if path.suffix in (".xsl", ".xslt"):
        return _load_xslt(path)
    if path.suffix != ".toml":
        raise MappingError(path, ["a mapping is a .toml (CSV) or .xsl (XML) file"])
    return _load_csv_mapping(path)


def _load_xslt(path: Path) -> XsltMapping:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        stylesheet = etree.parse(str(path), parser)
        with compiling:
            return XsltMapping(path, etree.XSLT(stylesheet, access_control=_ACCESS))
    except (etree.XMLSyntaxError, etree.XSLTParseError) as err:
        raise MappingError(path, [f"not a valid XSLT stylesheet: {err}"]) from err


def _load_csv_mapping(path: Path) -> CsvMapping:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise MappingError(path, [f"not valid TOML: {err}"]) from err
    problems: list[str] = []
    for key in data:
        if key not in _SECTIONS:
            problems.append(f"{key}: unknown section{_suggest(key, _SECTIONS)}")
    csv_part = data.get("csv", {})
    for key in csv_part:
        if key not in _CSV_KEYS:
            problems.append(f"csv.{key}: unknown key{_suggest(key, _CSV_KEYS)}")
    delimiter = csv_part.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"\r\n":
        problems.append("csv.delimiter: one character, not a quote or line break")
    encoding = csv_part.get("encoding", "utf-8")
    try:
        "".encode(str(encoding))  # LookupError also for a codec that is not text (hex, zlib)
    except LookupError:
        problems.append(f"csv.encoding: unknown encoding {encoding!r}")
    ack_delimiter = csv_part.get("ack_delimiter", ",")
    if not isinstance(ack_delimiter, str) or len(ack_delimiter) != 1 or \
            ack_delimiter in "\"'\r\n=+-@":
        problems.append("csv.ack_delimiter: one character, not a quote, line break or formula "
                        "start")
    date_format = csv_part.get("date_format", "YYYY-MM-DD")
    if not isinstance(date_format, str) or not all(
            t in date_format for t in ("MM", "DD")) or "YY" not in date_format:
        problems.append("csv.date_format: use the tokens DD, MM and YYYY (or YY), e.g. "
                        "'DD.MM.YYYY' or 'MM/DD/YYYY'")
    decimal_separator = csv_part.get("decimal_separator", ".")
    thousands_separator = csv_part.get("thousands_separator", "")
    if decimal_separator not in (".", ","):
        problems.append("csv.decimal_separator: '.' or ','")
    if thousands_separator not in ("", ".", ",", " ", "'"):
        problems.append("csv.thousands_separator: '', '.', ',', ' ' or \"'\"")
    if decimal_separator == thousands_separator:
        problems.append("csv.thousands_separator: must differ from the decimal separator")
    if decimal_separator == delimiter:
        problems.append("csv.decimal_separator: must differ from the delimiter")

    columns: dict[str, str] = {}
    for partner_name, canonical in data.get("columns", {}).items():
        if canonical not in KNOWN_COLUMNS:
            problems.append(f"columns.{partner_name}: {canonical!r} is not a column of the CSV "
                            f"format{_suggest(str(canonical), KNOWN_COLUMNS)}")
        elif canonical in columns.values():
            problems.append(f"columns.{partner_name}: {canonical!r} is mapped twice")
        else:
            columns[partner_name] = canonical
    constants: dict[str, str] = {}
    for canonical, value in data.get("constants", {}).items():
        if canonical not in KNOWN_COLUMNS:
            problems.append(f"constants.{canonical}: not a column of the CSV format"
                            f"{_suggest(canonical, KNOWN_COLUMNS)}")
        elif not isinstance(value, str):
            problems.append(f"constants.{canonical}: a string")
        else:
            constants[canonical] = value

    units = data.get("units", {})
    quantity_unit = units.get("quantity", "kg")
    for key in units:
        if key != "quantity":
            problems.append(f"units.{key}: unknown key; only 'quantity'")
    if quantity_unit not in UNITS:
        problems.append(f"units.quantity: one of {', '.join(UNITS)} (kg, metric tons, pounds)")

    countries: dict[str, str] = {}
    for word, code in data.get("countries", {}).items():
        if not isinstance(code, str) or code.upper() not in ISO_COUNTRIES:
            problems.append(f"countries.{word}: {code!r} is not an ISO 3166-1 alpha-2 code")
        else:
            countries[word.casefold()] = code.upper()
    values = data.get("values", {})
    for key in values:
        if key not in ("unknown", "not_applicable"):
            problems.append(f"values.{key}: unknown key; 'unknown' or 'not_applicable'")
    words = {}
    for key in ("unknown", "not_applicable"):
        listed = values.get(key, [])
        if not isinstance(listed, list) or not all(isinstance(w, str) for w in listed):
            problems.append(f"values.{key}: a list of words")
            listed = []
        words[key] = frozenset(w.strip().casefold() for w in listed)
    if problems:
        raise MappingError(path, problems)
    return CsvMapping(
        path=path, description=str(data.get("description", "")), delimiter=delimiter,
        encoding=str(encoding), date_format=date_format, decimal_separator=decimal_separator,
        thousands_separator=thousands_separator, ack_delimiter=ack_delimiter, columns=columns,
        constants=constants, quantity_unit=quantity_unit, countries=countries,
        unknown_words=words["unknown"], not_applicable_words=words["not_applicable"])


@lru_cache(maxsize=64)
def _cached(path: Path, mtime_ns: int, thread: int) -> Mapping:
    return load_mapping(path)


def mapping_for(path: Path | None) -> Mapping | None:
    """The partner's mapping, loaded once per version of the file and per thread: an lxml
    XSLT object keeps its last run's error log on itself, so partners sharing one stylesheet,
    polled in threads, read each other's F005 messages from one object
    (tests/test_schema_threads.py)."""
    if path is None:
        return None
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = 0
    return _cached(path, mtime, threading.get_ident())


def preview(mapping: Mapping, source: Path, rows: int = 20,
            notes: list[str] | None = None) -> str:
    """What ``mapping`` makes of ``source``: the first ``rows`` canonical CSV rows (for a CSV
    mapping) or the transformed XML document (for an XSLT mapping). For brokers debugging a
    mapping before going live; raises ``RejectedSubmission`` as processing would. ``notes``
    gets the values a CSV mapping could not convert (``gateway.parse.unconverted``)."""
    text = _preview(mapping, source, rows)
    if notes is not None and isinstance(mapping, CsvMapping):
        notes += unconverted(text, mapping.date_format, mapping.decimal_separator,
                             mapping.thousands_separator)
    return text


def _preview(mapping: Mapping, source: Path, rows: int) -> str:
    import csv
    import io
    import tempfile

    from gateway.model import ACTION_CANCEL
    from gateway.parse.csv_file import (
        APP_COLUMNS,
        LIFECYCLE_COLUMNS,
        LINE_COLUMNS,
        CsvSubmission,
    )
    from gateway.parse.detect import detect_format

    if isinstance(mapping, XsltMapping):
        with tempfile.TemporaryDirectory(prefix="aimgw-map-") as tmp:
            target = Path(tmp) / "mapped.xml"
            mapping.to_submission(source, target)
            return target.read_text("utf-8")
    detect_format(source, mapping.headers, mapping.delimiter)  # F002 as processing finds it
    submission = CsvSubmission(source, mapping, source.name)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    written = 0
    for chunk in submission.applications():
        app = chunk.app
        # The contract 1.1 columns are shown when the partner's file or mapping has them.
        lifecycle = submission.lifecycle
        if written == 0:
            writer.writerow(["row", *ALL_COLUMNS, *(LIFECYCLE_COLUMNS if lifecycle else ())])
        if app.cancel:
            if written >= rows:
                return buffer.getvalue()
            writer.writerow([app.source_line, submission.submission_id, app.ref,
                             *([""] * (len(ALL_COLUMNS) - 2)), ACTION_CANCEL,
                             app.license_number, "", ""])
            written += 1
        for line in app.lines:
            if written >= rows:
                return buffer.getvalue()
            more = ("", app.license_number, app.corrects, app.kind) if lifecycle else ()
            writer.writerow([line.source_line, submission.submission_id, app.ref,
                             *(getattr(app, c) for c in APP_COLUMNS), line.line_no,
                             *(getattr(line, c) for c in LINE_COLUMNS), *more])
            written += 1
    return buffer.getvalue()
