"""Property tests (hypothesis) for the CSV parser and the mapping conversions (issue 6 point 4).

Whatever bytes or rows a partner sends, ``CsvSubmission.applications()`` yields applications or
raises ``RejectedSubmission`` with an F-code: never another exception, and every row number it
reports lies inside the file. The same holds through any mapping ``load_mapping`` accepts. The
mapping conversions never raise on any text and agree with exact arithmetic.

Runs are derandomized (a fixed seed per test) so that CI sees the same examples every time.
"""

from __future__ import annotations

import csv
import io
import tempfile
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from math import floor
from pathlib import Path

import pycountry
from conftest import examples
from hypothesis import HealthCheck, assume, event, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from gateway.countries import ISO_COUNTRIES, NOT_APPLICABLE, UNKNOWN
from gateway.errors import RejectedSubmission
from gateway.findings import CODES, Severity
from gateway.parse.csv_file import (
    ALL_COLUMNS,
    FIELD_SIZE_LIMIT,
    CsvApplication,
    CsvSubmission,
)
from gateway.parse.mapping import UNITS, CsvMapping, MappingError, load_mapping, preview

PURE = examples(200)
FILES = examples(120, suppress_health_check=[HealthCheck.too_slow,
                                             HealthCheck.data_too_large])

DEFAULT_ROW = {
    "submission_id": "SUB-1", "application_ref": "PO-1", "entry_type": "01", "entry_number": "",
    "importer": "ACME ALUMINUM IMPORTS LLC", "exporter": "NORTHERN ROLLING MILLS INC",
    "manufacturer": "NORTHERN ROLLING MILLS INC", "country_of_origin": "CA",
    "country_of_export": "CA", "expected_export_date": "2026-12-05",
    "expected_import_date": "2026-12-10", "port_of_entry": "3004", "line_no": "1",
    "hts": "7606123045", "description": "", "smelt_country_largest": "CA",
    "smelt_country_second": "US", "cast_country": "CA", "quantity_kg": "24000",
    "value_usd": "61200.00",
}
assert tuple(DEFAULT_ROW) == ALL_COLUMNS

# --- strategies -------------------------------------------------------------------------------

TRICKY = ['"', '""', '"quoted"', 'a"b', ",", ";", "\t", "|", "\n", "\r\n", "\r", "\x00", " ",
          "\ufeff", "\u2028", "é", "Gießland", "😀", "\\", "'", "=1+1", "-", "UNKNOWN"]
cell_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(TRICKY),
    st.lists(st.sampled_from(TRICKY), max_size=5).map("".join),
)
# Rare, so that most files get past them: cells around the field size limit (in characters).
long_text = st.one_of(
    st.sampled_from([FIELD_SIZE_LIMIT - 1, FIELD_SIZE_LIMIT, FIELD_SIZE_LIMIT + 1]).map(
        lambda n: "x" * n),
    st.integers(200, 2000).map(lambda n: "é" * n),
    st.sampled_from(["9" * 19, "1" * 4301]),  # line numbers past a ledger INTEGER, past int()
)


def hostile(draw: st.DrawFn) -> str:
    return draw(long_text) if draw(st.integers(0, 15)) == 0 else draw(cell_text)


def cell(draw: st.DrawFn, valid: str | None) -> str:
    """Mostly ``valid`` (when there is one), else hostile text."""
    if valid is not None and draw(st.integers(0, 5)):
        return valid
    return hostile(draw)


@st.composite
def csv_rows(draw: st.DrawFn, columns: tuple[str, ...] = ALL_COLUMNS,
             header: list[str] | None = None) -> list[list[str]]:
    """A header (mostly the canonical one) and rows mixing valid values with hostile text."""
    if header is None:
        header = list(columns)
        if draw(st.booleans()):
            header = draw(st.permutations(header))
        if draw(st.integers(0, 9)) == 0:
            header = draw(st.lists(st.one_of(st.sampled_from(columns), cell_text), max_size=25))
        elif draw(st.integers(0, 5)) == 0:  # optional columns left out
            header = [c for c in header if c not in ("entry_number", "description")]
    refs = ["PO-1", "PO-2", "PO-3", "", " PO-1 ", "P O", "x" * 40]
    rows = [header]
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 15)) == 0:  # a row of any shape
            rows.append([hostile(draw) for _ in range(draw(st.integers(0, len(header) + 2)))])
            continue
        row = []
        for column in header:
            if column == "application_ref":
                value = cell(draw, draw(st.sampled_from(refs[:3] if draw(st.booleans())
                                                        else refs)))
            elif column == "line_no":
                value = cell(draw, str(draw(st.sampled_from([1, 2, 3, 0, 999, 1000]))))
            else:
                value = cell(draw, DEFAULT_ROW.get(column))
            row.append(value)
        rows.append(row)
    return rows


