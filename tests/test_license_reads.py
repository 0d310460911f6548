"""What admins and partners read about license states (issue 13, item 6; guide 5.1b): the one
license search by state and expiry (CLI, web page), a license's history (``show``, the web
page, the partner's status file), the charts counting a corrected license once, and a ledger
made before the lifecycle's migration read after its upgrade; on SQLite and on PostgreSQL.

The ledger: real runs on contract-1.1 files. The sample partner's files (A26000001..A26000007
on 2026-12-01), then its file correcting PO-4411 (A26000001 -> A26000008) and PO-4413
(A26000003 -> A26000009), cancelling PO-4412 (A26000002) and asking for a low-value license,
and a registered license from partner ``broker`` (``license_source = "commerce"``), both on
2026-12-02; then the sample's file cancelling the correction A26000009 (2026-12-03).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lifecycle_files import application, cancellation, submission
from pg_server import PgServer
from project_config import ProjectConfig

from gateway.admin.web import charts
from gateway.admin.web.app import create_app
from gateway.admin.web.auth import Guard
from gateway.cli import main
from gateway.config import Config, load_config
from gateway.ledger.migrations import MIGRATIONS
from gateway.ledger.reads.licenses import (
    LICENSE_STATES,
    LicenseQuery,
    license_story,
    list_licenses,
)
from gateway.ledger.reads.story import file_story
from gateway.ledger.store import Ledger, Receipt, open_ledger
from gateway.outputs.status_files import partner_status, render_status_csv
from gateway.service.runner import run_once

CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
DAY1, DAY2, DAY3 = date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 3)
LAST_DAY = date(2027, 2, 14)  # the sample's licenses are valid through it (75 days)
AFTER = date(2027, 2, 15)  # they are EXPIRED; the licenses of 2026-12-02 valid through it
# The licenses by name: A1..A7 from the run (PO-4411, 4412, 4413, 5001, 5013, 7001, 7002), A8 and
# A9 the corrections, LOW and REG; their numbers are looked up (PostgreSQL's counter may skip).
A = {n: f"A{n}" for n in range(1, 10)}
LOW, REGISTERED = "LOW", "REG"
REG_NUMBER = "REG0001"
RUN_REFS = {"A1": "PO-4411", "A2": "PO-4412", "A3": "PO-4413", "A4": "PO-5001", "A5": "PO-5013",
            "A6": "PO-7001", "A7": "PO-7002"}
TOKEN = "license-reads-" + "x" * 24


@dataclass
class Ledgered:
    config: Config
    ledger: Ledger
    changes: str  # the file of 2026-12-02
    withdrawal: str  # the file of 2026-12-03
    n: dict[str, str]  # name -> license number

    def names(self, numbers: object) -> set[str]:
        by_number = {v: k for k, v in self.n.items()}
        return {by_number[x] for x in numbers}  # type: ignore[attr-defined]


def element(name: str, ref: str, *edits: tuple[str, str]) -> str:
    """The sample file ``name``'s ``<Application ref=ref>``, each (old, new) of ``edits``
    replaced once."""
    text = (CASES_INBOX / "sample" / name).read_text(encoding="utf-8")
    start = text.index(f'  <Application ref="{ref}">')
    text = text[start:text.index("</Application>\n", start) + len("</Application>\n")]
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def po_4411_corrected(number: str) -> str:
    """PO-4411 corrected to 1,000 kg (750 + 250, at its unit values): license ``number``'s
    correction."""
    return element("acme-20261201-good.xml", "PO-4411",
                   ('ref="PO-4411"', f'ref="PO-4411" corrects="{number}"'),
                   (">24000<", ">750<"), (">61200.00<", ">1912.50<"), (">8150.5<", ">250<"),
                   (">22007.35<", ">675.00<"))


def send(config: Config, folder: Path, name: str, data: bytes, day: date) -> None:
    (folder / name).write_bytes(data)
    run_once(config, day)


def fill(base: Path, dsn: str = "") -> tuple[Config, dict[str, str]]:
    shutil.copytree(CASES_INBOX / "sample", base / "in")
    project = ProjectConfig(base).partner("sample", inbox="in", disposition="keep",
                                          filer_code="SMP")
    project.partner("broker", filer_code="BRK", license_source="commerce").inbox("broker")
    config = load_config((project.ledger(dsn) if dsn else project).write())
    run_once(config, DAY1)
    ledger = open_ledger(config, readonly=True)
    try:
        n = {name: ledger.db.execute("SELECT license_number FROM licenses WHERE ref = ?",
                                     (ref,)).fetchone()[0] for name, ref in RUN_REFS.items()}
    finally:
        ledger.close()
    # 2026-12-02: PO-4411 and PO-4413 corrected, PO-4412 cancelled, a low-value application;
    # the broker's registered license. 2026-12-03: the correction of PO-4413 cancelled.
    send(config, base / "in", "acme-20261202-changes.xml", submission(
        "ACME-20261202-CHG",
        po_4411_corrected(n["A1"]),
        element("acme-20261201-good.xml", "PO-4413",
                ('ref="PO-4413"', f'ref="PO-4413" corrects="{n["A3"]}"'),
                (">12000.000<", ">1800<"), (">51600.00<", ">7740.00<"), (">900<", ">200<"),
                (">7200.00<", ">1600.00<")),
        cancellation("PO-4412", n["A2"], "order cancelled"),
        application("PO-9001", kind="LOW_VALUE", quantity="10", value="25.50")), DAY2)
    send(config, base / "inbox" / "broker", "broker-20261202.xml", submission(
        "BRK-20261202-001", application("PO-9002", license_number=REG_NUMBER, quantity="500",
                                        value="1275.00")), DAY2)
    ledger = open_ledger(config, readonly=True)
    try:
        for name, ref in (("A8", "PO-4411"), ("A9", "PO-4413"), (LOW, "PO-9001"),
                          (REGISTERED, "PO-9002")):
            [(n[name],)] = ledger.db.execute(
                "SELECT license_number FROM licenses WHERE ref = ? AND file_id LIKE "
                "'20261202-%'", (ref,)).fetchall()
    finally:
        ledger.close()
    send(config, base / "in", "acme-20261203-withdraw.xml", submission(
        "ACME-20261203-WDR", cancellation("PO-4413", n["A9"], "order withdrawn")), DAY3)
    assert n[LOW].startswith("L26") and n["A8"].startswith("A26")
    assert n[REGISTERED] == REG_NUMBER
    return config, n


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def led(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledgered]:
    dsn = ""
    if request.param == "postgresql":
        cluster: PgServer = request.getfixturevalue("pg_cluster")
        dsn = cluster.create(f"aimgw_lic_{os.getpid()}_{time.time_ns()}")
    config, numbers = fill(tmp_path_factory.mktemp(request.param), dsn)
    ledger = open_ledger(config, readonly=True)
    ids = {r.remote_name: r.file_id for r in ledger.files("1 = 1")}
    yield Ledgered(config, ledger, ids["acme-20261202-changes.xml"],
                   ids["acme-20261203-withdraw.xml"], numbers)
    ledger.close()


# -- one license search: states and expiry -----------------------------------------------------

SAMPLE_ACTIVE = {A[4], A[5], A[6], A[7]}
STATE_QUERIES = [
    pytest.param(LicenseQuery(state="ACTIVE", on=DAY3),
                 SAMPLE_ACTIVE | {A[8], LOW, REGISTERED}, id="active"),
    pytest.param(LicenseQuery(state="superseded", on=DAY3), {A[1], A[3]},
                 id="superseded-any-case"),
    pytest.param(LicenseQuery(state="CANCELLED", on=DAY3), {A[2], A[9]}, id="cancelled"),
    pytest.param(LicenseQuery(state="EXPIRED", on=DAY3), set(), id="none-expired-yet"),
    pytest.param(LicenseQuery(state="EXPIRED", on=AFTER), SAMPLE_ACTIVE,
                 id="expired-after-valid-through"),
    pytest.param(LicenseQuery(state="ACTIVE", on=LAST_DAY), SAMPLE_ACTIVE | {A[8], LOW,
                                                                            REGISTERED},
                 id="active-on-its-last-day"),
    pytest.param(LicenseQuery(state="ACTIVE", on=AFTER), {A[8], LOW, REGISTERED},
                 id="active-after"),
    pytest.param(LicenseQuery(state="CANCELLED", on=AFTER), {A[2], A[9]},
                 id="cancelled-never-expires"),
    pytest.param(LicenseQuery(expiring_within=4, on=date(2027, 2, 10)), SAMPLE_ACTIVE,
                 id="expiring-within-inclusive"),
    pytest.param(LicenseQuery(expiring_within=3, on=date(2027, 2, 10)), set(),
                 id="expiring-not-within"),
    pytest.param(LicenseQuery(expiring_within=5, on=date(2027, 2, 10)),
                 SAMPLE_ACTIVE | {A[8], LOW, REGISTERED}, id="expiring-within-5"),
    pytest.param(LicenseQuery(expiring_within=0, on=LAST_DAY), SAMPLE_ACTIVE,
                 id="expiring-today"),
    pytest.param(LicenseQuery(expiring_within=30, on=AFTER), {A[8], LOW, REGISTERED},
                 id="expired-ones-do-not-expire-again"),
    pytest.param(LicenseQuery(expiring_within=365, state="EXPIRED", on=AFTER), set(),
                 id="expiring-and-expired-is-nothing"),
    pytest.param(LicenseQuery(ref="PO-4411", on=DAY3), {A[1], A[8]}, id="ref-has-its-chain"),
    pytest.param(LicenseQuery(ref="PO-4411", state="ACTIVE", on=DAY3), {A[8]},
                 id="ref-current"),
]


@pytest.mark.parametrize(("query", "numbers"), STATE_QUERIES)
def test_license_query_by_state_and_expiry(led: Ledgered, query: LicenseQuery,
                                           numbers: set[str]) -> None:
    rows = list_licenses(led.ledger, query)
    assert led.names(r.license_number for r in rows) == numbers
    assert not query.empty


def test_a_listing_shows_state_kind_source_and_the_chain(led: Ledgered) -> None:
    nr = led.n
    rows = {r.license_number: r for r in list_licenses(led.ledger, LicenseQuery(on=AFTER))}
    assert {name: rows[nr[name]].state for name in nr} == {
        "A1": "SUPERSEDED", "A2": "CANCELLED", "A3": "SUPERSEDED", "A4": "EXPIRED",
        "A5": "EXPIRED", "A6": "EXPIRED", "A7": "EXPIRED", "A8": "ACTIVE", "A9": "CANCELLED",
        LOW: "ACTIVE", REGISTERED: "ACTIVE"}
    assert (rows[nr['A1']].replaces, rows[nr['A1']].replaced_by) == (None, nr['A8'])
    assert (rows[nr['A8']].replaces, rows[nr['A8']].replaced_by) == (nr['A1'], None)
    assert (rows[nr['A9']].replaces, rows[nr['A9']].replaced_by) == (nr['A3'], None)
    assert (rows[nr[LOW]].kind, rows[nr[LOW]].source) == ("LOW_VALUE", "gateway")
    assert (rows[nr[REGISTERED]].kind, rows[nr[REGISTERED]].source) == ("REGULAR", "commerce")
    assert (rows[nr['A8']].kind, rows[nr['A8']].source) == ("REGULAR", "gateway")
    # Without a day asked the states are the stored ones: nothing is EXPIRED.
    stored = {r.license_number: r.state for r in list_licenses(led.ledger, LicenseQuery())}
    assert stored[nr['A4']] == "ACTIVE"
    assert set(stored.values()) <= set(LICENSE_STATES) - {"EXPIRED"}


def cli(led: Ledgered, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(led.config.path), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_licenses_by_state_and_expiry(led: Ledgered,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    nr = led.n
    code, out, _ = cli(led, capsys, "licenses", "--state", "superseded", "--as-of", "2026-12-03",
                       "--json")
    listed = json.loads(out)
    assert code == 0 and [r["license_number"] for r in listed] == [nr['A3'], nr['A1']]
    assert [(r["state"], r["replaced_by"]) for r in listed] == [("SUPERSEDED", nr['A9']),
                                                               ("SUPERSEDED", nr['A8'])]
    code, out, _ = cli(led, capsys, "licenses", "--expiring-within", "4", "--as-of",
                       "2027-02-10", "--json")
    assert code == 0 and led.names(r["license_number"] for r in json.loads(out)) == SAMPLE_ACTIVE
    code, out, _ = cli(led, capsys, "licenses", "--state", "EXPIRED", "--as-of", "2027-02-15")
    assert code == 0 and out.splitlines()[0].split()[:5] == ["license", "state", "kind",
                                                             "source", "partner"]
    assert led.names(line.split()[0] for line in out.splitlines()[2:]) == SAMPLE_ACTIVE
    code, out, _ = cli(led, capsys, "licenses", "--ref", "PO-4411", "--as-of", "2026-12-03")
    a1 = next(line for line in out.splitlines() if line.startswith(nr['A1']))
    a8 = next(line for line in out.splitlines() if line.startswith(nr['A8']))
    assert "SUPERSEDED" in a1 and nr['A8'] in a1 and "ACTIVE" in a8 and nr['A1'] in a8
    code, out, _ = cli(led, capsys, "licenses", "--number", nr[LOW].lower(), "--as-of",
                       "2026-12-03")
    assert "LOW_VALUE" in out
    code, out, _ = cli(led, capsys, "licenses", "--ref", "PO-9002", "--as-of", "2026-12-03")
    assert "commerce" in out


@pytest.mark.parametrize("args", [
    ["--state", "VOID"], ["--state", ""], ["--expiring-within", "-1"],
    ["--expiring-within", "x"], ["--expiring-within", "1.5"], ["--as-of", "2026-13-01"]])
def test_cli_licenses_refuses_a_bad_state_or_day_count(
        led: Ledgered, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["--config", str(led.config.path), "licenses", *args])
    assert refused.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_the_cli_and_the_web_page_find_the_same_licenses(
        led: Ledgered, capsys: pytest.CaptureFixture[str]) -> None:
    client = create_app(led.config, Guard(TOKEN)).test_client()
    head = {"Authorization": f"Bearer {TOKEN}"}
    for params, args in ((("state=CANCELLED", "as_of=2026-12-03"),
                          ("--state", "CANCELLED", "--as-of", "2026-12-03")),
                         (("expiring=4", "as_of=2027-02-10"),
                          ("--expiring-within", "4", "--as-of", "2027-02-10"))):
        page = client.get("/licenses?" + "&".join(params), headers=head)
        assert page.status_code == 200
        body = page.get_data(as_text=True)
        _, out, _ = cli(led, capsys, "licenses", *args, "--json")
        wanted = {r["license_number"] for r in json.loads(out)}
        shown = {n for n in led.n.values() if f'class="license-number">{n}<' in body}
        assert shown == wanted and wanted


def test_the_web_page_refuses_nothing_but_says_what_it_ignored(led: Ledgered) -> None:
    client = create_app(led.config, Guard(TOKEN)).test_client()
    head = {"Authorization": f"Bearer {TOKEN}"}
    for query in ("state=VOID&expiring=-3", "state=%00&expiring=%EF%BC%91",
                  "state=active%27--&expiring=9999999999999999999999"):
        page = client.get(f"/licenses?{query}", headers=head)
        body = page.get_data(as_text=True)
        assert page.status_code == 200
        assert "not a license state" in body and "not a number of days" in body


def test_a_day_count_past_the_calendar_lists_every_active_license(
        led: Ledgered, capsys: pytest.CaptureFixture[str]) -> None:
    """No date past 9999-12-31: the search stops at the last day there is, never fails."""
    code, out, _ = cli(led, capsys, "licenses", "--expiring-within", "9" * 30, "--as-of",
                       "2026-12-03", "--json")
    assert code == 0 and led.names(r["license_number"] for r in json.loads(out)) == (
        SAMPLE_ACTIVE | {"A8", LOW, REGISTERED})


# -- a license's history ----------------------------------------------------------------------


def test_a_license_s_history_along_its_corrections(led: Ledgered) -> None:
    nr = led.n
    story = license_story(led.ledger, nr['A9'], DAY3)
    assert story is not None and story.license.state == "CANCELLED"
    assert [(e.day, e.event, e.license_number, e.file_id, e.other, e.reason)
            for e in story.history] == [
        ("2026-12-01", "ISSUED", nr['A3'], story.history[0].file_id, None, None),
        ("2026-12-02", "SUPERSEDED", nr['A3'], led.changes, nr['A9'], None),
        ("2026-12-02", "ISSUED", nr['A9'], led.changes, nr['A3'], None),
        ("2026-12-03", "CANCELLED", nr['A9'], led.withdrawal, None, "order withdrawn")]
    assert story.history[0].file_name == "acme-20261201-good.xml"
    assert [e.summary for e in story.history[1:]] == [
        f"{nr['A3']} superseded by {nr['A9']} on 2026-12-02 in file {led.changes} "
        "(acme-20261202-changes.xml)",
        f"{nr['A9']} issued on 2026-12-02 by file {led.changes} (acme-20261202-changes.xml), "
        f"replacing {nr['A3']}",
        f"{nr['A9']} cancelled on 2026-12-03 in file {led.withdrawal} "
        "(acme-20261203-withdraw.xml): order withdrawn"]
    # Asked of the first license of the chain, the story is the same.
    first = license_story(led.ledger, nr['A3'], DAY3)
    assert first is not None and first.history == story.history
    assert first.license.state == "SUPERSEDED" and first.license.replaced_by == nr['A9']


def test_an_expired_license_s_history_says_when(led: Ledgered) -> None:
    nr = led.n
    story = license_story(led.ledger, nr['A5'], AFTER)
    assert story is not None
    assert [(e.day, e.event) for e in story.history] == [("2026-12-01", "ISSUED"),
                                                         ("2027-02-15", "EXPIRED")]
    assert story.history[-1].summary == f"{nr['A5']} expired on 2027-02-15 (valid through " \
        "2027-02-14)"
    assert [e.event for e in license_story(led.ledger, nr['A5'], LAST_DAY).history] == ["ISSUED"]
    assert license_story(led.ledger, "A99999999", DAY3) is None


def test_show_tells_a_license_s_history(led: Ledgered,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    nr = led.n
    code, out, _ = cli(led, capsys, "show", nr['A9'].lower(), "--as-of", "2026-12-03")
    assert code == 0
    assert out.startswith(f"license {nr['A9']}  CANCELLED  REGULAR  gateway  partner sample  "
                          "ref PO-4413")
    assert f"  replaces {nr['A3']}" in out
    assert "history:" in out and "cancelled on 2026-12-03" in out and "order withdrawn" in out
    assert f"{nr['A3']} superseded by {nr['A9']} on 2026-12-02" in out
    code, out, _ = cli(led, capsys, "show", nr['A9'], "--json", "--as-of", "2026-12-03")
    shown = json.loads(out)
    assert shown["license"]["state"] == "CANCELLED" and shown["products"]
    assert [h["event"] for h in shown["history"]] == ["ISSUED", "SUPERSEDED", "ISSUED",
                                                      "CANCELLED"]
    code, _, err = cli(led, capsys, "show", "A99999999")
    assert code == 1 and "no file or license 'A99999999'" in err


def test_a_file_s_story_tells_the_changes_it_made(led: Ledgered,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    nr = led.n
    story = file_story(led.ledger, led.config, led.changes, today=DAY3)
    assert story is not None
    assert [(c.license_number, c.change, c.replaced_by, c.reason) for c in story.changes] == [
        (nr['A1'], "SUPERSEDED", nr['A8'], None), (nr['A2'], "CANCELLED", None, "order cancelled"),
        (nr['A3'], "SUPERSEDED", nr['A9'], None)]
    assert story.changes_name == f"CHG-{led.changes}.csv"
    issued = {x.license_number: x for x in story.licenses_issued}
    assert (issued[nr['A8']].state, issued[nr['A8']].replaces) == ("ACTIVE", nr['A1'])
    assert (issued[nr['A9']].state, issued[nr[LOW]].kind) == ("CANCELLED", "LOW_VALUE")
    code, out, _ = cli(led, capsys, "show", led.changes, "--as-of", "2026-12-03")
    assert code == 0 and f"changes report CHG-{led.changes}.csv" in out
    assert "license changes:" in out and "order cancelled" in out
    code, out, _ = cli(led, capsys, "show", led.changes, "--json", "--as-of", "2026-12-03")
    shown = json.loads(out)
    assert [c["license"] for c in shown["license_changes"]] == [nr['A1'], nr['A2'], nr['A3']]
    assert shown["changes_report"] == f"CHG-{led.changes}.csv"
    assert {x["license"]: x["state"] for x in shown["licenses_issued"]}[nr['A9']] == "CANCELLED"


def test_the_web_pages_tell_the_history(led: Ledgered) -> None:
    nr = led.n
    client = create_app(led.config, Guard(TOKEN)).test_client()
    head = {"Authorization": f"Bearer {TOKEN}"}
    body = client.get(f"/licenses/{nr['A9']}?as_of=2026-12-03", headers=head).get_data(as_text=True)
    assert "CANCELLED" in body and "order withdrawn" in body and "History" in body
    assert f'href="/licenses/{nr["A3"]}"' in body  # replaces, linked
    body = client.get(f"/licenses/{nr['A1']}", headers=head).get_data(as_text=True)
    assert "SUPERSEDED" in body and f'href="/licenses/{nr["A8"]}"' in body
    body = client.get(f"/files/{led.changes}", headers=head).get_data(as_text=True)
    assert "License changes" in body and "order cancelled" in body
    assert f"CHG-{led.changes}.csv" in body


# -- the partner's status file -----------------------------------------------------------------


def test_the_status_file_tells_license_states_and_recent_changes(led: Ledgered) -> None:
    nr = led.n
    noon = datetime(2026, 12, 3, 12, tzinfo=UTC)
    status = partner_status(led.ledger, led.config, led.config.partner("sample"), noon)
    # The registered license is the broker's (a partner with license_source = "commerce").
    assert status["licenses"] == {"as_of": "2026-12-03", "ACTIVE": 6, "EXPIRED": 0,
                                  "SUPERSEDED": 2, "CANCELLED": 2}
    changes = [(c["license_number"], c["change"], c["replaced_by"], c["reason"])
               for c in status["license_changes"]]
    # Newest first; the changes of one file are made within a second or two of each other,
    # so their order among themselves is the clock's.
    assert changes[0] == (nr['A9'], "CANCELLED", None, "order withdrawn")
    assert sorted(changes[1:]) == [
        (nr['A1'], "SUPERSEDED", nr['A8'], None), (nr['A2'], "CANCELLED", None,
                                                   "order cancelled"),
        (nr['A3'], "SUPERSEDED", nr['A9'], None)]
    assert status["license_changes"][0] == {
        "license_number": nr['A9'], "ref": "PO-4413", "change": "CANCELLED", "replaced_by": None,
        "when": "2026-12-03", "file_id": led.withdrawal, "reason": "order withdrawn"}
    later = partner_status(led.ledger, led.config, led.config.partner("sample"),
                           datetime(2027, 2, 15, 12, tzinfo=UTC))
    assert later["licenses"]["EXPIRED"] == 4 and later["licenses"]["ACTIVE"] == 2
    # Another partner sees none of them.
    other = dataclasses.replace(led.config.partner("sample"), id="other")
    theirs = partner_status(led.ledger, led.config, other, noon)
    assert theirs["license_changes"] == [] and set(theirs["licenses"].values()) == {
        "2026-12-03", 0}
    # status.csv stays one row per recent file: its readers' columns do not move.
    assert render_status_csv(status).decode().splitlines()[0].startswith("file_id,file_name")


# -- the charts count a corrected license once ---------------------------------------------------


def test_charts_count_current_licenses_only(led: Ledgered) -> None:
    rows = list_licenses(led.ledger, LicenseQuery(on=DAY3))
    current = sum(float(r.quantity_kg) for r in rows if r.state == "ACTIVE") / 1000
    everything = sum(float(r.quantity_kg) for r in rows) / 1000
    for dimension in charts.DIMENSIONS:
        tons = charts.monthly_tons(led.ledger.db, dimension, "2026-12", "2026-12")
        assert sum(tons.values()) == pytest.approx(current, abs=0.001)
    assert everything > current
    left = charts.left_out(led.ledger.db, "2026-12", "2026-12")
    assert left == {"SUPERSEDED": 2, "CANCELLED": 2}
    client = create_app(led.config, Guard(TOKEN)).test_client()
    body = client.get("/charts?from=2026-12&to=2026-12",
                      headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True)
    assert "2 superseded and 2 cancelled licenses are left out" in body


def test_an_original_and_its_correction_count_as_the_correction(tmp_path: Path) -> None:
    """A ledger with one license corrected: the totals count the correction only."""
    shutil.copytree(CASES_INBOX / "sample", tmp_path / "in")
    config = load_config(ProjectConfig(tmp_path).partner(
        "sample", inbox="in", disposition="keep", filer_code="SMP").write())
    run_once(config, DAY1)
    ledger = open_ledger(config)
    try:
        def total() -> float:
            return sum(charts.monthly_tons(ledger.db, "product_group", "2026-12", "2026-12",
                                           "sample").values())

        before = total()
        [original] = list_licenses(ledger, LicenseQuery(ref="PO-4411"))
    finally:
        ledger.close()
    send(config, tmp_path / "in", "fix.xml", submission(
        "ACME-20261202-FIX", po_4411_corrected(original.license_number)), DAY2)
    ledger = open_ledger(config)
    try:
        after = total()
        left = charts.left_out(ledger.db, "2026-12", "2026-12", "sample")
    finally:
        ledger.close()
    assert float(original.quantity_kg) > 1000
    assert after == pytest.approx(before - float(original.quantity_kg) / 1000 + 1.0, abs=1e-6)
    assert left == {"SUPERSEDED": 1, "CANCELLED": 0}


# -- a ledger made before the lifecycle's migration ---------------------------------------------

# The schema version before issue 13's migration (the lifecycle: states, kinds, sources).
BEFORE_LIFECYCLE = next(i for i, m in enumerate(MIGRATIONS)
                        if isinstance(m, str) and "Issue 13, the license lifecycle" in m)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_ledger_made_before_the_lifecycle_upgrades_with_every_license_active(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], backend: str) -> None:
    assert BEFORE_LIFECYCLE == 9
    project = ProjectConfig(tmp_path).backend(request, backend)
    config = load_config(project.partner("acme", inbox="in").write())
    with monkeypatch.context() as older_gateway:
        older_gateway.setattr("gateway.ledger.store.MIGRATIONS", MIGRATIONS[:BEFORE_LIFECYCLE])
        old = open_ledger(config)
        try:
            assert old.schema_version() == BEFORE_LIFECYCLE
            with old.transaction():
                file_id = old.new_file_id(DAY1)
                old.add_file(file_id, Receipt("acme", "a.xml", 1, 0.0, "cd" * 32),
                             local_name=f"{file_id}__a.xml",
                             received_at="2026-12-01T08:00:00+00:00", state="DONE")
                # The licenses row as the gateway of schema 10 wrote it.
                old.db.executemany(
                    "INSERT INTO licenses (license_number, partner, ref, digest, file_id, "
                    "issue_date, valid_from, valid_through, entry_type, port_of_entry, "
                    "importer, exporter, manufacturer, country_of_origin, lines, quantity_kg, "
                    "value_usd, products) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    "?, ?, ?)",
                    [(f"A26{n:06d}", "acme", f"PO-{n}", f"d{n}", file_id, "2026-12-01",
                      "2026-12-01", "2027-02-14", "01", "3004", "ACME", "EXP", "MFR", "CA", 1,
                      "24000", "61200",
                      '[["7601206000","Unwrought","CA",null,"CA",1,"24000","61200"]]')
                     for n in (1, 2)])
                old.db.execute("INSERT INTO license_counter (year, last) VALUES (2026, 2)")
        finally:
            old.close()
    assert main(["--config", str(config.path), "db", "upgrade"]) == 0
    assert f"ledger schema {BEFORE_LIFECYCLE} -> {len(MIGRATIONS)}" in capsys.readouterr().out
    ledger = open_ledger(config, readonly=True)
    try:
        rows = list_licenses(ledger, LicenseQuery(on=DAY3))
        assert [(r.license_number, r.state, r.kind, r.source, r.replaces, r.replaced_by)
                for r in rows] == [(f"A26{n:06d}", "ACTIVE", "REGULAR", "gateway", None, None)
                                   for n in (2, 1)]
        assert {r.license_number for r in list_licenses(
            ledger, LicenseQuery(state="ACTIVE", on=DAY3))} == {"A26000001", "A26000002"}
        story = license_story(ledger, "A26000001", DAY3)
        assert story is not None and [e.event for e in story.history] == ["ISSUED"]
        assert ledger.last_license_sequence(2026) == 2  # the counter is series A's now
        assert charts.monthly_tons(ledger.db, "product_group", "2026-12", "2026-12") == {
            ("2026-12", "Unwrought"): 48.0}
        assert ledger.integrity_problems() == []
    finally:
        ledger.close()
    code, out, _ = cli_of(config, capsys, "licenses", "--state", "active", "--as-of",
                         "2026-12-03", "--json")
    assert code == 0 and {r["state"] for r in json.loads(out)} == {"ACTIVE"}


def cli_of(config: Config, capsys: pytest.CaptureFixture[str], *args: str,
           ) -> tuple[int, str, str]:
    code = main(["--config", str(config.path), *args])
    out, err = capsys.readouterr()
    return code, out, err
