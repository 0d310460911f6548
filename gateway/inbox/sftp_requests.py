"""Several SFTP requests in flight on one channel, their answers collected by number.

paramiko's public calls wait for each answer before the next request; ``Requests`` sends
several independent requests (stats of a handle and of a name, reads of one handle, opens of
the next files) before waiting for any, and collects the answers by request number, whatever
order they come in. ``Requests.batch`` writes the requests of one fetch to the channel
together. It shares paramiko's request numbering and its table of requests awaiting an answer
(``request_number``, ``_expecting``, ``_lock``; ``_write_all`` for a request sent alone), so
that paramiko's own calls on the same client and these requests can be in flight together,
each side handing the other the answers it reads; and it uses ``_convert_status``. Those are
private, not in the type stubs: the client is held as ``Any`` for that reason, paramiko is
pinned (<6, pyproject.toml) and tests/test_sftp_answers.py exercises both sides. What is read
ahead, and when, is ``gateway.inbox.sftp_pipeline``'s.

Only requests whose outcome does not depend on their order are ever in flight together: the
SFTP drafts let a server answer out of order, and the order of effects between two requests
is not promised either.
"""

from __future__ import annotations

import contextlib
import struct
from collections import deque
from collections.abc import Iterator
from typing import Any, BinaryIO

import paramiko
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_LSTAT,
    CMD_OPEN,
    CMD_READ,
    CMD_REMOVE,
    CMD_STAT,
    CMD_STATUS,
    CMD_WRITE,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_READ,
    SFTP_FLAG_WRITE,
    SFTPError,
)

# Reads of 32 KiB: the size paramiko's own prefetch asks for, which servers answer whole; a
# shorter answer is still handled (``Requests.data_of``).
READ_SIZE = 32 * 1024
# An upload's pieces: paramiko's own write size (SFTPFile.MAX_REQUEST_SIZE), and at most this
# many in flight (2 MiB: the most an upload holds in memory beside its source).
WRITE_SIZE = 32 * 1024
WRITES_IN_FLIGHT = 64
# SFTPAttributes._from_msg, the parser paramiko's own stat calls use, is private (not typed).
_ATTRIBUTES: Any = paramiko.SFTPAttributes
# A request's or an answer's head: its length (what follows it), its type, its number.
_HEAD = struct.Struct(">IBI")
_UINT32 = struct.Struct(">I")
_UINT64 = struct.Struct(">Q")
# The most read from the channel at once: every answer already in, in one call.
_RECV = 1 << 20
# An answer longer than this is garbage (paramiko's limit: a length with its high byte set).
_LONGEST = (1 << 24) - 1