def write_csv(rows: list[list[str]], delimiter: str, lineterminator: str, quoting: int) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=lineterminator,
               quoting=quoting).writerows(rows)
    return buffer.getvalue()


def row_bound(data: bytes, text: str | None = None) -> int:
    """An upper bound of the CSV rows of a file: one per line break byte or character, + 1."""
    bound = data.count(b"\n") + data.count(b"\r") + 1
    if text is not None:
        bound += text.count("\n") + text.count("\r")
    return bound


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """``data``, sometimes cut short or with a few bytes inserted."""
    choice = draw(st.integers(0, 5))
    if choice == 0 and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if choice == 1:
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    return data


# --- checking one parse -----------------------------------------------------------------------


def note(outcome: str) -> None:
    """Count outcomes (``--hypothesis-show-statistics``) so that a vacuous run shows."""
    if currently_in_test_context():
        event(outcome)


def consume(submission: CsvSubmission, bound: int) -> list[CsvApplication] | None:
    """All applications, or None for a rejected file; checks what either outcome promises."""
    try:
        apps = list(submission.applications())
    except RejectedSubmission as rejected:
        problem = rejected.finding
        note(f"rejected {problem.code}")
        assert problem.code.startswith("F") and problem.code in CODES, problem
        assert problem.severity is Severity.ERROR
        if problem.source_line is not None:
            assert 1 <= problem.source_line <= bound, (problem, bound)
        return None
    assert apps, "no application and no F008"
    note("applications")
    assert submission.submission_id and len(submission.submission_id) <= 35
    assert submission.application_count == len(apps)
    previous = 1  # the header
    for chunk in apps:
        app = chunk.app
        assert chunk.rows and chunk.rows == sorted(set(chunk.rows))
        assert chunk.rows[0] > previous, "applications out of file order or overlapping"
        assert chunk.rows[0] >= 2 and chunk.rows[-1] <= bound
        previous = chunk.rows[-1]
        assert app.source_line == chunk.rows[0]
        assert [line.source_line for line in app.lines] == chunk.rows
        for f in chunk.findings:
            assert f.code in ("A101", "A103"), f
            assert f.source_line in chunk.rows, (f, chunk.rows)
    return apps


# --- canonical CSV ------------------------------------------------------------------------------


@FILES
@given(data=st.one_of(st.binary(max_size=300),
                      st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.binary(max_size=60).map(
                          lambda b: b"\xef\xbb\xbf" + ",".join(ALL_COLUMNS).encode() + b"\n" + b)))
def test_any_bytes_are_applications_or_an_f_code(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sub.csv"
        path.write_bytes(data)
        consume(CsvSubmission(path), row_bound(data))


@FILES
@given(rows=csv_rows(), delimiter_is_default=st.booleans(),
       lineterminator=st.sampled_from(["\r\n", "\n", "\r"]),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]), bom=st.booleans(),
       st_data=st.data())
def test_any_rows_are_applications_or_an_f_code(
        rows: list[list[str]], delimiter_is_default: bool, lineterminator: str, quoting: int,
        bom: bool, st_data: st.DataObject) -> None:
    delimiter = "," if delimiter_is_default else ";"
    text = write_csv(rows, delimiter, lineterminator, quoting)
    original = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    data = st_data.draw(damaged(original))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sub.csv"
        path.write_bytes(data)
        apps = consume(CsvSubmission(path), row_bound(data, text))
    if apps is not None and data == original:
        # Read in full: each data row is in at most one application (rows as csv reads them;
        # the writer leaves a lone CR unquoted, so they may differ from ``rows``).
        read = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
        assert sum(len(a.rows) for a in apps) <= len(read) - 1


