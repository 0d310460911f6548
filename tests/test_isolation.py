"""Issue 10, "done when": one partner's trouble is that partner's alone.

For every kind of poison a careless or hostile partner can send (a name, content, size,
volume, a link, its licence appetite), partner ``a`` sends it and partner ``b`` sends a good
file; ONE ``aim-gateway run --once`` (a real subprocess) must exit 0, give ``a``'s file the
outcome it deserves, and license ``b``'s file in the same run. A second run must go as well
(nothing left half-done stops it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from test_hostile import GENERATORS, HOSTILE
from test_poison import AS_OF, Project, good_file

from gateway.config import load_config
from gateway.errors import LedgerUnavailable, TransientError
from gateway.inbox import local
from gateway.inbox.base import RemoteFile
from gateway.ledger.store import FileRow
from gateway.service import process, runner
from gateway.service.runner import run_once

GOOD_B = "good.xml"


@dataclass(frozen=True)
class Poison:
    """What partner ``a`` sends, and what its file must come to."""

    send: Callable[[Project, Path], str | None]  # drops the file(s); the name to look up
    status: str | None  # the file's status (None: no file of ``a`` may be taken at all)
    code: str | None = None  # a finding the file must carry
    partner_a: dict[str, object] = field(default_factory=dict)  # keys of partner a's profile
    gateway: dict[str, object] = field(default_factory=dict)  # keys of [gateway]


def _named(name: str, data: bytes) -> Callable[[Project, Path], str]:
    def send(p: Project, _base: Path) -> str:
        p.drop("a", name, data)
        return name
    return send


def _generated(key: str) -> Callable[[Project, Path], str]:
    def send(p: Project, base: Path) -> str:
        path = p.drop("a", key, b"")
        GENERATORS[key](path)
        os.utime(path, (1_790_000_000, 1_790_000_000))
        return key
    return send


def _duplicate_with_control_name(p: Project, _base: Path) -> str:
    """The reproduction of item 1: an empty file, then the same bytes under ``b\\x01.xml``."""
    p.drop("a", "a.xml", b"")
    assert p.run().returncode == 0
    p.drop("a", "b\x01.xml", b"")
    return "b\x01.xml"


def _volume(p: Project, _base: Path) -> str:
    for n in range(12):
        p.drop("a", f"bulk-{n:02d}.xml", good_file(20 + n))
    return "bulk-00.xml"


def _link_to_b(p: Project, base: Path) -> None:
    secret = base / "secret.xml"
    secret.write_bytes(good_file(40))
    (base / "in" / "a" / "stolen.xml").symlink_to(secret)
    return None


def _folder_in_its_outbox(p: Project, base: Path) -> None:
    """A local partner's sync tool leaves a folder named like the gateway's temp files in
    the partner's own outbox: the start-up clean-up must neither fail nor remove it."""
    p.drop("a", "first.xml", good_file(80))
    assert p.run().returncode == 0
    (base / "outbox" / "a" / ".sync.tmp").mkdir()
    return None


def _processed_links_to_b(p: Project, base: Path) -> str:
    """``processed`` made a link to partner b's inbox: the file must never be moved there."""
    (base / "in" / "a" / "processed").symlink_to(base / "in" / "b")
    p.drop("a", "from-a.xml", good_file(81))
    return "from-a.xml"


def _foreign_digits(p: Project, _base: Path) -> str:
    data = good_file(50).replace(b"<PortOfEntry>3004</PortOfEntry>",
                                 "<PortOfEntry>٣٠٠٤</PortOfEntry>".encode(), 1)
    p.drop("a", "digits.xml", data)
    return "digits.xml"


POISONS = {
    "control character name on the DUPLICATE path": Poison(
        _duplicate_with_control_name, "DUPLICATE", "F006"),
    "terminal escapes and line breaks in the name": Poison(
        _named("x\x1b]0;owned\x07\r\n\x1b[31m.xml", good_file(60)), "ACCEPTED"),
    "900,000 attributes on one application": Poison(
        _generated("gen-900k-attributes.xml"), "PARTIAL", "A101"),
    "200,000 bad product lines": Poison(
        _generated("gen-many-findings.xml"), "PARTIAL", "A120"),
    "a 1 GB sparse file": Poison(
        _generated("gen-1gb-sparse.xml"), "REJECTED", "F003",
        gateway={"max_file_bytes": 5_000_000}),
    "billion laughs": Poison(
        _named("laughs.xml", (HOSTILE / "billion-laughs.xml").read_bytes()), "REJECTED", "F004"),
    "binary junk": Poison(_named("junk.xml", bytes(range(256)) * 64), "REJECTED", "F002"),
    "digits of another script": Poison(_foreign_digits, "PARTIAL", "A160"),
    "more licenses than its daily quota": Poison(
        _named("many.xml", good_file(70)), "PARTIAL", "A109",
        partner_a={"max_licenses_per_day": 1}),
    "a backlog of files": Poison(_volume, "ACCEPTED", partner_a={"max_files": 2}),
    "a link to a file outside its inbox": Poison(_link_to_b, None),
    "a folder named like a temp file in its outbox": Poison(_folder_in_its_outbox, None),
    "its processed folder a link to another partner's inbox": Poison(
        _processed_links_to_b, "ACCEPTED"),
}


