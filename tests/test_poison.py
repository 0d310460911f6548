"""Poison files (issue 10 item 1): one partner's file that breaks taking, processing,
acknowledging or disposing fails only that file and that partner's poll, in ``run --once``,
in ``serve`` and in start-up recovery. After 3 failures in a row it is quarantined (failed/,
.error.txt, an ack where possible, one alert), shown to admins, and released by an admin."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from conftest import ProjectConfig

from gateway import storage
from gateway.cli import main
from gateway.config import load_config
from gateway.errors import TransientError
from gateway.inbox import local
from gateway.licensing import pipeline
from gateway.outputs.ack_xml import AckXmlWriter
from gateway.service import process
from gateway.service.runner import Runner, run_once

ROOT = Path(__file__).resolve().parents[1]
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOOD = CASES_INBOX / "sample" / "acme-20261201-good.xml"
AS_OF = "2026-12-01"
QUARANTINE_AFTER = 3



class Project:
    """Two local partners on tmp_path: ``a`` (the poison's sender) and ``b`` (good files).
    ``toml`` is its config: a test changes it and writes it again."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.toml = ProjectConfig(base)
        for pid, filer in (("a", "SMP"), ("b", "SMB")):
            self.toml.partner(pid, inbox=f"in/{pid}", filer_code=filer, filer=True)
            self.toml.inbox(pid)
        self.cfg = self.toml.write()
        self._mtime = 1_790_000_000

    def drop(self, partner: str, name: str, data: bytes) -> Path:
        """A file in the partner's inbox, older than any min-age, in arrival order."""
        path = self.base / "in" / partner / name
        path.write_bytes(data)
        self._mtime += 60
        os.utime(path, (self._mtime, self._mtime))
        return path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(self.cfg),
                               *args], cwd=self.base, capture_output=True, text=True,
                              timeout=120, check=False)

    def run(self) -> subprocess.CompletedProcess[str]:
        return self.cli("run", "--once", "--as-of", AS_OF)

    def rows(self, sql: str, *params: object) -> list[tuple]:
        with sqlite3.connect(self.base / "data" / "ledger.sqlite") as con:
            return con.execute(sql, params).fetchall()

    def status_of(self, partner: str, name: str) -> str | None:
        found = self.rows("SELECT status FROM files WHERE partner = ? AND remote_name = ? "
                          "ORDER BY file_id DESC LIMIT 1", partner, name)
        return found[0][0] if found else None

    def events(self, kind: str) -> list[dict]:
        return [{"partner": p, "file_id": f, **json.loads(d)} for p, f, d in self.rows(
            "SELECT partner, file_id, data FROM events WHERE kind = ? ORDER BY id", kind)]


def good_file(n: int) -> bytes:
    """The good sample with its own SubmissionId and refs (n distinguishes them)."""
    text = GOOD.read_text(encoding="utf-8")
    return (text.replace("ACME-20261201-001", f"ACME-20261201-9{n:02d}")
            .replace('ref="PO-44', f'ref="P{n}-44').replace('ref="WH-0077"', f'ref="W{n}-0077"')
            .encode("utf-8"))


# -- the reproduction, end to end through the command line -----------------------------------


def test_control_character_name_on_the_duplicate_path_stops_nobody(tmp_path: Path) -> None:
    """Issue 10: an empty ``a.xml``, then the same bytes as ``b\\x01.xml`` (DUPLICATE): the
    ack writer raised ``ValueError: All strings must be XML compatible``, every later run
    exited 1 and partner b's good file was never taken."""
    p = Project(tmp_path)
    p.drop("a", "a.xml", b"")
    assert p.run().returncode == 0
    p.drop("a", "b\x01.xml", b"")
    p.drop("b", "good.xml", good_file(1))
    for _ in range(2):  # and the next run too: nothing left half-done stops it
        result = p.run()
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    assert p.status_of("b", "good.xml") == "ACCEPTED"
    assert p.status_of("a", "b\x01.xml") == "DUPLICATE"
    # The cleaned name carries a hash of the exact name (distinct ack names, item 9).
    ack_name = storage.safe_name("b\x01.xml") + ".ack.xml"
    ack_xml = (tmp_path / "outbox" / "a" / ack_name).read_bytes()
    assert b"<FileName>b\\x01.xml</FileName>" in ack_xml
    serve = p.cli("status")
    assert serve.returncode == 0


# -- every kind of poison: partner a's file fails, partner b's file is licensed in the same run -


def _only_a(path_or_name: object) -> bool:
    """Partner a's poison file (by its name or path), nothing else."""
    return "poison" in Path(str(path_or_name)).name


def inject_ledger_error(mp: pytest.MonkeyPatch) -> None:
    """The ledger refuses the write that records the file's result ("disk full")."""
    real = process.FileProcessor._record

    def record(self, row, *args, **kwargs):  # type: ignore[no-untyped-def]
        if _only_a(row.remote_name):
            raise TransientError("The ledger is busy: database or disk is full")
        return real(self, row, *args, **kwargs)
    mp.setattr(process.FileProcessor, "_record", record)


