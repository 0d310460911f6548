"""Digits are ASCII 0-9 only (issue 10): Python's ``\\d``, ``str.isdigit()``, ``int()`` and
``Decimal()`` all take the digits of other scripts (``int('٣') == 3``), and a port or entry
number of Arabic-Indic digits passed the rules and left blanks in the ACE records.

Every field that holds digits, in every script below, in XML and in CSV: the exact code of
guide section 6 (the precise one, else A101), and no ACE record is written for it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_csv
import test_rules
from conftest import ProjectConfig
from test_csv import csv_file
from test_rules import application, submission

from gateway.cli import _positive as positive_argument
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.model import ProductLine
from gateway.outputs.ace import _scaled as ace_scaled
from gateway.validate.amounts import canonical_amount

SCRIPTS = {
    "arabic-indic": "٠١٢٣٤٥٦٧٨٩",
    "extended-arabic-indic": "۰۱۲۳۴۵۶۷۸۹",
    "devanagari": "०१२३४५६७८९",
    "fullwidth": "０１２３４５６７８９",
}


def foreign(text: str, script: str) -> str:
    """``text`` with its ASCII digits written in ``script``."""
    return text.translate(str.maketrans("0123456789", SCRIPTS[script]))


# field in XML, column in CSV, a valid value, the code its foreign-digit form gets.
FIELDS = [
    ("PortOfEntry", "port_of_entry", "3004", "A160"),
    ("EntryNumber", "entry_number", "ABC12345678", "A191"),
    ("HTS", "hts", "7606123045", "A130"),
    ("QuantityKg", "quantity_kg", "24000", "A101"),
    ("ValueUSD", "value_usd", "61200.00", "A101"),
    ("ExpectedExportDate", "expected_export_date", "2026-12-05", "A101"),
    ("ExpectedImportDate", "expected_import_date", "2026-12-10", "A101"),
    ("line", "line_no", "1", "A101"),
    ("ref", "application_ref", "PO-1", "A101"),
]
LINE_FIELDS = ("HTS", "QuantityKg", "ValueUSD")
CSV_FIELD = {"line_no": "line_no", "application_ref": "ref"}  # the field a finding names


def xml_with(element: str, value: str) -> bytes:
    if element == "ref":
        return submission(application(value))
    if element == "line":
        return submission(application()).replace(b'line="1"', f'line="{value}"'.encode())
    if element in LINE_FIELDS:
        return submission(application(lines=[{element: value}]))
    return submission(application(**{element: value}))


def ace_files(base: Path) -> list[Path]:
    ace = base / "outbox" / "ace"
    return sorted(ace.iterdir()) if ace.exists() else []


def checker(base: Path, fmt: str, element: str, column: str) -> Callable[[str], Any]:
    """Checks a file with a value in that field (an XML element, a CSV column): its one
    application, from the XML acknowledgment."""
    if fmt == "xml":
        xml = test_rules.Gateway(base)
        return lambda value: one(xml.check(xml_with(element, value)).apps)
    csv = test_csv.Gateway(base)
    return lambda value: one(csv.check_xml(csv_file({column: value})).apps)


def one(apps: list[Any]) -> Any:
    (app,) = apps
    return app


@pytest.mark.parametrize("fmt", ["xml", "csv"])
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(("element", "column", "valid", "code"), FIELDS,
                         ids=[f[1] for f in FIELDS])
def test_foreign_digits_get_their_code(tmp_path: Path, element: str, column: str, valid: str,
                                       code: str, script: str, fmt: str) -> None:
    check = checker(tmp_path, fmt, element, column)
    value = foreign(valid, script)
    assert check(valid).status == "LICENSED"  # the near miss
    app = check(value)
    if fmt == "xml":
        assert (app.status, app.codes) == ("REJECTED", {code})
    else:
        assert (app.status, [(f.code, f.field, f.value) for f in app.findings]) == (
            "REJECTED", [(code, CSV_FIELD.get(column, column), value)])


@pytest.mark.parametrize("script", ["arabic-indic", "fullwidth"])
@pytest.mark.parametrize(("element", "column", "valid", "code"), FIELDS[:5],
                         ids=[f[1] for f in FIELDS[:5]])
def test_no_ace_record_for_foreign_digits_in_a_real_run(
        tmp_path: Path, element: str, column: str, valid: str, code: str, script: str) -> None:
    value = foreign(valid, script)
    (tmp_path / "xml").mkdir()
    xml = test_rules.Gateway(tmp_path / "xml").run("a.xml", xml_with(element, value))
    assert (xml.status, xml.apps[0].codes) == ("REJECTED", {code})
    csv = test_csv.Gateway(tmp_path / "csv").run("a.csv", csv_file({column: value}))
    assert (csv.status, csv.rows[0].codes) == ("REJECTED", [code])
    assert ace_files(tmp_path / "xml") == ace_files(tmp_path / "csv") == []


def test_one_foreign_digit_among_ascii_ones_is_enough(tmp_path: Path) -> None:
    gw = test_csv.Gateway(tmp_path)
    app = gw.check_xml(csv_file({"port_of_entry": "300٤", "quantity_kg": "2400٠"})).app()
    assert sorted(f.code for f in app.findings) == ["A101", "A160"]


# --- the helpers under the rules: none reads another script's digits ------------------------


def _config_zip(tmp_path: Path, value: str) -> list[str]:
    path = ProjectConfig(tmp_path).partner("a", inbox="in", filer={"postal_code": value}).write()
    try:
        load_config(path)
    except ConfigError as err:
        return err.problems
    return []


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_helper_reads_foreign_digits(tmp_path: Path, script: str) -> None:
    digits = foreign("24000", script)
    assert ProductLine(foreign("12", script)).number is None
    assert canonical_amount(digits) == digits  # not "24000": no digest matches the ASCII one
    with pytest.raises(ValueError, match="ASCII"):
        ace_scaled(digits, 2)
    with pytest.raises(argparse.ArgumentTypeError):
        positive_argument(foreign("3", script))
    assert _config_zip(tmp_path, "10001") == []
    assert _config_zip(tmp_path, foreign("10001", script))[0].startswith(
        "partners.a.filer.postal_code: must be a ZIP code")