def test_a_valid_file_reads_back_exactly(tmp_path: Path) -> None:
    """``consume`` takes a valid file as one application (its checks are not vacuous)."""
    rows = [list(ALL_COLUMNS), list(DEFAULT_ROW.values()),
            [*list(DEFAULT_ROW.values())[:12], "2", *list(DEFAULT_ROW.values())[13:]]]
    path = tmp_path / "ok.csv"
    path.write_text(write_csv(rows, ",", "\r\n", csv.QUOTE_MINIMAL), "utf-8")
    (chunk,) = consume(CsvSubmission(path), 3) or []
    assert (chunk.rows, chunk.findings, chunk.app.ref) == ([2, 3], [], "PO-1")


# --- mapped CSV -------------------------------------------------------------------------------

ENCODINGS = ["utf-8", "UTF-8", "utf_8", "utf-8-sig", "windows-1252", "latin-1", "iso-8859-15",
             "ascii", "utf-16", "utf-16-le", "utf-32", "shift_jis", "cp437", "utf-7", "idna",
             "punycode", "hex", "rot13", "base64", "zlib", "no-such-encoding"]
DELIMITERS = [",", ";", "\t", "|", " ", ":", "a", "é", "\\", "'", "\x00", "\x1f", "\u2028"]
DATE_FORMATS = ["YYYY-MM-DD", "DD.MM.YYYY", "MM/DD/YYYY", "DD/MM/YY", "YYYYMMDD", "DDMMYY",
                "YY-MM-DD", "DD MM YYYY", "YYYY-DD-MM", "MM.DD.YY", "D.M.Y", "YYYY"]
PARTNER_NAMES = ["Bestellung", "Menge (t)", "Gießland", "Pos", "Wert USD", "po", "qty",
                 "application_ref", "HTS", " spaced ", "a;b", 'q"uote', "\ufeffbom"]


def toml_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


VALID_ENCODINGS = ENCODINGS[:6]


@st.composite
def mapping_texts(draw: st.DrawFn) -> str:
    """A mapping TOML: mostly plausible keys, sometimes odd ones (load_mapping judges them)."""

    def pick(plausible: list[str], odd: list[str]) -> str:
        return draw(st.sampled_from(odd if draw(st.integers(0, 5)) == 0 else plausible))

    lines = []
    decimal = pick([".", ","], [".", ","])
    csv_keys = {
        "delimiter": lambda: pick([",", ";", "\t", "|"], DELIMITERS),
        "encoding": lambda: pick(VALID_ENCODINGS, ENCODINGS),
        "date_format": lambda: pick(DATE_FORMATS[:-2], DATE_FORMATS),
        "decimal_separator": lambda: decimal,
        "thousands_separator": lambda: pick([t for t in ("", ".", ",", " ", "'") if t != decimal],
                                            ["", ".", ",", " ", "'"]),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(csv_keys)), unique=True))
    if chosen:
        lines.append("[csv]")
        for key in chosen:
            value = csv_keys[key]()
            if key == "delimiter" and value == decimal and draw(st.integers(0, 5)):
                value = "|"
            lines.append(f"{key} = {toml_string(value.replace(chr(92) + 't', chr(9)))}")
    renames = draw(st.lists(st.tuples(st.sampled_from(PARTNER_NAMES),
                                      st.sampled_from(ALL_COLUMNS)),
                            max_size=6, unique_by=(lambda r: r[0], lambda r: r[1])))
    if renames:
        lines.append("[columns]")
        lines += [f"{toml_string(k)} = {toml_string(v)}" for k, v in renames]
    constants = draw(st.dictionaries(
        st.sampled_from(["entry_type", "submission_id", "port_of_entry", "manufacturer"]),
        st.sampled_from(["01", "{file_name}", "X-{file_name}", "3004", "", "unbekannt"]),
        max_size=3))
    if constants:
        lines.append("[constants]")
        lines += [f"{k} = {toml_string(v)}" for k, v in constants.items()]
    lines.append("[units]")
    lines.append(f"quantity = {toml_string(pick(['kg', 't', 'lb'], ['kg', 'g']))}")
    aliases = draw(st.dictionaries(st.sampled_from(["Deutschland", "Kanada", "Österreich", "X"]),
                                   st.sampled_from(["DE", "CA", "at", "US"]), max_size=3))
    if aliases:
        lines.append("[countries]")
        lines += [f"{toml_string(k)} = {toml_string(v)}" for k, v in aliases.items()]
    lines.append("[values]")
    words = st.lists(st.sampled_from(["unbekannt", "k.A.", "n/a", "-", "entfällt", "NA"]),
                     max_size=3)
    lines.append(f"unknown = [{', '.join(toml_string(w) for w in draw(words))}]")
    lines.append(f"not_applicable = [{', '.join(toml_string(w) for w in draw(words))}]")
    return "\n".join(lines) + "\n"