class Requests:
    """Requests in flight on one SFTP client and their answers, by request number."""

    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self._sftp: Any = sftp  # the private request API (module docstring)
        self._sent: set[int] = set()  # in flight: not answered yet
        self._answers: dict[int, tuple[int, paramiko.Message]] = {}  # answered, not taken
        self._ignored: set[int] = set()  # in flight, their answers dropped when they come
        self._out: bytearray | None = None  # requests not sent yet (``batch``)
        self._later = bytearray()  # closes sent with the next requests (``close_later``)
        self._first = bytearray()  # requests sent ahead of the others (``first_stats``)
        self._into_now: bytearray | None = None  # where ``send`` writes; None: the channel

    # paramiko hands every answer to a request sent with this object to this method, and so
    # does ``_receive``.
    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        self._sent.discard(num)
        if num in self._ignored:
            self._ignored.discard(num)
        else:
            self._answers[num] = (t, msg)

    def send(self, t: int, *args: object) -> int:
        """Request ``t`` with ``args`` (as paramiko's ``_async_request`` takes them), numbered
        as paramiko numbers its own, its answer expected by this object. Written here rather
        than by paramiko's ``_async_request``, which builds a ``Message`` field by field and
        concatenates the packet again: 9 us a request instead of 2 (a small file's fetch sends
        seven; cProfile of bench/bench_sftp.py's list + fetch)."""
        body = b"".join(map(_field, args))
        sftp = self._sftp
        with sftp._lock:  # paramiko's prefetch threads number their requests too
            num: int = sftp.request_number
            sftp.request_number = num + 1
            sftp._expecting[num] = self
        packet = _HEAD.pack(len(body) + 5, t, num) + body
        if self._into_now is not None:
            self._into_now += packet
        else:
            sftp._write_all(packet)  # where paramiko's _async_request writes it
        self._sent.add(num)
        return num

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """The requests sent inside go out together (one channel write, so one SSH packet
        where they fit) when an answer is waited for, and at the end. paramiko writes each
        request as its own packet, built, encrypted and sent by the calling thread: a small
        file's fetch sends seven (its close, its stats after the fsync, the open, stats and
        read of a file read ahead), and those writes were the largest cost of the client's
        own thread (cProfile of bench/bench_sftp.py's list + fetch). paramiko's own calls
        made inside go out at once, ahead of what is held."""
        if self._out is not None:
            yield  # already inside one
            return
        self._out = self._into_now = bytearray()
        try:
            yield
        except BaseException:
            # The error being raised is the one to report; a connection lost meanwhile makes
            # the closes and checks left unsent moot.
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                self._end_batch()
            raise
        self._end_batch()

    def _end_batch(self) -> None:
        self._into_now = None  # the channel again
        try:
            self.flush()
        finally:
            self._out = None

    def flush(self) -> None:
        """Send what ``batch`` holds back, with the closes ``close_later`` holds (those alone
        are not worth a packet)."""
        if self._out or self._first:
            out = bytes(self._first + self._later + (self._out or b""))
            for held in (self._first, self._later, self._out):
                if held is not None:
                    held.clear()
            self._sftp.sock.sendall(out)

    def release(self) -> None:
        """Send the closes ``close_later`` holds now: no request of ours follows soon."""
        if self._later:
            out = bytes(self._later)
            self._later.clear()
            self._sftp.sock.sendall(out)

    def held(self) -> int:
        """Requests in flight or answered whose answers are still wanted: what the read-ahead
        holds (the module's memory bound), none once a poll's downloads are done."""
        return len(self._sent - self._ignored) + len(self._answers)

    def answered(self, num: int) -> bool:
        return num in self._answers

    def open(self, path: str) -> int:
        return self.send(CMD_OPEN, path, SFTP_FLAG_READ, paramiko.SFTPAttributes())

    def close(self, handle: bytes) -> None:
        """Close a read handle without waiting: nothing depends on the answer."""
        self._ignored.add(self.send(CMD_CLOSE, handle))

    def close_later(self, handle: bytes) -> None:
        """``close``, sent with the next requests that go out (the next small file's, or a
        dispose's lstat, which comes before any rename or removal of the file), not in a
        packet of its own: one SSH packet and one channel write less per small file. Sent
        after the handle's last request was answered: never in flight with one (the order of
        two requests' effects is not promised). Moot if the connection closes first."""
        with self._into(self._later):
            self.close(handle)

    def first_stats(self, handle: bytes, path: str) -> tuple[int, int]:
        """``stats``, sent ahead of the other requests of the batch: a server answers in
        the order it reads (OpenSSH's does), so these answers, the ones waited for, come
        before those of the reads and opens of the files read ahead."""
        if self._out is None:
            return self.stats(handle, path)
        with self._into(self._first):
            return self.stats(handle, path)

    @contextlib.contextmanager
    def _into(self, held: bytearray) -> Iterator[None]:
        """The requests sent inside are written to ``held``, sent with the next ``flush``."""
        before, self._into_now = self._into_now, held  # a batch's, or the channel
        try:
            yield
        finally:
            self._into_now = before

    def forget(self, nums: list[int]) -> None:
        """Answers no one will wait for: dropped, now or when they come (an answer already
        taken is not waited for)."""
        for num in nums:
            if self._answers.pop(num, None) is None and num in self._sent:
                self._ignored.add(num)

    def lstat(self, path: str) -> int:
        return self.send(CMD_LSTAT, path)

    def stat(self, path: str) -> int:
        return self.send(CMD_STAT, path)

    def stats(self, handle: bytes, path: str) -> tuple[int, int]:
        """The handle's fstat and the name's lstat, both in flight."""
        return self.send(CMD_FSTAT, handle), self.send(CMD_LSTAT, path)

    def reads(self, handle: bytes, length: int) -> list[int]:
        """Reads of ``length`` bytes from offset 0 in READ_SIZE pieces, all in flight."""
        return [self.send(CMD_READ, handle, paramiko.sftp.int64(offset),
                          min(READ_SIZE, length - offset))
                for offset in range(0, length, READ_SIZE)]

    def status(self, num: int) -> None:
        """The answer of a request answered by a status: raised as paramiko raises it unless
        it is OK."""
        t, msg = self._answer(num)
        self._status(t, msg, CMD_STATUS)

    def create(self, path: str) -> bytes:
        """A write handle on a new file at ``path``: whatever is at that name is removed
        (a file, or a link: a removal never follows one), then the file is created with
        O_EXCL, which fails on a name taken again in between instead of writing through a
        link planted there. Both requests are in flight together: they concern the same
        file, which a server processes in the order received (draft-ietf-secsh-filexfer-02,
        6.1, quoted in docs/sftp.md). Should a server take the create first all the same,
        either the create fails on the name still there (asked again after the removal), or,
        with nothing there, the removal unlinks the file just created: so when the removal
        found a file, the name is looked up (an lstat, one round trip, only after a cut
        upload left its temp file) and the file created again if it is gone."""
        with self.batch():  # one channel write for both
            removed = self.send(CMD_REMOVE, path)
            opened = self._create(path)
        refused: OSError | None = None
        found = True  # the removal unlinked something: a leftover, or (reordered) ours
        try:
            self.status(removed)
        except FileNotFoundError:
            found = False  # nothing there: the usual case
        except OSError as err:
            refused = err
        try:
            handle = self.handle(opened)
        except (FileNotFoundError, PermissionError) as err:
            if refused is not None:
                raise refused from err  # the removal's reason first: it came first
            raise
        except OSError:
            if refused is not None:
                raise refused from None
            return self.handle(self._create(path))  # taken before the removal: asked again
        if refused is not None:
            self.close(handle)
            raise refused
        if found:
            try:
                self.attrs(self.lstat(path))
            except FileNotFoundError:  # created, then removed: the handle is an orphan's
                self.close(handle)
                return self.handle(self._create(path))
            except OSError:
                self.close(handle)
                raise
        return handle

    def _create(self, path: str) -> int:
        """The exclusive create of a file to write at ``path``, sent."""
        return self.send(CMD_OPEN, path, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL,
                         paramiko.SFTPAttributes())

    def upload(self, path: str, src: BinaryIO) -> paramiko.SFTPAttributes:
        """``src`` written to a new file at ``path`` (``create``); the attributes of the open
        file once every byte is written, from its handle. Every write's status is checked:
        a server that refuses one piece and writes the next leaves a file of the right size
        with a hole, which no size check sees (paramiko's pipelined writes drop the status
        of a write whose answer another request reads first, as its ``stat`` and ``close``
        did). The last pieces, the fstat and the close go out together and are answered in
        order on the one handle (draft-ietf-secsh-filexfer-02, 6.1): one round trip where
        flushing, stat and close took three. Raises the first failure, the file closed and
        removed."""
        handle = self.create(path)
        pending: deque[int] = deque()
        later: list[int] = []  # the fstat and the close, once sent
        try:
            with self.batch():
                offset = 0
                while chunk := src.read(WRITE_SIZE):
                    pending.append(self.send(CMD_WRITE, handle, paramiko.sftp.int64(offset),
                                             chunk))
                    offset += len(chunk)
                    if len(pending) >= WRITES_IN_FLIGHT:
                        self.status(pending.popleft())
                later = [self.send(CMD_FSTAT, handle), self.send(CMD_CLOSE, handle)]
            while pending:
                self.status(pending.popleft())
            attrs = self.attrs(later[0])
            self.status(later.pop())
            return attrs
        except BaseException:
            self.forget([*pending, *later])
            # Nothing partial left behind: the handle closed (unless its close is out) and
            # the file removed, after it on the same name, neither answer awaited. Moot on
            # a lost connection.
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                if not later:
                    self.close(handle)
                self._ignored.add(self.send(CMD_REMOVE, path))
            raise

    def _answer(self, num: int) -> tuple[int, paramiko.Message]:
        if num not in self._answers:
            # The request may be held back still. Not flushed when the answer is in already:
            # what is held goes out with the fetch's next requests, in one channel write.
            self.flush()
        while num not in self._answers:
            self._receive()
        return self._answers.pop(num)

    def _receive(self) -> None:
        """Every answer the channel holds, each handed to whoever sent its request (this
        object, or paramiko: its own calls' answers, its prefetch's), read in one call and
        cut here. paramiko's ``_read_response`` reads each answer in two channel reads (its
        length, then the rest), each taking the buffer's lock and checking the window, then
        builds a ``Message`` to read its number: about 15 us an answer, seven answers a small
        file (cProfile and py-spy of bench/bench_sftp.py's list + fetch). An answer that is
        only partly in is read to its end before this returns, so that no byte is left here
        for paramiko's own reader: the channel holds whole answers only, as with paramiko's."""
        channel = self._sftp.sock
        data, at, want = b"", 0, _RECV
        while True:
            more = channel.recv(want)
            if not more:
                # What paramiko's _read_response raises on a channel closed under it.
                raise paramiko.SSHException("Server connection dropped: ")
            data, at = data[at:] + more, 0
            while True:
                if len(data) - at < 4:
                    want = at + 4 - len(data)
                    break
                (size,) = _UINT32.unpack_from(data, at)
                if size > _LONGEST:
                    raise SFTPError("Garbage packet received")
                end = at + 4 + size
                if end > len(data):
                    want = end - len(data)
                    break
                self._hand(data[at + 4:end])
                at = end
            if at == len(data):
                return

    def _hand(self, answer: bytes) -> None:
        """One answer (its type, number, body) to the one who sent its request, as paramiko's
        ``_read_response`` does it: an answer no one expects is dropped."""
        t, num = (answer[0], _UINT32.unpack_from(answer, 1)[0]) if len(answer) >= 5 else (0, 0)
        sftp = self._sftp
        with sftp._lock:
            to = sftp._expecting.pop(num, None)
        if to is not None and to is not type(None):  # None's: a call of paramiko's waits
            to._async_response(t, paramiko.Message(answer[5:]), num)

    def _status(self, t: int, msg: paramiko.Message, expected: int) -> None:
        if t == CMD_STATUS:  # raised as paramiko raises it: FileNotFoundError, OSError...
            self._sftp._convert_status(msg)
        if t != expected:
            raise SFTPError(f"expected SFTP message type {expected}, got {t}")

    def handle(self, num: int) -> bytes:
        t, msg = self._answer(num)
        self._status(t, msg, CMD_HANDLE)
        return bytes(msg.get_binary())

    def attrs(self, num: int) -> paramiko.SFTPAttributes:
        t, msg = self._answer(num)
        self._status(t, msg, CMD_ATTRS)
        attrs: paramiko.SFTPAttributes = _ATTRIBUTES._from_msg(msg)
        return attrs

    def data(self, num: int, asked: int) -> bytes:
        """The bytes a read of ``asked`` bytes answered; b"" at the end of the file. More than
        asked is a hostile server's answer (paramiko takes packets up to 16 MiB): refused, never
        kept, or the read-ahead's bound of DEPTH x its length would not hold."""
        t, msg = self._answer(num)
        if t == CMD_STATUS:
            try:
                self._sftp._convert_status(msg)
            except EOFError:  # the status SFTP_EOF: nothing more to read
                return b""
        self._status(t, msg, CMD_DATA)
        data = bytes(msg.get_string())
        if len(data) > asked:
            raise SFTPError(f"the server answered {len(data)} bytes to a read of {asked}")
        return data

    def data_of(self, handle: bytes, nums: list[int], length: int, got: bytearray,
                size: int | None = None) -> None:
        """The answers of ``reads(handle, length)``, appended to ``got`` as one run of bytes
        from offset 0 (a failure leaves there what arrived before it); where a server
        answered a piece short, the rest is asked for from there. ``size``: the file's size
        from its stat of this download; once that many bytes are in, no read is sent to
        find the end of the file (it would answer only EOF: one round trip per small file,
        whose reads ask for one byte more than listed). A file that grew after that stat is
        still caught: the caller stats it again after the local copy is fsynced."""
        whole = True
        for index, num in enumerate(nums):
            asked = min(READ_SIZE, length - index * READ_SIZE)
            piece = self.data(num, asked)  # every answer is taken, even after a short one
            if whole:
                got += piece
                whole = len(piece) == asked
        want = length if size is None else min(length, size)
        while len(got) < want and (more := self.data(self.send(
                CMD_READ, handle, paramiko.sftp.int64(len(got)), length - len(got)),
                length - len(got))):
            got += more


