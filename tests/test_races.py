"""Races and collisions on a local inbox and outbox (issue 10, items 7-9).

- nothing the gateway writes goes through a symbolic link planted at one of its temp names;
- only the exact file that was taken is disposed of: one renamed over it meanwhile stays for
  the next poll;
- every distinct remote name gets its own acknowledgment, and a later file under the same
  name never replaces an earlier file's acknowledgment.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from gateway import crash
from gateway.config import load_config
from gateway.runner import run_once
from gateway.storage import SpooledOutput, atomic_write, temp_name

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "inbox" / "sample"
GOOD = (SAMPLES / "acme-20261201-good.xml").read_bytes()
PARTIAL = (SAMPLES / "acme-20261201-partial.xml").read_bytes()
CSV = (SAMPLES / "acme-20261202-erp.csv").read_bytes()
AS_OF = date(2026, 12, 1)
VICTIM = b"another partner's acknowledgment\n"


def write_config(base: Path, disposition: str = "move", extra: str = "") -> Path:
    (base / "inbox").mkdir(parents=True, exist_ok=True)
    cfg = base / "config.toml"
    cfg.write_text(f"""
[gateway]
data_dir = "data"
outbox_dir = "outbox"

[partners.acme]
name = "Acme"
inbox = "inbox"
disposition = "{disposition}"
filer_code = "SMP"
{extra}
""")
    return cfg


def variant(n: int, data: bytes = GOOD) -> bytes:
    """The good sample as a distinct submission (its own SubmissionId and refs)."""
    return data.replace(b"ACME-20261201-001", f"ACME-20261201-{n:03d}".encode()).replace(
        b'ref="PO-44', f'ref="V{n:02d}-'.encode())


def ledger(base: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(base / "data" / "ledger.sqlite") as con:
        return con.execute(sql).fetchall()


# -- item 7: nothing written through a planted symbolic link --------------------------------


def _write_atomic(path: Path) -> None:
    atomic_write(path, b"new content\n")


def _write_spooled(path: Path) -> None:
    out = SpooledOutput(path)
    out.body.write("body\n")
    out.publish("head\n")


@pytest.mark.parametrize("write", [_write_atomic, _write_spooled], ids=["atomic", "spooled"])
def test_a_link_planted_at_a_temp_name_is_never_written_through(
        tmp_path: Path, write: Callable[[Path], None]) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    target = tmp_path / "out" / "a.xml.ack.xml"
    target.parent.mkdir()
    planted = [temp_name(target), target.with_name(f".{target.name}.{os.getpid()}.body")]
    for link in planted:
        link.symlink_to(victim)
    write(target)
    assert victim.read_bytes() == VICTIM
    assert not target.is_symlink() and target.read_bytes() in (b"new content\n",
                                                                 b"head\nbody\n")


def test_a_link_planted_at_the_final_name_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    target = tmp_path / "status.json"
    target.symlink_to(victim)
    atomic_write(target, b"{}")
    assert victim.read_bytes() == VICTIM
    assert not target.is_symlink() and target.read_bytes() == b"{}"


def plant_at(monkeypatch: pytest.MonkeyPatch, step: str, action: Callable[[], None]) -> None:
    """Run ``action`` once when the pipeline passes the crash point ``step`` (in-process)."""
    original = crash.point
    done: list[bool] = []

    def point(name: str) -> None:
        if name == step and not done:
            done.append(True)
            action()
        original(name)

    monkeypatch.setattr(crash, "point", point)


def test_links_planted_in_the_outbox_and_the_ack_store_change_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local partner that can write its outbox folder plants links at the temp names the
    gateway uses there (status files) and in the ack store, once the file is received (start-up
    recovery removed older leftovers): the victim stays as it was."""
    cfg = write_config(tmp_path, extra="status_files = true")
    (tmp_path / "inbox" / "a.xml").write_bytes(GOOD)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    pid = os.getpid()
    planted = [tmp_path / "outbox" / "acme" / f".{name}.{pid}.tmp"
               for name in ("status.json", "status.csv", "a.xml.ack.xml")]
    planted += [tmp_path / "data" / "acks" / "acme" / f".20261201-000001.ack.xml.{pid}.{end}"
                for end in ("tmp", "body")]

    def plant() -> None:
        for link in planted:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(victim)

    plant_at(monkeypatch, "after_receipt", plant)
    reports = run_once(load_config(cfg), AS_OF)
    assert reports[0].error is None and len(reports[0].taken) == 1
    assert victim.read_bytes() == VICTIM
    ack = tmp_path / "outbox" / "acme" / "a.xml.ack.xml"
    assert b"<Status>ACCEPTED</Status>" in ack.read_bytes()
    for name in ("status.json", "status.csv"):
        status = tmp_path / "outbox" / "acme" / name
        assert status.is_file() and not status.is_symlink()
