"""Small files fetched with their requests in flight and read ahead (gateway/inbox/sftp_pipeline.py,
issue 15), against the real sshd: the same bytes and the same checks as a plain download, for a
file changed, removed or swapped for a link after it was read ahead."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import paramiko
import pytest
from paramiko.sftp import CMD_DATA, CMD_READ
from sftp_server import SshServer
from test_sftp import sftp_project

from gateway.config import load_config
from gateway.errors import TransientError
from gateway.inbox import sftp_pipeline, sftp_requests
from gateway.inbox.base import FileChanged, NotTaken, RemoteFile
from gateway.inbox.sftp import SftpInbox
from gateway.inbox.sftp_pipeline import DEPTH, SMALL
from gateway.inbox.sftp_requests import READ_SIZE, Requests


def data_message(data: bytes) -> paramiko.Message:
    """A read's answer as it comes off the wire (what a fake server's ``_answer`` returns)."""
    message = paramiko.Message()
    message.add_string(data)
    message.rewind()
    return message


def inbox_with(tmp_path: Path, sshd: SshServer, files: dict[str, bytes]) -> SftpInbox:
    acme = sshd.account("acme")
    for name, data in files.items():
        Path(acme.inbox, name).write_bytes(data)
    cfg = sftp_project(tmp_path).sftp_partner("acme", sshd, acme).write()
    return SftpInbox(load_config(cfg).partner("acme"))


def content(n: int, size: int) -> bytes:
    return (f"<file {n}>".encode() * (size // 8 + 1))[:size]


# Sizes around each boundary: empty, one read, several reads, the largest read ahead, and
# past it (prefetch), so both download paths are compared with the source.
SIZES = [0, 1, READ_SIZE - 1, READ_SIZE, READ_SIZE + 1, 3 * READ_SIZE + 7, SMALL - 1, SMALL,
         SMALL + 1]


def test_every_file_arrives_whole_whatever_its_size(tmp_path: Path, sshd: SshServer) -> None:
    files = {f"f{i:03d}.xml": content(i, size) for i, size in
             enumerate(SIZES * 3)}  # more files than DEPTH: read ahead in several rounds
    assert len(files) > 2 * DEPTH
    inbox = inbox_with(tmp_path, sshd, files)
    try:
        listed = inbox.list()
        assert sorted(f.name for f in listed) == sorted(files)
        for remote in listed:
            dest = tmp_path / "got" / remote.name
            size, sha = inbox.fetch(remote, dest)
            data = files[remote.name]
            assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest())
            assert dest.read_bytes() == data
    finally:
        inbox.close()


def _listed_and_first_fetched(tmp_path: Path, inbox: SftpInbox) -> list[RemoteFile]:
    listed = sorted(inbox.list(), key=lambda f: f.name)
    inbox.fetch(listed[0], tmp_path / "got" / listed[0].name)  # reads the next ones ahead
    assert inbox._ahead is not None and listed[1].name in inbox._ahead.pending
    return listed


def _files(n: int = 4) -> dict[str, bytes]:
    return {f"{chr(97 + i)}.xml": content(i, 1000) for i in range(n)}


def test_a_file_changed_after_it_was_read_ahead_is_not_taken(tmp_path: Path,
                                                              sshd: SshServer) -> None:
    inbox = inbox_with(tmp_path, sshd, _files())
    try:
        listed = _listed_and_first_fetched(tmp_path, inbox)
        path = Path(sshd.account("acme").inbox, listed[1].name)
        path.write_bytes(b"rewritten, longer than before " * 50)
        os.utime(path, (listed[1].mtime + 5, listed[1].mtime + 5))
        dest = tmp_path / "got" / listed[1].name
        with pytest.raises(FileChanged):
            inbox.fetch(listed[1], dest)
        assert not dest.exists()
        dest = tmp_path / "got" / listed[2].name  # the others go on
        assert inbox.fetch(listed[2], dest)[0] == 1000
    finally:
        inbox.close()


def test_a_file_removed_after_it_was_read_ahead_is_not_taken(tmp_path: Path,
                                                              sshd: SshServer) -> None:
    inbox = inbox_with(tmp_path, sshd, _files())
    try:
        listed = _listed_and_first_fetched(tmp_path, inbox)
        Path(sshd.account("acme").inbox, listed[1].name).unlink()
        dest = tmp_path / "got" / listed[1].name
        with pytest.raises(TransientError, match=r"disappeared|changed"):
            inbox.fetch(listed[1], dest)
        assert not dest.exists()
        assert inbox.fetch(listed[2], tmp_path / "got" / listed[2].name)[0] == 1000
    finally:
        inbox.close()


def test_a_later_file_that_cannot_be_opened_fails_only_itself(tmp_path: Path,
                                                             sshd: SshServer) -> None:
    """The second file goes away after the listing: its open, read ahead during the first
    file's fetch, is refused; the first file still arrives and the second fails alone."""
    inbox = inbox_with(tmp_path, sshd, _files())
    try:
        listed = sorted(inbox.list(), key=lambda f: f.name)
        Path(sshd.account("acme").inbox, listed[1].name).unlink()
        assert inbox.fetch(listed[0], tmp_path / "got" / listed[0].name)[0] == 1000
        with pytest.raises(TransientError, match="disappeared"):
            inbox.fetch(listed[1], tmp_path / "got" / listed[1].name)
        assert inbox.fetch(listed[2], tmp_path / "got" / listed[2].name)[0] == 1000
    finally:
        inbox.close()