@pytest.mark.parametrize("poison", list(POISONS.values()), ids=list(POISONS))
def test_partner_b_is_licensed_in_the_run_that_partner_a_poisons(
        tmp_path: Path, poison: Poison) -> None:
    p = Project(tmp_path)
    p.toml.set("gateway", **poison.gateway).update("a", **poison.partner_a).write()
    name = poison.send(p, tmp_path)
    p.drop("b", GOOD_B, good_file(1))

    result = p.run()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert p.status_of("b", GOOD_B) == "ACCEPTED"
    licensed_b = p.rows("SELECT COUNT(*) FROM licenses WHERE partner = 'b'")[0][0]
    assert licensed_b == 3  # PO-4411, PO-4412, PO-4413 (WH-0077 is a warehouse entry)

    if poison.send is _folder_in_its_outbox:
        assert (tmp_path / "outbox" / "a" / ".sync.tmp").is_dir()  # the partner's, kept
    elif poison.status is None:
        assert p.rows("SELECT COUNT(*) FROM files WHERE partner = 'a'") == [(0,)]
    else:
        assert name is not None
        assert p.status_of("a", name) == poison.status
    if poison.code is not None:
        codes = {c for (c,) in p.rows(
            "SELECT f.code FROM findings f JOIN files USING (file_id) "
            "WHERE files.partner = 'a' AND files.remote_name = ?", name)}
        assert poison.code in codes, codes

    # Nothing of a's ever lands in b's inbox (a link in a's folders is never written through).
    assert sorted(f.name for f in (tmp_path / "in" / "b").iterdir()
                  if not f.name.startswith("processed")) == []
    # And the next run goes as well: nothing the poison left stops it.
    p.drop("b", "good-2.xml", good_file(2))
    again = p.run()
    assert again.returncode == 0, again.stderr
    assert p.status_of("b", "good-2.xml") == "ACCEPTED"


def test_a_fifo_swapped_in_after_the_listing_never_hangs_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a FIFO for reading blocks until a writer comes: the partner who swaps one in
    for a listed file (while the file before it is processed) must not hang every partner."""
    p = Project(tmp_path)
    p.drop("a", "1-first.xml", good_file(90))
    second = p.drop("a", "2-second.xml", good_file(91))
    p.drop("b", GOOD_B, good_file(1))
    real = runner.receive

    def receive(inbox: object, remote: RemoteFile, *args: object, **kwargs: object) -> str:
        if remote.name == "2-second.xml":  # the partner wins the race after the listing
            mtime = second.stat().st_mtime
            second.unlink()
            os.mkfifo(second)
            os.utime(second, (mtime, mtime))
        return real(inbox, remote, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "receive", receive)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (run_once(load_config(p.cfg),
                                                       date.fromisoformat(AS_OF)), done.set()),
                              daemon=True)
    thread.start()
    try:
        assert done.wait(60), "the run hangs on the FIFO"
    finally:
        if not done.is_set():  # let the thread go: a writer unblocks the open
            os.close(os.open(second, os.O_WRONLY | os.O_NONBLOCK))
    assert p.status_of("a", "1-first.xml") == "ACCEPTED"
    assert p.status_of("a", "2-second.xml") is None  # not taken
    assert p.status_of("b", GOOD_B) == "ACCEPTED"
    assert [e["name"] for e in p.events("file.not_taken")] == ["2-second.xml"]


def test_a_nul_in_a_partners_poll_error_never_stops_the_run_on_postgresql(
        tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile SFTP server's status text (passed on in the poll's error) can hold a NUL,
    which PostgreSQL refuses in a text column: stored escaped, the next partner polled."""
    p = Project(tmp_path)
    p.toml.ledger(pg_dsn).write()
    real = local.LocalInbox.list

    def listing(self: local.LocalInbox) -> list[RemoteFile]:
        if self.partner_id == "a":
            raise TransientError("partner a: listing /inbox failed: bad\x00name\x1b[31m")
        return real(self)

    monkeypatch.setattr(local.LocalInbox, "list", listing)
    p.drop("b", GOOD_B, good_file(1))
    reports = {r.partner: r for r in run_once(load_config(p.cfg), date.fromisoformat(AS_OF))}
    assert reports["a"].error == "partner a: listing /inbox failed: bad\\x00name\\x1b[31m"
    assert reports["b"].error is None and len(reports["b"].taken) == 1


def test_a_busy_ledger_is_the_polls_failure_never_counted_against_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lock contention (another process holding SQLite's write lock, PostgreSQL out of reach)
    says nothing about the file in hand: however often it happens, a good file is never
    quarantined for it."""
    p = Project(tmp_path)
    p.drop("a", "fine.xml", good_file(95))
    real = process.FileProcessor.finish

    def finish(self: process.FileProcessor, row: FileRow, *more: Any) -> FileRow:
        if row.partner == "a":
            raise LedgerUnavailable("The ledger is busy: database is locked")
        return real(self, row, *more)

    monkeypatch.setattr(process.FileProcessor, "finish", finish)
    for attempt in range(4):
        if attempt:  # no back-off wait between the runs of this test
            p.rows("UPDATE partner_state SET next_attempt_at = 0")
        reports = {r.partner: r for r in run_once(load_config(p.cfg),
                                                  date.fromisoformat(AS_OF))}
        assert reports["a"].error is not None and "busy" in reports["a"].error
    assert p.events("file.quarantined") == [] and p.events("file.error") == []
    monkeypatch.setattr(process.FileProcessor, "finish", real)
    p.rows("UPDATE partner_state SET next_attempt_at = 0")
    run_once(load_config(p.cfg), date.fromisoformat(AS_OF))
    assert p.status_of("a", "fine.xml") == "ACCEPTED"
