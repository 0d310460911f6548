"""Contract 1.1 in CSV submissions (guide 3, 4, 5.1a, 5.1b): the optional columns ``action``,
``license_number``, ``corrects`` and ``license_kind``, canonical and through a partner's
mapping (TOML, and an XSLT that emits the 1.1 elements).

A cancellation row (``action`` = ``CANCEL``, any case) is its own unit: ``application_ref``
and ``license_number`` filled, every other column empty (A101 for each one filled), never
joined with application rows of its ref (the ref then counts twice: A105).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import OnePartner, examples
from hypothesis import given
from hypothesis import strategies as st
from test_csv import COLUMNS, DEFAULT_ROW, CsvAck, Gateway, to_csv
from test_mapping import run_once as run_cycle
from test_mapping import write_mapping, xml_ack, xslt_config

from gateway.errors import RejectedSubmission
from gateway.parse.csv_file import CsvSubmission
from gateway.parse.mapping import CsvMapping, load_mapping, preview

LIFECYCLE = ("action", "license_number", "corrects", "license_kind")
COLUMNS_11 = (*COLUMNS, *LIFECYCLE)
REJ = "REJECTED"


def rows(*overrides: dict[str, str], columns: tuple[str, ...] = COLUMNS_11) -> bytes:
    """A CSV of application rows (DEFAULT_ROW with ``overrides``); a dict with
    ``action`` set to a cancel word is a cancellation row (only its own cells)."""
    out = [list(columns)]
    per_ref: dict[str, int] = {}
    for row in overrides:
        if row.get("action", "").upper() == "CANCEL":
            values = {"submission_id": "SUB-1", "application_ref": "PO-1", **row}
        else:
            values = {**DEFAULT_ROW, **row}
            if not values.get("line_no"):
                ref = values["application_ref"] or ""
                per_ref[ref] = per_ref.get(ref, 0) + 1
                values["line_no"] = str(per_ref[ref])
        out.append([values.get(c) or "" for c in columns])
    return to_csv(out)


def cancel_row(ref: str = "PO-9", number: str = "A26000001", **more: str) -> dict[str, str]:
    return {"action": "CANCEL", "application_ref": ref, "license_number": number, **more}


class Registered(Gateway):
    """Partner ``acme`` whose licenses come from Commerce (``license_source = "commerce"``)."""

    def __init__(self, base: Path) -> None:
        OnePartner.__init__(self, base, license_source="commerce")


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    return Gateway(tmp_path)


def codes_of(ack: CsvAck, ref: str) -> set[str]:
    return {c for r in ack.by_ref(ref) for c in r.codes}


def read(tmp_path: Path, data: bytes, mapping: CsvMapping | None = None) -> list:
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    return [chunk.app for chunk in CsvSubmission(path, mapping).applications()]


# --- reading ------------------------------------------------------------------------------------


def test_a_file_without_the_new_columns_reads_as_before(gw: Gateway) -> None:
    ack = gw.check(rows({}, columns=COLUMNS))
    assert (ack.status, [r.codes for r in ack.rows]) == ("ACCEPTED", [[]])


def test_the_new_columns_are_read(tmp_path: Path) -> None:
    apps = read(tmp_path, rows(
        {"application_ref": "PO-1", "license_kind": "LOW_VALUE", "corrects": "A26000001"},
        {"application_ref": "PO-1", "license_kind": "LOW_VALUE", "corrects": "A26000001"},
        cancel_row("PO-2", "A26000002"),
        {"application_ref": "PO-3", "license_number": "C1234"}))
    assert [(a.ref, a.cancel, a.kind, a.corrects, a.license_number, len(a.lines))
            for a in apps] == [
        ("PO-1", False, "LOW_VALUE", "A26000001", None, 2),
        ("PO-2", True, None, None, "A26000002", 0),
        ("PO-3", False, None, None, "C1234", 1)]
    assert [a.source_line for a in apps] == [2, 4, 5]


def test_a_file_of_only_cancellations_is_no_f008(tmp_path: Path, gw: Gateway) -> None:
    apps = read(tmp_path, rows(cancel_row("PO-1"), cancel_row("PO-2")))
    assert [(a.ref, a.cancel) for a in apps] == [("PO-1", True), ("PO-2", True)]
    ack = gw.check_xml(rows(cancel_row("PO-1")))
    assert ack.file_codes == set()
    (app,) = ack.apps
    assert not app.codes & {"A101", "A102"}


@pytest.mark.parametrize("action", ["CANCEL", "cancel", "Cancel", " CANCEL "])
def test_action_cancel_in_any_case(tmp_path: Path, action: str) -> None:
    (app,) = read(tmp_path, rows(cancel_row(action=action)))
    assert app.cancel


@pytest.mark.parametrize(("row", "expected", "field"), [
    pytest.param(cancel_row(), set(), None, id="valid"),
    pytest.param(cancel_row(number=""), {"A102"}, "license_number", id="A102-no-number"),
    pytest.param(cancel_row(ref=""), {"A102"}, "ref", id="A102-no-ref"),
    pytest.param(cancel_row(number="A" * 36), {"A101"}, "license_number",
                 id="A101-number-36-chars"),
    pytest.param(cancel_row(number="A" * 35), set(), None, id="near-miss-number-35-chars"),
    pytest.param(cancel_row(importer="ACME"), {"A101"}, "importer", id="A101-importer-filled"),
    pytest.param(cancel_row(line_no="1"), {"A101"}, "line_no", id="A101-line-no-filled"),
    pytest.param(cancel_row(hts="7606123045"), {"A101"}, "hts", id="A101-hts-filled"),
    pytest.param(cancel_row(corrects="A26000001"), {"A101"}, "corrects",
                 id="A101-corrects-filled"),
    pytest.param(cancel_row(license_kind="LOW_VALUE"), {"A101"}, "license_kind",
                 id="A101-kind-filled"),
    pytest.param(cancel_row(ref="PO 9"), {"A101"}, "ref", id="A101-ref-shape"),
])
def test_cancellation_rows(gw: Gateway, row: dict[str, str], expected: set[str],
                           field: str | None) -> None:
    ack = gw.check_xml(rows(row))
    (app,) = ack.apps
    assert app.codes & {"A101", "A102", "A103"} == expected
    assert not app.codes - {"A101", "A102", "A106", "A107", "I203"}  # no application rule
    if field:
        assert {f.field for f in app.findings if f.code in expected} == {field}
    if expected:
        assert app.status == REJ


def test_each_cancel_row_is_checked_on_its_own(gw: Gateway) -> None:
    # A misshapen ref is reported on every cancellation row and application that has it.
    ack = gw.check_xml(rows(cancel_row("PO 9"), cancel_row("PO 9"), {"application_ref": "PO 9"}))
    assert ["A101" in a.codes for a in ack.apps] == [True, True, True]


def test_a_cancel_row_is_never_joined_with_its_refs_application_rows(gw: Gateway) -> None:
    # (The XML form of the ack: it lists every unit, the cancellation's too.)
    data = rows({"application_ref": "PO-1"}, cancel_row("PO-1"), {"application_ref": "PO-1"})
    ack = gw.check_xml(data)
    assert [(a.ref, a.lines, "A105" in a.codes, a.status) for a in ack.apps] == [
        ("PO-1", ["1", "2"], True, REJ), ("PO-1", [], True, REJ)]
    ack = gw.check_xml(rows(cancel_row("PO-1"), cancel_row("PO-1")))
    assert [("A105" in a.codes) for a in ack.apps] == [True, True]


@pytest.mark.parametrize(("action", "expected"), [
    pytest.param("", set(), id="empty-is-an-application"),
    pytest.param("DELETE", {"A101"}, id="A101-delete"),
    pytest.param("CANCELLED", {"A101"}, id="A101-cancelled"),
])
def test_other_actions(gw: Gateway, action: str, expected: set[str]) -> None:
    ack = gw.check(rows({"action": action}))
    assert set(ack.row(2).codes) == expected
    if expected:
        (message,) = ack.row(2).messages.split(" | ")[:1]
        assert "action" in message and "CANCEL" in message


# --- application columns: A101, A103, A108, registered numbers ---------------------------------


@pytest.mark.parametrize("column", ["corrects", "license_kind", "license_number"])
def test_rows_of_one_application_must_agree_on_the_new_columns(tmp_path: Path,
                                                               column: str) -> None:
    registered = Registered(tmp_path) if column == "license_number" else Gateway(tmp_path)
    first, second = {"corrects": ("A26000001", "A26000002"),
                     "license_kind": ("LOW_VALUE", ""),
                     "license_number": ("C1", "C2")}[column]
    base = {"license_number": "C1"} if column == "license_number" else {}
    ack = registered.check(rows({**base, column: first}, {**base, column: second}))
    assert "A103" in ack.row(3).codes
    assert "A103" not in ack.row(2).codes
    if column == "license_kind":  # an empty cell is named so, never Python's None
        assert "has license_kind empty but the application's first row has 'LOW_VALUE'" in \
            ack.row(3).messages
    near_miss = registered.check(rows({**base, column: first}, {**base, column: first}))
    assert not any("A103" in r.codes for r in near_miss.rows)


@pytest.mark.parametrize(("cells", "expected"), [
    pytest.param({"license_kind": "LOW_VALUE", "quantity_kg": "1000", "value_usd": "4999.99"},
                 set(), id="low-value"),
    pytest.param({"license_kind": "LOW_VALUE"}, {"A108"}, id="A108"),
    pytest.param({"license_kind": "small"}, {"A101"}, id="A101-kind"),
    pytest.param({"license_number": "C1"}, {"A101"}, id="A101-number-from-a-gateway-partner"),
    pytest.param({"corrects": "A" * 36}, {"A101"}, id="A101-corrects-36"),
    # A check without history takes the named license as valid: I202 (guide 5.1b).
    pytest.param({"corrects": "A26000001"}, {"I202"}, id="near-miss-corrects"),
])
def test_application_cells(gw: Gateway, cells: dict[str, str], expected: set[str]) -> None:
    ack = gw.check(rows(cells))
    assert set(ack.row(2).codes) - {"A171"} == expected


@pytest.mark.parametrize(("number", "expected"), [
    pytest.param("C123456789", {"I204"}, id="near-miss"),  # LICENSED with it (guide 5.1a)
    pytest.param("", {"A102"}, id="A102"),
    pytest.param("c1", {"A101"}, id="A101-lowercase"),
    pytest.param("C1234567890", {"A101"}, id="A101-11-chars"),
    pytest.param("=1+1", {"A101"}, id="A101-formula"),
    pytest.param("PENDING", {"A101"}, id="A101-check-placeholder"),
    pytest.param("PENDINGS", {"I204"}, id="near-miss-placeholder"),
])
def test_registered_license_number_cells(tmp_path: Path, number: str, expected: set[str]) -> None:
    ack = Registered(tmp_path).check(rows({"license_number": number}))
    assert set(ack.row(2).codes) == expected


def test_formula_cells_on_a_cancel_row_are_neutralised(gw: Gateway) -> None:
    data = rows(cancel_row("PO-9", "=HYPERLINK(\"x\")", importer="@SUM(A1)"))
    (app,) = gw.check_xml(data).apps
    assert "A101" in app.codes
    assert {f.value for f in app.findings if f.code == "A101"} == {"@SUM(A1)"}
    for cells in gw.check(data).raw[1:]:
        assert not any(c[:1] in ("=", "+", "-", "@") for c in cells), cells


# --- mapped partners ----------------------------------------------------------------------------

MAPPING = """
[columns]
"Vorgang" = "action"
"Lizenz" = "license_number"
"Ersetzt" = "corrects"
"Art" = "license_kind"
[constants]
entry_type = "01"
"""


def test_a_toml_mapping_maps_its_columns_to_the_new_ones(tmp_path: Path) -> None:
    mapping = load_mapping(write_mapping(tmp_path, MAPPING))
    assert isinstance(mapping, CsvMapping)
    names = {"action": "Vorgang", "license_number": "Lizenz", "corrects": "Ersetzt",
             "license_kind": "Art"}
    columns = tuple(names.get(c, c) for c in COLUMNS_11 if c != "entry_type")
    data = rows({"license_kind": "LOW_VALUE", "corrects": "A26000001"}, cancel_row("PO-2"),
                columns=tuple(c for c in COLUMNS_11 if c != "entry_type"))
    data = data.replace(b",".join(c.encode() for c in COLUMNS_11 if c != "entry_type"),
                        b",".join(c.encode() for c in columns), 1)
    apps = read(tmp_path, data, mapping)
    # The constant fills the application's entry type, never a cancellation row's (no A101).
    assert [(a.ref, a.cancel, a.kind, a.corrects, a.license_number, a.entry_type)
            for a in apps] == [("PO-1", False, "LOW_VALUE", "A26000001", None, "01"),
                               ("PO-2", True, None, None, "A26000001", None)]
    source = tmp_path / "mapped.csv"
    source.write_bytes(data)
    text = preview(mapping, source)
    assert text.splitlines()[0].endswith(",action,license_number,corrects,license_kind")
    assert text.splitlines()[2].endswith(",CANCEL,A26000001,,")


def test_a_mapping_may_set_a_new_column_as_a_constant(tmp_path: Path) -> None:
    mapping = load_mapping(write_mapping(tmp_path, '[constants]\nlicense_kind = "LOW_VALUE"\n'))
    assert isinstance(mapping, CsvMapping)
    (app,) = read(tmp_path, rows({}, columns=COLUMNS), mapping)
    assert app.kind == "LOW_VALUE"


def test_unknown_columns_are_still_f005(tmp_path: Path) -> None:
    data = rows({}, columns=(*COLUMNS, "license_type"))
    with pytest.raises(RejectedSubmission) as err:
        read(tmp_path, data)
    assert err.value.finding.code == "F005"
    assert "license_kind" in err.value.finding.message  # the columns it could have meant


NORDIC_CANCEL = b"""<?xml version="1.0" encoding="UTF-8"?>
<Orders xmlns="urn:nordic-alu:orders:2">
  <Batch id="NA-2026-78"/>
  <Cancel no="SO-88121" license="A26000001">customer withdrew the order</Cancel>
  <Cancel no="SO-88123" license=""/>
