"""``aim-gateway serve`` reloads config.toml on SIGHUP without dropping work (issue 14 items 13
and 9a), as a real process: a partner added is polled and said "not yet served" until then,
a partner removed is no longer polled while its file in hand finishes, and a configuration
that does not load is refused with the old one kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ProjectConfig
from conftest import wait_until as wait_for
from sftp_server import free_port

from gateway.cli import main

CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOOD = CASES_INBOX / "sample" / "acme-20261201-good.xml"
PARTIAL = CASES_INBOX / "sample" / "acme-20261201-partial.xml"


class Serve:
    """A real ``serve`` process on a project in ``base``, its output in ``serve.log``."""

    def __init__(self, base: Path, env: dict[str, str] | None = None) -> None:
        self.base = base
        self.log = base / "serve.log"
        self._out = open(self.log, "wb")  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config",
             str(base / "config.toml")], stdout=self._out, stderr=self._out,
            env={**os.environ, **(env or {})})

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self, kind: str) -> list[dict[str, Any]]:
        path = self.base / "data" / "events.jsonl"
        if not path.exists():
            return []
        return [e for e in map(json.loads, path.read_text().splitlines()) if e["event"] == kind]

    def hup_and_wait(self, kind: str) -> dict[str, Any]:
        """SIGHUP, then the reload's event (``service.reload`` or ``service.reload_refused``)."""
        seen = len(self.events(kind))
        self.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: len(self.events(kind)) > seen), self.output()
        return self.events(kind)[-1]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._out.close()
        return code


def project(base: Path, *partners: str) -> ProjectConfig:
    toml = ProjectConfig(base).set("gateway", poll_interval_seconds=1)
    for pid in partners:
        (base / pid).mkdir(exist_ok=True)
        toml.partner(pid, inbox=pid)
    return toml


def status(base: Path) -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "--json", "--config",
                          str(base / "config.toml")], capture_output=True, text=True,
                         check=True).stdout
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def ack(base: Path, pid: str, name: str) -> Path:
    return base / "outbox" / pid / f"{name}.ack.xml"


def states(base: Path) -> list[tuple[str, str]]:
    ledger = base / "data" / "ledger.sqlite"
    if not ledger.exists():  # serve is starting
        return []
    with sqlite3.connect(ledger) as db:
        try:
            return db.execute("SELECT remote_name, state FROM files ORDER BY file_id").fetchall()
        except sqlite3.OperationalError:  # created, not yet migrated: serve is starting
            return []


@pytest.fixture
def go(tmp_path: Path) -> Iterator[Path]:
    """The file that lets each paused file go on (AIMGW_PAUSE_AT=after_receipt:@go)."""
    yield tmp_path / "go"


def test_sighup_adds_and_removes_partners_and_the_file_in_hand_finishes(
        tmp_path: Path, go: Path) -> None:
    project(tmp_path, "acme").write()
    serve = Serve(tmp_path, {"AIMGW_PAUSE_AT": f"after_receipt:@{go}"})
    try:
        shutil.copy(GOOD, tmp_path / "acme" / "a.xml")
        # a.xml is in hand (received, paused before it is processed) ...
        assert wait_for(lambda: states(tmp_path) == [("a.xml", "RECEIVED")]), serve.output()
        # ... when acme is removed and bolt added, and the service told.
        project(tmp_path, "bolt").write()
        assert {r["partner"]: r["state"] for r in status(tmp_path)} == {
            "bolt": "not yet served"}
        assert "older configuration" in status(tmp_path)[0]["service_note"]
        reload = serve.hup_and_wait("service.reload")
        assert (reload["added"], reload["removed"]) == (["bolt"], ["acme"])
        shutil.copy(GOOD, tmp_path / "bolt" / "b.xml")
        go.touch()
        # The file in hand finished; the new partner's file is processed.
        assert wait_for(ack(tmp_path, "acme", "a.xml").exists), serve.output()
        assert wait_for(ack(tmp_path, "bolt", "b.xml").exists), serve.output()
        # The removed partner is no longer polled.
        shutil.copy(PARTIAL, tmp_path / "acme" / "c.xml")
        assert wait_for(lambda: status(tmp_path)[0]["state"] == "ok"), status(tmp_path)
        [row] = status(tmp_path)
        assert (row["partner"], row["service_note"]) == ("bolt", None)
    finally:
        go.touch()
        code = serve.stop()
    assert code == 0, serve.output()
    assert [(n, s) for n, s in states(tmp_path)] == [("a.xml", "DONE"), ("b.xml", "DONE")]
    assert (tmp_path / "acme" / "c.xml").exists()  # never taken