def inject_ack_writer_error(mp: pytest.MonkeyPatch) -> None:
    """A bug in the ack writer (an exception no check foresaw)."""
    real = AckXmlWriter.finish

    def finish(self, summary):  # type: ignore[no-untyped-def]
        if _only_a(summary.file_name):
            raise RuntimeError("injected: the ack writer broke")
        return real(self, summary)
    mp.setattr(AckXmlWriter, "finish", finish)


def inject_memory_error(mp: pytest.MonkeyPatch) -> None:
    """Parsing runs out of memory."""
    real = pipeline.prepare

    def prepare(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if _only_a(path):
            raise MemoryError()
        return real(path, *args, **kwargs)
    mp.setattr(pipeline, "prepare", prepare)


def inject_dispose_error(mp: pytest.MonkeyPatch) -> None:
    """Disposing of the partner's original fails on the local disk (not the server)."""
    real = local.LocalInbox.dispose

    def dispose(self, name):  # type: ignore[no-untyped-def]
        if _only_a(name):
            raise PermissionError(13, "Permission denied", name)
        return real(self, name)
    mp.setattr(local.LocalInbox, "dispose", dispose)


@dataclass(frozen=True)
class Poison:
    name: str                      # partner a's file name
    inject: Callable[[pytest.MonkeyPatch], None] | None
    outcome: str                   # "QUARANTINED", or the status it gets at once
    first: bytes | None = None     # a file partner a sent before (the DUPLICATE path)


POISONS = {
    "control character name, DUPLICATE": Poison("poison\x01.xml", None, "DUPLICATE",
                                                first=b""),
    "ledger error while recording": Poison("poison.xml", inject_ledger_error, "QUARANTINED"),
    "exception from the ack writer": Poison("poison.xml", inject_ack_writer_error,
                                            "QUARANTINED"),
    "MemoryError in parsing": Poison("poison.xml", inject_memory_error, "QUARANTINED"),
    "disk error while disposing": Poison("poison.xml", inject_dispose_error, "QUARANTINED"),
}


@pytest.mark.parametrize("kind", POISONS)
def test_poison_fails_only_its_file_and_is_quarantined_after_three(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    poison = POISONS[kind]
    p = Project(tmp_path)
    config = load_config(p.cfg)
    as_of = date.fromisoformat(AS_OF)
    if poison.first is not None:
        p.drop("a", "first.xml", poison.first)
        run_once(config, as_of)
    if poison.inject is not None:
        poison.inject(monkeypatch)
    p.drop("a", poison.name, poison.first if poison.first is not None else good_file(1))
    p.drop("b", "good.xml", good_file(2))
    reports = {r.partner: r for r in run_once(config, as_of)}
    assert p.status_of("b", "good.xml") == "ACCEPTED"  # the same run
    if poison.outcome != "QUARANTINED":
        assert p.status_of("a", poison.name) == poison.outcome
        assert reports["a"].error is None and p.events("file.quarantined") == []
        return
    assert reports["a"].error and "failed" in reports["a"].error
    file_id = p.rows("SELECT file_id FROM files WHERE partner = 'a'")[0][0]
    if p.rows("SELECT state FROM files WHERE file_id = ?", file_id)[0][0] == "RECEIVED":
        # Rolled back: no output with license numbers that were never issued stays behind.
        assert list((tmp_path / "outbox" / "ace").glob(f"*-{file_id}.*")) == []
        assert not (tmp_path / "outbox" / "a" / f"{poison.name}.ack.xml").exists()
    for run in (2, 3):
        p.drop("b", f"good{run}.xml", good_file(2 + run))
        run_once(config, as_of)
        assert p.status_of("b", f"good{run}.xml") == "ACCEPTED"
    alerts = p.events("file.quarantined")
    assert [(a["partner"], a["file_id"], a["failures"]) for a in alerts] == [("a", file_id, 3)]
    assert [e["failures"] for e in p.events("file.error")] == [1, 2, 3]
    # Never retried first again, and it blocks none of the partner's newer files.
    p.drop("a", "newer.xml", good_file(9))
    run_once(config, as_of)
    assert p.status_of("a", "newer.xml") == "ACCEPTED"
    assert len(p.events("file.error")) == 3 and len(p.events("file.quarantined")) == 1
    error_txt = tmp_path / "data" / "failed" / "a" / f"{file_id}__{poison.name}.error.txt"
    assert "quarantined after 3 failures" in error_txt.read_text()
    state = p.rows("SELECT state FROM files WHERE file_id = ?", file_id)[0][0]
    if state == "RECEIVED":  # nothing was acknowledged yet: the gateway's own fault, said so
        ack_xml = (tmp_path / "outbox" / "a" / f"{poison.name}.ack.xml").read_text()
        assert 'code="F001"' in ack_xml and "internal error of the gateway" in ack_xml
        assert (tmp_path / "data" / "failed" / "a" / f"{file_id}__{poison.name}").exists()
    # Admins see it ...
    assert main(["--config", str(p.cfg), "status", "--json"]) == 0
    status = {r["partner"]: r for r in json.loads(capsys.readouterr().out)}
    assert status["a"]["quarantined"] == 1 and status["b"]["quarantined"] == 0
    assert main(["--config", str(p.cfg), "status"]) == 0
    assert "quarantined" in capsys.readouterr().out
    assert main(["--config", str(p.cfg), "files", "--status", "QUARANTINED", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(f["file_id"], f["status"]) for f in listed] == [(file_id, "QUARANTINED")]
    assert main(["--config", str(p.cfg), "show", file_id]) == 0
    assert "QUARANTINED" in capsys.readouterr().out
    # ... and release it after the fix: it is finished at the next poll.
    monkeypatch.undo()
    assert main(["--config", str(p.cfg), "release", file_id, "--reason", "bug fixed"]) == 0
    released = p.events("admin.release")
    assert [(e["file_id"], e["reason"]) for e in released] == [(file_id, "bug fixed")]
    assert released[0]["actor"].startswith("cli:")
    run_once(config, as_of)
    assert p.status_of("a", poison.name) == "ACCEPTED"
    assert p.rows("SELECT state FROM files WHERE file_id = ?", file_id)[0][0] == "DONE"
    assert p.rows("SELECT COUNT(*) FROM file_failures")[0][0] == 0


@pytest.mark.parametrize(("args", "why"), [
    (["release", "20991231-000001", "--reason", "x"], "no file"),
    (["release", "FIRST", "--reason", "x"], "not quarantined"),
])
def test_release_refuses_what_is_not_quarantined(
        args: list[str], why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = Project(tmp_path)
    p.drop("a", "first.xml", good_file(1))
    run_once(load_config(p.cfg), date.fromisoformat(AS_OF))
    first = p.rows("SELECT file_id FROM files")[0][0]
    args = [first if a == "FIRST" else a for a in args]
    assert main(["--config", str(p.cfg), *args]) == 1
    assert why in capsys.readouterr().err


def test_a_poison_file_left_unfinished_never_stops_recovery_or_serve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up recovery meets partner a's failing file first: serve starts all the same and
    partner b's file is licensed; the failure is counted like any other."""
    from gateway.service.scheduler import serve

    p = Project(tmp_path)
    config = load_config(p.cfg)
    inject_ack_writer_error(monkeypatch)
    p.drop("a", "poison.xml", good_file(1))
    run_once(config)  # the poison is left RECEIVED: recovery meets it first at the next start
    assert p.rows("SELECT state FROM files")[0][0] == "RECEIVED"
    runner = Runner(config)
    try:
        runner.recover()  # raised before: every start stopped here
    finally:
        runner.close()
    p.drop("b", "good.xml", good_file(2))
    stop = threading.Event()
    errors: list[BaseException] = []

    def service() -> None:
        try:
            serve(config, stop)
        except BaseException as err:
            errors.append(err)
            raise

    thread = threading.Thread(target=service, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while p.status_of("b", "good.xml") != "ACCEPTED" and time.monotonic() < deadline \
            and thread.is_alive():
        time.sleep(0.1)
    stop.set()
    thread.join(30)
    assert errors == [] and p.status_of("b", "good.xml") == "ACCEPTED"
    assert len(p.events("file.error")) >= 3
    assert [e["file_id"] for e in p.events("file.quarantined")] == [
        p.rows("SELECT file_id FROM files WHERE partner = 'a'")[0][0]]


def test_the_web_page_shows_quarantined_files(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.admin.web.app import create_app
    from gateway.admin.web.auth import guard_from_env

    p = Project(tmp_path)
    config = load_config(p.cfg)
    inject_ack_writer_error(monkeypatch)
    p.drop("a", "poison.xml", good_file(1))
    for _ in range(QUARANTINE_AFTER):
        run_once(config, date.fromisoformat(AS_OF))
    file_id = p.rows("SELECT file_id FROM files WHERE partner = 'a'")[0][0]
    token = "poison-test-token-" + "x1y2z3" * 4
    app = create_app(config, guard_from_env("T", {"T": token}))
    client = app.test_client()

    def get(path: str) -> str:
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, path
        return response.get_data(as_text=True)

    dashboard = get("/")
    assert 'id="quarantined"' in dashboard and "1 file(s) quarantined" in dashboard
    assert "health-quarantined" in dashboard
    rows = get("/files?status=QUARANTINED").split("</select>")[-1]  # after the filter form
    assert file_id in rows and "QUARANTINED" in rows
    assert file_id not in get("/files?status=ACCEPTED").split("</select>")[-1]
    assert "QUARANTINED" in get(f"/files/{file_id}")
