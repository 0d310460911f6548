"""Over SFTP (the real sshd of tests/sftp_server.py), a server's refusal about ONE file is that
file's failure (issue 10, poison files): its ack cannot be renamed into place (a folder holds
its name, the upload vanished), its move to the processed folder is refused. The file is
counted and quarantined after 3 failures in a row; the partner's poll is not failing (no
back-off, no partner alert) and its later files are taken. A folder of the profile that is
missing or refuses every file stays the partner's poll failure (tests/test_sftp_faults.py)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
from sftp_server import SftpAccount, SshServer
from test_sftp import GOOD, sftp_project, with_id

from gateway.config import load_config
from gateway.inbox.sftp import SftpInbox
from gateway.service.runner import PollReport, Runner

QUARANTINE_AFTER = 3


def folder_at_the_ack_name(account: SftpAccount, mp: pytest.MonkeyPatch) -> Iterator[None]:
    """A careless partner (or another tenant) made a folder where a.xml's ack goes."""
    Path(account.acks, "a.xml.ack.xml").mkdir()
    yield


def immutable_input(account: SftpAccount, mp: pytest.MonkeyPatch) -> Iterator[None]:
    """a.xml itself cannot be moved (EPERM, even for root); the folders take other files."""
    path = Path(account.inbox, "a.xml")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def ack_upload_vanishes(account: SftpAccount, mp: pytest.MonkeyPatch) -> Iterator[None]:
    """Something on the server removes a.xml's uploaded ack before it is renamed into place:
    the server answers "no such file"."""
    real = SftpInbox._rename

    def rename(sftp: paramiko.SFTPClient, source: str, target: str) -> None:
        if source.endswith("/.a.xml.ack.xml.tmp"):
            sftp.remove(source)
        real(sftp, source, target)
    mp.setattr(SftpInbox, "_rename", staticmethod(rename))
    yield


@dataclass(frozen=True)
class Refusal:
    make: Callable[[SftpAccount, pytest.MonkeyPatch], Iterator[None]]
    state: str  # where a.xml's row stops: its licenses are committed either way
    words: str  # in the file's failure


REFUSALS = {
    "a folder at its ack name": Refusal(folder_at_the_ack_name, "ARCHIVED", "rename a.xml"),
    "its move refused (permission denied)": Refusal(immutable_input, "ARCHIVED",
                                                    "move a.xml"),
    "its ack upload gone before the rename (no such file)": Refusal(
        ack_upload_vanishes, "ARCHIVED", "rename a.xml"),
}


def query(base: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(base / "data" / "ledger.sqlite")) as con:
        return con.execute(sql, params).fetchall()


def kinds(base: Path, kind: str) -> int:
    return int(query(base, "SELECT COUNT(*) FROM events WHERE kind = ?", kind)[0][0])


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refused_file_is_counted_and_quarantined_and_later_files_flow(
        tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch, refusal: str) -> None:
    how = REFUSALS[refusal]
    acme = sshd.account("acme")
    config = load_config(sftp_project(tmp_path).sftp_partner("acme", sshd, acme).write())
    old = time.time() - 3600
    for n, name in enumerate(("a.xml", "later.xml")):
        Path(acme.inbox, name).write_bytes(with_id(GOOD, f"REF-{n}", f"R{n}"))
        os.utime(Path(acme.inbox, name), (old + n, old + n))
    runner = Runner(config)  # one service: each poll is one attempt of a.xml
    with contextlib.closing(runner), contextlib.contextmanager(how.make)(acme, monkeypatch):
        reports: list[PollReport] = []
        for n in range(1, QUARANTINE_AFTER + 1):
            [report] = runner.run_once()
            reports.append(report)
            failures = query(tmp_path, "SELECT failures FROM file_failures")
            assert failures == [(n,)], report.error
            assert report.file_failed and report.error is not None
            assert "a.xml" in report.error and how.words in report.error, report.error
            # Not the partner's failure: no back-off, no partner alert.
            assert query(tmp_path, "SELECT failures, next_attempt_at FROM partner_state "
                                   "WHERE partner = 'acme'") == [(0, 0)]
        assert "quarantined after 3 failures" in (reports[-1].error or "")
        # The poll that quarantined it went on: the later file is taken, licensed, delivered.
        rows = dict(query(tmp_path, "SELECT remote_name, state FROM files"))
        assert rows == {"a.xml": how.state, "later.xml": "DONE"}
        assert "later.xml.ack.xml" in os.listdir(acme.acks)
        [report] = runner.run_once()  # and it is never tried again
    assert report.error is None
    assert kinds(tmp_path, "file.quarantined") == 1
    assert kinds(tmp_path, "file.error") == QUARANTINE_AFTER
    assert kinds(tmp_path, "partner.failing") == 0 and kinds(tmp_path, "partner.error") == 0
    assert query(tmp_path, "SELECT COUNT(*) FROM licenses") == [(6,)]  # 3 each, once