@pytest.mark.parametrize("breakage", ["not-toml", "unknown-key", "new-data-dir"])
def test_a_bad_configuration_is_refused_and_the_old_one_kept(tmp_path: Path,
                                                             breakage: str) -> None:
    cfg = project(tmp_path, "acme").write()
    good_text = cfg.read_text()
    serve = Serve(tmp_path)
    try:
        shutil.copy(GOOD, tmp_path / "acme" / "a.xml")
        assert wait_for(ack(tmp_path, "acme", "a.xml").exists), serve.output()
        if breakage == "not-toml":
            cfg.write_text(good_text + "\n[partners.acme\n")
        elif breakage == "unknown-key":
            project(tmp_path, "acme").set("gateway", poll_intervall_seconds=1).write()
        else:
            project(tmp_path, "acme").set("gateway", data_dir="elsewhere").write()
        refused = serve.hup_and_wait("service.reload_refused")
        assert refused["config"] == str(cfg)
        assert "reload refused, still running with the configuration loaded before" in \
            serve.output()
        if breakage == "new-data-dir":
            assert "[gateway] data_dir changed" in refused["error"] and "restart" in \
                refused["error"]
        elif breakage == "unknown-key":
            assert "poll_intervall_seconds" in refused["error"]
        # Still polling, with the old configuration.
        shutil.copy(PARTIAL, tmp_path / "acme" / "b.xml")
        assert wait_for(ack(tmp_path, "acme", "b.xml").exists), serve.output()
        assert serve.proc.poll() is None
    finally:
        code = serve.stop()
    assert code == 0, serve.output()
    assert serve.events("service.reload") == []


def test_a_changed_schedule_is_rebuilt_and_an_unchanged_one_kept(tmp_path: Path) -> None:
    project(tmp_path, "acme", "bolt").write()
    serve = Serve(tmp_path)
    try:
        assert wait_for(lambda: len(serve.events("service.start")) == 1), serve.output()
        toml = project(tmp_path, "acme", "bolt")
        toml.update("acme", schedule="*/5 * * * *").write()
        reload = serve.hup_and_wait("service.reload")
        assert (reload["added"], reload["removed"], reload["rescheduled"]) == ([], [], ["acme"])
        reload = serve.hup_and_wait("service.reload")  # nothing changed: no job rebuilt
        assert (reload["added"], reload["removed"], reload["rescheduled"]) == ([], [], [])
        # bolt's job was kept and goes on polling every second.
        shutil.copy(GOOD, tmp_path / "bolt" / "b.xml")
        assert wait_for(ack(tmp_path, "bolt", "b.xml").exists), serve.output()
    finally:
        code = serve.stop()
    assert code == 0, serve.output()


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:  # not listening yet
        return 0, ""


WEB_TOKEN = "reload-test-token-4f8a1c2e9b7d6a5c3e1f"


