"""What admins read and do, against a ledger filled by real runs of the repository's sample
partners: status, files, show, licenses (text and --json), reprocess after a mapping fix,
purge by the retention policy, alerts (silent, failing, recovered) with a webhook, the
partners' status files, and the progress line."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import pty
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from conftest import ProjectConfig

from gateway.admin import actions, queries
from gateway.admin.progress import ReadProgress, render
from gateway.cli import main
from gateway.config import Config, load_config
from gateway.errors import FatalError, TransientError
from gateway.ledger.events import EventLog
from gateway.ledger.reads.files import FileQuery
from gateway.ledger.store import MIGRATIONS, Ledger
from gateway.outputs.status_files import CSV_COLUMNS
from gateway.service.alerts import Alerts, check_silence
from gateway.service.runner import Runner, run_once

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
INBOX = CASES_INBOX
AS_OF = date(2026, 12, 1)
HANSE_CSV = INBOX / "hanse" / "ZAIM_EXPORT_20261201.csv"
TOKEN = "s3cret-T0KEN-in-the-url"

class Project:
    """A gateway on tmp_path with the repository's sample partners, run for real."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.toml = ProjectConfig(base)  # the repository's sample partners, kept
        self.toml.partner("sample", inbox="in/sample", disposition="keep", filer_code="SMP",
                          filer=True)
        for pid, filer_code, mapping in (("hanse", "HMH", "hanse-metall.toml"),
                                         ("nordic", "NAT", "nordic-orders.xsl")):
            self.toml.partner(pid, inbox=f"in/{pid}", disposition="keep",
                              filer_code=filer_code, mapping=ROOT / "mappings" / mapping)
        self.toml.partner("plain", name="Plain (no mapping yet)", inbox="in/plain",
                          filer_code="PLN")
        for partner in ("sample", "hanse", "nordic"):
            shutil.copytree(INBOX / partner, base / "in" / partner)
        (base / "in" / "plain").mkdir()
        shutil.copy(HANSE_CSV, base / "in" / "plain" / HANSE_CSV.name)
        self.cfg = self.toml.write()

    @property
    def config(self) -> Config:  # loaded afresh: tests rewrite the file
        return load_config(self.cfg)

    def run(self) -> None:
        run_once(self.config, AS_OF)

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--config", str(self.cfg), *args])
        captured = capsys.readouterr()
        self.stderr = captured.err
        return code, captured.out

    def cli_json(self, capsys: pytest.CaptureFixture[str], *args: str) -> object:
        code, out = self.cli(capsys, *args, "--json")
        assert code == 0, out
        return json.loads(out)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.base / "data" / "ledger.sqlite")

    def one(self, sql: str, *params: object) -> object:
        with self.db() as con:
            return con.execute(sql, params).fetchone()[0]

    def file_id(self, partner: str, name_part: str) -> str:
        return str(self.one("SELECT file_id FROM files WHERE partner = ? AND remote_name LIKE ? "
                            "ORDER BY file_id LIMIT 1", partner, f"%{name_part}%"))

    def events(self, kind: str) -> list[dict]:
        with self.db() as con:
            rows = con.execute("SELECT partner, file_id, data FROM events WHERE kind = ? "
                               "ORDER BY id", (kind,)).fetchall()
        return [{"partner": p, "file_id": f, **json.loads(d)} for p, f, d in rows]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project(tmp_path)
    p.run()
    return p


# -- reading: status, files, show, licenses ---------------------------------------------------


