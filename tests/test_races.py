"""Races and collisions on a local inbox and outbox (issue 10, items 7-9).

- nothing the gateway writes goes through a symbolic link planted at one of its temp names;
- only the exact file that was taken is disposed of: one renamed over it meanwhile stays for
  the next poll;
- every distinct remote name gets its own acknowledgment, and a later file under the same
  name never replaces an earlier file's acknowledgment.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from conftest import acme_project
from lxml import etree

from gateway import crash
from gateway.config import load_config
from gateway.service.runner import run_once
from gateway.storage import SpooledOutput, atomic_write, temp_name

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
SAMPLES = CASES_INBOX / "sample"
GOOD = (SAMPLES / "acme-20261201-good.xml").read_bytes()
PARTIAL = (SAMPLES / "acme-20261201-partial.xml").read_bytes()
CSV = (SAMPLES / "acme-20261202-erp.csv").read_bytes()
AS_OF = date(2026, 12, 1)
VICTIM = b"another partner's acknowledgment\n"


def write_config(base: Path, disposition: str = "move", **settings: object) -> Path:
    return acme_project(base, disposition, **settings)


def variant(n: int, data: bytes = GOOD) -> bytes:
    """The good sample as a distinct submission (its own SubmissionId and refs)."""
    return data.replace(b"ACME-20261201-001", f"ACME-20261201-{n:03d}".encode()).replace(
        b'ref="PO-44', f'ref="V{n:02d}-'.encode())


def ledger(base: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(base / "data" / "ledger.sqlite") as con:
        return con.execute(sql).fetchall()


def events(base: Path, kind: str) -> list[dict[str, object]]:
    lines = (base / "data" / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == kind]


# -- item 7: nothing written through a planted symbolic link --------------------------------


def _write_atomic(path: Path) -> None:
    atomic_write(path, b"new content\n")


def _write_spooled(path: Path) -> None:
    out = SpooledOutput(path)
    out.body.write("body\n")
    out.publish("head\n")


@pytest.mark.parametrize(("write", "written"), [(_write_atomic, b"new content\n"),
                                                (_write_spooled, b"head\nbody\n")],
                         ids=["atomic", "spooled"])
def test_a_link_planted_at_a_temp_name_is_never_written_through(
        tmp_path: Path, write: Callable[[Path], None], written: bytes) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    target = tmp_path / "out" / "a.xml.ack.xml"
    target.parent.mkdir()
    planted = [temp_name(target), target.with_name(f".{target.name}.{os.getpid()}.body")]
    for link in planted:
        link.symlink_to(victim)
    write(target)
    assert victim.read_bytes() == VICTIM
    assert not target.is_symlink() and target.read_bytes() == written


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
    cfg = write_config(tmp_path, status_files=True)
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


# -- item 8: only the file that was taken is disposed of ------------------------------------


def replace_in(folder: Path, name: str, data: bytes) -> Callable[[], None]:
    """The partner renames a new file over ``name`` (a whole file appears at once)."""

    def replace() -> None:
        tmp = folder / f".{name}.new"
        tmp.write_bytes(data)
        os.replace(tmp, folder / name)

    return replace


@pytest.mark.parametrize("disposition", ["move", "delete"])
def test_a_file_renamed_over_the_one_in_hand_is_left_for_the_next_poll(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disposition: str) -> None:
    cfg = write_config(tmp_path, disposition)
    inbox = tmp_path / "inbox"
    first, second = variant(1), variant(2) + b"\n"
    (inbox / "orders.xml").write_bytes(first)
    plant_at(monkeypatch, "after_archive", replace_in(inbox, "orders.xml", second))
    report = run_once(load_config(cfg), AS_OF)[0]
    assert report.error is None and len(report.taken) == 1
    assert (inbox / "orders.xml").read_bytes() == second  # not moved (or deleted) unread
    processed = inbox / "processed"
    assert not processed.is_dir() or list(processed.iterdir()) == []
    assert [e["file_id"] for e in events(tmp_path, "file.not_disposed")] == report.taken
    monkeypatch.undo()
    report = run_once(load_config(cfg), AS_OF)[0]  # the next poll takes it as a new file
    assert len(report.taken) == 1
    assert ledger(tmp_path, "SELECT sha256, state FROM files ORDER BY file_id") == [
        (hashlib.sha256(first).hexdigest(), "DONE"), (hashlib.sha256(second).hexdigest(),
                                                      "DONE")]
    assert not (inbox / "orders.xml").exists()
    if disposition == "move":
        assert [p.read_bytes() for p in processed.iterdir()] == [second]


# -- item 9: acknowledgment names never collide ----------------------------------------------

# Names that clean to one local name (storage.safe_name): each must keep its own ack.
COLLIDING = {"cleaned": ["a b.xml", "a:b.xml", "a_b.xml"], "path": ["x\\evil.xml", "evil.xml"]}


def csv_variant(n: int) -> bytes:
    return CSV.replace(b"ACME-20261202-CSV", f"ACME-20261202-C{n:02d}".encode()).replace(
        b"PO-70", f"P{n}-70".encode())


def submission(kind: str, n: int) -> bytes:
    return variant(n) if kind == "xml" else csv_variant(n)


def named_in_ack(path: Path) -> str:
    """The file name an acknowledgment says it answers (XML FileName, CSV file row)."""
    data = path.read_bytes()
    if path.name.endswith(".csv"):
        file_row = list(csv.reader(io.StringIO(data.decode())))[1]
        return file_row[8].rsplit(" | ", 1)[1].removeprefix("file ")
    return etree.fromstring(data).findtext("{urn:aimgw:license-ack:1}FileName") or ""


@pytest.mark.parametrize("kind", ["xml", "csv"])
@pytest.mark.parametrize("names", COLLIDING.values(), ids=COLLIDING)
def test_names_that_clean_alike_keep_an_ack_each(tmp_path: Path, names: list[str],
                                                  kind: str) -> None:
    cfg = write_config(tmp_path)
    remote = [name.replace(".xml", f".{kind}") for name in names]
    for n, name in enumerate(remote, start=1):
        (tmp_path / "inbox" / name).write_bytes(submission(kind, n))
    assert len(run_once(load_config(cfg), AS_OF)[0].taken) == len(remote)
    rows = ledger(tmp_path, "SELECT remote_name, ack_name, licensed FROM files")
    assert sorted(r[0] for r in rows) == sorted(remote)
    assert len({r[1] for r in rows}) == len(remote)  # one ack name each: none replaced
    outbox = tmp_path / "outbox" / "acme"
    for name, ack, licensed in rows:
        assert isinstance(ack, str) and isinstance(licensed, int) and licensed > 0
        assert named_in_ack(outbox / ack) == name
        assert ack.endswith(f".ack.{kind}")
        if name == ack.removesuffix(f".ack.{kind}"):
            continue  # a name the cleaning left alone keeps the contract's <name>.ack.xml
        assert "~" in ack  # a cleaned name carries a hash of the exact name


def test_a_resend_under_the_same_name_never_replaces_an_earlier_ack(tmp_path: Path) -> None:
    """orders.xml licensed two applications (PARTIAL); a corrected resend under the same name
    (same SubmissionId, other content: F007), then the first bytes again (DUPLICATE): three
    acks, the first unchanged, and three copies in processed/."""
    cfg = write_config(tmp_path, "move")
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox" / "acme"
    resends = [PARTIAL, PARTIAL.replace(b"</LicenseSubmission>",
                                        b"<!-- corrected --></LicenseSubmission>"),
               PARTIAL]
    first_ack = b""
    for data in resends:
        (inbox / "orders.xml").write_bytes(data)
        assert len(run_once(load_config(cfg), AS_OF)[0].taken) == 1
        first_ack = first_ack or (outbox / "orders.xml.ack.xml").read_bytes()
    ids = [r[0] for r in ledger(tmp_path, "SELECT file_id FROM files ORDER BY file_id")]
    assert ledger(tmp_path, "SELECT status, ack_name FROM files ORDER BY file_id") == [
        ("PARTIAL", "orders.xml.ack.xml"), ("REJECTED", f"orders.xml~{ids[1]}.ack.xml"),
        ("DUPLICATE", f"orders.xml~{ids[2]}.ack.xml")]
    assert (outbox / "orders.xml.ack.xml").read_bytes() == first_ack
    assert first_ack.count(b"<LicenseNumber>") == 2
    assert sorted(p.name for p in outbox.glob("*.ack.xml")) == [
        "orders.xml.ack.xml", f"orders.xml~{ids[1]}.ack.xml", f"orders.xml~{ids[2]}.ack.xml"]
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == [
        "orders.xml", f"orders.xml.{ids[1]}", f"orders.xml.{ids[2]}"]


def test_a_duplicate_csv_ack_names_the_re_sent_file(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    outbox = tmp_path / "outbox" / "acme"
    for name in ("first.csv", "again | file.csv"):
        (tmp_path / "inbox" / name).write_bytes(CSV)
        run_once(load_config(cfg), AS_OF)
    assert named_in_ack(outbox / "first.csv.ack.csv") == "first.csv"
    again = sorted(outbox.glob("again*.ack.csv"))
    assert len(again) == 1 and named_in_ack(again[0]) == "again \\x7c file.csv"
    file_row = list(csv.reader(io.StringIO(again[0].read_text())))[1]
    assert file_row[3] == "DUPLICATE" and file_row[7].split()[0] == "F006"
    assert file_row[8].count(" | file ") == 1  # the first file's name replaced, not kept