class DisposeStats:
    """A dispose's two read-only requests in flight together: the lstat of the file's name
    and the stat of its target (whether that is taken; ``target`` None: no move). Sent ahead
    with the file's ack delivery (``SftpInbox.dispose_next``), or by ``answers`` itself."""

    def __init__(self, requests: Requests) -> None:
        self.requests = requests
        self._sent: tuple[str, str | None, int, int | None] | None = None

    @contextlib.contextmanager
    def sent_with(self, path: str, target: str | None) -> Iterator[None]:
        """The stats of ``path`` and ``target``, written to the channel together with the
        first request paramiko's own calls inside write (the ack's rename), in one write:
        written on their own just before it, TCP would hold that request back until the
        stats' packet is acknowledged (Nagle; the server acknowledges with its answers), and
        the rename would wait one round trip more. Sent at the end if nothing was written."""
        self.forget()
        held = bytearray()
        requests = self.requests
        with requests._into(held):
            nums = requests.lstat(path), requests.stat(target) if target else None
        self._sent = (path, target, *nums)
        sftp, own = requests._sftp, requests._sftp.__dict__.get("_write_all")

        def write(out: bytes) -> None:
            del sftp._write_all  # paramiko's own again, for the requests after this one
            data = bytes(held + out)
            held.clear()
            sftp.sock.sendall(data)
        assert own is None  # never inside a batch: paramiko's calls wait for their answers
        sftp._write_all = write
        try:
            yield
        finally:
            if "_write_all" in sftp.__dict__:
                del sftp._write_all
            if held:  # nothing was written inside
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    sftp.sock.sendall(bytes(held))

    def send(self, path: str, target: str | None) -> None:
        self.forget()
        with self.requests.batch():
            named, at_target = self.requests.lstat(path), \
                self.requests.stat(target) if target else None
        self._sent = path, target, named, at_target

    def forget(self) -> None:
        """Answers no dispose will use (its delivery failed, or another file's dispose came)."""
        sent, self._sent = self._sent, None
        if sent is not None:
            self.requests.forget([num for num in sent[2:] if num is not None])

    def answers(self, path: str, target: str | None) -> tuple[paramiko.SFTPAttributes, bool]:
        """The lstat of ``path`` and whether ``target`` exists: the answers to the requests
        sent ahead for these names, else to new ones."""
        if self._sent is None or self._sent[:2] != (path, target):
            self.send(path, target)
        assert self._sent is not None
        named, at_target = self._sent[2:]
        self._sent = None
        try:
            now = self.requests.attrs(named)
        except BaseException:
            self.requests.forget([at_target] if at_target is not None else [])
            raise
        if at_target is None:
            return now, False
        try:
            self.requests.attrs(at_target)
        except FileNotFoundError:
            return now, False
        return now, True


def _field(arg: object) -> bytes:
    """One field of a request, as paramiko's ``_async_request`` writes it."""
    if isinstance(arg, paramiko.sftp.int64):
        return _UINT64.pack(arg)
    if isinstance(arg, int):
        return _UINT32.pack(arg)
    if isinstance(arg, paramiko.SFTPAttributes):
        msg = paramiko.Message()
        _ATTRIBUTES._pack(arg, msg)
        return bytes(msg.asbytes())
    data = arg.encode() if isinstance(arg, str) else bytes(arg)  # type: ignore[call-overload]
    return _UINT32.pack(len(data)) + data