def test_status_lists_every_partner_with_its_health(project: Project, capsys) -> None:
    rows = {r["partner"]: r for r in project.cli_json(capsys, "status")}  # type: ignore[union-attr]
    assert sorted(rows) == ["hanse", "nordic", "plain", "sample"]
    sample = rows["sample"]
    assert sample["state"] == "ok" and sample["failures"] == 0 and sample["last_poll"]
    assert sample["files"] == {"ACCEPTED": 1, "PARTIAL": 2, "REJECTED": 1}
    assert sample["unfinished"] == 0 and sample["backlog"] == 0 and sample["licenses"] > 0
    assert rows["plain"]["last_status"] == "REJECTED"
    (project.base / "in" / "sample" / "late.xml").write_bytes(b"<x/>")
    assert project.cli_json(capsys, "status")[0]["backlog"] == 1  # type: ignore[index]
    code, text = project.cli(capsys, "status")
    lines = text.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["partner", "kind", "state"]
    assert [line.split()[0] for line in lines[2:6]] == ["sample", "hanse", "nordic", "plain"]


def test_files_filters_and_json(project: Project, capsys) -> None:
    everything = project.cli_json(capsys, "files")
    assert len(everything) == 7  # type: ignore[arg-type]
    hanse = project.cli_json(capsys, "files", "--partner", "hanse")
    assert [f["remote_name"] for f in hanse] == [HANSE_CSV.name]  # type: ignore[union-attr]
    failed = project.cli_json(capsys, "files", "--status", "failed")
    assert sorted((f["partner"], f["error"][:4]) for f in failed) == [  # type: ignore[union-attr]
        ("plain", "F002"), ("sample", "F004")]
    assert project.cli_json(capsys, "files", "--status", "PARTIAL", "--partner", "sample")
    assert project.cli_json(capsys, "files", "--since", "2999-01-01") == []
    assert len(project.cli_json(capsys, "files", "--limit", "2")) == 2  # type: ignore[arg-type]
    code, text = project.cli(capsys, "files", "--partner", "sample")
    assert code == 0 and len(text.splitlines()) == 2 + 4 and "F004" in text
    with pytest.raises(SystemExit) as usage:
        main(["--config", str(project.cfg), "files", "--status", "NOPE"])
    assert usage.value.code == 2


def test_show_tells_the_whole_story_of_one_file(project: Project, capsys) -> None:
    good = project.file_id("sample", "good")
    story = project.cli_json(capsys, "show", good)
    assert story["file"]["status"] == "ACCEPTED"  # type: ignore[index]
    assert story["ack"] == {"name": "acme-20261201-good.xml.ack.xml", "delivered": True,  # type: ignore[index]
                            "to": "outbox"}
    assert sorted(story["ace_files"]) == [f"AE-{good}.txt", f"FT-{good}.txt"]  # type: ignore[index]
    issued = story["licenses_issued"]  # type: ignore[index]
    assert len(issued) == 3 and all(x["valid_through"] == "2027-02-14" for x in issued)
    apps = story["applications"]  # type: ignore[index]
    assert [a["license"] for a in apps if a["license"]] == [x["license"] for x in issued]
    assert [a["status"] for a in apps].count("NOT_REQUIRED") == 1
    kinds = [e["event"] for e in story["events"]]  # type: ignore[index]
    assert kinds == ["file.received", "file.processed", "file.archived", "file.done"]
    code, text = project.cli(capsys, "show", good)
    assert code == 0 and "licenses issued:" in text and "(delivered, outbox)" in text
    assert f"AE-{good}.txt" in text and "file.done" in text
    assert project.cli(capsys, "show", "20990101-000001")[0] == 1


def test_licenses_by_number_ref_importer_and_date(project: Project, capsys) -> None:
    every = project.cli_json(capsys, "licenses")
    assert len(every) == project.one("SELECT COUNT(*) FROM licenses")  # type: ignore[arg-type]
    first = every[-1]  # type: ignore[index]
    by_number = project.cli_json(capsys, "licenses", "--number", first["license_number"].lower())
    assert [x["ref"] for x in by_number] == [first["ref"]]  # type: ignore[union-attr]
    assert project.cli_json(capsys, "licenses", "--ref", first["ref"])[0][  # type: ignore[index]
        "license_number"] == first["license_number"]
    importer = first["importer"].split()[0].lower()
    assert first in project.cli_json(capsys, "licenses", "--importer", importer)  # type: ignore[operator]
    assert project.cli_json(capsys, "licenses", "--since", "2026-12-02") == []
    assert len(project.cli_json(capsys, "licenses", "--since", "2026-12-01", "--until",  # type: ignore[arg-type]
                                "2026-12-01")) == len(every)  # type: ignore[arg-type]
    code, text = project.cli(capsys, "licenses", "--partner", "hanse")
    assert code == 0 and text.count("\n") == 2 + 2 and "hanse" in text


