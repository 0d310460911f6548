"""The read model (``gateway.ledger.reads``) on its own: one file filter, one license search,
one file story and one partner state, read from ledgers the gateway filled by a real run of
the sample partner, on SQLite and on PostgreSQL. The CLI, the web page and the status files
only render these reads; the last tests check that they all say the same.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pg_server import PgServer
from project_config import ProjectConfig

from gateway.admin import queries, report
from gateway.cli import main
from gateway.config import Config, PartnerConfig, load_config
from gateway.ledger.reads.files import FILE_STATUSES, FileQuery, list_files, select_files
from gateway.ledger.reads.health import STATES, partner_health
from gateway.ledger.reads.health_words import describe
from gateway.ledger.reads.licenses import LICENSE_COLUMNS, LicenseQuery, LicenseRow, list_licenses
from gateway.ledger.reads.story import FINDING_ORDER, FileStory, file_story
from gateway.ledger.store import Ledger, open_ledger
from gateway.outputs.status_files import partner_status
from gateway.service.runner import run_once

CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
AS_OF = date(2026, 12, 1)
GOOD, HOSTILE = "acme-20261201-good.xml", "acme-20261201-hostile.xml"
PARTIAL, ERP = "acme-20261201-partial.xml", "acme-20261202-erp.csv"
EVERY_FILE = {GOOD, HOSTILE, PARTIAL, ERP}


@dataclass
class Ran:
    """A gateway run of the sample partner's four files, and its ledger (read-only)."""

    config: Config
    ledger: Ledger

    def file_id(self, name: str) -> str:
        return next(r.file_id for r in self.ledger.files("1 = 1") if r.remote_name == name)


