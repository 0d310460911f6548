"""SFTP fault suite against the real sshd (tests/sftp_server.py), issue 6 point 2.

Each fault is injected at a precise point (an in-process hook on ``SftpInbox`` or paramiko, the
cutting proxy, a tiny local file system), then the same checks are made:

* no loss: the partner's file is still in its inbox, or it is in the processed folder and the
  ledger has it DONE;
* no duplicate: in the end one ledger row, one set of licenses, one acknowledgment;
* a clear reason, naming the partner and the file, in the poll report and in the
  ``partner.error`` event of data/events.jsonl;
* nothing partial left behind: no file in data/work/tmp, no temp file in the partner's folders;
* recovery: once the fault is gone, a later poll finishes the work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import paramiko
import pytest
from sftp_server import SftpAccount, SshServer, TcpCutProxy, _children_of, faulty_sshd
from test_sftp import GOOD, drop, run_once, sftp_project, with_id

from gateway.inbox.sftp import SftpInbox

ACK = "{}.ack.xml"
FAST: dict[str, object] = {"max_backoff_seconds": 1, "failure_alert_after": 2}
STATUS_FILES = {"status.json", "status.csv"}  # rewritten after each poll (outputs/status_files.py)


# -- helpers ---------------------------------------------------------------------------------


def sub(name: str) -> bytes:
    """A distinct valid submission (own SubmissionId and refs: 3 licenses) per file name."""
    stem = name.split(".")[0].upper()
    return with_id(GOOD, f"FAULT-{stem}", f"F{stem}")


def put_files(account: SftpAccount, *names: str) -> None:
    """Drop the files, oldest first in the order given (the gateway takes them that way)."""
    start = time.time() - 100
    for n, name in enumerate(names):
        drop(account, name, sub(name))
        os.utime(Path(account.inbox, name), (start + n, start + n))


def query(base: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(base / "data" / "ledger.sqlite")) as con:
        return con.execute(sql, params).fetchall()


def events(base: Path) -> list[dict[str, Any]]:
    path = base / "data" / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def partner_errors(base: Path) -> list[str]:
    return [e["error"] for e in events(base) if e["event"] == "partner.error"]


def poll(base: Path, cfg: Path) -> Any:
    """One cycle, after waiting out the partner's back-off (at most max_backoff_seconds = 1)."""
    rows = query(base, "SELECT next_attempt_at FROM partner_state") if (
        base / "data" / "ledger.sqlite").exists() else []
    wait = max([float(r[0] or 0) for r in rows] + [0.0]) - time.time()
    if wait > 0:
        time.sleep(wait + 0.05)
    return run_once(cfg)[0]


def age_sightings(base: Path, seconds: float = 5) -> None:
    """As if ``seconds`` had passed since the remote files were first seen (stable rule)."""
    with contextlib.closing(sqlite3.connect(base / "data" / "ledger.sqlite")) as con, con:
        con.execute("UPDATE remote_seen SET first_seen = first_seen - ?", (seconds,))


def cli_poll(cfg: Path) -> subprocess.CompletedProcess[str]:
    """One cycle in a fresh process (another pid, as after a restart of the gateway)."""
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--once", "--config",
                           str(cfg)], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def remote_acks(account: SftpAccount) -> list[str]:
    """The acknowledgments in the partner's remote folder (not its status files); no file
    there may be a temp file."""
    names = sorted(set(os.listdir(account.acks)) - STATUS_FILES - {"status"})
    assert not [n for n in names if n.startswith(".")], f"temp files left: {names}"
    return names


def work_leftovers(base: Path) -> list[str]:
    tmp = base / "data" / "work" / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []


def assert_failed_clearly(base: Path, report: Any, *words: str) -> None:
    """The poll failed, and said why, naming the partner, in the report and the log."""
    assert report.error, "the poll should have failed"
    for word in ("partner acme", *words):
        assert word in report.error, (word, report.error)
    assert partner_errors(base)[-1] == report.error
    assert work_leftovers(base) == []  # no partial download kept locally


def assert_not_lost(base: Path, account: SftpAccount, names: tuple[str, ...]) -> None:
    """Each file is still offered by the partner, or processed and recorded DONE."""
    done = {r[0] for r in query(base, "SELECT remote_name FROM files WHERE state = 'DONE'")}
    inbox, processed = set(os.listdir(account.inbox)), set(os.listdir(account.processed))
    for name in names:
        assert name in inbox or (name in processed and name in done), name
        assert not (name in processed and name in inbox), name


