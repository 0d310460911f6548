"""``Requests`` writes its requests and reads the answers itself (gateway/inbox/sftp_requests.py,
issue 15), sharing paramiko's request numbers and its table of answers awaited (private, pinned
<6): against the real sshd, its requests and paramiko's own calls and prefetch in flight
together, each answer reaching the one who asked; against a fake channel, answers cut
anywhere, a closed channel and garbage. The connection's socket has TCP_NODELAY."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.sftp import CMD_ATTRS, CMD_HANDLE, CMD_LSTAT, CMD_STATUS, SFTPError
from sftp_server import SshServer
from test_sftp_pipeline import content, inbox_with

from gateway.inbox.sftp_requests import READ_SIZE, Requests


def test_requests_and_paramikos_own_calls_share_one_channel(tmp_path: Path,
                                                            sshd: SshServer) -> None:
    """Our stats in flight while paramiko stats and downloads a file with its prefetch:
    paramiko's reader hands us our answers, ours hands paramiko's prefetch its own; the
    numbers never collide, and every answer is taken."""
    big = content(5, 9 * READ_SIZE + 3)
    inbox = inbox_with(tmp_path, sshd, {"a.xml": content(1, 1000), "big.bin": big})
    try:
        sftp = inbox.connect()
        requests = Requests(sftp)
        folder = inbox.source.remote_inbox
        path = f"{folder}/a.xml"
        first = requests.lstat(path)
        assert sftp.lstat(path).st_size == 1000  # paramiko reads our answer, and hands it on
        assert requests.answered(first)
        with sftp.open(f"{folder}/big.bin", "rb") as handle:
            handle.prefetch()
            ours = [requests.lstat(path) for _ in range(5)]
            # Ours read the prefetch's answers too, and give them to its file.
            assert [requests.attrs(num).st_size for num in ours] == [1000] * 5
            assert handle.read() == big
        assert requests.attrs(first).st_size == 1000
        opened = requests.handle(requests.open(path))
        data = bytearray()
        requests.data_of(opened, requests.reads(opened, 1001), 1001, data)
        assert data == content(1, 1000)
        requests.close(opened)
        sftp.stat(folder)  # OpenSSH answers in order: the close's answer is in, and dropped
        assert requests.held() == 0 and requests._answers == {}
        connection: Any = sftp.get_channel().get_transport().sock  # type: ignore[union-attr]
        assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        inbox.close()


def test_a_request_sent_alone_goes_out_as_paramiko_writes_it(tmp_path: Path,
                                                             sshd: SshServer) -> None:
    """Outside a batch each request is written at once, byte for byte what paramiko's
    ``_async_request`` writes (its fields: a string, an int, an int64, attributes)."""
    inbox = inbox_with(tmp_path, sshd, {"a.xml": b"x"})
    try:
        sftp: Any = inbox.connect()
        written: list[bytes] = []
        real = sftp._write_all

        def write_all(out: bytes) -> None:
            written.append(bytes(out))
            real(out)

        sftp._write_all = write_all
        try:
            path = f"{inbox.source.remote_inbox}/a.xml"
            requests = Requests(sftp)
            mine = requests.open(path)
            theirs = sftp._async_request(type(None), paramiko.sftp.CMD_OPEN, path,
                                         paramiko.sftp.SFTP_FLAG_READ,
                                         paramiko.SFTPAttributes())
            sftp._read_response(theirs)  # hands us ours on its way
            handle = requests.handle(mine)
            read = requests.send(paramiko.sftp.CMD_READ, handle, paramiko.sftp.int64(7), 9)
            assert requests.data(read, 9) == b""
        finally:
            del sftp._write_all
        assert written[0][9:] == written[1][9:]  # after the length, type and number
        assert written[0][:5] == written[1][:5] and theirs == mine + 1
        assert written[2][9:] == struct.pack(">I", len(handle)) + handle + \
            struct.pack(">QI", 7, 9)
    finally:
        inbox.close()


class _Channel:
    """A channel holding ``wire``, handing out at most ``cut`` bytes a ``recv``; b"" once
    it is all read (closed)."""

    def __init__(self, wire: bytes, cut: int) -> None:
        self.wire, self.cut, self.at = wire, cut, 0

    def recv(self, n: int) -> bytes:
        piece = self.wire[self.at:self.at + min(n, self.cut)]
        self.at += len(piece)
        return piece


class _Client:
    """What ``Requests`` uses of paramiko's SFTPClient, with a fake channel."""

    def __init__(self, wire: bytes, cut: int = 1 << 20) -> None:
        self.sock = _Channel(wire, cut)
        self._lock = threading.Lock()
        self._expecting: dict[int, object] = {}
        self.request_number = 1
        self.written = bytearray()

    def _write_all(self, out: bytes) -> None:
        self.written += out


def _answer(t: int, num: int, body: bytes) -> bytes:
    return struct.pack(">IBI", len(body) + 5, t, num) + body


def _attrs(size: int) -> bytes:
    return struct.pack(">IQ", 1, size)  # SFTP_FLAG_SIZE, the size


class _Other:
    """Another asker (paramiko's prefetching file, say)."""

    def __init__(self) -> None:
        self.got: list[tuple[int, bytes, int]] = []

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        self.got.append((t, msg.get_remainder(), num))


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 8, 9, 10, 20, 1000])
def test_answers_cut_anywhere_are_read_whole_and_nothing_is_left(cut: int) -> None:
    """The answers come in pieces of ``cut`` bytes: each is read to its end, handed to its
    asker (ours, another's, a number no one awaits: dropped), and no byte of a next answer
    is taken from the channel (paramiko's own reader would miss it)."""
    other = _Other()
    answers = [_answer(CMD_ATTRS, 1, _attrs(42)), _answer(CMD_HANDLE, 2, b"\0\0\0\2hh"),
               _answer(CMD_STATUS, 7, b"\0\0\0\0"), _answer(CMD_ATTRS, 3, _attrs(43))]
    wire = b"".join(answers)
    ends = {len(b"".join(answers[:n])) for n in range(len(answers) + 1)}
    client = _Client(wire, cut)
    requests = Requests(client)  # type: ignore[arg-type]
    first = requests.send(CMD_LSTAT, "/a")
    client._expecting[2], client.request_number = other, 3  # a request of the other's
    second = requests.send(CMD_LSTAT, "/b")
    assert (first, second) == (1, 3) and client.request_number == 4
    assert requests.attrs(first).st_size == 42
    assert client.sock.at in ends  # read to the end of an answer, never into the next
    assert requests.attrs(second).st_size == 43
    assert other.got == [(CMD_HANDLE, b"\0\0\0\2hh", 2)]
    assert client._expecting == {} and requests.held() == 0
    assert client.sock.at == len(wire)


def test_a_channel_closed_midway_is_a_lost_connection() -> None:
    wire = _answer(CMD_ATTRS, 1, _attrs(42))
    requests = Requests(_Client(wire[:7]))  # type: ignore[arg-type]
    num = requests.send(CMD_LSTAT, "/a")
    with pytest.raises(paramiko.SSHException, match="Server connection dropped"):
        requests.attrs(num)


def test_a_garbage_length_is_refused() -> None:
    requests = Requests(_Client(b"\x01\0\0\0" + b"x" * 20))  # type: ignore[arg-type]
    num = requests.send(CMD_LSTAT, "/a")
    with pytest.raises(SFTPError, match="Garbage packet"):
        requests.attrs(num)