# -- reprocess ----------------------------------------------------------------------------------


def test_reprocess_after_a_mapping_fix_then_again_issues_nothing_twice(project: Project,
                                                                        capsys) -> None:
    failed = project.file_id("plain", "ZAIM")
    assert project.one("SELECT error FROM files WHERE file_id = ?", failed).startswith("F002")
    status = json.loads((project.base / "outbox" / "plain" / "status.json").read_text())
    assert [e["file_id"] for e in status["open_errors"]] == [failed]
    licenses_before = project.one("SELECT COUNT(*) FROM licenses")
    project.toml.update("plain", mapping=ROOT / "mappings" / "hanse-metall.toml").write()
    code, out = project.cli(capsys, "reprocess", failed, "--reason", "hanse mapping added",
                            "--as-of", AS_OF.isoformat())
    assert code == 0, out
    new_id = out.split(":")[0]
    assert out.startswith(f"{new_id}: PARTIAL (4 application(s): 2 licensed, 2 new") and (
        f"reprocess of {failed}" in out)
    with project.db() as con:
        row = con.execute("SELECT reprocess_of, status, state, new_licenses FROM files "
                          "WHERE file_id = ?", (new_id,)).fetchone()
    assert row == (failed, "PARTIAL", "DONE", 2)
    assert project.one("SELECT COUNT(*) FROM licenses") == licenses_before + 2
    [event] = project.events("admin.reprocess")
    assert event["file_id"] == new_id and event["original"] == failed
    assert event["reason"] == "hanse mapping added" and event["actor"].startswith("cli:")
    logged = [json.loads(line) for line in (project.base / "data" / "events.jsonl")
              .read_text().splitlines()]
    assert any(e["event"] == "admin.reprocess" and e["reason"] == "hanse mapping added"
               for e in logged)
    # The partner's file was taken once and moved once; reprocessing never touched it.
    assert os.listdir(project.base / "in" / "plain") == ["processed"]
    assert os.listdir(project.base / "in" / "plain" / "processed") == [HANSE_CSV.name]
    assert (project.base / "data" / "failed" / "plain").is_dir()  # the original stays
    assert (project.base / "outbox" / "plain" / f"{HANSE_CSV.name}.ack.csv").is_file()
    status = json.loads((project.base / "outbox" / "plain" / "status.json").read_text())
    assert status["open_errors"] == [] and status["files"][0]["file_id"] == new_id
    # The CSV ack says which ack it replaces, and so do the status files (issue 14, item 7).
    replaced = f"{HANSE_CSV.name}.ack.xml"
    new_ack = (project.base / "outbox" / "plain" / f"{HANSE_CSV.name}.ack.csv").read_text()
    assert f" | replaces {replaced} | file {HANSE_CSV.name}" in new_ack.splitlines()[1]
    assert status["files"][0]["replaces"] == replaced
    assert [e["replaces"] for e in status["files"][1:]] == [None]
    status_csv = list(csv.DictReader(io.StringIO(
        (project.base / "outbox" / "plain" / "status.csv").read_text())))
    assert status_csv[0]["replaces"] == replaced
    story = project.cli_json(capsys, "show", failed)
    assert story["reprocessed_as"][0]["reason"] == "hanse mapping added"  # type: ignore[index]

    # Again, through the library as the web page calls it: I201, no new license.
    again = actions.reprocess(project.config, new_id, "check idempotence", actor="web:127.0.0.1",
                            as_of=AS_OF)
    with project.db() as con:
        row = con.execute("SELECT status, licensed, new_licenses FROM files WHERE file_id = ?",
                          (again,)).fetchone()
        codes = {c for (c,) in con.execute("SELECT code FROM findings WHERE file_id = ?",
                                           (again,))}
    assert row == ("PARTIAL", 2, 0) and "I201" in codes
    assert project.one("SELECT COUNT(*) FROM licenses") == licenses_before + 2
    assert project.events("admin.reprocess")[-1]["actor"] == "web:127.0.0.1"
    project.run()  # the next poll takes nothing again
    assert project.one("SELECT COUNT(*) FROM files WHERE partner = 'plain'") == 3