def partner_value(column: str, mapping: CsvMapping, draw: st.DrawFn) -> str:
    """A cell as this partner would write it (numbers and dates in its format), or odd text."""
    if column in ("quantity_kg", "value_usd"):
        number = draw(st.decimals(min_value=0, max_value=10**9, places=2))
        text = format(number, "f").replace(".", mapping.decimal_separator)
        if mapping.thousands_separator and draw(st.booleans()):
            whole, sep, fraction = text.partition(mapping.decimal_separator)
            groups = f"{int(whole):,}".replace(",", mapping.thousands_separator)
            text = groups + sep + fraction
        return cell(draw, text)
    if column.startswith("expected_"):
        d = draw(st.dates(date(2026, 11, 1), date(2027, 1, 31)))
        return cell(draw, mapping.date_format.replace("YYYY", f"{d.year:04d}")
                    .replace("YY", f"{d.year % 100:02d}").replace("MM", f"{d.month:02d}")
                    .replace("DD", f"{d.day:02d}"))
    if column in ("country_of_origin", "cast_country", "smelt_country_largest"):
        return cell(draw, draw(st.sampled_from(["Deutschland", "Germany", "DEU", "de", "n/a",
                                                "unbekannt", "Atlantis", " CA "])))
    if column == "application_ref":
        return cell(draw, draw(st.sampled_from(["PO-1", "PO-2"])))
    return cell(draw, DEFAULT_ROW.get(column))


@FILES
@given(st_data=st.data(), mapping_text=mapping_texts())
def test_mapped_rows_are_applications_or_an_f_code(st_data: st.DataObject,
                                                   mapping_text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        mapping_path = folder / "m.toml"
        mapping_path.write_text(mapping_text, "utf-8")
        try:
            mapping = load_mapping(mapping_path)
        except MappingError:
            assume(False)
            return
        assert isinstance(mapping, CsvMapping)
        # The partner's header: its own names for renamed columns, constants may be left out.
        partner_name = {canonical: name for name, canonical in mapping.columns.items()}
        header = [partner_name.get(c, c) for c in ALL_COLUMNS
                  if c not in mapping.constants or st_data.draw(st.booleans())]
        canonical_of = {partner_name.get(c, c): c for c in ALL_COLUMNS}
        rows = [header]
        for _ in range(st_data.draw(st.integers(0, 6))):
            rows.append([partner_value(canonical_of.get(name, ""), mapping, st_data.draw)
                         for name in header])
        if mapping.delimiter in "\x00":
            text = "\n".join(mapping.delimiter.join(r) for r in rows)
        else:
            text = write_csv(rows, mapping.delimiter,
                             st_data.draw(st.sampled_from(["\r\n", "\n"])), csv.QUOTE_MINIMAL)
        try:
            data = text.encode(mapping.encoding, errors="replace")
        except UnicodeError:  # idna, punycode: no "replace"; the partner sends bytes anyway
            data = text.encode("utf-8")
        data = st_data.draw(damaged(data))
        source = folder / "ERP-1.csv"
        source.write_bytes(data)
        consume(CsvSubmission(source, mapping, source.name), row_bound(data, text))
        try:
            canonical = preview(mapping, source, rows=50)
        except RejectedSubmission as rejected:
            assert rejected.finding.code.startswith("F"), rejected.finding
        else:
            assert canonical.startswith("row,submission_id,application_ref,")


# --- mapping conversions -------------------------------------------------------------------------


@st.composite
def csv_mappings(draw: st.DrawFn) -> CsvMapping:
    decimal = draw(st.sampled_from([".", ","]))
    thousands = draw(st.sampled_from([s for s in ("", ".", ",", " ", "'") if s != decimal]))
    fmt = draw(st.sampled_from(DATE_FORMATS[:-2]))  # the ones load_mapping accepts
    words = st.frozensets(st.sampled_from(["unbekannt", "k.a.", "n/a", "-", "entfällt", "?"]),
                          max_size=3)
    unknown = draw(words)
    return CsvMapping(
        Path("m.toml"), date_format=fmt, decimal_separator=decimal,
        thousands_separator=thousands, quantity_unit=draw(st.sampled_from(sorted(UNITS))),
        countries=draw(st.dictionaries(st.sampled_from(["deutschland", "kanada", "island"]),
                                       st.sampled_from(sorted(ISO_COUNTRIES)), max_size=3)),
        unknown_words=unknown, not_applicable_words=draw(words) - unknown)


number_like = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"[+-]?[0-9 .,']{0,30}([eE][+-]?[0-9]{1,20})?", fullmatch=True),
    st.sampled_from(["Infinity", "-inf", "NaN", "sNaN", "1e999999", "1e-999999",
                     "1e999999999999999999", "9" * 29 + "e999971", "1_000", "١٢٣", "0", "-0",
                     "", " ", "1.234,5", "1,234.5", "1 234,5", "1'234.5"]),
)
any_text = st.one_of(st.none(), st.text(max_size=40), number_like)