def assert_taken_once(base: Path, account: SftpAccount, names: tuple[str, ...],
                      inbox_left: tuple[str, ...] = ()) -> None:
    """Every file taken exactly once, acknowledged once, moved once; nothing left over."""
    rows = query(base, "SELECT remote_name, state, status, sha256 FROM files "
                 "ORDER BY remote_name")
    assert [r[:3] for r in rows] == [(n, "DONE", "ACCEPTED") for n in sorted(names)]
    assert query(base, "SELECT COUNT(*) FROM licenses") == [(3 * len(names),)]
    assert sorted(os.listdir(account.inbox)) == sorted(inbox_left)
    assert sorted(os.listdir(account.processed)) == sorted(names)
    assert remote_acks(account) == sorted(ACK.format(n) for n in names)
    for name in names:
        remote_ack = Path(account.acks, ACK.format(name)).read_bytes()
        assert remote_ack == (base / "outbox" / "acme" / ACK.format(name)).read_bytes()
        assert b"<Status>ACCEPTED</Status>" in remote_ack
    log = events(base)
    for name in names:
        assert sum(e["event"] == "file.received" and e["name"] == name for e in log) == 1
    assert sum(e["event"] == "file.done" for e in log) == len(names)
    assert work_leftovers(base) == []
    received = base / "data" / "work" / "received"
    assert not received.is_dir() or list(received.iterdir()) == []


def hook(monkeypatch: pytest.MonkeyPatch, cls: type, method: str,
         before: Callable[[int, tuple[Any, ...]], None]) -> list[int]:
    """Run ``before(call number, args)`` ahead of every ``cls.method`` call; count calls."""
    original = getattr(cls, method)
    calls: list[int] = []

    def hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        before(len(calls), args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, hooked)
    return calls


def config(base: Path, account: SftpAccount, sshd: SshServer, **settings: Any) -> Path:
    """The partner ``acme`` failing fast (FAST), with ``settings`` replacing its keys."""
    return sftp_project(base).sftp_partner("acme", sshd, account, **{**FAST, **settings}).write()


# -- server stopped (or frozen) in the middle of a poll ----------------------------------------


