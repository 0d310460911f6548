"""Outputs fsynced at once (issue 15): ``storage.together`` runs independent fsyncs on the
pool ``syncs_overlapped`` holds, ``files_synced_together`` publishes a file's outputs only once
all are fsynced. An fsync that fails (EIO) in a pool thread is that file's failure as before:
counted, its outputs taken back, no temp file left; the other files and partners go on; no
thread or descriptor outlives the poll."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
from datetime import date
from pathlib import Path

import pytest
from conftest import ProjectConfig
from test_poison import good_file

from gateway import storage
from gateway.config import load_config
from gateway.service.runner import Runner

AS_OF = date(2026, 12, 1)


def open_fds() -> set[str]:
    """What this process has open (the paths of its descriptors). Tests compare what is open
    after with what was open before by what is NEW (``open_fds() - before``): an earlier
    test's garbage (an unclosed ledger, say) may be collected, and its descriptors closed,
    while the test runs, which is no leak of the code under test."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed since
            found.add(os.readlink(f"/proc/self/fd/{fd}"))
    return found


def failing_fsync(monkeypatch: pytest.MonkeyPatch, fails: str, times: int = 1) -> list[str]:
    """os.fsync raising EIO for a descriptor whose path holds ``fails`` (``times`` times);
    the paths it failed for."""
    real = os.fsync
    failed: list[str] = []

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if fails in path and len(failed) < times:
            failed.append(path)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return failed


def test_together_runs_all_then_raises_the_first_error(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folders = [tmp_path / f"d{i}" for i in range(5)]
    for folder in folders:
        folder.mkdir()
    failed = failing_fsync(monkeypatch, "d3")
    threads, fds = set(threading.enumerate()), open_fds()
    with storage.syncs_overlapped():
        with pytest.raises(OSError) as caught:
            storage.fsync_dirs(folders)
        assert caught.value.errno == errno.EIO
        storage.fsync_dirs(folders)  # the pool still serves after a failure
    assert failed == [str(tmp_path / "d3")]
    assert set(threading.enumerate()) - threads == set()  # no thread left running
    assert open_fds() - fds == set()  # nothing left open


def test_files_synced_together_publish_only_at_the_end(tmp_path: Path) -> None:
    with storage.syncs_overlapped(), storage.files_synced_together():
        storage.atomic_write(tmp_path / "a.txt", b"a")
        storage.atomic_write(tmp_path / "b.txt", b"b")
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            f".a.txt.{os.getpid()}.tmp", f".b.txt.{os.getpid()}.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    assert (tmp_path / "b.txt").read_bytes() == b"b"


def test_files_synced_together_take_back_all_when_one_fsync_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing_fsync(monkeypatch, "b.txt")
    with pytest.raises(OSError), storage.syncs_overlapped(), storage.files_synced_together():
        for name in ("a.txt", "b.txt", "c.txt"):
            storage.atomic_write(tmp_path / name, name.encode())
    assert list(tmp_path.iterdir()) == []  # nothing published, no temp file left


def test_an_fsync_error_in_a_pool_thread_fails_that_file_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = ProjectConfig(tmp_path)
    for pid, filer in (("a", "SMP"), ("b", "SMB")):
        toml.partner(pid, inbox=f"in/{pid}", filer_code=filer, filer=True)
        toml.inbox(pid)
    config = load_config(toml.write())
    mtime = 1_790_000_000
    for pid, n in (("a", 1), ("a", 2), ("b", 3)):
        path = tmp_path / "in" / pid / f"{pid}{n}.xml"
        path.write_bytes(good_file(n))
        mtime += 60
        os.utime(path, (mtime, mtime))
    # The AE file of partner a's first file (20261201-000001): fsynced on the pool, with
    # the stored ack and the manifest.
    failed = failing_fsync(monkeypatch, ".AE-20261201-000001.txt.")
    runner = Runner(config, as_of=AS_OF)
    try:
        runner.recover()
        fds = open_fds()  # the ledger's and the start's own, held until close
        first = runner.poll(config.partner("a"))
        other = runner.poll(config.partner("b"))
        assert len(failed) == 1
        assert first.file_failed and first.failed_file == "20261201-000001"
        assert "Input/output error" in (first.error or "")
        assert other.error is None and len(other.taken) == 1
        leftovers = [p for p in tmp_path.rglob(".*.tmp")]
        assert leftovers == []
        assert not list((tmp_path / "outbox" / "ace").glob("*20261201-000001*"))
        again = runner.poll(config.partner("a"))  # the disk is well again
        assert again.error is None
        assert open_fds() - fds == set()  # nothing left open
    finally:
        runner.close()
    # (The progress recorder's thread ends on its own a moment later: not the pool's.)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("fsync")]
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as con:
        rows = con.execute("SELECT remote_name, state, status FROM files ORDER BY file_id"
                           ).fetchall()
        failures = con.execute("SELECT count(*) FROM events WHERE kind = 'file.error'"
                               ).fetchone()
    assert rows == [("a1.xml", "DONE", "ACCEPTED"), ("b3.xml", "DONE", "ACCEPTED"),
                    ("a2.xml", "DONE", "ACCEPTED")]
    assert failures == (1,)
    assert (tmp_path / "outbox" / "a" / "a1.xml.ack.xml").is_file()
