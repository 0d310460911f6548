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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from gateway import ack, process, runner
from gateway.cli import main
from gateway.config import load_config
from gateway.errors import TransientError
from gateway.runner import run_once

ROOT = Path(__file__).resolve().parents[1]
GOOD = ROOT / "inbox" / "sample" / "acme-20261201-good.xml"
AS_OF = "2026-12-01"
QUARANTINE_AFTER = 3

FILER = """
[partners.{pid}.filer]
name = "ACME ALUMINUM IMPORTS LLC"
street = "100 HARBOR WAY"
city = "NEWARK"
state = "NJ"
postal_code = "07114"
contact_name = "JANE DOE"
phone = "+1 973 555 0100"
email = "licensing@acme-aluminum.example"
"""


def local_partner(pid: str, filer: str) -> str:
    return (f'\n[partners.{pid}]\nname = "Partner {pid}"\ninbox = "in/{pid}"\n'
            f'disposition = "move"\nfiler_code = "{filer}"\n' + FILER.format(pid=pid))


class Project:
    """Two local partners on tmp_path: ``a`` (the poison's sender) and ``b`` (good files)."""

    def __init__(self, base: Path, extra_partners: str = "") -> None:
        self.base = base
        self.cfg = base / "config.toml"
        for pid in ("a", "b"):
            (base / "in" / pid).mkdir(parents=True)
        self.cfg.write_text('[gateway]\ndata_dir = "data"\noutbox_dir = "outbox"\n'
                            'poll_interval_seconds = 60\n' + local_partner("a", "SMP")
                            + local_partner("b", "SMB") + extra_partners)
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
    ack_xml = (tmp_path / "outbox" / "a" / "b_.xml.ack.xml").read_bytes()
    assert b"<FileName>b\\x01.xml</FileName>" in ack_xml
    serve = p.cli("status")
    assert serve.returncode == 0