@contextlib.contextmanager
def frozen(sshd: SshServer) -> Iterator[Callable[[], None]]:
    """``freeze()`` stops (SIGSTOP) every open session; they are resumed on exit."""
    stopped: list[int] = []

    def freeze() -> None:
        assert sshd.pid is not None
        for pid in _children_of(sshd.pid):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)

    try:
        yield freeze
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("where", ["fetch", "deliver", "dispose", "frozen-fetch"])
def test_server_stopped_mid_poll(tmp_path: Path, sshd: SshServer,
                                 monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """a.xml and b.xml are waiting; the server goes away at one step of the poll."""
    acme = sshd.account("acme")
    cfg = config(tmp_path, acme, sshd, operation_timeout=2)
    names = ("a.xml", "b.xml")
    put_files(acme, *names)
    with frozen(sshd) as freeze:
        if where == "frozen-fetch":  # the server hangs (no answer, no disconnect)
            hook(monkeypatch, SftpInbox, "fetch", lambda n, _a: freeze() if n == 2 else None)
        else:  # "fetch": before the 2nd download; else before the 1st ack upload / move
            when = 2 if where == "fetch" else 1
            hook(monkeypatch, SftpInbox, where,
                 lambda n, _a: sshd.stop() if n == when else None)
        started = time.monotonic()
        first = poll(tmp_path, cfg)
        assert time.monotonic() - started < 15  # bounded by the timeouts: no hang
    monkeypatch.undo()
    sshd.start()
    expected = {"fetch": "download of b.xml", "frozen-fetch": "no answer within 2 s",
                "deliver": "upload a.xml.ack.xml", "dispose": "move a.xml"}[where]
    assert_failed_clearly(tmp_path, first, expected)
    assert_not_lost(tmp_path, acme, names)
    assert len(first.taken) == 1  # a.xml was received (and, for "fetch", finished)
    # The server is back: the half-done file is finished first, then the rest is taken.
    second = poll(tmp_path, cfg)
    assert second.error is None
    assert_taken_once(tmp_path, acme, names)
    assert poll(tmp_path, cfg).taken == []


# -- connection cut in the middle of a download or an upload -----------------------------------


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_connection_cut_mid_download(tmp_path: Path, sshd: SshServer,
                                     cut_proxy: TcpCutProxy) -> None:
    acme = sshd.account("acme")
    cfg = config(tmp_path, acme, sshd, port=cut_proxy.port)
    big = sub("big.xml").replace(b"</LicenseSubmission>",
                                 b"<!--" + b"p" * 2_000_000 + b"-->\n</LicenseSubmission>")
    drop(acme, "big.xml", big)
    cut_proxy.cut_after(300_000)
    first = poll(tmp_path, cfg)
    assert cut_proxy.connections[-1].cut
    assert_failed_clearly(tmp_path, first, "download of big.xml failed after")
    assert os.listdir(acme.inbox) == ["big.xml"] and os.listdir(acme.processed) == []
    assert query(tmp_path, "SELECT COUNT(*) FROM files") == [(0,)]
    second = poll(tmp_path, cfg)
    assert second.error is None and len(second.taken) == 1
    assert_taken_once(tmp_path, acme, ("big.xml",))


@pytest.mark.parametrize("how", ["server-stopped", "network-cut"])
def test_connection_cut_mid_upload_of_the_ack(tmp_path: Path, sshd: SshServer,
                                              cut_proxy: TcpCutProxy,
                                              monkeypatch: pytest.MonkeyPatch,
                                              how: str) -> None:
    """Half the acknowledgment is written to its remote temp name, then the link drops."""
    acme = sshd.account("acme")
    cfg = config(tmp_path, acme, sshd, port=cut_proxy.port)
    put_files(acme, "a.xml")

    def cut() -> None:
        if how == "server-stopped":
            sshd.stop()
        else:
            cut_proxy.stop()  # every proxied connection is closed: a network cut

    def half_then_cut(sftp: paramiko.SFTPClient, src: BinaryIO,
                      remote: str) -> paramiko.SFTPAttributes:
        data = src.read()
        with sftp.open(remote, "wx") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            cut()
            fh.write(data[len(data) // 2:])
            fh.flush()
        return sftp.stat(remote)

    monkeypatch.setattr(SftpInbox, "_upload", staticmethod(half_then_cut))
    first = poll(tmp_path, cfg)
    monkeypatch.undo()
    assert_failed_clearly(tmp_path, first, "upload a.xml.ack.xml")
    partial = [n for n in os.listdir(acme.acks) if n.startswith(".")]
    assert len(partial) == 1  # the cut left a half-written temp file on the server
    assert_not_lost(tmp_path, acme, ("a.xml",))
    assert os.listdir(acme.inbox) == ["a.xml"]  # never moved before its ack is delivered
    assert query(tmp_path, "SELECT state FROM files") == [("ARCHIVED",)]
    if how == "server-stopped":
        sshd.start()
    else:
        cut_proxy.start()
    # Recovery by another process (a restarted gateway): the ack is delivered whole, the
    # half-written temp file does not stay behind, the file is not processed again.
    cli_poll(cfg)
    assert_taken_once(tmp_path, acme, ("a.xml",))
    assert partner_errors(tmp_path) == [first.error]


# -- permission denied on (or no usable) processed folder --------------------------------------


@contextlib.contextmanager
def immutable(folder: str) -> Iterator[None]:
    """``chattr +i``: even root gets EPERM when moving a file into the folder."""
    done = subprocess.run(["chattr", "+i", folder], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", folder], check=True)


@pytest.mark.parametrize("how", ["immutable", "under-a-file", "missing"])
def test_processed_folder_not_writable(tmp_path: Path, sshd: SshServer, how: str) -> None:
    acme = sshd.account("acme")
    processed = acme.processed
    if how == "under-a-file":
        blocker = Path(acme.root, "blocker")
        blocker.write_text("a regular file where a folder should be\n")
        processed = str(blocker / "processed")
    elif how == "missing":
        processed = str(Path(acme.root, "no-such-folder"))
    cfg = config(tmp_path, acme, sshd, remote_processed_dir=processed)
    put_files(acme, "a.xml")
    with immutable(acme.processed) if how == "immutable" else contextlib.nullcontext():
        first = poll(tmp_path, cfg)
        second = poll(tmp_path, cfg)  # still broken: nothing is taken or processed again
    reason = "permission denied" if how == "immutable" else processed
    assert_failed_clearly(tmp_path, first, "a.xml", reason)
    assert second.error == first.error and second.taken == []
    assert os.listdir(acme.inbox) == ["a.xml"]
    assert query(tmp_path, "SELECT state FROM files") == [("ARCHIVED",)]  # not DONE
    assert query(tmp_path, "SELECT COUNT(*) FROM licenses") == [(3,)]
    assert remote_acks(acme) == [ACK.format("a.xml")]  # delivered again, not twice
    assert_not_lost(tmp_path, acme, ("a.xml",))
    if how != "immutable":  # the partner fixes the profile's folder
        cfg = config(tmp_path, acme, sshd)
    third = poll(tmp_path, cfg)
    assert third.error is None
    assert_taken_once(tmp_path, acme, ("a.xml",))
    kinds = [e["event"] for e in events(tmp_path)]
    assert kinds.count("partner.failing") == 1 and kinds.count("partner.recovered") == 1


@pytest.mark.parametrize("folder", ["inbox", "acks"])
def test_remote_inbox_or_ack_folder_missing(tmp_path: Path, sshd: SshServer,
                                            folder: str) -> None:
    """A folder of the profile is missing on the server: the partner's poll fails with the
    folder's name (it used to escape as a bare FileNotFoundError and crash the cycle)."""
    acme = sshd.account("acme")
    cfg = config(tmp_path, acme, sshd)
    if folder == "acks":
        put_files(acme, "a.xml")
    os.rmdir(getattr(acme, folder))
    first = poll(tmp_path, cfg)
    if folder == "inbox":
        assert_failed_clearly(tmp_path, first, f"remote inbox {acme.inbox} does not exist")
        assert first.taken == []
        os.mkdir(acme.inbox)
        put_files(acme, "a.xml")
    else:
        assert_failed_clearly(tmp_path, first, f"cannot write a.xml.ack.xml to {acme.acks}",
                              "does not exist")
        assert query(tmp_path, "SELECT state FROM files") == [("ARCHIVED",)]
        assert os.listdir(acme.inbox) == ["a.xml"]  # not moved before its ack is delivered
        os.mkdir(acme.acks)
    second = poll(tmp_path, cfg)
    assert second.error is None
    assert_taken_once(tmp_path, acme, ("a.xml",))


# -- the remote file deleted or changed between listing and download ---------------------------


def test_remote_file_deleted_between_listing_and_download(
        tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    acme = sshd.account("acme")
    cfg = config(tmp_path, acme, sshd)
    put_files(acme, "a.xml", "b.xml")
    hook(monkeypatch, SftpInbox, "fetch",
         lambda n, args: os.remove(Path(acme.inbox, args[0].name)) if n == 1 else None)
    first = poll(tmp_path, cfg)
    monkeypatch.undo()
    assert_failed_clearly(tmp_path, first, "a.xml disappeared")
    assert query(tmp_path, "SELECT COUNT(*) FROM files") == [(0,)]  # nothing half-recorded
    assert os.listdir(acme.inbox) == ["b.xml"]
    second = poll(tmp_path, cfg)  # the other file is taken; the vanished one is forgotten
    assert second.error is None and len(second.taken) == 1
    assert_taken_once(tmp_path, acme, ("b.xml",))
    assert ("a.xml",) not in query(tmp_path, "SELECT name FROM remote_seen")
    put_files(acme, "a.xml")  # the partner sends it again: taken then
    assert len(poll(tmp_path, cfg).taken) == 1
    assert_taken_once(tmp_path, acme, ("a.xml", "b.xml"))


@pytest.mark.parametrize("change", ["rewritten", "same-size"])
def test_remote_file_changed_between_listing_and_download(
        tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """The stable rule saw a.xml twice, then the partner rewrote it just before the download:
    the old listing is not trusted; the new content is taken once it is stable again."""
    acme = sshd.account("acme")
    cfg = config(tmp_path, acme, sshd, min_age_seconds=1)
    put_files(acme, "a.xml")
    new = sub("a2.xml")
    if change == "same-size":
        new = sub("a.xml").replace(b"FAULT-A", b"FAULT-Z")  # same length, other bytes
        assert len(new) == len(sub("a.xml"))

    def rewrite(n: int, args: tuple[Any, ...]) -> None:
        if n == 1:
            path = Path(acme.inbox, args[0].name)
            path.write_bytes(new)
            os.utime(path, (time.time() - 50, time.time() - 50))

    assert poll(tmp_path, cfg).taken == []  # first sight
    age_sightings(tmp_path)
    hook(monkeypatch, SftpInbox, "fetch", rewrite)
    first = poll(tmp_path, cfg)
    monkeypatch.undo()
    assert_failed_clearly(tmp_path, first, "a.xml changed while it was downloaded")
    assert query(tmp_path, "SELECT COUNT(*) FROM files") == [(0,)]
    assert os.listdir(acme.inbox) == ["a.xml"]
    second = poll(tmp_path, cfg)
    assert second.error is None and second.taken == []  # the new version: seen once only
    age_sightings(tmp_path)
    third = poll(tmp_path, cfg)
    assert len(third.taken) == 1
    assert_taken_once(tmp_path, acme, ("a.xml",))
    assert query(tmp_path, "SELECT sha256, size FROM files") == [
        (hashlib.sha256(new).hexdigest(), len(new))]


# -- the local disk is full ------------------------------------------------------------------


@contextlib.contextmanager
def tiny_tmpfs(folder: Path, size: str) -> Iterator[Callable[[str], None]]:
    """Mount a tmpfs of ``size`` on ``folder``; yields ``resize(size)``. Skips if not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(folder)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")

    def resize(new_size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={new_size}", str(folder)], check=True)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def big_file(padding: int = 3_000_000) -> bytes:
    """A good submission of about ``padding`` bytes more, in comments of 1 MB (one text of
    10 MB would pass the XML reader's limit)."""
    pad = b"".join(b"<!--" + b"p" * min(1_000_000, padding - at) + b"-->\n"
                   for at in range(0, padding, 1_000_000))
    return sub("big.xml").replace(b"</LicenseSubmission>", pad + b"</LicenseSubmission>")


# 3 MB: hashed and written as it is read; 10 MB: in a thread of its own (storage.DigestWriter)
SIZES = pytest.mark.parametrize("padding", [3_000_000, 10_000_000], ids=["3 MB", "10 MB"])


@SIZES
def test_local_disk_full_on_a_tiny_file_system(tmp_path: Path, sshd: SshServer,
                                               padding: int) -> None:
    acme = sshd.account("acme")
    cfg = config(tmp_path, acme, sshd)
    drop(acme, "big.xml", big_file(padding))
    with tiny_tmpfs(tmp_path / "data", "1m") as resize:
        first = poll(tmp_path, cfg)
        assert_failed_clearly(tmp_path, first, "big.xml", "local disk",
                              "No space left on device")
        assert os.listdir(acme.inbox) == ["big.xml"]
        assert query(tmp_path, "SELECT COUNT(*) FROM files") == [(0,)]
        resize("64m")  # the operator frees space
        second = poll(tmp_path, cfg)
        assert second.error is None
        assert_taken_once(tmp_path, acme, ("big.xml",))


@SIZES
def test_local_disk_full_by_a_file_size_limit(tmp_path: Path, sshd: SshServer,
                                              padding: int) -> None:
    """The same without mounting: the gateway runs with RLIMIT_FSIZE = 1 MB (EFBIG)."""
    acme = sshd.account("acme")
    cfg = config(tmp_path, acme, sshd)
    drop(acme, "big.xml", big_file(padding))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    limited = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run", "--once", "--config", str(cfg)],
        capture_output=True, text=True, check=False, timeout=60, preexec_fn=limit)
    assert limited.returncode == 0, limited.stdout + limited.stderr  # not a crash
    errors = partner_errors(tmp_path)
    assert len(errors) == 1 and "big.xml" in errors[0] and "local disk" in errors[0]
    assert "File too large" in errors[0]
    assert work_leftovers(tmp_path) == []
    assert os.listdir(acme.inbox) == ["big.xml"]
    cli_poll(cfg)
    assert_taken_once(tmp_path, acme, ("big.xml",))


# -- clock skew in remote mtimes -------------------------------------------------------------


def test_clock_skew_in_remote_mtimes(tmp_path: Path, sshd: SshServer) -> None:
    """The stable rule counts with the gateway's own clock: a file stamped years ahead is not
    'too new' forever, one stamped in 1970 is not 'old enough' at first sight; and a skewed
    file still being written (same stamp, growing) waits until it stops changing."""
    acme = sshd.account("acme")
    cfg = config(tmp_path, acme, sshd, min_age_seconds=1)
    future, past = time.time() + 20 * 365 * 86400, 86400.0
    stamps = {"future.xml": future, "past.xml": past, "growing.xml": future}
    for name, stamp in stamps.items():
        data = sub(name)
        drop(acme, name, data[: len(data) // 2] if name == "growing.xml" else data)
        os.utime(Path(acme.inbox, name), (stamp, stamp))
    assert poll(tmp_path, cfg).taken == []  # first sight, whatever the stamps say
    time.sleep(1.1)
    drop(acme, "growing.xml", sub("growing.xml"))
    os.utime(Path(acme.inbox, "growing.xml"), (future, future))  # the same skewed stamp
    second = poll(tmp_path, cfg)
    assert second.error is None and len(second.taken) == 2
    assert os.listdir(acme.inbox) == ["growing.xml"]
    time.sleep(1.1)
    assert len(poll(tmp_path, cfg).taken) == 1
    assert poll(tmp_path, cfg).taken == []
    assert_taken_once(tmp_path, acme, tuple(stamps))
    assert dict(query(tmp_path, "SELECT remote_name, mtime FROM files")) == {
        name: float(int(stamp)) for name, stamp in stamps.items()}


# -- a write the server refuses, with the pieces after it written ---------------------------


def many_applications(copies: int) -> bytes:
    """The good sample with its applications ``copies`` times over (own refs): an
    acknowledgment of several 32 KiB pieces."""
    start, end = GOOD.index(b"  <Application "), GOOD.rindex(b"</Application>\n") + 15
    block = GOOD[start:end]
    body = b"".join(block.replace(b'ref="', f'ref="C{n}-'.encode()) for n in range(copies))
    return with_id(GOOD[:start] + body + GOOD[end:], "FAULT-MANY", "FM")


def test_a_refused_write_in_the_middle_of_an_ack_is_never_delivered(tmp_path: Path) -> None:
    """The server refuses one piece of the ack and writes the pieces after it: the remote
    file has the right size and a hole. The delivery must fail on the refused write itself
    (a size check cannot see it), leave no ack and not move the file; the next poll delivers
    the ack whole. (paramiko's pipelined writes drop the status of a write whose answer a
    later request reads first: its ``stat`` and ``close`` did.)"""
    flags = tmp_path / "flags"
    with faulty_sshd(tmp_path / "sshd", flags) as server:
        acme = server.account("acme")
        cfg = config(tmp_path / "project", acme, server)
        drop(acme, "many.xml", many_applications(40))
        (flags / "armed").touch()
        first = poll(tmp_path / "project", cfg)
        assert not (flags / "armed").exists(), "no write of a full piece: the ack is too small"
        # The server refused this upload while its folder takes other files (the gateway's
        # probe): the file's failure, counted and retried (gateway/inbox/sftp.py _on_name).
        assert first.file_failed, first
        for word in ("partner acme", "upload many.xml.ack.xml", "No space left on device"):
            assert word in (first.error or ""), (word, first.error)
        assert remote_acks(acme) == []
        assert [n for n in os.listdir(acme.acks) if n.startswith(".")] == []
        assert os.listdir(acme.inbox) == ["many.xml"]  # never moved before its ack is delivered
        second = poll(tmp_path / "project", cfg)
        assert second.error is None
        local = (tmp_path / "project" / "outbox" / "acme" / ACK.format("many.xml")).read_bytes()
        assert len(local) > 2 * 32 * 1024
        assert Path(acme.acks, ACK.format("many.xml")).read_bytes() == local
        assert os.listdir(acme.processed) == ["many.xml"]
        assert query(tmp_path / "project", "SELECT state, status FROM files") == [
            ("DONE", "ACCEPTED")]


@pytest.mark.parametrize("leftover", [True, False], ids=["leftover", "no-leftover"])
def test_an_ack_is_delivered_whole_by_a_server_that_reorders(tmp_path: Path,
                                                              leftover: bool) -> None:
    """The removal of the temp name and the exclusive create of the new file go out
    together. A server that runs the create first either refuses it (a temp file left by a
    cut upload still holds the name: the create is asked again after the removal) or
    creates the file that the removal then unlinks (no leftover: the name is found gone,
    and the file created again). Either way the ack is delivered whole."""
    flags = tmp_path / "flags"
    with faulty_sshd(tmp_path / "sshd", flags) as server:
        (flags / "reorder").touch()
        acme = server.account("acme")
        cfg = config(tmp_path / "project", acme, server)
        drop(acme, "a.xml", sub("a.xml"))
        if leftover:
            Path(acme.acks, ".a.xml.ack.xml.tmp").write_bytes(b"left by a cut upload")
        first = poll(tmp_path / "project", cfg)
        assert first.error is None
        local = (tmp_path / "project" / "outbox" / "acme" / ACK.format("a.xml")).read_bytes()
        assert remote_acks(acme) == [ACK.format("a.xml")]
        assert Path(acme.acks, ACK.format("a.xml")).read_bytes() == local
        assert os.listdir(acme.processed) == ["a.xml"]