def test_reprocess_refusals(project: Project, capsys) -> None:
    good = project.file_id("sample", "good")
    with pytest.raises(FatalError, match="no file"):
        actions.reprocess(project.config, "20990101-000001", "typo")
    with pytest.raises(FatalError, match="reason"):
        actions.reprocess(project.config, good, "   ")
    with pytest.raises(SystemExit) as usage:  # --reason is required
        main(["--config", str(project.cfg), "reprocess", good])
    assert usage.value.code == 2
    Path(project.one("SELECT archive_path FROM files WHERE file_id = ?", good)).write_bytes(
        b"tampered")
    code, _ = project.cli(capsys, "reprocess", good, "--reason", "x")
    assert code == 1 and "not what was received" in project.stderr
    with pytest.raises(FatalError, match="not what was received"):
        actions.reprocess(project.config, good, "x")
    assert project.events("admin.reprocess") == []
    assert not list((project.base / "data" / "work" / "tmp").iterdir())
    # A worker on another machine is polling the partner: reprocess waits, then says so.
    ledger = Ledger(project.base / "data" / "ledger.sqlite")
    try:
        assert ledger.acquire_lease("plain", "elsewhere:1:abc", 60, ledger.now())
        with pytest.raises(TransientError, match="being polled"):
            actions.reprocess(project.config, project.file_id("plain", "ZAIM"), "busy",
                            wait_seconds=0.2)
    finally:
        ledger.close()


# -- purge --------------------------------------------------------------------------------------


def test_purge_removes_old_operational_records_and_originals_never_licenses(
        project: Project, capsys) -> None:
    licenses = project.db().execute("SELECT * FROM licenses ORDER BY 1").fetchall()
    files_on_disk = sorted(p for folder in ("archive", "failed")
                           for p in (project.base / "data" / folder).rglob("*") if p.is_file())
    assert len(files_on_disk) == 7 + 2  # two failed files, each with its .error.txt
    later = datetime.now(UTC) + timedelta(days=100)  # past events_days (90) only
    report = actions.purge(project.config, now=later, reason="test")
    assert report.events > 0 and report.files == [] and report.archived == []
    assert project.one("SELECT COUNT(*) FROM events WHERE kind NOT LIKE 'admin.%' "
                       "AND kind != 'purge.done'") == 0  # but the purge's own counts
    assert project.one("SELECT COUNT(*) FROM findings") > 0

    much_later = datetime.now(UTC) + timedelta(days=400)
    preview = project.cli_json(capsys, "purge", "--dry-run", "--as-of",
                               much_later.date().isoformat())
    assert preview["dry_run"] and len(preview["files"]) == 7  # type: ignore[index,arg-type]
    assert preview["findings"] == project.one("SELECT COUNT(*) FROM findings")  # type: ignore[index]
    assert sorted(map(Path, preview["archived"])) == files_on_disk  # type: ignore[index]
    assert all(p.exists() for p in files_on_disk)  # a dry run changes nothing

    report = actions.purge(project.config, now=much_later, actor="cli:test", reason="test")
    assert len(report.files) == 7 and report.findings > 0 and report.applications > 0
    for table in ("findings", "applications"):
        assert project.one(f"SELECT COUNT(*) FROM {table}") == 0
    assert project.one("SELECT COUNT(*) FROM files WHERE details_purged_at IS NULL") == 0
    assert not any(p.exists() for p in files_on_disk)
    assert not (project.base / "data" / "archive" / "sample").exists()  # empty folders go
    assert project.db().execute("SELECT * FROM licenses ORDER BY 1").fetchall() == licenses
    [event] = project.events("admin.purge")[-1:]
    assert event["actor"] == "cli:test" and event["files"] == 7
    # The file rows remain the memory of what was taken: nothing is taken again.
    project.run()
    assert project.one("SELECT COUNT(*) FROM files") == 7
    good = project.file_id("sample", "good")
    with pytest.raises(FatalError, match="purged"):
        actions.reprocess(project.config, good, "too late")
    code, text = project.cli(capsys, "show", good)
    assert code == 0 and "purged" in text and "licenses issued:" in text
    assert actions.purge(project.config, now=much_later,
                         reason="test").files == []  # nothing left to purge


