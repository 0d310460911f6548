"""The hashed copy of a file coming in (gateway/storage.py): ``DigestWriter`` hashes and
writes a large copy in a thread of its own while the next chunk is read (local inboxes through
``copy_with_digest``, SFTP through ``SftpInbox.fetch``). The same bytes and the same SHA-256
either way; a failing write is raised in the caller's thread and stops the copy there; a
copy given up ends its thread without writing what was still queued."""

from __future__ import annotations

import errno
import hashlib
import io
import threading
from pathlib import Path

import pytest
from conftest import wait_until

from gateway import storage
from gateway.inbox.base import copy_with_digest
from gateway.storage import THREADED_BYTES, DigestWriter

CHUNK = 1 << 20


def _data(size: int) -> bytes:
    return (hashlib.sha256(str(size).encode()).digest() * (size // 32 + 1))[:size]


def _digest_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "digest"]


@pytest.mark.parametrize("size", [0, 1, CHUNK + 7, THREADED_BYTES - 1, THREADED_BYTES,
                                  3 * THREADED_BYTES + 5])
@pytest.mark.parametrize("listed", [True, False], ids=["size listed", "size unknown"])
def test_a_copy_is_the_same_bytes_and_digest_threaded_or_not(
        tmp_path: Path, size: int, listed: bool) -> None:
    data = _data(size)
    dest = tmp_path / "copy"
    got = copy_with_digest(io.BytesIO(data), dest, size if listed else None)
    assert got == (size, hashlib.sha256(data).hexdigest())
    assert dest.read_bytes() == data
    assert _digest_threads() == []


@pytest.mark.parametrize("size, threaded", [(CHUNK, False), (THREADED_BYTES - 1, False),
                                            (THREADED_BYTES, True), (None, True)])
def test_a_large_or_unknown_copy_is_written_by_its_own_thread(
        size: int | None, threaded: bool) -> None:
    writers: list[str] = []
    chunks = [_data(CHUNK)] * 3
    with DigestWriter(lambda _: writers.append(threading.current_thread().name), size) as sink:
        for chunk in chunks:
            sink.put(chunk)
        digest = sink.close()
    assert digest == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert writers == ["digest" if threaded else threading.current_thread().name] * 3
    assert _digest_threads() == []


@pytest.mark.parametrize("size", [CHUNK, THREADED_BYTES], ids=["inline", "threaded"])
def test_a_failing_write_is_raised_and_nothing_after_it_is_written(size: int) -> None:
    written: list[int] = []

    def write(chunk: bytes) -> None:
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(chunk))

    with pytest.raises(OSError, match="No space left") as raised, \
            DigestWriter(write, size) as sink:
        for n in range(20):
            sink.put(_data(CHUNK + n))
        sink.close()
    assert raised.value.errno == errno.ENOSPC
    assert written == [CHUNK, CHUNK + 1]
    assert _digest_threads() == []


def test_a_copy_given_up_ends_its_thread_without_writing_the_rest() -> None:
    """The reading fails (the server went away) with chunks queued: they are not written (the
    copy is removed anyway) and the block is left at once, its thread ended."""
    written: list[int] = []
    writing, given_up = threading.Event(), threading.Event()

    def write(chunk: bytes) -> None:
        if not written:  # the first write lasts until the copy is given up
            writing.set()
            assert wait_until(lambda: sink._given_up, 30)
            given_up.set()
        written.append(len(chunk))

    with pytest.raises(EOFError), DigestWriter(write, None) as sink:
        for n in range(storage._AHEAD):
            sink.put(_data(CHUNK + n))
        assert writing.wait(30)
        raise EOFError("the server closed the connection")
    assert given_up.is_set() and written == [CHUNK]
    assert _digest_threads() == []


def test_a_local_copy_that_cannot_be_written_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``copy_with_digest`` of a large file whose writes fail (the disk is full) raises that
    error and removes its partial copy, whichever thread wrote."""
    data = _data(THREADED_BYTES + CHUNK)
    dest = tmp_path / "copy"
    real_open = open

    class Full(io.BufferedWriter):
        def write(self, chunk: bytes) -> int:  # type: ignore[override]
            if self.tell() >= 3 * CHUNK:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(chunk)

    def full_open(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if path == dest and mode == "wb":
            return Full(real_open(path, mode, buffering=0))
        return real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(OSError, match="No space left"):
        copy_with_digest(io.BytesIO(data), dest, len(data))
    assert not dest.exists()
    assert _digest_threads() == []


def test_a_write_that_failed_is_the_cause_raised_when_the_reading_fails_after_it() -> None:
    """The disk fills (the thread's write fails) and the server's connection drops before the
    next chunk is put: the copy fails for the local disk, the first cause (a full disk is
    the gateway's, not the partner's server's), the read error kept as its context."""
    failed = threading.Event()

    def write(chunk: bytes) -> None:
        failed.set()
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left") as raised, \
            DigestWriter(write, None) as sink:
        sink.put(_data(CHUNK))
        assert failed.wait(30)
        raise EOFError("the server closed the connection")
    assert raised.value.errno == errno.ENOSPC
    assert isinstance(raised.value.__context__, EOFError)
    assert _digest_threads() == []


def test_an_interrupt_while_waiting_for_the_thread_ends_it_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while ``close`` waits for the thread, and again while the block's end waits for
    it: the interrupt is raised, but only once the thread has ended (its caller closes the
    file the thread writes to right after)."""
    go = threading.Event()
    joins: list[bool] = []
    real_join = threading.Thread.join

    def write(chunk: bytes) -> None:
        assert go.wait(30)  # the thread is busy until the interrupt came

    def join(thread: threading.Thread, timeout: float | None = None) -> None:
        if thread.name != "digest":
            return real_join(thread, timeout)
        joins.append(thread.is_alive())
        if len(joins) <= 2:
            raise KeyboardInterrupt
        go.set()
        return real_join(thread, timeout)

    monkeypatch.setattr(threading.Thread, "join", join)
    with pytest.raises(KeyboardInterrupt), DigestWriter(write, None) as sink:
        sink.put(_data(CHUNK))
        sink.put(_data(CHUNK))
        sink.close()
    assert joins == [True, True, True]
    assert _digest_threads() == []


def test_a_writer_starts_its_thread_with_its_first_chunk() -> None:
    """Made and never used (an interrupt before its block, a copy of nothing): no thread is
    left waiting for chunks."""
    writer = DigestWriter(lambda _: None, None)
    assert _digest_threads() == []
    with writer as sink:
        assert sink.close() == hashlib.sha256(b"").hexdigest()
    assert _digest_threads() == []