@PURE
@given(mapping=csv_mappings(), text=any_text)
def test_conversions_never_raise(mapping: CsvMapping, text: str | None) -> None:
    number = mapping.to_number(text)
    kg = mapping.to_kg(text)
    day = mapping.to_date(text)
    for converted in (number, kg, day):
        assert (converted is None) == (text is None)
    for special in (False, True):
        country = mapping.to_country(text, special)
        assert (country is None) == (text is None)
    mapping.special_word(text)


@PURE
@given(mapping=csv_mappings(), text=any_text)
def test_to_number_is_a_number_or_the_text_and_idempotent(mapping: CsvMapping,
                                                          text: str | None) -> None:
    number = mapping.to_number(text)
    if text is None or number == text:
        return
    Decimal(number)  # a converted value is always a number
    assert " " not in number
    if mapping.thousands_separator != ".":
        # With "." for thousands, the canonical "1.5" is the partner's fifteen: not idempotent.
        assert mapping.to_number(number) == number


@PURE
@given(mapping=csv_mappings(), value=st.decimals(min_value=0, max_value=10**15, places=3),
       group=st.booleans())
def test_to_number_reads_the_partners_format(mapping: CsvMapping, value: Decimal,
                                             group: bool) -> None:
    whole, _, fraction = format(value, "f").partition(".")
    if group and mapping.thousands_separator:
        whole = f"{int(whole):,}".replace(",", mapping.thousands_separator)
    text = whole + (mapping.decimal_separator + fraction if fraction else "")
    assert Decimal(mapping.to_number(text)) == value


def half_up_3(exact: Fraction) -> Fraction:
    """``exact`` rounded half up (away from zero) to 3 decimals, exactly."""
    sign = -1 if exact < 0 else 1
    return sign * Fraction(floor(abs(exact) * 1000 + Fraction(1, 2)), 1000)


@PURE
@given(unit=st.sampled_from(["t", "lb"]),
       value=st.one_of(st.decimals(min_value=0, max_value=10**12, places=6),
                       st.decimals(min_value=0, max_value=10**6, places=25),
                       st.decimals(allow_nan=False, allow_infinity=False).filter(
                           lambda d: abs(d.adjusted()) < 30)))