def test_a_link_swapped_in_after_the_read_ahead_is_not_taken(tmp_path: Path,
                                                             sshd: SshServer) -> None:
    """The name becomes a link to another partner's file of the same size after the file was
    opened ahead: the name's stat at fetch time shows it; nothing is written."""
    bolt = sshd.account("bolt")
    secret = Path(bolt.inbox, "secret.xml")
    secret.write_bytes(content(99, 1000))
    inbox = inbox_with(tmp_path, sshd, _files())
    try:
        listed = _listed_and_first_fetched(tmp_path, inbox)
        path = Path(sshd.account("acme").inbox, listed[1].name)
        path.unlink()
        path.symlink_to(secret)
        dest = tmp_path / "got" / listed[1].name
        with pytest.raises(NotTaken, match="symbolic link"):
            inbox.fetch(listed[1], dest)
        assert not dest.exists()
    finally:
        inbox.close()


def test_a_new_listing_drops_what_was_read_ahead(tmp_path: Path, sshd: SshServer) -> None:
    inbox = inbox_with(tmp_path, sshd, _files(DEPTH + 3))
    try:
        _listed_and_first_fetched(tmp_path, inbox)
        assert inbox._ahead is not None
        requests = inbox._ahead.requests
        listed = sorted(inbox.list(), key=lambda f: f.name)
        assert inbox._ahead.pending == {}
        # The closes and the dropped answers are collected, not kept: after one more
        # download, no answer is left waiting for a reader.
        inbox.fetch(listed[-1], tmp_path / "again" / listed[-1].name)
        inbox._ahead.drop()
        assert requests._answers == {}
    finally:
        inbox.close()


class _ShortReads(Requests):
    """A server answering every read with at most 1,000 bytes (the drafts allow it)."""

    def __init__(self, data: bytes) -> None:
        self.source, self.asked = data, {}  # type: ignore[var-annotated]
        self.next = 0

    def send(self, t: int, *args: object) -> int:
        self.next += 1
        offset, length = int(args[1]), int(args[2])  # type: ignore[call-overload]
        self.asked[self.next] = self.source[offset:offset + min(length, 1000)]
        return self.next

    def _answer(self, num: int) -> tuple[int, paramiko.Message]:
        return CMD_DATA, data_message(self.asked.pop(num))


@pytest.mark.parametrize("size", [0, 999, 1000, 5000, READ_SIZE + 10])
@pytest.mark.parametrize("stat_size", [None, "file"])
def test_short_answers_are_completed_from_where_they_stopped(size: int,
                                                           stat_size: str | None) -> None:
    data = content(7, size)
    requests = _ShortReads(data)
    nums = requests.reads(b"h", size + 1)
    got = bytearray()
    requests.data_of(b"h", nums, size + 1, got, size if stat_size else None)
    assert got == data
    assert requests.asked == {}  # every answer was taken


# -- the read-ahead's memory bound: nothing is held once a download failed or was skipped ------


def _settled(inbox: SftpInbox) -> Requests:
    """The connection's requests once every answer in flight has come: OpenSSH's server
    answers in order, so the answer of one more request comes after all of them."""
    assert inbox._ahead is not None and inbox._sftp is not None
    inbox._ahead.drop()
    inbox._sftp.stat(inbox.source.remote_inbox)
    return inbox._ahead.requests


def _swap_for_link(sshd: SshServer, name: str) -> None:
    secret = Path(sshd.account("bolt").inbox, "secret.xml")
    secret.write_bytes(content(99, 3 * READ_SIZE))
    path = Path(sshd.account("acme").inbox, name)
    path.unlink()
    path.symlink_to(secret)