def _run(base: Path, ledger: str = "") -> Config:
    shutil.copytree(CASES_INBOX / "sample", base / "in")
    project = ProjectConfig(base).partner("sample", inbox="in", disposition="keep",
                                          filer_code="SMP")
    cfg = (project.ledger(ledger) if ledger else project).write()
    config = load_config(cfg)
    run_once(config, AS_OF)
    return config


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ran(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    """One run per database for the whole module: the reads below change nothing."""
    dsn = ""
    if request.param == "postgresql":
        cluster: PgServer = request.getfixturevalue("pg_cluster")
        dsn = cluster.create(f"aimgw_reads_{os.getpid()}_{time.time_ns()}")
    config = _run(tmp_path_factory.mktemp(request.param), dsn)
    ledger = open_ledger(config, readonly=True)
    yield Ran(config, ledger)
    ledger.close()


# -- one file filter ---------------------------------------------------------------------------

FILE_QUERIES = [
    pytest.param(FileQuery(), EVERY_FILE, id="all"),
    pytest.param(FileQuery(partner="sample"), EVERY_FILE, id="partner"),
    pytest.param(FileQuery(partner="other"), set(), id="other-partner"),
    pytest.param(FileQuery(status="ACCEPTED"), {GOOD}, id="accepted"),
    pytest.param(FileQuery(status="partial"), {PARTIAL, ERP}, id="partial-any-case"),
    pytest.param(FileQuery(status="REJECTED"), {HOSTILE}, id="rejected"),
    pytest.param(FileQuery(status="failed"), {HOSTILE}, id="failed-is-an-f-code"),
    pytest.param(FileQuery(status="IN PROGRESS"), set(), id="in-progress"),
    pytest.param(FileQuery(status="QUARANTINED"), set(), id="quarantined"),
    pytest.param(FileQuery(status="FAILED", unresolved=True), {HOSTILE}, id="unresolved"),
    pytest.param(FileQuery(since=AS_OF - timedelta(days=1)), EVERY_FILE, id="since-yesterday"),
    pytest.param(FileQuery(since=date(2999, 1, 1)), set(), id="since-the-future"),
    pytest.param(FileQuery(text="PARTIAL"), {PARTIAL}, id="name-any-case"),
    pytest.param(FileQuery(text="1202-erp"), {ERP}, id="part-of-name"),
    pytest.param(FileQuery(text="%"), set(), id="percent-is-literal"),
    pytest.param(FileQuery(text="acme_"), set(), id="underscore-is-literal"),
]


@pytest.mark.parametrize(("query", "names"), FILE_QUERIES)
def test_file_query(ran: Ran, query: FileQuery, names: set[str]) -> None:
    rows = list_files(ran.ledger, query, ran.config.gateway.zone)
    assert {r.remote_name for r in rows} == names
    assert [r.file_id for r in rows] == sorted((r.file_id for r in rows), reverse=True)


def test_file_query_by_id_and_limit(ran: Ran) -> None:
    zone = ran.config.gateway.zone
    good = ran.file_id(GOOD)
    assert [r.remote_name for r in list_files(ran.ledger, FileQuery(text=good), zone)] == [GOOD]
    newest = list_files(ran.ledger, FileQuery(limit=2), zone)
    assert newest == list_files(ran.ledger, FileQuery(), zone)[:2]


@pytest.mark.parametrize("status", FILE_STATUSES)
def test_the_cli_takes_every_status_the_web_page_offers(
        ran: Ran, capsys: pytest.CaptureFixture[str], status: str) -> None:
    assert main(["--config", str(ran.config.path), "files", "--status", status.lower(),
                 "--json"]) == 0
    listed = [r["file_id"] for r in json.loads(capsys.readouterr().out)]
    assert listed == [r.file_id for r in list_files(ran.ledger, FileQuery(status=status),
                                                    ran.config.gateway.zone)]


# -- one license search ------------------------------------------------------------------------

# Search -> the refs found (the sample run licenses PO-4411..4413, PO-5001, PO-5013 and
# PO-7001..7002, all to ACME ALUMINUM IMPORTS LLC on 2026-12-01).
EVERY_REF = {"PO-4411", "PO-4412", "PO-4413", "PO-5001", "PO-5013", "PO-7001", "PO-7002"}
LICENSE_QUERIES = [
    pytest.param(LicenseQuery(), EVERY_REF, id="all"),
    pytest.param(LicenseQuery(number="a26000002"), {"PO-4412"}, id="number-any-case"),
    pytest.param(LicenseQuery(ref="PO-5013"), {"PO-5013"}, id="ref-exact"),
    pytest.param(LicenseQuery(ref="PO-50"), set(), id="ref-exact-not-a-part"),
    pytest.param(LicenseQuery(text="A26000003"), {"PO-4413"}, id="text-is-a-number"),
    pytest.param(LicenseQuery(text="po-44"), {"PO-4411", "PO-4412", "PO-4413"},
                 id="text-is-part-of-a-ref"),
    pytest.param(LicenseQuery(text="po_44"), set(), id="underscore-is-literal"),
    pytest.param(LicenseQuery(importer="aluminum"), EVERY_REF, id="importer-any-case"),
    pytest.param(LicenseQuery(importer="%"), set(), id="percent-is-literal"),
    pytest.param(LicenseQuery(partner="sample", issued_from=AS_OF, issued_to=AS_OF),
                 EVERY_REF, id="partner-and-day"),
    pytest.param(LicenseQuery(issued_from=AS_OF + timedelta(days=1)), set(), id="from-is-after"),
    pytest.param(LicenseQuery(issued_to=AS_OF - timedelta(days=1)), set(), id="to-is-before"),
]


@pytest.mark.parametrize(("query", "refs"), LICENSE_QUERIES)
def test_license_query(ran: Ran, query: LicenseQuery, refs: set[str]) -> None:
    rows = list_licenses(ran.ledger, query)
    assert {r.ref for r in rows} == refs
    assert [r.license_number for r in rows] == sorted((r.license_number for r in rows),
                                                      reverse=True)


def test_one_license_column_order(ran: Ran) -> None:
    """The CLI's JSON keys are the read model's columns, in its one order."""
    [row] = list_licenses(ran.ledger, LicenseQuery(ref="PO-4411"))
    assert tuple(f.name for f in dataclasses.fields(LicenseRow)) == LICENSE_COLUMNS
    assert list(json.loads(report.licenses_json([row]))[0]) == list(LICENSE_COLUMNS)
    assert (row.license_number, row.importer) == ("A26000001", "ACME ALUMINUM IMPORTS LLC")
    assert LicenseQuery().empty and not LicenseQuery(number="A26000001").empty


# -- one file story ----------------------------------------------------------------------------


def _story(ran: Ran, name: str, limit: int | None = None) -> FileStory:
    story = file_story(ran.ledger, ran.config, ran.file_id(name), limit)
    assert story is not None
    return story


@pytest.mark.parametrize("name", sorted(EVERY_FILE))
def test_file_story(ran: Ran, name: str) -> None:
    story = _story(ran, name)
    assert story.file.remote_name == name and story.ack_to == "outbox" and story.ack_delivered
    assert len(story.applications) == story.applications_total == story.file.applications
    assert [a.seq for a in story.applications] == sorted(a.seq for a in story.applications)
    assert len(story.findings) == story.findings_total
    # The one order on both databases: the file's own findings first, then by line.
    keys = [(f.source_line or 0, f.code, f.ref or "", f.line or 0) for f in story.findings]
    assert keys == sorted(keys)
    assert {x.license_number for x in story.licenses_issued} == {
        a.license_number for a in story.applications if a.license_number and not a.reused}
    assert [e.kind for e in story.events][:1] == ["file.received"]
    assert story.failures is None and story.shown == story.file


def test_file_story_cut_at_a_limit(ran: Ran) -> None:
    story = _story(ran, PARTIAL, limit=2)
    assert len(story.applications) == len(story.findings) == 2
    assert story.applications_total > 2 and story.findings_total > 2
    assert story.findings == _story(ran, PARTIAL).findings[:2]
    assert file_story(ran.ledger, ran.config, "20990101-000001") is None


def test_findings_are_ordered_by_real_columns() -> None:
    """No rowid (SQLite only): the order is columns both databases have."""
    assert "rowid" not in FINDING_ORDER.lower()


# -- one partner state -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Ledger]]:
    """A SQLite ledger after a real run; the tests set the partner's state through the
    Ledger API (each one all of it)."""
    config = _run(tmp_path_factory.mktemp("health"))
    ledger = Ledger(config.gateway.data_dir / "ledger.sqlite")
    yield config, ledger
    ledger.close()


SOON = timedelta(minutes=8)  # a back-off's end, after now
# id, partner settings, partner_state, a file quarantined, the state: the one order (STATES).
# Before, `status` said "backing off" for failing-and-backing-off and "ok" for quarantined;
# status.json said "failing" for backing-off-after-an-alert, "silent" for error-and-silent,
# "error" for backing off and "ok" for quarantined.
HEALTH_CASES = [
    pytest.param({}, {}, False, "ok", id="ok"),
    pytest.param({"enabled": False}, {"failures": 3, "alerting": 1}, False, "disabled",
                 id="disabled-first"),
    pytest.param({}, {"failures": 3, "alerting": 1, "next_attempt_at": SOON}, False,
                 "failing", id="failing-over-backing-off"),
    pytest.param({}, {"failures": 2, "next_attempt_at": SOON}, False, "backing off",
                 id="backing-off-over-error"),
    pytest.param({"expected_cadence_hours": 1.0}, {"failures": 1, "silent": 1}, False,
                 "error", id="error-over-silent"),
    pytest.param({"expected_cadence_hours": 1.0}, {"silent": 1}, True, "silent",
                 id="silent-over-quarantined"),
    pytest.param({}, {"last_poll_at": None}, False, "never polled", id="never-polled"),
    pytest.param({}, {"last_poll_at": timedelta(hours=3)}, True, "not polled",
                 id="not-polled-over-quarantined"),
    pytest.param({}, {}, True, "quarantined", id="quarantined-over-ok"),
]


def _set_health(ledger: Ledger, file_id: str, now: datetime, state: dict[str, object],
                quarantined: bool) -> None:
    values: dict[str, object] = {
        "failures": 0, "last_error": None, "last_poll_at": timedelta(seconds=30),
        "next_attempt_at": 0, "alerting": 0, "silent": 0, "watched_since": None, **state}
    for key, value in values.items():  # times relative to now: before it, or after (SOON)
        if isinstance(value, timedelta):
            values[key] = ((now + value).timestamp() if key == "next_attempt_at" else
                           (now - value).isoformat(timespec="seconds"))
    if values["failures"]:
        values["last_error"] = "cannot connect"
    with ledger.transaction():
        ledger.set_partner_state("sample", **values)
        ledger.db.execute("DELETE FROM file_failures")
        if quarantined:
            ledger.db.execute(
                "INSERT INTO file_failures (file_id, partner, failures, last_error, "
                "last_failed_at, quarantined_at) VALUES (?, 'sample', 3, 'TypeError: x', ?, ?)",
                (file_id, now.isoformat(), now.isoformat()))


@pytest.mark.parametrize(("settings", "state", "quarantined", "expected"), HEALTH_CASES)
def test_one_partner_state_everywhere(polled: tuple[Config, Ledger], settings: dict[str, object],
                                      state: dict[str, object], quarantined: bool,
                                      expected: str) -> None:
    config, ledger = polled
    partner = dataclasses.replace(config.partner("sample"), **settings)
    config = dataclasses.replace(config, partners=(partner,))
    now = datetime.now(UTC) + timedelta(hours=2)  # files came 2 h ago: silent past 1 h
    _set_health(ledger, ledger.files("1 = 1")[-1].file_id, now, state, quarantined)
    health = partner_health(ledger, config, partner, now)
    assert health.state == expected and expected in STATES
    # status --json, the partner's status.json and the dashboard say the same.
    assert json.loads(report.status_json([health]))[0]["state"] == expected
    assert partner_status(ledger, config, partner, now)["state"] == expected
    assert describe(health, now)  # a sentence for every state
    assert health.quarantined == int(quarantined)


def test_the_partner_never_sees_the_gateway_s_internal_error(polled: tuple[Config, Ledger],
                                                             ) -> None:
    """Admins list a quarantined file as QUARANTINED with its internal reason; the partner's
    status file shows the file as recorded."""
    config, ledger = polled
    now = datetime.now(UTC)
    file_id = ledger.files("1 = 1")[-1].file_id
    _set_health(ledger, file_id, now, {}, quarantined=True)
    query = FileQuery(status="QUARANTINED")
    [listed] = list_files(ledger, query, config.gateway.zone)
    assert listed.status == "QUARANTINED" and "TypeError" in (listed.error or "")
    [recorded] = select_files(ledger, query, config.gateway.zone)
    assert recorded.status != "QUARANTINED" and recorded.error is None
    shown = partner_status(ledger, config, config.partner("sample"), now)
    assert "TypeError" not in json.dumps(shown)


def test_partners_before_the_first_run(tmp_path: Path) -> None:
    cfg = ProjectConfig(tmp_path).partner("on", inbox="in").partner(
        "off", inbox="off", enabled=False).write()
    health = queries.partners(load_config(cfg))
    assert [(h.partner.id, h.state, h.files) for h in health] == [
        ("on", "never polled", None), ("off", "disabled", None)]


def test_a_partner_s_partner_config_is_what_the_health_shows(polled: tuple[Config, Ledger],
                                                             ) -> None:
    config, ledger = polled
    partner: PartnerConfig = config.partner("sample")
    now = datetime.now(UTC)
    _set_health(ledger, ledger.files("1 = 1")[-1].file_id, now, {}, quarantined=False)
    health = partner_health(ledger, config, partner, now, backlog=2)
    assert health.partner is partner and health.backlog == 2
    assert health.files == {"ACCEPTED": 1, "PARTIAL": 2, "REJECTED": 1}
    assert health.licenses == len(EVERY_REF) and health.unfinished == 0
    assert health.last_file is not None and health.last_file.file_id == max(
        r.file_id for r in ledger.files("1 = 1"))