def test_to_kg_is_exact_decimal_arithmetic_rounded_half_up(unit: str, value: Decimal) -> None:
    mapping = CsvMapping(Path("m.toml"), quantity_unit=unit)
    text = format(value, "f")
    kg = mapping.to_kg(text)
    assert kg is not None and "E" not in kg.upper(), kg
    expected = half_up_3(Fraction(value) * Fraction(UNITS[unit]))
    assert Fraction(Decimal(kg)) == expected, (text, kg, expected)
    # The same quantity written with more trailing zeros converts to the same kilograms.
    padded = text + ("0" if "." in text else ".000")
    assert mapping.to_kg(padded) == kg, (text, padded)


def test_to_kg_does_not_round_twice() -> None:
    """A product with more digits than the default 28 would be rounded before the 3 decimals."""
    mapping = CsvMapping(Path("m.toml"), quantity_unit="lb")
    # x lb = 1.0004999…9 kg (30 nines after the 4): 1.000 kg, not 1.001.
    with localcontext(prec=80):
        x = (Decimal("1.000499999999999999999999999999999") / UNITS["lb"]).quantize(
            Decimal("1e-45"))
        exact = x * UNITS["lb"]
    text = format(x, "f")
    assert exact < Decimal("1.0005")
    assert mapping.to_kg(text) == "1"


def written(fmt: str, day: date, pad: bool) -> str:
    """``day`` as a partner writes it in ``fmt``, with or without leading zeros."""
    month = f"{day.month:02d}" if pad else str(day.month)
    dd = f"{day.day:02d}" if pad else str(day.day)
    return (fmt.replace("YYYY", f"{day.year:04d}").replace("YY", f"{day.year % 100:02d}")
            .replace("MM", month).replace("DD", dd))


@PURE
@given(mapping=csv_mappings(), day=st.dates(date(2000, 1, 1), date(2099, 12, 31)),
       pad=st.booleans())
def test_to_date_reads_the_partners_format(mapping: CsvMapping, day: date, pad: bool) -> None:
    fmt = mapping.date_format
    text = written(fmt, day, pad)
    converted = mapping.to_date(text)
    if pad or fmt == "YYYY-MM-DD":
        assert converted == (text if fmt == "YYYY-MM-DD" else day.isoformat()), (fmt, text)
    elif converted != text:
        # Unpadded, "1112026" may be 1.11. or 11.1.: the date read is one reading of the text
        # (written back without zeros, it is the text), never some other date.
        assert written(fmt, date.fromisoformat(converted), pad=False) == text, (fmt, converted)


@PURE
@given(mapping=csv_mappings(), text=st.one_of(st.text(max_size=30), number_like))
def test_to_date_is_a_date_or_the_text(mapping: CsvMapping, text: str) -> None:
    converted = mapping.to_date(text)
    if converted != text:
        assert date.fromisoformat(converted).isoformat() == converted


country_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(sorted(ISO_COUNTRIES)).flatmap(
        lambda c: st.sampled_from([c, c.lower(), f" {c} "])),
    st.sampled_from([c.alpha_3 for c in pycountry.countries]),
    st.sampled_from([c.name for c in pycountry.countries][:60]),
    st.sampled_from(["Deutschland", "kanada", "UNKNOWN", "not_applicable", "n/a", "unbekannt",
                     "?", "-", "USA", "Türkiye", "", " "]),
)


@PURE
@given(mapping=csv_mappings(), text=country_text, special=st.booleans())
def test_to_country_is_idempotent(mapping: CsvMapping, text: str, special: bool) -> None:
    # A partner word for UNKNOWN that is also a country code would make its country ambiguous.
    words = mapping.unknown_words | mapping.not_applicable_words
    assume(not any(w.upper() in ISO_COUNTRIES for w in words))
    country = mapping.to_country(text, special)
    assert mapping.to_country(country, special) == country
    if text.strip().upper() in ISO_COUNTRIES and text.strip().casefold() not in words:
        assert country == text.strip().upper()
    if country in (UNKNOWN, NOT_APPLICABLE) and country != text:
        assert special


def test_rounding_reference_is_half_up() -> None:
    """The reference rounding of the to_kg property agrees with Decimal's ROUND_HALF_UP."""
    for text in ("0.0005", "0.0015", "2.4995", "1.0004999"):
        expected = Decimal(text).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
        assert half_up_3(Fraction(Decimal(text))) == Fraction(expected)
