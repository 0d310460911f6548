"""validate.read_process under faults (issue 15, red team): signals, cut frames, a foreign
package in the working folder, an idle spare, an interrupted end, an unknown message."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_read_process import _prepared, _read, generated

from gateway.validate import read_process
from gateway.validate.read_process import ProcessReader, ReadProcessLost, read_source
from gateway.validate.staging import Prepared


@pytest.fixture(autouse=True)
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(read_process, "_cpus", lambda: 2)
    yield
    # A test that shows a leaked slot must not leave it to the next one.
    for spare in read_process._spares.values():
        read_process._end(spare)
    read_process._spares.clear()
    read_process._reading.clear()
    read_process._children = 0
    for process in _children_of_me():  # a child a failing test leaked
        if read_process._CHILD in process.args:
            read_process._end(process)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_to_every_process_does_not_fail_the_file_in_hand(
        tmp_path: Path, signum: int) -> None:
    """OPERATIONS.md: on SIGTERM/SIGINT the file in hand finishes. Ctrl-C in a terminal, or a
    service stop, signals every process of the gateway: the child reads on (it ignores them,
    in a session of its own) and the file is read whole."""
    prepared = _prepared(generated(tmp_path, 20000, 1), tmp_path)
    assert prepared is not None
    alone = _read(prepared.reader())
    with read_source(prepared, 1) as source:
        assert isinstance(source, ProcessReader)
        items = source.applications()
        first = repr(next(items))
        source._process.send_signal(signum)  # as Ctrl-C, a service stop or a reload may
        rest = [first]
        end: object = "end"
        try:
            rest += [repr(item) for item in items]
        except ReadProcessLost as err:
            end = err
    assert end == "end", f"the file in hand failed: {end!r}"
    assert rest == alone[1]


def test_a_frame_cut_short_is_read_process_lost(tmp_path: Path) -> None:
    """A child killed in the middle of a message (the OOM killer, kill -9 mid-write): fewer
    bytes than the message's length are the child lost (ReadProcessLost), never a marshal
    error from half a message."""
    prepared = _prepared(generated(tmp_path, 100, 1), tmp_path)
    assert prepared is not None
    # A child that sends the head of a 1,000-byte frame and 10 bytes of it, then dies.
    script = ("import os, struct, sys\n"
              "sys.stdin.buffer.read(1)\n"
              "os.write(1, struct.pack('<IB', 1000, 0) + b'\\x00' * 10)\n"
              "os._exit(9)\n")
    source = _posing_child(prepared, script, subprocess.PIPE)
    try:
        with pytest.raises(ReadProcessLost):
            list(source.applications())
    finally:
        source.close()
    assert read_process._children == 0


def test_the_child_imports_the_parents_package_not_one_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -c`` would put the working folder first on sys.path: a ``gateway`` package
    there (an old checkout the operator runs the installed gateway from) must never be what
    the child runs (``-P``)."""
    prepared = _prepared(generated(tmp_path, 3000, 1), tmp_path)
    assert prepared is not None
    alone = _read(prepared.reader())
    elsewhere = tmp_path / "old-checkout"
    (elsewhere / "gateway").mkdir(parents=True)
    (elsewhere / "gateway" / "__init__.py").write_text(
        "raise ImportError('not the gateway the parent runs')\n", encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    with read_source(prepared, 1) as source:
        assert isinstance(source, ProcessReader)
        beside = _read(source)
    assert beside == alone


def test_a_spare_of_another_thread_leaves_a_large_file_without_a_child(tmp_path: Path) -> None:
    """A child started ahead for one partner's file still being fetched does not keep
    another partner's file, ready to read now, from being read by it."""
    prepared = _prepared(generated(tmp_path, 3000, 1), tmp_path)
    assert prepared is not None
    started, done = threading.Event(), threading.Event()

    spares: list[subprocess.Popen[bytes]] = []

    def partner_a() -> None:  # its poll: a large file listed, being downloaded
        read_process.prestart(50 << 20, 1)
        spares.extend(read_process._spares.values())
        started.set()
        done.wait(30)
        read_process.discard_spare()

    thread = threading.Thread(target=partner_a)
    thread.start()
    try:
        assert started.wait(30)
        with read_source(prepared, 1) as source:  # partner B's large file, ready to read
            assert isinstance(source, ProcessReader), "an idle spare kept B's file in process"
            # A's spare ended, not used: a child dies with the thread that started it.
            assert source._process is not spares[0] and spares[0].returncode is not None
    finally:
        done.set()
        thread.join()
    assert read_process._children == 0


def test_the_slot_is_released_when_ending_the_child_is_interrupted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one slot is free again however ending the child went (a Ctrl-C while waiting for
    it): later large files still get their child."""
    prepared = _prepared(generated(tmp_path, 3000, 1), tmp_path)
    assert prepared is not None
    real_end = read_process._end

    def interrupted(process: subprocess.Popen[bytes]) -> None:
        real_end(process)
        raise KeyboardInterrupt

    monkeypatch.setattr(read_process, "_end", interrupted)
    with pytest.raises(KeyboardInterrupt), read_source(prepared, 1) as source:
        assert isinstance(source, ProcessReader)
        items = source.applications()
        next(items)
    items.close()
    monkeypatch.setattr(read_process, "_end", real_end)
    assert read_process._children == 0 and read_process.reading_pids() == []


def test_an_unexpected_message_after_applications_is_not_a_second_reading(
        tmp_path: Path) -> None:
    """A kind of message it does not know is the child lost, never a reason to read the file
    again in process after the applications already sent (they would come twice)."""
    prepared = _prepared(generated(tmp_path, 100, 1), tmp_path)
    assert prepared is not None
    real = subprocess.Popen([sys.executable, "-c", read_process._CHILD],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert read_process._request(real, prepared)
    # A relay: the child's first batch, then a message of an unknown kind (7).
    script = ("import marshal, os, struct, sys\n"
              "src = sys.stdin.buffer\n"
              "head = src.read(5)\n"
              "n, codec = struct.unpack('<IB', head)\n"
              "os.write(1, head + src.read(n))\n"
              "body = marshal.dumps((7, None))\n"
              "os.write(1, struct.pack('<IB', len(body), 0) + body)\n")
    source = _posing_child(prepared, script, real.stdout)
    try:
        seqs: list[int] = []
        with pytest.raises(ReadProcessLost, match="unknown kind 7"):
            seqs.extend(item.seq for item in source.applications())
    finally:
        source.close()
        read_process._end(real)
    assert len(seqs) == len(set(seqs)), "applications yielded twice"


class _Unpicklable:
    def __reduce__(self) -> tuple[object, ...]:
        raise ValueError("this object cannot be pickled")  # not PicklingError / TypeError


def test_a_request_that_fails_to_pickle_otherwise_reads_in_process_and_leaks_nothing(
        tmp_path: Path) -> None:
    """Any error of pickling the request (ValueError, RecursionError of a deep object...):
    the file is read in process, the slot free again, the child started for it ended."""
    prepared = _prepared(generated(tmp_path, 3000, 1), tmp_path)
    assert prepared is not None
    prepared.extra = _Unpicklable()  # type: ignore[attr-defined]
    before = {p.pid for p in _children_of_me()}
    with read_source(prepared, 1) as source:
        assert isinstance(source, read_process.Reader)
    assert read_process._children == 0
    assert {p.pid for p in _children_of_me()} == before, "a child left waiting"


def test_a_spawn_that_fails_otherwise_reads_in_process_and_frees_the_slot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepared = _prepared(generated(tmp_path, 3000, 1), tmp_path)
    assert prepared is not None
    monkeypatch.setattr(read_process.sys, "executable", None)  # Popen: TypeError, not OSError
    read_process.prestart(10, 1)
    assert read_process._children == 0 and not read_process._spares
    with read_source(prepared, 1) as source:
        assert isinstance(source, read_process.Reader)
    assert read_process._children == 0


def test_the_child_gets_no_secret_of_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process that parses a partner's bytes gets no password, passphrase or token of
    the gateway's environment (a systemd EnvironmentFile's)."""
    monkeypatch.setenv("AIMGW_SFTP_PASSWORD_ACME", "not-for-the-reader")
    monkeypatch.setenv("AIMGW_WEB_TOKEN", "not-for-the-reader")
    process = read_process._spawn()
    assert process is not None
    try:
        environ = Path(f"/proc/{process.pid}/environ").read_bytes()
    finally:
        read_process._end(process)
    assert b"not-for-the-reader" not in environ
    assert b"PYTHONPATH=" in environ


def _posing_child(prepared: Prepared, script: str, stdin: object) -> ProcessReader:
    """A reader over ``script`` posing as the reading child, its slot counted as
    ``read_source`` counts a child's."""
    process = subprocess.Popen([sys.executable, "-c", script], stdin=stdin,
                               stdout=subprocess.PIPE, bufsize=0)
    with read_process._slots_lock:
        read_process._children += 1
    return ProcessReader(prepared, process)


def _children_of_me() -> list[subprocess.Popen[bytes]]:
    return [p for p in gc.get_objects() if isinstance(p, subprocess.Popen)
            and p.poll() is None]
