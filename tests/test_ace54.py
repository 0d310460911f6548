"""The ACE 54 record type 07 (smelt and cast countries) of contract 1.1, and A128.

Positions are typed from spec/ACE-RECORDS.md 1.1, not read from ``LAYOUTS``: 1-2 ``54``, 3-4
``07``, 5-7 largest smelt country, 8-9 spaces, 10-12 second-largest smelt country (spaces for
``NOT_APPLICABLE``), 13-14 spaces, 15-17 cast country, 18-80 spaces. The record is written only
for an expected import date on or after 2023-04-10; ``UNKNOWN`` anywhere, and any combination
with no grounded form, gives no 54 record and A128 (WARNING) on the line, in both acks, with
the application still LICENSED.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from conftest import ProjectConfig
from test_ace import check_against_golden, make_app, make_line, make_writer
from test_csv import DEFAULT_ROW, csv_file, parse_csv_ack
from test_rules import AS_OF, Ack, Gateway, application, parse_ack, submission

from gateway.config import load_config
from gateway.findings import MAX_FINDINGS
from gateway.outputs.ace import entry_summary_records
from gateway.service.runner import run_once
from gateway.validate.smelt_cast import a128_findings

GOLDEN = Path(__file__).parent / "golden"
NA, UNK = "NOT_APPLICABLE", "UNKNOWN"

# spec/ACE-RECORDS.md 1.1, record 54: (first, last) 1-based inclusive -> what it holds.
R54 = {"control": (1, 2), "type": (3, 4), "filler_a": (5, 7), "gap_1": (8, 9),
       "filler_b": (10, 12), "gap_2": (13, 14), "filler_c": (15, 17), "rest": (18, 80)}


def fields_54(record: str) -> dict[str, str]:
    """The record cut at the contract's positions."""
    assert len(record) == 80
    return {name: record[first - 1:last] for name, (first, last) in R54.items()}


def expected_54(largest: str, second: str | None, cast: str) -> dict[str, str]:
    return {"control": "54", "type": "07", "filler_a": largest.ljust(3), "gap_1": "  ",
            "filler_b": (second or "").ljust(3), "gap_2": "  ", "filler_c": cast.ljust(3),
            "rest": " " * 63}


# Every smelt/cast combination: (largest, second, cast) -> the 54 fields, or None: no record.
COMBINATIONS = [
    (("CA", "US", "CA"), ("CA", "US", "CA")),          # country / country / country
    (("CN", "IN", "DE"), ("CN", "IN", "DE")),
    (("RU", "CA", "CA"), ("RU", "CA", "CA")),
    (("CA", NA, "CA"), ("CA", None, "CA")),            # a single smelt country: spaces
    (("NA", NA, "NA"), ("NA", None, "NA")),            # Namibia is a country: written as such
    ((NA, NA, "CA"), None),                            # secondary aluminum only: no form
    ((NA, "CA", "CA"), None),
    ((UNK, UNK, "CA"), None),                          # UNKNOWN in each position
    ((UNK, NA, "CA"), None),
    (("CA", UNK, "CA"), None),
    (("CA", "US", UNK), None),
    (("CA", "US", NA), None),
    ((UNK, UNK, UNK), None),
]
IDS = ["-".join(values) for values, _ in COMBINATIONS]


def records_for(largest: str, second: str, cast: str, import_date: str = "2025-03-21",
                ) -> list[str]:
    app = make_app([make_line(smelt_country_largest=largest, smelt_country_second=second,
                              cast_country=cast)], expected_import_date=import_date)
    return entry_summary_records(app, app.lines, "A25000001", "XYZ")


@pytest.mark.parametrize(("values", "expected"), COMBINATIONS, ids=IDS)
def test_54_record_for_every_smelt_cast_combination(values: tuple[str, str, str],
                                                    expected: tuple | None) -> None:
    records = records_for(*values)
    if expected is None:
        assert [r[:2] for r in records] == ["10", "40", "50", "52"]
    else:
        assert [r[:2] for r in records] == ["10", "40", "50", "52", "54"]
        assert fields_54(records[-1]) == expected_54(*expected)


