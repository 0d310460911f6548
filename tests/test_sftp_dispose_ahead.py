"""A file's dispose checks sent with its ack's delivery (``SftpInbox.dispose_next``, issue 15):
the dispose waits for no stats of its own, and stats sent for a delivery that then failed are
never used by a later dispose (it asks afresh)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import paramiko
import pytest
from sftp_server import SshServer
from test_sftp import sftp_project

from gateway.config import load_config
from gateway.errors import TransientError
from gateway.inbox.sftp import SftpInbox
from gateway.inbox.sftp_requests import DisposeStats
from gateway.ledger.store import FileRow

DATA = b"<x/>\n" * 40


def taken_row(name: str, path: Path) -> FileRow:
    st = path.stat()
    fields: dict[str, Any] = {f.name: None for f in dataclasses.fields(FileRow)}
    fields.update(file_id="20261201-000001", partner="acme", remote_name=name,
                  size=st.st_size, mtime=float(int(st.st_mtime)), sha256=hashlib.sha256(
                      path.read_bytes()).hexdigest(), local_name=name, received_at="",
                  state="ARCHIVED", applications=0, licensed=0, not_required=0, rejected=0,
                  new_licenses=0, cancelled=0)
    return FileRow(**fields)


@pytest.fixture
def setup(tmp_path: Path, sshd: SshServer) -> tuple[SftpInbox, Path, Any]:
    acme = sshd.account("acme")
    Path(acme.inbox, "a.xml").write_bytes(DATA)
    cfg = sftp_project(tmp_path).sftp_partner("acme", sshd, acme).write()
    ack = tmp_path / "a.xml.ack.xml"
    ack.write_bytes(b"<ack/>\n")
    return SftpInbox(load_config(cfg).partner("acme")), ack, acme


def test_the_dispose_uses_the_stats_sent_with_the_delivery(
        setup: tuple[SftpInbox, Path, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, ack, acme = setup
    inbox.list()
    row = taken_row("a.xml", Path(acme.inbox, "a.xml"))
    found: list[bool] = []
    real = DisposeStats.answers

    def answers(self: DisposeStats, *args: Any) -> Any:
        found.append(self._sent is not None and self._sent[:2] == args)
        return real(self, *args)
    monkeypatch.setattr(DisposeStats, "answers", answers)
    try:
        inbox.dispose_next(row)
        inbox.deliver(ack, "a.xml.ack.xml")
        assert inbox.dispose(row) is None
        assert found == [True]  # sent with the delivery: no round trip of its own
        assert os.listdir(acme.processed) == ["a.xml"] and os.listdir(acme.inbox) == []
        assert Path(acme.acks, "a.xml.ack.xml").read_bytes() == ack.read_bytes()
        assert inbox._ahead is not None and inbox._ahead.requests.held() == 0
    finally:
        inbox.close()


def test_stats_of_a_failed_delivery_are_never_used(
        setup: tuple[SftpInbox, Path, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The ack's rename is refused after the stats went out; then a.xml is replaced on the
    server by another file: the next dispose of a.xml sees the new file (fresh stats) and
    leaves it where it is."""
    inbox, ack, acme = setup
    inbox.list()
    path = Path(acme.inbox, "a.xml")
    row = taken_row("a.xml", path)
    real = SftpInbox._rename

    def refused(sftp: paramiko.SFTPClient, source: str, target: str) -> None:
        raise OSError("Failure")
    monkeypatch.setattr(SftpInbox, "_rename", staticmethod(refused))
    try:
        inbox.dispose_next(row)
        with pytest.raises(TransientError, match=r"rename a\.xml\.ack\.xml"):
            inbox.deliver(ack, "a.xml.ack.xml")
        assert inbox._stats is not None and inbox._stats._sent is None
        assert inbox._next_dispose is None
        monkeypatch.setattr(SftpInbox, "_rename", staticmethod(real))
        path.write_bytes(DATA + b"<!-- another file -->\n")
        inbox.deliver(ack, "a.xml.ack.xml")
        left = inbox.dispose(row)
        assert left is not None and "not the file that was taken" in left
        assert os.listdir(acme.inbox) == ["a.xml"] and os.listdir(acme.processed) == []
        assert inbox._ahead is not None and inbox._ahead.requests.held() == 0
    finally:
        inbox.close()