@pytest.mark.parametrize("how", ["swapped for a link", "removed"])
def test_a_failed_small_fetch_leaves_no_answer_held(tmp_path: Path, sshd: SshServer,
                                                     how: str) -> None:
    """A small file fails its fetch with answers it never took: swapped for a link before
    its fetch (its check fails with its four reads in flight), or removed after it was read
    ahead (its stat after the fsync fails with the handle's stat in flight). Those answers
    are dropped, not held until the connection ends."""
    files = {f"{chr(97 + i)}.xml": content(i, 3 * READ_SIZE) for i in range(4)}
    inbox = inbox_with(tmp_path, sshd, files)
    try:
        if how == "removed":
            listed = _listed_and_first_fetched(tmp_path, inbox)
            Path(sshd.account("acme").inbox, listed[1].name).unlink()
            failing = listed[1]
        else:
            failing = sorted(inbox.list(), key=lambda f: f.name)[0]
            _swap_for_link(sshd, failing.name)
        with pytest.raises((NotTaken, TransientError)):
            inbox.fetch(failing, tmp_path / "got" / failing.name)
        requests = _settled(inbox)
        assert requests._answers == {}
        assert requests.held() == 0
        assert requests._sent == set() and requests._ignored == set()
    finally:
        inbox.close()


def test_files_passed_over_are_closed_and_dropped(tmp_path: Path, sshd: SshServer) -> None:
    """The poll skips two files read ahead (taken by another rule, say): their handles are
    closed and their answers dropped when a later file is taken, not at the poll's end."""
    inbox = inbox_with(tmp_path, sshd, _files(DEPTH + 3))
    try:
        listed = _listed_and_first_fetched(tmp_path, inbox)
        assert inbox._ahead is not None
        assert {listed[1].name, listed[2].name} <= set(inbox._ahead.pending)
        assert inbox.fetch(listed[3], tmp_path / "got" / listed[3].name)[0] == 1000
        assert not {listed[1].name, listed[2].name} & set(inbox._ahead.pending)
        ahead = {f.name for f in listed[4:4 + DEPTH]}
        assert set(inbox._ahead.pending) == ahead  # the next ones, and only they
        # Only what is read ahead for those files is held: a stat and lstat and one read
        # each (in flight or answered) of those not stored ahead, nothing for the two files
        # passed over, and no copy of theirs stored ahead.
        inbox._sftp.stat(inbox.source.remote_inbox)  # type: ignore[union-attr]
        for opening in inbox._ahead.pending.values():
            inbox._ahead.start(opening)
        not_stored = [o for o in inbox._ahead.pending.values() if o.stored is None]
        assert inbox._ahead.requests.held() == 3 * len(not_stored)
        stored = {o.temp.name for o in inbox._ahead.pending.values() if o.temp}
        assert {p.name for p in (tmp_path / "got").glob("*.ahead*")} == stored
        assert _settled(inbox).held() == 0
        assert not list((tmp_path / "got").glob("*.ahead*"))
    finally:
        inbox.close()


def test_files_stored_ahead_arrive_whole_and_leave_nothing_behind(tmp_path: Path,
                                                                  sshd: SshServer) -> None:
    """The next small files are checked, written and fsynced ahead in writer threads while
    the current one is in hand; each fetch hands over its own, and closing the connection
    removes the copies stored ahead and never fetched. A fetch into another folder than
    the copy's gets the same bytes."""
    files = {f"{chr(97 + i)}.xml": content(i, 5000 + i) for i in range(DEPTH + 4)}
    inbox = inbox_with(tmp_path, sshd, files)
    got = tmp_path / "got"
    try:
        listed = _listed_and_first_fetched(tmp_path, inbox)
        assert inbox._ahead is not None and inbox._sftp is not None
        # Every answer for the files read ahead in: the next fetch stores them all ahead.
        inbox._sftp.stat(inbox.source.remote_inbox)
        for opening in inbox._ahead.pending.values():
            inbox._ahead.start(opening)
        inbox._sftp.stat(inbox.source.remote_inbox)
        assert inbox.fetch(listed[1], got / listed[1].name)[0] == len(files[listed[1].name])
        stored = {n for n, o in inbox._ahead.pending.items() if o.stored is not None}
        assert stored == {f.name for f in listed[2:2 + DEPTH - 1]}
        for name in stored:  # written and fsynced in the writer threads, soon
            assert inbox._ahead.pending[name].stored.result() == files[name]  # type: ignore[union-attr]
        assert len(list(got.glob("*.ahead*"))) == len(stored)
        assert inbox.fetch(listed[2], got / listed[2].name)[0] == len(files[listed[2].name])
        elsewhere = tmp_path / "elsewhere" / listed[3].name
        size, sha = inbox.fetch(listed[3], elsewhere)
        data = files[listed[3].name]
        assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest())
        assert elsewhere.read_bytes() == data
    finally:
        inbox.close()
    assert not list(tmp_path.glob("*/*.ahead*"))
    assert sorted(p.name for p in got.iterdir()) == [f.name for f in listed[:3]]
    for remote in listed[:3]:
        assert (got / remote.name).read_bytes() == files[remote.name]


