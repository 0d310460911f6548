"""A small file stored ahead, at its own fetch (gateway/inbox/sftp_pipeline.py, issue 15),
against the real sshd: its last stats go out as soon as its copy is fsynced, before the
copy's rename, together with the next files' requests and the last file's close, in one
channel write; a file changed at that moment is still caught."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest
from sftp_server import SshServer
from test_sftp_pipeline import _listed_and_first_fetched, content, inbox_with

from gateway.errors import TransientError
from gateway.inbox import sftp_pipeline
from gateway.inbox.base import FileChanged, NotTaken, RemoteFile
from gateway.inbox.sftp import SftpInbox
from gateway.inbox.sftp_pipeline import DEPTH, Opening
from gateway.inbox.sftp_requests import Requests


def _files() -> dict[str, bytes]:
    return {f"{chr(97 + i)}.xml": content(i, 5000 + i) for i in range(DEPTH + 4)}


def _stored_ahead(tmp_path: Path, inbox: SftpInbox) -> tuple[list[RemoteFile], Opening]:
    """The listing, its first two files fetched, and the third one stored ahead."""
    listed = _listed_and_first_fetched(tmp_path, inbox)
    ahead, sftp = inbox._ahead, inbox._sftp
    assert ahead is not None and sftp is not None
    sftp.stat(inbox.source.remote_inbox)  # a round trip: the opens are answered
    for opening in ahead.pending.values():
        ahead.start(opening)
    sftp.stat(inbox.source.remote_inbox)  # and the stats and reads
    inbox.fetch(listed[1], tmp_path / "got" / listed[1].name)  # stores the next ones ahead
    opening = ahead.pending[listed[2].name]
    assert opening.stored is not None
    return listed, opening


def _grown(path: Path) -> None:
    mtime = path.stat().st_mtime
    with path.open("ab") as grow:
        grow.write(b"<more/>")
    os.utime(path, (mtime, mtime))  # only the size shows it


def _replaced(path: Path) -> None:
    new = path.with_name(".new")
    new.write_bytes(b"<another file/>" * 400)
    new.rename(path)


@pytest.mark.parametrize(("change", "error", "match"), [
    (_grown, FileChanged, r"5002 bytes listed, 5002 read, 5009 now"),
    (_replaced, NotTaken, "not the file its name shows now"),
])
def test_a_file_stored_ahead_that_changes_during_its_fetch_is_not_taken(
        tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch,
        change: Callable[[Path], None], error: type[Exception], match: str) -> None:
    """The file grows (its mtime put back) or is replaced once its fetch has begun, when its
    copy stored ahead is found fsynced, just before its last stats go out: caught as before
    they were moved ahead of the copy's rename; nothing is left, and the next file is taken."""
    files = _files()
    inbox = inbox_with(tmp_path, sshd, files)
    got = tmp_path / "got"
    try:
        listed, _ = _stored_ahead(tmp_path, inbox)
        source = Path(sshd.account("acme").inbox, listed[2].name)
        real_written = sftp_pipeline.ReadAhead.written

        def written(opening: Opening) -> bytes | bytearray:
            data = real_written(opening)
            change(source)
            return data

        monkeypatch.setattr(sftp_pipeline.ReadAhead, "written", staticmethod(written))
        with pytest.raises(error, match=match):
            inbox.fetch(listed[2], got / listed[2].name)
        monkeypatch.undo()
        assert not (got / listed[2].name).exists()
        assert inbox.fetch(listed[3], got / listed[3].name)[0] == len(files[listed[3].name])
    finally:
        inbox.close()
    assert not list(got.glob("*.ahead*"))
    assert sorted(p.name for p in got.iterdir()) == sorted(
        f.name for f in (listed[0], listed[1], listed[3]))


def test_a_file_stored_ahead_costs_one_channel_write(tmp_path: Path, sshd: SshServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Its fetch writes to the channel once: its last stats first, then the last file's close
    (held since that fetch) and the opens, stats and reads of the files read ahead. The
    close held is sent when the read-ahead is dropped, if no request follows."""
    files = _files()
    inbox = inbox_with(tmp_path, sshd, files)
    writes: list[bytes] = []
    try:
        listed, _ = _stored_ahead(tmp_path, inbox)
        ahead = inbox._ahead
        assert ahead is not None
        requests = ahead.requests
        assert requests._later  # the close of the file fetched last, held
        real_sendall = paramiko.Channel.sendall

        def sendall(self: paramiko.Channel, data: bytes) -> None:
            writes.append(bytes(data))
            real_sendall(self, data)

        monkeypatch.setattr(paramiko.Channel, "sendall", sendall)
        dest = tmp_path / "got" / listed[2].name
        assert inbox.fetch(listed[2], dest)[0] == len(files[listed[2].name])
        assert len(writes) == 1
        assert dest.read_bytes() == files[listed[2].name]
        assert requests._later  # this file's close, held in turn
        ahead.drop()
        assert not requests._later and len(writes) == 2
        assert inbox._sftp is not None
        inbox._sftp.stat(inbox.source.remote_inbox)  # every answer in: OpenSSH answers in order
        assert requests._sent == set() and requests._ignored == set()
    finally:
        inbox.close()


def test_a_connection_lost_before_the_last_stats_answer_leaves_nothing(
        tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection drops while a file stored ahead waits for its last stats, its copy
    already renamed into place: the fetch fails as a lost download (a later poll takes the
    file again), its copy and every other copy stored ahead are removed."""
    files = _files()
    inbox = inbox_with(tmp_path, sshd, files)
    got = tmp_path / "got"
    try:
        listed, _ = _stored_ahead(tmp_path, inbox)

        def dropped(self: Requests, num: int) -> paramiko.SFTPAttributes:
            raise paramiko.SSHException("Server connection dropped: (test)")

        monkeypatch.setattr(Requests, "attrs", dropped)
        with pytest.raises(TransientError, match="taken again at a later poll"):
            inbox.fetch(listed[2], got / listed[2].name)
        assert not (got / listed[2].name).exists()
        assert inbox._sftp is None  # the connection closed, what was stored ahead removed
    finally:
        inbox.close()
    assert sorted(p.name for p in got.iterdir()) == [listed[0].name, listed[1].name]