# -- alerts and the webhook ---------------------------------------------------------------------


class Hook:
    """A webhook receiver on 127.0.0.1 that records what it is sent."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/{TOKEN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [f"{body['event']} {body['partner']}" for _, _, body in self.received]


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = Hook()
    yield server
    server.server.shutdown()


def backdate(project: Project, partner: str, days: int) -> None:
    """As if the partner's files had come ``days`` ago (the clock is not faked elsewhere)."""
    when = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")
    with project.db() as con:
        con.execute("UPDATE files SET received_at = ? WHERE partner = ?", (when, partner))


def test_silent_partner_one_alert_per_spell_shown_in_status_and_sent(
        tmp_path: Path, hook: Hook, capsys) -> None:
    project = Project(tmp_path)
    project.toml.set("alerts", webhook_url=hook.url)
    project.toml.update("plain", expected_cadence_hours=24).write()
    project.run()
    assert project.events("partner.silent") == []
    backdate(project, "plain", days=3)
    rows = {r["partner"]: r for r in project.cli_json(capsys, "status")}  # type: ignore[union-attr]
    assert rows["plain"]["state"] == "silent" and rows["plain"]["silent_hours"] >= 72
    assert rows["plain"]["last_alert"]["event"] == "partner.silent"
    assert rows["sample"]["silent"] is False  # not watched
    for _ in range(3):  # each run is a restart: the spell is remembered in the ledger
        project.run()
    [silent] = project.events("partner.silent")
    assert silent["partner"] == "plain" and silent["expected_cadence_hours"] == 24
    _, text = project.cli(capsys, "status")
    assert "SILENT" in text and "expected every 24 h" in text
    assert hook.events() == ["partner.silent plain"]
    path, content_type, body = hook.received[0]
    assert path == f"/hook/{TOKEN}" and content_type == "application/json"
    assert body["last_file_at"] and body["at"]

    shutil.copy(CASES_INBOX / "sample" / "acme-20261201-good.xml",
                project.base / "in" / "plain" / "new.xml")
    project.run()
    assert [e["partner"] for e in project.events("partner.active")] == ["plain"]
    assert hook.events() == ["partner.silent plain", "partner.active plain"]
    assert {r["partner"]: r for r in project.cli_json(capsys, "status")}[  # type: ignore[union-attr]
        "plain"]["state"] == "ok"
    # The token in the URL is never written anywhere.
    assert TOKEN not in (project.base / "data" / "events.jsonl").read_text()


