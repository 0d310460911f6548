"""Races and collisions on a partner's SFTP server, against the real sshd (issue 10, items 6-9).

sshd runs as this test's user (root here) without a chroot: remote paths are local paths, so
a test plays the partner by changing the folders directly, while the gateway polls.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sftp_server import SshServer, faulty_sshd
from test_sftp import GOOD, run_once, sftp_project

from gateway import crash

VICTIM = b"bolt's acknowledgment, not to be touched\n"


def ledger(base: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(base / "data" / "ledger.sqlite") as con:
        return con.execute(sql, params).fetchall()


def events(base: Path, kind: str) -> list[dict[str, object]]:
    lines = (base / "data" / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == kind]


def variant(n: int, data: bytes = GOOD) -> bytes:
    """The good sample as a distinct submission (its own SubmissionId and refs)."""
    return data.replace(b"ACME-20261201-001", f"ACME-20261201-{n:03d}".encode()).replace(
        b'ref="PO-44', f'ref="V{n:02d}-'.encode())


# -- item 7: the ack upload never writes through a planted link -----------------------------


@pytest.mark.parametrize("where", ["temp", "final"])
def test_a_link_planted_in_the_ack_folder_is_never_written_through(
        tmp_path: Path, sshd: SshServer, where: str) -> None:
    """The partner plants a link to another partner's ack at the ack's temp name (or at its
    final name): bolt's ack is unchanged, acme's ack is delivered as a file of its own."""
    acme, bolt = sshd.account("acme"), sshd.account("bolt")
    victim = Path(bolt.acks, "b.xml.ack.xml")
    victim.write_bytes(VICTIM)
    name = "a.xml.ack.xml"
    link = Path(acme.acks, f".{name}.tmp" if where == "temp" else name)
    link.symlink_to(victim)
    cfg = sftp_project(tmp_path).sftp_partner("acme", sshd, acme).write()
    Path(acme.inbox, "a.xml").write_bytes(GOOD)
    report = run_once(cfg)[0]
    assert report.error is None and len(report.taken) == 1
    assert victim.read_bytes() == VICTIM
    delivered = Path(acme.acks, name)
    assert not delivered.is_symlink()
    assert delivered.read_bytes() == (tmp_path / "outbox" / "acme" / name).read_bytes()
    assert not os.path.lexists(Path(acme.acks, f".{name}.tmp"))
    assert os.listdir(acme.processed) == ["a.xml"]


def test_a_link_planted_again_after_the_removal_fails_the_upload_not_the_victim(
        tmp_path: Path) -> None:
    """The link comes back between the removal of the temp name and its creation (the
    server's relay plants it there: the gateway sends both requests together): the exclusive
    create refuses it; the upload fails (nothing written), a later poll delivers."""
    flags = tmp_path / "flags"
    with faulty_sshd(tmp_path / "sshd", flags) as server:
        acme, bolt = server.account("acme"), server.account("bolt")
        victim = Path(bolt.acks, "b.xml.ack.xml")
        victim.write_bytes(VICTIM)
        tmp = Path(acme.acks, ".a.xml.ack.xml.tmp")
        (flags / "replant").write_text(f"{tmp}\n{victim}\n")
        cfg = sftp_project(tmp_path / "project").sftp_partner("acme", server, acme).write()
        Path(acme.inbox, "a.xml").write_bytes(GOOD)
        report = run_once(cfg)[0]
        assert not (flags / "replant").exists(), "the link was not planted"
        assert report.error is not None and "upload a.xml.ack.xml" in report.error
        assert victim.read_bytes() == VICTIM
        assert os.listdir(acme.inbox) == ["a.xml"]  # never disposed of before its ack is out
        assert run_once(cfg)[0].error is None
        assert victim.read_bytes() == VICTIM and not Path(acme.acks, "a.xml.ack.xml").is_symlink()
        assert os.listdir(acme.processed) == ["a.xml"]


# -- item 6: a name flipped between a file and a link to another partner's file -------------

FLIPPER = r"""
import os, sys, time
inbox, target, source, mtime, stop, seconds = sys.argv[1:7]
names = sys.argv[7:]
data = open(source, "rb").read()
mtime, deadline = float(mtime), time.monotonic() + float(seconds)

def regular(name):
    tmp = os.path.join(inbox, ".flip-file")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.utime(tmp, (mtime, mtime))
    os.rename(tmp, os.path.join(inbox, name))

while not os.path.exists(stop) and time.monotonic() < deadline:
    for name in names:  # half the time a link, half the time the partner's own file
        link = os.path.join(inbox, ".flip-link")
        os.symlink(target, link)
        os.rename(link, os.path.join(inbox, name))
    for name in names:
        regular(name)
for name in names:  # stopped: each name is the partner's own file again
    regular(name)
"""


def test_a_name_flipped_to_a_link_never_hands_over_another_partners_file(
        tmp_path: Path, sshd: SshServer) -> None:
    """acme's names flip, in a loop, between acme's own file and a link to bolt's file of the
    same size and mtime (owned by another user, as on a shared server): over many polls the
    gateway takes acme's own bytes or nothing, never bolt's."""
    if os.geteuid() != 0:
        pytest.skip("needs root: bolt's file must belong to another user than acme's")
    acme, bolt = sshd.account("acme"), sshd.account("bolt")
    own = GOOD
    foreign = GOOD.replace(b"ACME-20261201-001", b"BOLT-20261201-001").replace(
        b'ref="PO-44', b'ref="BO-44')
    assert len(foreign) == len(own)
    mtime = time.time() - 3600
    target = Path(bolt.inbox, "b.xml")
    target.write_bytes(foreign)
    os.utime(target, (mtime, mtime))
    os.chown(target, 65534, 65534)
    source = tmp_path / "own.xml"
    source.write_bytes(own)
    names = [f"a{i:02d}.xml" for i in range(24)]
    stop = tmp_path / "stop"
    cfg = sftp_project(tmp_path).sftp_partner("acme", sshd, acme).write()
    flipper = subprocess.Popen([sys.executable, "-c", FLIPPER, acme.inbox, str(target),
                                str(source), str(mtime), str(stop), "120", *names])
    try:
        for _ in range(40):  # bounded; the race is seen within a few polls
            run_once(cfg)
            if len(events(tmp_path, "file.not_taken")) >= 6:
                break
    finally:
        stop.touch()
        assert flipper.wait(30) == 0
    run_once(cfg)  # the flipping over, every name is acme's own file: the rest is taken
    received = ledger(tmp_path, "SELECT remote_name, sha256 FROM files")
    assert {sha for _, sha in received} == {hashlib.sha256(own).hexdigest()}
    assert sorted(name for name, _ in received) == names  # each taken once
    for ack in Path(acme.acks).glob("*.ack.xml"):
        assert b"BOLT" not in ack.read_bytes() and b"BO-44" not in ack.read_bytes()
    assert target.read_bytes() == foreign and os.listdir(bolt.inbox) == ["b.xml"]
    not_taken = events(tmp_path, "file.not_taken")
    assert not_taken, "the race was never seen: the test proved nothing"
    reasons = ("is now a symbolic link", "belongs to another owner", "not the file its name")
    assert all(any(r in str(e["reason"]) for r in reasons) for e in not_taken), not_taken


# -- item 8: only the file that was taken is disposed of ------------------------------------


@pytest.mark.parametrize("disposition", ["move", "delete"])
def test_a_file_renamed_over_the_one_in_hand_is_left_for_the_next_poll(
        tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch,
        disposition: str) -> None:
    acme = sshd.account("acme")
    cfg = (sftp_project(tmp_path)
           .sftp_partner("acme", sshd, acme, remote_disposition=disposition).write())
    first, second = variant(1), variant(2) + b"\n"
    Path(acme.inbox, "orders.xml").write_bytes(first)

    def replace() -> None:
        tmp = Path(acme.inbox, ".orders.xml.new")
        tmp.write_bytes(second)
        os.replace(tmp, Path(acme.inbox, "orders.xml"))

    original = crash.point
    monkeypatch.setattr(crash, "point", lambda step: replace() if step == "after_archive"
                        else original(step))
    report = run_once(cfg)[0]
    assert report.error is None and len(report.taken) == 1
    assert Path(acme.inbox, "orders.xml").read_bytes() == second  # not moved unread
    assert os.listdir(acme.processed) == []
    assert [e["file_id"] for e in events(tmp_path, "file.not_disposed")] == report.taken
    monkeypatch.undo()
    report = run_once(cfg)[0]
    assert len(report.taken) == 1
    assert ledger(tmp_path, "SELECT sha256, state FROM files ORDER BY file_id") == [
        (hashlib.sha256(first).hexdigest(), "DONE"), (hashlib.sha256(second).hexdigest(),
                                                      "DONE")]
    assert os.listdir(acme.inbox) == []
    if disposition == "move":
        assert Path(acme.processed, "orders.xml").read_bytes() == second


# -- item 9: acknowledgment names never collide ----------------------------------------------

COLLIDING = {"cleaned": ["a b.xml", "a:b.xml", "a_b.xml"], "path": ["x\\evil.xml", "evil.xml"]}


@pytest.mark.parametrize("names", COLLIDING.values(), ids=COLLIDING)
def test_names_that_clean_alike_keep_an_ack_each(tmp_path: Path, sshd: SshServer,
                                                  names: list[str]) -> None:
    acme = sshd.account("acme")
    cfg = sftp_project(tmp_path).sftp_partner("acme", sshd, acme).write()
    for n, name in enumerate(names, start=1):
        Path(acme.inbox, name).write_bytes(variant(n))
    assert len(run_once(cfg)[0].taken) == len(names)
    rows = ledger(tmp_path, "SELECT remote_name, ack_name FROM files")
    assert sorted(r[0] for r in rows) == sorted(names)
    acks = sorted(str(r[1]) for r in rows)
    assert len(set(acks)) == len(names)
    assert sorted(n for n in os.listdir(acme.acks) if ".ack." in n) == acks
    for name, ack in rows:
        delivered = Path(acme.acks, str(ack)).read_bytes()
        assert f"<FileName>{name}</FileName>".encode() in delivered
        assert b"<LicenseNumber>" in delivered


def test_a_resend_under_the_same_name_never_replaces_an_earlier_ack(
        tmp_path: Path, sshd: SshServer) -> None:
    acme = sshd.account("acme")
    cfg = sftp_project(tmp_path).sftp_partner("acme", sshd, acme).write()
    partial = (Path(__file__).parent / "cases" / "inbox" / "sample" /
               "acme-20261201-partial.xml").read_bytes()
    corrected = partial.replace(b"</LicenseSubmission>",
                                b"<!-- corrected --></LicenseSubmission>")
    first_ack = b""
    for data in (partial, corrected):
        Path(acme.inbox, "orders.xml").write_bytes(data)
        assert len(run_once(cfg)[0].taken) == 1
        first_ack = first_ack or Path(acme.acks, "orders.xml.ack.xml").read_bytes()
    ids = [r[0] for r in ledger(tmp_path, "SELECT file_id FROM files ORDER BY file_id")]
    assert Path(acme.acks, "orders.xml.ack.xml").read_bytes() == first_ack
    assert first_ack.count(b"<LicenseNumber>") == 2
    assert b"F007" in Path(acme.acks, f"orders.xml~{ids[1]}.ack.xml").read_bytes()
    assert sorted(os.listdir(acme.processed)) == ["orders.xml", f"orders.xml.{ids[1]}"]
