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
from sftp_server import SftpAccount, SshServer
from test_sftp import GOOD, make_config, partner_block, run_once

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
    cfg = make_config(tmp_path, partner_block("acme", acme, sshd))
    Path(acme.inbox, "a.xml").write_bytes(GOOD)
    report = run_once(cfg)[0]
    assert report.error is None and len(report.taken) == 1
    assert victim.read_bytes() == VICTIM
    delivered = Path(acme.acks, name)
    assert not delivered.is_symlink()
    assert delivered.read_bytes() == (tmp_path / "outbox" / "acme" / name).read_bytes()
    assert not os.path.lexists(Path(acme.acks, f".{name}.tmp"))
    assert os.listdir(acme.processed) == ["a.xml"]