def test_silence_check_with_a_fake_clock(project: Project) -> None:
    config = project.config
    partner = config.partner("hanse")
    watched = dataclasses.replace(partner, expected_cadence_hours=2.0)
    ledger = Ledger(project.base / "data" / "ledger.sqlite")
    alerts = Alerts(config.alerts, EventLog(None))
    now = datetime.now(UTC)
    try:
        assert check_silence(ledger, alerts, watched, now) is False
        assert check_silence(ledger, alerts, watched, now + timedelta(hours=3)) is True
        assert check_silence(ledger, alerts, watched, now + timedelta(hours=9)) is True
        assert check_silence(ledger, alerts, watched, now) is False
        assert check_silence(ledger, alerts, watched, now + timedelta(hours=5)) is True
    finally:
        ledger.close()
    kinds = [e["partner"] for e in project.events("partner.silent")]
    assert kinds == ["hanse", "hanse"]  # two spells, one alert each
    assert [e["partner"] for e in project.events("partner.active")] == ["hanse"]


def test_failing_and_recovered_alerts_reach_the_webhook_and_status(
        tmp_path: Path, hook: Hook, capsys) -> None:
    project = Project(tmp_path)
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "known_hosts").write_text("")
    (keys / "id").write_text("not a key")
    project.toml.set("alerts", webhook_url=hook.url, webhook_timeout_seconds=3)
    project.toml.partner("flaky", inbox=None, kind="sftp", host="127.0.0.1", port=1, user="u",
                         key_file=keys / "id", known_hosts=keys / "known_hosts",
                         failure_alert_after=1, connect_timeout=2).write()
    project.run()
    assert [e["partner"] for e in project.events("partner.failing")] == ["flaky"]
    assert hook.events() == ["partner.failing flaky"]
    rows = {r["partner"]: r for r in project.cli_json(capsys, "status")}  # type: ignore[union-attr]
    assert rows["flaky"]["state"] == "failing" and rows["flaky"]["failures"] == 1
    assert "FAILING" in project.cli(capsys, "status")[1]
    status = json.loads((project.base / "outbox" / "flaky" / "status.json").read_text())
    assert status["state"] == "failing" and status["alerts"]["failing"] is True
    # The partner moves to a local folder: its next poll succeeds, one recovery alert.
    (tmp_path / "in" / "flaky").mkdir()
    project.toml.partner("flaky", inbox="in/flaky").write()
    with project.db() as con:
        con.execute("UPDATE partner_state SET next_attempt_at = 0")
    project.run()
    project.run()
    assert hook.events() == ["partner.failing flaky", "partner.recovered flaky"]
    assert len(project.events("partner.recovered")) == 1


