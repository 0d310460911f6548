"""Poison over SFTP against the real sshd (tests/sftp_server.py): a control character in a
re-sent file's name, and a partner whose known_hosts is a public key file. Either fails that
partner only; the local partner beside it is licensed in the same run."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ProjectConfig
from sftp_server import SshServer

from gateway.config import load_config
from gateway.inbox.onboarding import partner_self_test
from gateway.service.runner import run_once
from gateway.service.scheduler import serve

ROOT = Path(__file__).resolve().parents[1]
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOOD = (CASES_INBOX / "sample" / "acme-20261201-good.xml").read_bytes()


def project_with(base: Path, add_sftp: Callable[[ProjectConfig], ProjectConfig]) -> Path:
    """A local partner beside the SFTP partner that ``add_sftp`` adds."""
    (base / "in" / "local").mkdir(parents=True)
    config = ProjectConfig(base).set("gateway", poll_interval_seconds=60)
    add_sftp(config).partner("local", inbox="in/local", disposition="move", filer_code="SMP")
    return config.write()


def cli_run(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(cfg), "run",
                           "--once", "--as-of", "2026-12-01"], cwd=cfg.parent,
                          capture_output=True, text=True, timeout=120, check=False)


def statuses(base: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(base / "data" / "ledger.sqlite") as con:
        return {(p, n): s for p, n, s in con.execute(
            "SELECT partner, remote_name, status FROM files")}


def test_escape_in_a_resent_name_over_sftp(tmp_path: Path, sshd: SshServer) -> None:
    account = sshd.account("esc")
    cfg = project_with(tmp_path, lambda p: p.sftp_partner("esc", sshd, account))
    Path(account.inbox, "a.xml").write_bytes(b"")
    assert cli_run(cfg).returncode == 0
    Path(account.inbox, "b\x1b[31m.xml").write_bytes(b"")  # the same bytes: DUPLICATE
    (tmp_path / "in" / "local" / "good.xml").write_bytes(GOOD)
    result = cli_run(cfg)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    found = statuses(tmp_path)
    assert found[("esc", "b\x1b[31m.xml")] == "DUPLICATE"
    assert found[("local", "good.xml")] == "ACCEPTED"
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as con:
        (name,) = con.execute("SELECT ack_name FROM files WHERE remote_name = ?",
                              ("b\x1b[31m.xml",)).fetchone()
    ack = Path(account.acks, name).read_bytes()
    assert b"<FileName>b\\x1b[31m.xml</FileName>" in ack and b"\x1b" not in ack


def test_known_hosts_that_is_a_public_key_file_is_that_partners_failure(
        tmp_path: Path, sshd: SshServer) -> None:
    pub = sshd.host_key.with_name(sshd.host_key.name + ".pub")
    account = sshd.account("pub")
    cfg = project_with(tmp_path, lambda p: p.sftp_partner(
        "pub", sshd, account, known_hosts=pub, failure_alert_after=1))
    Path(account.inbox, "x.xml").write_bytes(GOOD)
    (tmp_path / "in" / "local" / "good.xml").write_bytes(GOOD)
    expected = (f"known_hosts file {pub} is not in known_hosts format (it looks like a "
                "public key file)")
    # partner test: a FAIL line that says how to fix it, no traceback
    ok, lines = partner_self_test(load_config(cfg).partner("pub"))
    assert not ok and expected in lines[-1]
    # run --once: exit 0, the local partner is polled, the failure counted and alerted
    result = cli_run(cfg)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert expected in result.stdout
    assert statuses(tmp_path) == {("local", "good.xml"): "ACCEPTED"}
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as con:
        failures, error = con.execute("SELECT failures, last_error FROM partner_state "
                                      "WHERE partner = 'pub'").fetchone()
        alerts = [json.loads(d)["error"] for (d,) in con.execute(
            "SELECT data FROM events WHERE kind = 'partner.failing' AND partner = 'pub'")]
    assert failures == 1 and expected in error and len(alerts) == 1 and expected in alerts[0]
    # serve: the partner's poll fails (counted), the service and the other partner go on
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(load_config(cfg), stop), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and thread.is_alive() and pub_failures(tmp_path) < 2:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(30)
    assert pub_failures(tmp_path) == 2
    assert os.listdir(account.inbox) == ["x.xml"]  # nothing taken from the broken partner


def pub_failures(base: Path) -> int:
    with sqlite3.connect(base / "data" / "ledger.sqlite") as con:
        return int(con.execute("SELECT failures FROM partner_state WHERE partner = 'pub'")
                   .fetchone()[0])


def test_a_poison_file_over_sftp_is_quarantined_and_acknowledged_there(
        tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_poison import QUARANTINE_AFTER, inject_ack_writer_error

    account = sshd.account("poisoned")
    cfg = project_with(tmp_path, lambda p: p.sftp_partner("poisoned", sshd, account))
    inject_ack_writer_error(monkeypatch)
    Path(account.inbox, "poison.xml").write_bytes(GOOD)
    for n in range(QUARANTINE_AFTER):
        (tmp_path / "in" / "local" / f"good{n}.xml").write_bytes(
            GOOD.replace(b"ACME-20261201-001", f"ACME-20261201-7{n}".encode())
            .replace(b'ref="PO-44', f'ref="Q{n}-44'.encode())
            .replace(b'ref="WH-0077"', f'ref="V{n}-0077"'.encode()))
        run_once(load_config(cfg))
        assert statuses(tmp_path)[("local", f"good{n}.xml")] == "ACCEPTED"  # the same run
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as con:
        alerts = con.execute("SELECT COUNT(*) FROM events WHERE kind = 'file.quarantined' "
                             "AND partner = 'poisoned'").fetchone()[0]
    assert alerts == 1
    ack = Path(account.acks, "poison.xml.ack.xml").read_text()
    assert 'code="F001"' in ack and "internal error of the gateway" in ack
    assert os.listdir(account.inbox) == ["poison.xml"]  # left where it was, not taken again
    run_once(load_config(cfg))
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as con:
        errors = con.execute("SELECT COUNT(*) FROM events WHERE kind = 'file.error'"
                             ).fetchone()[0]
    assert errors == QUARANTINE_AFTER