@pytest.mark.parametrize(("import_date", "written"), [
    ("2023-04-09", False), ("2023-04-10", True), ("2021-06-28", False), ("2026-12-11", True)])
def test_54_record_only_from_2023_04_10(import_date: str, written: bool) -> None:
    records = records_for("CA", "US", "CA", import_date)
    assert ("54" in [r[:2] for r in records]) is written


def test_no_54_record_ever_holds_na_or_un_for_a_non_country() -> None:
    for (largest, second, cast), _ in COMBINATIONS:
        if "NA" in (largest, second, cast):
            continue  # Namibia, sent as a country
        for record in records_for(largest, second, cast):
            assert "NA" not in record and "UN" not in record, record


# --- golden files: one before 2023-04-10, one from it, every combination ---------------------


# Namibia (NA, a real country, written as such above) stays out of the golden files: an ACE
# file in tests/golden never shows NA or UN in a 54 record.
GOLDEN_COMBINATIONS = [(values, e) for values, e in COMBINATIONS if "NA" not in values]


def golden_applications(import_date: str) -> list:
    lines = [make_line(str(n), smelt_country_largest=largest, smelt_country_second=second,
                       cast_country=cast)
             for n, ((largest, second, cast), _) in enumerate(GOLDEN_COMBINATIONS, start=1)]
    app = make_app(lines, ref="SMELT-CAST", expected_import_date=import_date,
                   expected_export_date="2023-04-01")
    return [(app, lines, "A23000001", "XYZ")]


@pytest.mark.parametrize(("import_date", "golden_name"), [
    ("2023-04-09", "ace-54-before-2023-04-10"), ("2023-04-10", "ace-54-from-2023-04-10")])
def test_golden_54_records(tmp_path: Path, import_date: str, golden_name: str) -> None:
    path = tmp_path / "AE.txt"
    writer = make_writer(path)
    for entry in golden_applications(import_date):
        writer.add(*entry)
    manifest = writer.finish()
    assert manifest is not None
    records = path.read_text("ascii").splitlines()
    # Field by field against the contract: one 54 per grounded line, after its 52, from the date.
    expected = [e for _, e in GOLDEN_COMBINATIONS if e is not None] \
        if import_date >= "2023-04-10" else []
    assert [fields_54(r) for r in records if r.startswith("54")] == \
        [expected_54(*e) for e in expected]
    kinds = [r[:2] for r in records]
    assert all(kinds[i - 1] == "52" for i, k in enumerate(kinds) if k == "54")
    assert manifest.record_count == len(records) == 5 + 3 * len(GOLDEN_COMBINATIONS) + len(expected)
    assert not any(("NA" in r or "UN" in r) for r in records if r.startswith("54"))
    check_against_golden([(path, GOLDEN / f"{golden_name}.txt")])


# --- A128 end to end: LICENSED, in the XML and the CSV acknowledgment --------------------------

SECONDARY_ONLY = {"SmeltCountryLargest": NA, "SmeltCountrySecond": NA}


def a128(ack: Ack) -> list[tuple[int | None, str | None, str | None, str]]:
    return [(f.line, f.field, f.value, f.severity) for f in ack.app().findings
            if f.code == "A128"]


def ace_54_lines(base: Path) -> list[str]:
    return [r for path in sorted((base / "outbox" / "ace").glob("AE-*.txt"))
            for r in path.read_text("ascii").splitlines() if r.startswith("54")]