# -- the count in a failure's message; no read only to find the end of the file --------------


def test_a_small_download_cut_midway_says_how_much_arrived(
        tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    size = 3 * READ_SIZE + 7
    inbox = inbox_with(tmp_path, sshd, {"a.xml": content(1, size)})
    real_data = Requests.data
    answered: list[int] = []

    def data(self: Requests, num: int, asked: int) -> bytes:
        if answered:  # the connection drops after the first read's answer
            raise paramiko.SSHException("Server connection dropped: (test)")
        piece = real_data(self, num, asked)
        answered.append(len(piece))
        return piece

    monkeypatch.setattr(Requests, "data", data)
    try:
        (remote,) = inbox.list()
        dest = tmp_path / "got" / remote.name
        with pytest.raises(TransientError,
                           match=rf"failed after {READ_SIZE} of {size} bytes"):
            inbox.fetch(remote, dest)
        assert answered == [READ_SIZE] and not dest.exists()
    finally:
        inbox.close()


def _reads_sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every read request sent from now on, by its length."""
    lengths: list[int] = []
    real_send = Requests.send

    def send(self: Requests, t: int, *args: object) -> int:
        if t == CMD_READ:
            lengths.append(int(args[2]))  # type: ignore[call-overload]
        return real_send(self, t, *args)

    monkeypatch.setattr(Requests, "send", send)
    return lengths


@pytest.mark.parametrize("size", [0, 1000, READ_SIZE - 1, READ_SIZE, 3 * READ_SIZE + 7,
                                  SMALL - 1])
def test_no_read_only_for_the_end_of_a_small_file(tmp_path: Path, sshd: SshServer,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  size: int) -> None:
    """A small file whose stat says its listed size is read with the reads sent together
    (its size + 1 byte, in READ_SIZE pieces) and no more: no round trip that answers EOF."""
    data = content(3, size)
    inbox = inbox_with(tmp_path, sshd, {"a.xml": data})
    try:
        (remote,) = inbox.list()
        reads = _reads_sent(monkeypatch)
        dest = tmp_path / "got" / remote.name
        assert inbox.fetch(remote, dest) == (size, hashlib.sha256(data).hexdigest())
        assert dest.read_bytes() == data
        assert len(reads) == size // READ_SIZE + 1
    finally:
        inbox.close()


@pytest.mark.parametrize("same_mtime", [False, True])
def test_a_small_file_that_grows_after_its_reads_is_not_taken(
        tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch,
        same_mtime: bool) -> None:
    """No read looks past the end any more: a file that grows once its bytes are in (even
    with its mtime put back) is caught by its stat after the fsync, as a changed file."""
    inbox = inbox_with(tmp_path, sshd, {"a.xml": content(1, 1000)})
    source = Path(sshd.account("acme").inbox, "a.xml")
    real_sync = sftp_pipeline.LocalFile.sync

    def sync(self: sftp_pipeline.LocalFile) -> None:
        mtime = source.stat().st_mtime
        with source.open("ab") as grow:
            grow.write(b"<more/>")
        if same_mtime:
            os.utime(source, (mtime, mtime))
        real_sync(self)

    try:
        (remote,) = inbox.list()
        monkeypatch.setattr(sftp_pipeline.LocalFile, "sync", sync)
        dest = tmp_path / "got" / remote.name
        with pytest.raises(FileChanged, match="1000 bytes listed, 1000 read, 1007 now"):
            inbox.fetch(remote, dest)
        assert not dest.exists()
    finally:
        inbox.close()


# -- the channel buffer that replaces paramiko's (sftp_session._ChannelBuffer) -----------------


@pytest.mark.parametrize("pieces", [[b"abc"], [b"a" * 5000, b"b" * 3, b"c" * 70000],
                                    [bytes(range(256)) * 9000, b"end"]])
def test_the_channel_buffer_reads_as_paramikos_does(pieces: list[bytes]) -> None:
    """Fed and read in the same pieces, it hands out what paramiko's BufferedPipe hands out,
    also past the point where it drops the bytes already read."""
    from paramiko.buffered_pipe import BufferedPipe

    from gateway.inbox.sftp_session import _ChannelBuffer

    ours, theirs = _ChannelBuffer(), BufferedPipe()  # type: ignore[var-annotated]
    sizes = [4, 1, 32768, 7, 300000, 13, 1 << 20, 5]
    for buffer in (ours, theirs):
        for piece in pieces:
            buffer.feed(piece)
    total = sum(map(len, pieces))
    assert len(ours) == len(theirs) == total
    read = 0
    for size in sizes * 10:
        if read == total:
            break
        got = ours.read(size)
        assert got == theirs.read(size) and type(got) is bytes
        read += len(got)
        assert len(ours) == len(theirs) == total - read
    assert read == total and not ours.read_ready()
    ours.feed(b"left")
    assert ours.empty() == b"left" and len(ours) == 0


def test_the_channel_buffer_times_out_and_closes_as_paramikos_does() -> None:
    from paramiko.buffered_pipe import PipeTimeout

    from gateway.inbox.sftp_session import _ChannelBuffer

    buffer = _ChannelBuffer()
    with pytest.raises(PipeTimeout):
        buffer.read(10, timeout=0.0)
    with pytest.raises(PipeTimeout):
        buffer.read(10, timeout=0.01)
    buffer.feed(b"last")
    buffer.close()
    assert buffer.read(10, timeout=0.0) == b"last"
    assert buffer.read(10) == b""  # closed and empty: the end, at once


def test_the_channel_buffer_overrides_every_method_of_paramikos() -> None:
    """The buffer replaces paramiko's on a live channel: a method it does not override would
    work on paramiko's own (never fed) state, a read hanging until its timeout. A paramiko that
    grows one fails here (pyproject pins the tested major version)."""
    from paramiko.buffered_pipe import BufferedPipe

    from gateway.inbox.sftp_session import _ChannelBuffer

    theirs = {name for name, value in vars(BufferedPipe).items()
              if callable(value) and not (name.startswith("__") and name != "__len__")}
    ours = {name for name in theirs if name in vars(_ChannelBuffer)}
    assert theirs - ours <= {"_buffer_frombytes", "_buffer_tobytes"}, theirs - ours


class _LongAnswers(Requests):
    """A hostile server that answers every read with 1 MiB, whatever it asked."""

    def __init__(self) -> None:  # no connection: only data_of is exercised
        self.next = 0

    def send(self, t: int, *args: object) -> int:
        self.next += 1
        return self.next

    def _answer(self, num: int) -> tuple[int, paramiko.Message]:
        return CMD_DATA, data_message(b"x" * (1 << 20))


def test_an_answer_longer_than_its_read_is_refused() -> None:
    requests = _LongAnswers()
    size = 8 * READ_SIZE - 1
    nums = [requests.send(CMD_READ) for _ in range(8)]
    got = bytearray()
    with pytest.raises(sftp_requests.SFTPError, match="answered 1048576 bytes to a read of"):
        requests.data_of(b"h", nums, size + 1, got, size)
    assert got == b""  # nothing of it kept


def test_a_copy_stored_ahead_is_removed_when_its_own_fetch_fails(
        tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file taken leaves ``pending`` at once: a fetch that fails before it uses its copy
    stored ahead (the connection drops) must remove that copy itself (review of issue 15)."""
    files = {f"{chr(97 + i)}.xml": content(i, 5000 + i) for i in range(DEPTH + 4)}
    inbox = inbox_with(tmp_path, sshd, files)
    got = tmp_path / "got"
    try:
        listed = _listed_and_first_fetched(tmp_path, inbox)
        ahead = inbox._ahead
        assert ahead is not None
        inbox._sftp.stat(inbox.source.remote_inbox)  # a round trip: the opens are answered
        for opening in ahead.pending.values():
            ahead.start(opening)
        inbox._sftp.stat(inbox.source.remote_inbox)  # and the stats and reads
        inbox.fetch(listed[1], got / listed[1].name)  # stores the next ones ahead
        stored = ahead.pending[listed[2].name]
        assert stored.stored is not None and stored.temp is not None
        stored.stored.result()
        assert stored.temp.exists()

        def dropped(self: sftp_pipeline.ReadAhead) -> None:
            raise paramiko.SSHException("Server connection dropped: (test)")

        monkeypatch.setattr(sftp_pipeline.ReadAhead, "advance", dropped)
        with pytest.raises(TransientError):
            inbox.fetch(listed[2], got / listed[2].name)
        assert not stored.temp.exists()  # removed by the failed fetch, not by the close
    finally:
        inbox.close()
    assert sorted(p.name for p in got.glob("*.ahead*")) == []