def test_sighup_reaches_the_metrics_and_the_admin_page_inside_serve(tmp_path: Path) -> None:
    metrics, web = free_port(), free_port()

    def toml(*partners: str) -> ProjectConfig:
        return (project(tmp_path, *partners).set("metrics", port=metrics)
                .set("web", port=web, in_serve=True))

    toml("acme").write()
    serve = Serve(tmp_path, {"AIMGW_WEB_TOKEN": WEB_TOKEN})
    scrape = f"http://127.0.0.1:{metrics}/metrics"
    try:
        assert wait_for(lambda: 'partner="acme"' in _get(scrape)[1]), serve.output()
        toml("acme", "extra").write()
        serve.hup_and_wait("service.reload")
        # The new partner is counted and judged, shown and can be acted on, at once.
        assert 'aimgw_partner_state{partner="extra"' in _get(scrape)[1]
        code, page = _get(f"http://127.0.0.1:{web}/", WEB_TOKEN)
        assert code == 200 and 'data-partner="extra"' in page
        assert _get(f"http://127.0.0.1:{web}/partners/extra", WEB_TOKEN)[0] == 200
        # A port of the servers beside serve needs a restart: refused, the old one kept.
        toml("acme", "extra").set("metrics", port=free_port()).write()
        refused = serve.hup_and_wait("service.reload_refused")
        assert "[metrics] port changed" in refused["error"]
        assert "start the gateway again" not in refused["error"]  # it runs on
        assert _get(scrape)[0] == 200
    finally:
        code = serve.stop()
    assert code == 0, serve.output()


def test_sighup_reloads_the_web_command_and_keeps_it_on_a_bad_file(tmp_path: Path) -> None:
    port = free_port()
    cfg = project(tmp_path, "acme").set("web", port=port).write()
    assert main(["--config", str(cfg), "run", "--once"]) == 0  # a ledger to show
    log = tmp_path / "web.log"
    with open(log, "wb") as out:
        web = subprocess.Popen([sys.executable, "-m", "gateway.cli", "web", "--config",
                                str(cfg)], stdout=out, stderr=out,
                               env={**os.environ, "AIMGW_WEB_TOKEN": WEB_TOKEN})
    url = f"http://127.0.0.1:{port}/"
    try:
        assert wait_for(lambda: _get(url, WEB_TOKEN)[0] == 200), log.read_text()
        project(tmp_path, "acme", "extra").set("web", port=port).write()
        web.send_signal(signal.SIGHUP)
        assert wait_for(lambda: 'data-partner="extra"' in _get(url, WEB_TOKEN)[1]), \
            log.read_text()
        cfg.write_text(cfg.read_text() + "\n[partners.broken\n")
        web.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload of" in log.read_text()), log.read_text()
        assert "refused" in log.read_text() and web.poll() is None
        assert "start the gateway again" not in log.read_text()  # it serves on
        assert 'data-partner="extra"' in _get(url, WEB_TOKEN)[1]
    finally:
        web.send_signal(signal.SIGTERM)
        code = web.wait(timeout=30)
    assert code == 0, log.read_text()


def test_signals_are_handled_while_a_file_holds_the_ledger(tmp_path: Path, go: Path) -> None:
    """On SQLite a file's pass holds the ledger's one write transaction from its first decision
    to its commit. The service's own row (reloads, heartbeats) must not be written from the
    main loop, which runs the signal handlers: waiting there for the pass, a SIGHUP or a
    SIGTERM would wait for the file in hand (up to the ledger's busy timeout, 300 s)."""
    project(tmp_path, "acme").write()
    serve = Serve(tmp_path, {"AIMGW_PAUSE_AT": f"after_outputs:@{go}"})
    try:
        shutil.copy(GOOD, tmp_path / "acme" / "a.xml")
        # a.xml is paused after its outputs, before its commit: its transaction is open.
        assert wait_for(lambda: bool(list((tmp_path / "outbox").rglob("*.ack.xml")))), \
            serve.output()
        project(tmp_path, "acme", "bolt").write()
        reload = serve.hup_and_wait("service.reload")  # not after the file's commit
        assert reload["added"] == ["bolt"]
        assert states(tmp_path) == [("a.xml", "RECEIVED")]  # still in hand, uncommitted
        serve.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: "finishing the file in hand" in serve.output()), serve.output()
        assert serve.proc.poll() is None  # the file in hand is not dropped
        go.touch()
        assert serve.proc.wait(timeout=60) == 0, serve.output()
    finally:
        go.touch()
        serve.stop()
    assert states(tmp_path) == [("a.xml", "DONE")]
    # The row the reload wrote once the ledger was free: the new configuration, both partners.
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM services").fetchone() == (0,)  # stopped