</Orders>
"""


def test_the_nordic_stylesheet_emits_cancellations(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    cfg = xslt_config(tmp_path, root / "mappings" / "nordic-orders.xsl")
    (tmp_path / "inbox" / "nordic" / "cancel.xml").write_bytes(NORDIC_CANCEL)
    run_cycle(cfg)
    ack = xml_ack(tmp_path, "nordic", "cancel.xml")
    assert [(a.ref, "A102" in a.codes) for a in ack.apps] == [("SO-88121", False),
                                                             ("SO-88123", True)]
    source = tmp_path / "cancel.xml"
    source.write_bytes(NORDIC_CANCEL)
    mapped = preview(load_mapping(root / "mappings" / "nordic-orders.xsl"), source)
    assert '<Cancellation ref="SO-88121" licenseNumber="A26000001">' in mapped
    assert "<Reason>customer withdrew the order</Reason>" in mapped


def test_the_nordic_stylesheet_emits_corrections_and_kinds(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    sample = root / "tests" / "cases" / "inbox" / "nordic" / "nordic-orders-NA-2026-77.xml"
    text = sample.read_text("utf-8").replace('<Order no="SO-88121"',
                                             '<Order no="SO-88121" replaces="A26000001"', 1)
    text = text.replace('<Order no="SO-88122"', '<Order no="SO-88122" kind="LOW_VALUE"', 1)
    source = tmp_path / "n.xml"
    source.write_text(text, "utf-8")
    mapped = preview(load_mapping(root / "mappings" / "nordic-orders.xsl"), source)
    assert '<Application ref="SO-88121" corrects="A26000001">' in mapped
    assert '<Application ref="SO-88122" kind="LOW_VALUE">' in mapped


@examples(60)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["PO-1", "PO-2"])), min_size=1,
                max_size=12))
def test_any_mix_of_rows_keeps_cancellations_apart(tmp_path_factory: pytest.TempPathFactory,
                                                   units: list[tuple[bool, str]]) -> None:
    data = rows(*(cancel_row(ref) if cancel else {"application_ref": ref}
                  for cancel, ref in units))
    apps = read(tmp_path_factory.mktemp("mix"), data)
    # Each cancellation row is a unit; consecutive application rows of one ref are one.
    expected: list[tuple[bool, str, int]] = []
    for cancel, ref in units:
        if not cancel and expected and expected[-1][:2] == (False, ref):
            expected[-1] = (False, ref, expected[-1][2] + 1)
        else:
            expected.append((cancel, ref, 0 if cancel else 1))
    assert [(a.cancel, a.ref, len(a.lines)) for a in apps] == expected