def test_a128_reaches_the_xml_ack_and_the_line_gets_no_54_record(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    data = submission(application(lines=[{}, SECONDARY_ONLY]))
    ack = gw.run("a128.xml", data)
    assert ack.status == "ACCEPTED"
    assert ack.app().status == "LICENSED"
    assert a128(ack) == [(2, "smelt_country_largest", NA, "WARNING")]
    # Line 1 (CA, US, CA) has its 54 record; line 2 has none.
    assert [fields_54(r) for r in ace_54_lines(tmp_path)] == [expected_54("CA", "US", "CA")]


def test_a128_is_the_same_in_check(tmp_path: Path) -> None:
    ack = Gateway(tmp_path).check(submission(application(lines=[SECONDARY_ONLY])))
    assert (ack.app().status, a128(ack)) == ("LICENSED", [(1, "smelt_country_largest", NA,
                                                            "WARNING")])


@pytest.mark.parametrize(("as_of", "import_days", "codes"), [
    (date(2023, 4, 1), 8, set()),          # imported 2023-04-09: no 54 record is due
    (date(2023, 4, 1), 9, {"A128"}),       # imported 2023-04-10
])
def test_a128_near_the_record_date(tmp_path: Path, as_of: date, import_days: int,
                                   codes: set[str]) -> None:
    data = submission(application(as_of=as_of, ExpectedImportDate=import_days,
                                  lines=[SECONDARY_ONLY]))
    ack = Gateway(tmp_path).check(data, as_of)
    assert (ack.app().status, ack.app().codes) == ("LICENSED", codes)


def test_no_a128_for_an_ftz_admission(tmp_path: Path) -> None:
    ack = Gateway(tmp_path).check(submission(application(EntryType="FZ",
                                                         lines=[SECONDARY_ONLY])))
    assert (ack.app().status, ack.app().codes) == ("LICENSED", set())


def test_no_a128_on_a_rejected_application(tmp_path: Path) -> None:
    ack = Gateway(tmp_path).check(submission(application(lines=[{"CastCountry": UNK}])))
    assert (ack.app().status, ack.app().codes) == ("REJECTED", {"A124"})


def test_unknown_smelt_licensed_before_2022_06_29_gets_a128(tmp_path: Path) -> None:
    """UNKNOWN smelt is accepted through 2022-06-28 (A121); with the import date allowed far
    ahead by the configuration it can meet the 54 record: no ``UN``, A128 instead."""
    as_of = date(2022, 6, 28)
    path = ProjectConfig(tmp_path).set("rules", max_days_before_import=365).partner(
        "acme", inbox="inbox", filer_code="ACM").write()
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "unk.xml").write_bytes(submission(application(
        as_of=as_of, ExpectedExportDate=280, ExpectedImportDate=290,  # 2023-04-14
        lines=[{"SmeltCountryLargest": UNK, "SmeltCountrySecond": UNK}])))
    run_once(load_config(path), as_of)
    ack = parse_ack((tmp_path / "outbox" / "acme" / "unk.xml.ack.xml").read_bytes())
    assert ack.app().status == "LICENSED"
    assert a128(ack) == [(1, "smelt_country_largest", UNK, "WARNING")]
    assert ace_54_lines(tmp_path) == []


def test_a128_reaches_the_csv_ack(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    rows = [{**DEFAULT_ROW, "line_no": "1"},
            {**DEFAULT_ROW, "line_no": "2", "smelt_country_largest": NA,
             "smelt_country_second": NA}]
    ack = parse_csv_ack((gw.run_raw("a128.csv", csv_file(*rows), AS_OF)
                         / "a128.csv.ack.csv").read_bytes())
    assert [(r.line_no, r.status, r.codes) for r in ack.rows] == [
        ("1", "LICENSED", []), ("2", "LICENSED", ["A128"])]
    assert "A128" in ack.rows[1].messages and "by hand" in ack.rows[1].messages


def test_a128_findings_are_bounded_like_every_finding_list() -> None:
    """999 secondary-only lines: at most 100 findings, the last one counting the rest."""
    lines = [make_line(str(n), smelt_country_largest=NA) for n in range(1, 1000)]
    found = a128_findings(make_app(lines), lines, listed=1)
    assert len(found) == MAX_FINDINGS - 1
    assert [f.line for f in found[:3]] == [1, 2, 3]
    assert {f.code for f in found} == {"A128"}
    last = found[-1]
    assert (last.line, last.value) == (None, str(999 - (MAX_FINDINGS - 2)))
    assert last.message.startswith("... and ")