def test_a_webhook_that_fails_never_fails_the_poll_nor_leaks_its_url(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    project = Project(tmp_path)
    closed = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_port
    closed.server_close()  # nothing listens there now
    project.toml.set("alerts", webhook_url=f"http://127.0.0.1:{port}/x/{TOKEN}?k={TOKEN}")
    project.toml.update("plain", expected_cadence_hours=1).write()
    project.run()
    backdate(project, "plain", days=1)
    project.run()
    assert len(project.events("partner.silent")) == 1
    [failure] = project.events("alert.webhook_failed")
    assert failure["alert"] == "partner.silent" and failure["error"]
    everything = (project.base / "data" / "events.jsonl").read_text() + caplog.text
    with project.db() as con:
        everything += json.dumps(con.execute("SELECT * FROM events").fetchall())
    assert TOKEN not in everything and str(port) not in failure["error"]


# -- the partners' status files -----------------------------------------------------------------


def test_status_files_in_the_outbox(project: Project) -> None:
    outbox = project.base / "outbox" / "sample"
    status = json.loads((outbox / "status.json").read_text())
    assert status["partner"] == "sample" and status["state"] == "ok"
    assert status["failures"] == 0 and status["last_poll"] and status["generated_at"]
    assert len(status["files"]) == 4
    assert {f["status"] for f in status["files"]} == {"ACCEPTED", "PARTIAL", "REJECTED"}
    assert [e["error"][:4] for e in status["open_errors"]] == ["F004"]
    rows = list(csv.reader(io.StringIO((outbox / "status.csv").read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 5
    assert sorted(r[0] for r in rows[1:]) == sorted(f["file_id"] for f in status["files"])
    assert (project.base / "outbox" / "plain" / "status.json").is_file()


def test_status_files_are_replaced_atomically_and_never_fail_a_poll(project: Project) -> None:
    outbox = project.base / "outbox" / "sample"
    (project.base / "in" / "sample" / "=HYPERLINK(1).xml").write_bytes(
        (INBOX / "sample" / "acme-20261201-good.xml").read_bytes())
    # Held open: a removed file's inode number is free for the next file otherwise, and the
    # replacement may get it (seen once under load), which would read as "not replaced".
    first = open(outbox / "status.json", "rb")  # noqa: SIM115 (closed below)
    before = os.fstat(first.fileno()).st_ino
    seen, stop = [], threading.Event()

    def reader() -> None:  # a broker reading while the gateway writes
        while not stop.is_set():
            seen.append(json.loads((outbox / "status.json").read_bytes())["partner"])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(3):
            project.run()
    finally:
        stop.set()
        thread.join()
    assert seen and set(seen) == {"sample"}  # never a half-written file
    assert (outbox / "status.json").stat().st_ino != before  # a new file renamed into place
    first.close()
    assert not [p for p in outbox.iterdir() if p.name.startswith(".")]
    csv_text = (outbox / "status.csv").read_text()
    assert "'=HYPERLINK(1).xml" in csv_text  # a partner's name is not a formula
    # A status file that cannot be written is logged; the poll goes on, the old file stays.
    # (poll, not run_once: recovery at the start of a run would clear the obstacle.)
    old = (outbox / "status.json").read_bytes()
    blocker = outbox / f".status.json.{os.getpid()}.tmp"
    blocker.mkdir()
    (project.base / "in" / "sample" / "another.xml").write_bytes(b"<late/>")
    runner = Runner(project.config, as_of=AS_OF)
    try:
        report = runner.poll(project.config.partner("sample"))
    finally:
        runner.close()
        blocker.rmdir()
    assert report.error is None and len(report.taken) == 1
    assert (outbox / "status.json").read_bytes() == old
    assert project.one("SELECT COUNT(*) FROM files WHERE remote_name = 'another.xml'") == 1
    log = (project.base / "data" / "events.jsonl").read_text()
    assert '"partner.status_failed"' in log


# -- progress line, older ledgers ---------------------------------------------------------------


def test_progress_line_only_on_a_terminal(tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    big.write_bytes(b"x" * 4_000_000)
    master, slave = pty.openpty()
    tty = os.fdopen(slave, "w")
    try:
        with ReadProgress(big, "check big.xml", tty, interval=0.01), open(big, "rb") as fh:
            while fh.read(100_000):
                threading.Event().wait(0.005)
        drawn = os.read(master, 65536).decode()
    finally:
        tty.close()
        os.close(master)
    assert "check big.xml [" in drawn and "% " in drawn and "/4.0 MB" in drawn
    quiet = io.StringIO()
    with ReadProgress(big, "check", quiet):
        big.read_bytes()
    assert quiet.getvalue() == ""
    assert "50%" in render("x", 50, 100, 1.0, 1) and "pass 2" in render("x", 1, 9, 1.0, 2)


def test_an_older_ledger_is_upgraded_for_readers(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    con = sqlite3.connect(tmp_path / "data" / "ledger.sqlite")
    for script in MIGRATIONS[:-1]:
        if isinstance(script, str):  # a data step (Python) has nothing to do on no data
            con.executescript(script)
    con.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
    con.close()
    config = ProjectConfig(tmp_path).partner("a", inbox="in").write()
    assert queries.files(load_config(config), FileQuery()) == []
    con = sqlite3.connect(tmp_path / "data" / "ledger.sqlite")
    assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
