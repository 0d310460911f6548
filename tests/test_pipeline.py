"""The core pipeline end to end on a local inbox: outputs, idempotency, golden files."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from conftest import acme_project
from lxml import etree

from gateway import storage
from gateway.config import load_config
from gateway.schemas import ack_schema
from gateway.service.runner import run_once

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
SAMPLES = CASES_INBOX / "sample"
GOLDEN = Path(__file__).parent / "golden"
ACK = "{urn:aimgw:license-ack:1}"
AS_OF = date(2026, 12, 1)
REGEN = os.environ.get("AIMGW_REGEN_GOLDEN") == "1"


def write_config(base: Path, disposition: str = "keep") -> Path:
    return acme_project(base, disposition)


@pytest.fixture
def project(tmp_path: Path):
    cfg = write_config(tmp_path)

    class Project:
        base = tmp_path
        inbox = tmp_path / "inbox"
        outbox = tmp_path / "outbox"
        data = tmp_path / "data"

        def drop(self, name: str, content: bytes | str) -> None:
            data = content.encode() if isinstance(content, str) else content
            (self.inbox / name).write_bytes(data)

        def run(self, as_of: date = AS_OF) -> None:
            run_once(load_config(cfg), as_of)

        def ack(self, name: str) -> etree._Element:
            return etree.parse(str(self.outbox / "acme" / f"{name}.ack.xml")).getroot()

        def db(self) -> sqlite3.Connection:
            return sqlite3.connect(self.data / "ledger.sqlite")

    return Project()


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def app_results(ack: etree._Element) -> dict[str, tuple[str, str | None, list[str]]]:
    out = {}
    for app in ack.iter(ACK + "Application"):
        number = app.findtext(ACK + "LicenseNumber")
        codes = [f.get("code") for f in app.iter(ACK + "Finding")]
        out[app.get("ref")] = (app.get("status"), number, codes)
    return out


def normalise_times(data: bytes) -> bytes:
    return re.sub(rb"<(ReceivedAt|ProcessedAt)>[^<]*<", rb"<\1>TIME<", data)


def test_samples_end_to_end(project) -> None:
    for name in ("acme-20261201-good.xml", "acme-20261201-partial.xml",
                 "acme-20261201-hostile.xml"):
        project.drop(name, sample(name))
    project.run()
    good = project.ack("acme-20261201-good.xml")
    assert good.findtext(ACK + "Status") == "ACCEPTED"
    results = app_results(good)
    assert {ref: r[0] for ref, r in results.items()} == {
        "PO-4411": "LICENSED", "PO-4412": "LICENSED", "PO-4413": "LICENSED",
        "WH-0077": "NOT_REQUIRED"}
    assert project.ack("acme-20261201-partial.xml").findtext(ACK + "Status") == "PARTIAL"
    hostile = project.ack("acme-20261201-hostile.xml")
    assert hostile.findtext(ACK + "Status") == "REJECTED"
    assert [f.get("code") for f in hostile.iter(ACK + "Finding")] == ["F004"]
    failed = list((project.data / "failed" / "acme").iterdir())
    assert sorted(p.name.split("__", 1)[1] for p in failed) == [
        "acme-20261201-hostile.xml", "acme-20261201-hostile.xml.error.txt"]
    error_txt = next(p for p in failed if p.name.endswith(".error.txt")).read_text()
    assert "F004" in error_txt
    with project.db() as db:
        numbers = [r[0] for r in db.execute("SELECT license_number FROM licenses ORDER BY 1")]
        states = {r[0] for r in db.execute("SELECT state FROM files")}
    assert numbers == [f"A26{n:06d}" for n in range(1, 6)]
    assert states == {"DONE"}
    ace = sorted(p.name for p in (project.outbox / "ace").iterdir())
    assert ace == ["AE-20261201-000001.txt", "AE-20261201-000001.txt.manifest.json",
                   "AE-20261201-000002.txt", "AE-20261201-000002.txt.manifest.json",
                   "FT-20261201-000001.txt", "FT-20261201-000001.txt.manifest.json"]


@pytest.mark.parametrize("name", ["acme-20261201-good.xml", "acme-20261201-partial.xml",
                                  "acme-20261201-hostile.xml"])
def test_acks_are_valid_against_the_ack_xsd(project, name: str) -> None:
    project.drop(name, sample(name))
    project.run()
    ack = etree.parse(str(project.outbox / "acme" / f"{name}.ack.xml"))
    assert ack_schema().validate(ack), ack_schema().error_log


@pytest.mark.parametrize(("output", "golden"), [
    ("outbox/acme/acme-20261201-good.xml.ack.xml", "pipeline-good.ack.xml"),
    ("outbox/ace/AE-20261201-000001.txt", "pipeline-good.AE.txt"),
    ("outbox/ace/FT-20261201-000001.txt", "pipeline-good.FT.txt"),
    ("outbox/ace/AE-20261201-000001.txt.manifest.json", "pipeline-good.AE.manifest.json"),
])
@pytest.mark.parametrize("threaded", [False, True], ids=["", "copies threaded"])
def test_golden_outputs_of_the_good_sample(project, output: str, golden: str, threaded: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if threaded:  # every hashed copy (the file in, the ACE file out) in a thread of its own
        monkeypatch.setattr(storage, "THREADED_BYTES", 0)
    project.drop("acme-20261201-good.xml", sample("acme-20261201-good.xml"))
    project.run()
    actual = normalise_times((project.base / output).read_bytes())
    path = GOLDEN / golden
    if REGEN:
        path.write_bytes(actual)
    assert actual == path.read_bytes()


def test_partial_sample_golden_ack(project) -> None:
    project.drop("acme-20261201-partial.xml", sample("acme-20261201-partial.xml"))
    project.run()
    actual = normalise_times(
        (project.outbox / "acme" / "acme-20261201-partial.xml.ack.xml").read_bytes())
    path = GOLDEN / "pipeline-partial.ack.xml"
    if REGEN:
        path.write_bytes(actual)
    assert actual == path.read_bytes()


def good_then(project, first: str, second: str, edit: Callable[[bytes], bytes]) -> None:
    """The good sample as ``first``, one run; then the sample as ``edit`` makes it, as
    ``second``, another run."""
    good = sample("acme-20261201-good.xml")
    project.drop(first, good)
    project.run()
    project.drop(second, edit(good))
    project.run()


def test_same_request_again_returns_the_same_license(project) -> None:
    # Same applications, new SubmissionId: a new file whose requests were all licensed before.
    good_then(project, "first.xml", "second.xml", lambda good: good.replace(
        b"ACME-20261201-001", b"ACME-20261201-009"))
    first, second = app_results(project.ack("first.xml")), app_results(project.ack("second.xml"))
    for ref in ("PO-4411", "PO-4412", "PO-4413"):
        assert second[ref][0] == "LICENSED"
        assert second[ref][1] == first[ref][1]
        assert "I201" in second[ref][2]
    with project.db() as db:
        assert db.execute("SELECT COUNT(*) FROM licenses").fetchone()[0] == 3
        row = db.execute("SELECT status, new_licenses, ace_names FROM files "
                         "WHERE remote_name = 'second.xml'").fetchone()
    assert row == ("ACCEPTED", 0, None)
    assert len(list((project.outbox / "ace").glob("*.txt"))) == 2  # AE + FT of the first only


def test_same_bytes_again_is_a_duplicate(project) -> None:
    good_then(project, "a.xml", "b.xml", lambda good: good)
    dup = project.ack("b.xml")
    assert dup.findtext(ACK + "Status") == "DUPLICATE"
    assert dup.findtext(ACK + "FileName") == "b.xml"
    file_level = [f.get("code") for f in dup.findall(ACK + "Finding")]
    assert file_level == ["F006"]
    assert app_results(dup) == {
        ref: (s, n, [c for c in codes]) for ref, (s, n, codes) in
        app_results(project.ack("a.xml")).items()}
    assert ack_schema().validate(dup.getroottree()), ack_schema().error_log
    with project.db() as db:
        assert db.execute("SELECT COUNT(*) FROM licenses").fetchone()[0] == 3
        assert db.execute("SELECT status, duplicate_of IS NOT NULL FROM files WHERE "
                          "remote_name = 'b.xml'").fetchone() == ("DUPLICATE", 1)


def test_submission_id_reused_with_other_content_is_f007(project) -> None:
    good_then(project, "a.xml", "b.xml", lambda good: good.replace(b"PO-4411", b"PO-9999"))
    ack = project.ack("b.xml")
    assert ack.findtext(ACK + "Status") == "REJECTED"
    assert [f.get("code") for f in ack.findall(ACK + "Finding")] == ["F007"]
    assert (project.data / "failed" / "acme").is_dir()


def test_license_sequence_restarts_each_year(project) -> None:
    good = sample("acme-20261201-good.xml")
    project.drop("a.xml", good)
    project.run(as_of=date(2026, 12, 31))
    later = good.replace(b"ACME-20261201-001", b"ACME-20270101-001").replace(
        b'ref="PO-44', b'ref="PO-77')
    project.drop("b.xml", later)
    project.run(as_of=date(2027, 1, 1))
    numbers = [r[1] for r in app_results(project.ack("b.xml")).values() if r[1]]
    assert numbers == ["A27000001", "A27000002", "A27000003"]
    valid = project.ack("b.xml").find(f"{ACK}Application/{ACK}ValidThrough")
    assert valid is not None and valid.text == "2027-03-17"  # issue date + 75 days


def test_move_disposition_empties_the_inbox(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, disposition="move")
    shutil.copy(SAMPLES / "acme-20261201-good.xml", tmp_path / "inbox" / "g.xml")
    run_once(load_config(cfg), AS_OF)
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == ["processed"]
    assert [p.name for p in (tmp_path / "inbox" / "processed").iterdir()] == ["g.xml"]


def test_check_changes_nothing(project) -> None:
    project.drop("a.xml", sample("acme-20261201-good.xml"))
    project.run()
    before = {p: p.read_bytes() for p in project.base.rglob("*") if p.is_file()}
    for name in ("acme-20261201-good.xml", "acme-20261201-partial.xml",
                 "acme-20261201-hostile.xml"):
        subprocess.run([sys.executable, "-m", "gateway.cli", "check", str(SAMPLES / name),
                        "--as-of", "2026-12-01", "--config", str(project.base / "config.toml")],
                       capture_output=True, check=False)
    after = {p: p.read_bytes() for p in project.base.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize(("name", "exit_code", "status"), [
    ("acme-20261201-good.xml", 0, "ACCEPTED"),
    ("acme-20261201-partial.xml", 1, "PARTIAL"),
    ("acme-20261201-hostile.xml", 1, "REJECTED"),
])
def test_check_exit_codes_and_pending_numbers(tmp_path: Path, name: str, exit_code: int,
                                              status: str) -> None:
    cfg = write_config(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", str(SAMPLES / name), "--as-of",
         "2026-12-01", "--config", str(cfg)], capture_output=True, check=False)
    assert proc.returncode == exit_code, proc.stderr
    ack = etree.fromstring(proc.stdout)
    assert ack.findtext(ACK + "Status") == status
    numbers = {n.text for n in ack.iter(ACK + "LicenseNumber")}
    assert numbers <= {"PENDING"}
    assert not (tmp_path / "data").exists()


def test_check_usage_errors_exit_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    target = str(SAMPLES / "acme-20261201-good.xml")
    cases = [
        ["check", target, "--config", str(tmp_path / "missing.toml")],
        ["check", target, "--config", str(cfg), "--partner", "nobody"],
        ["check", target, "--config", str(cfg), "--as-of", "2026-13-01"],
        ["check", str(tmp_path / "nope.xml"), "--config", str(cfg)],
    ]
    for args in cases:
        proc = subprocess.run([sys.executable, "-m", "gateway.cli", *args],
                              capture_output=True, check=False)
        assert proc.returncode == 2, (args, proc.stderr)


def test_files_the_gateway_writes_are_not_world_readable(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    shutil.copy(SAMPLES / "acme-20261201-good.xml", tmp_path / "inbox" / "g.xml")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--once", "--as-of",
                           "2026-12-01", "--config", str(cfg)], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    written = [p for p in (tmp_path / "data").rglob("*")] + \
        [p for p in (tmp_path / "outbox").rglob("*")]
    assert any(p.name == "ledger.sqlite" for p in written)
    assert any(p.name.endswith(".ack.xml") for p in written)
    for path in written:
        assert path.stat().st_mode & 0o007 == 0, f"{path} is world-accessible"
