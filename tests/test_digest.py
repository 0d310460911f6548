"""The same request is the same however it is written (guide 5.2, issue 10): its lines in
another order, or ``line="01"`` for ``line="1"``, get the license again (I201), not A104.

A real change of content is still A104. Ledgers written before hold digests of the first
version (lines in file order, numbers as written): an identical resend still matches them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import test_csv
import test_rules
from test_csv import csv_file
from test_rules import application, submission

OTHER_HTS = "7601103000"
TWO_LINES = [{}, {"HTS": OTHER_HTS, "QuantityKg": "1000", "ValueUSD": "2500.00"}]
CSV_TWO_LINES = ({}, {"hts": OTHER_HTS, "quantity_kg": "1000", "value_usd": "2500.00"})
# The first version's digests of the two-line application PO-1 above (XML) and of its CSV
# form, as a ledger written before issue 10 holds them (computed by that gateway).
V1_DIGEST_XML = "7420b285d8329c5d57b5bb485bbec5b28be2f16c82820085b42b35ed4fdf0b40"
V1_DIGEST_CSV = "9e996b420975774e2c2d8e76c8588af19a1375a93f68da80e7ab1d5a4b43f5ab"


def products_reversed(app: str) -> str:
    """The application with its Product elements in reverse order, numbers kept."""
    head, *products = app.split("    <Product")
    last = products[-1]
    products[-1], tail = last[:last.index("  </Application>")], "  </Application>\n"
    return head + "".join("    <Product" + p for p in reversed(products)) + tail


def renumbered(app: str, spelling: str) -> str:
    return app.replace('line="1"', f'line="{spelling}"').replace('line="2"', 'line="002"')


@pytest.fixture
def xml_gw(tmp_path: Path) -> test_rules.Gateway:
    return test_rules.Gateway(tmp_path)


@pytest.mark.parametrize("resend", [
    pytest.param(lambda app: products_reversed(app), id="lines-reordered"),
    pytest.param(lambda app: renumbered(app, "01"), id="line-01-for-1"),
    pytest.param(lambda app: renumbered(products_reversed(app), "0001"), id="both"),
])
def test_the_same_request_written_otherwise_is_i201_in_xml(xml_gw: test_rules.Gateway,
                                                           resend) -> None:
    app = application(lines=TWO_LINES)
    first = xml_gw.run("a.xml", submission(app, sid="S1"))
    assert first.app().license == "A26000001"
    again = xml_gw.run("b.xml", submission(resend(app), sid="S2"))
    assert (again.app().status, again.app().license, again.app().codes) == (
        "LICENSED", "A26000001", {"I201"})
    assert xml_gw.check(submission(resend(app), sid="S3")).app().codes == {"I201"}


@pytest.mark.parametrize("change", [
    pytest.param(lambda app: products_reversed(app).replace("1000</", "1001</"), id="quantity"),
    # The lines swap their numbers: line 1 is now the other product.
    pytest.param(lambda app: app.replace('line="1"', 'line="X"').replace('line="2"', 'line="1"')
                 .replace('line="X"', 'line="2"'), id="numbers-swapped"),
    pytest.param(lambda app: products_reversed(app).replace("2500.00</", "2600.00</"),
                 id="value"),
])
def test_a_real_change_is_still_a104(xml_gw: test_rules.Gateway, change) -> None:
    app = application(lines=TWO_LINES)
    xml_gw.run("a.xml", submission(app, sid="S1"))
    changed = xml_gw.run("b.xml", submission(change(app), sid="S2"))
    assert (changed.app().status, changed.app().codes) == ("REJECTED", {"A104"})


def test_the_same_request_written_otherwise_is_i201_in_csv(tmp_path: Path) -> None:
    gw = test_csv.Gateway(tmp_path)
    first = gw.run("a.csv", csv_file(*CSV_TWO_LINES))
    assert first.rows[0].license == "A26000001"
    reordered = csv_file({**CSV_TWO_LINES[1], "line_no": "02", "submission_id": "S2"},
                         {"line_no": "001", "submission_id": "S2"})
    again = gw.run("b.csv", reordered)
    # (an application's own findings are on its first row)
    assert [(r.status, r.license, r.codes) for r in again.rows] == [
        ("LICENSED", "A26000001", ["I201"]), ("LICENSED", "A26000001", [])]


def _set_digest(db: Path, digest: str) -> None:
    with sqlite3.connect(db) as con:
        con.execute("UPDATE licenses SET digest = ? WHERE ref = 'PO-1'", (digest,))
    con.close()


def test_a_ledger_of_first_version_digests_still_gives_i201(xml_gw: test_rules.Gateway) -> None:
    app = application(lines=TWO_LINES)
    xml_gw.run("a.xml", submission(app, sid="S1"))
    _set_digest(xml_gw.base / "data" / "ledger.sqlite", V1_DIGEST_XML)
    again = xml_gw.run("b.xml", submission(app, sid="S2"))
    assert (again.app().license, again.app().codes) == ("A26000001", {"I201"})
    changed = xml_gw.run("c.xml", submission(app.replace("1000</", "1001</"), sid="S3"))
    assert changed.app().codes == {"A104"}


def test_a_ledger_of_first_version_digests_still_gives_i201_in_csv(tmp_path: Path) -> None:
    gw = test_csv.Gateway(tmp_path)
    gw.run("a.csv", csv_file(*CSV_TWO_LINES))
    _set_digest(tmp_path / "data" / "ledger.sqlite", V1_DIGEST_CSV)
    again = gw.run("b.csv", csv_file(*({**row, "submission_id": "S2"} for row in CSV_TWO_LINES)))
    assert [r.codes for r in again.rows] == [["I201"], []]


@pytest.mark.parametrize("numbers", [("1", "01"), ("001", "1")])
def test_one_line_number_spelled_twice_is_a190(xml_gw: test_rules.Gateway,
                                               numbers: tuple[str, str]) -> None:
    app = application(lines=TWO_LINES).replace('line="1"', f'line="{numbers[0]}"').replace(
        'line="2"', f'line="{numbers[1]}"')
    assert "A190" in xml_gw.check(submission(app)).app().codes
