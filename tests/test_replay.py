"""`aim-gateway replay` (guide section 8, contract 1.1; issue 12 item 5).

The archive decided again, in memory, by the rules of ``--as-of``, writing nothing. The key
property: an unchanged archive (every sample case, every hostile file, and a history of
DUPLICATE, F007, I201, A104, A105, A109 and a reprocess) replayed shows NO change, and the
data and outbox folders and the ledger are the same bytes after it (SQLite and PostgreSQL).
A rule that takes effect (A121, dated) and an HTS edition that does (simulated through
``pipeline.rule_context``, where the editions come from) show exactly the applications they
move; an archive purged or gone is said per file and never fails the run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ports import free_port
from project_config import ProjectConfig

# The sample cases, the hostile files and the sample partners as the check core's proof takes
# them (every case through check and run).
from test_check_core import AS_OF, CASES, ERP, GOOD, PARTNERS, SINGLE
from test_check_core import _partner_of as partner_of

from gateway.admin.progress import ReadProgress
from gateway.cli import main
from gateway.config import Config, load_config
from gateway.ledger.store import open_ledger
from gateway.licensing import pipeline
from gateway.validate.hts import CoveredHts
from gateway.validate.rules import RuleContext

TABLES = ("files", "file_counter", "license_counter", "licenses", "applications", "findings",
          "events", "remote_seen", "partner_state", "partner_lease", "alerts_sent",
          "file_failures")


class Archive:
    """A project whose files are run (`run --once`), then replayed, in-process."""

    def __init__(self, base: Path, capsys: pytest.CaptureFixture[str],
                 request: pytest.FixtureRequest | None = None, backend: str = "sqlite",
                 **gateway: object) -> None:
        self.base = base
        self.capsys = capsys
        toml = ProjectConfig(base)
        if request is not None:
            toml.backend(request, backend)
        if gateway:
            toml.set("retention", **gateway)
        for pid, extra in PARTNERS.items():
            toml.partner(pid, name=pid, patterns=["*"], disposition="delete",
                         filer_code="SMP", filer=True, **extra).inbox(pid)
        self.cfg = toml.write()

    @property
    def config(self) -> Config:
        return load_config(self.cfg)

    def cli(self, *args: str) -> tuple[int, str, str]:
        try:
            code = main(["--config", str(self.cfg), *args])
        except SystemExit as usage:  # argparse's own errors
            code = int(str(usage.code))
        out, err = self.capsys.readouterr()
        return code, out, err

    def run(self, as_of: str, *files: tuple[str, str, bytes]) -> None:
        for partner, name, data in files:
            (self.base / "inbox" / partner / name).write_bytes(data)
        code, out, err = self.cli("run", "--once", "--as-of", as_of)
        assert code == 0, (out, err)

    def replay(self, as_of: str, *args: str) -> tuple[int, dict[str, Any]]:
        code, out, err = self.cli("replay", "--as-of", as_of, "--json", *args)
        assert "Traceback" not in err, err
        return code, json.loads(out)

    def sql(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        ledger = open_ledger(self.config, readonly=True)
        try:
            return [tuple(r) for r in ledger.db.execute(query, params).fetchall()]
        finally:
            ledger.close()

    def snapshot(self) -> dict[str, object]:
        """Every file of data/ and outbox/ (bytes and mtime) and every ledger row."""
        seen: dict[str, object] = {}
        for folder in ("data", "outbox"):
            for path in sorted((self.base / folder).rglob("*")):
                if path.is_file():
                    seen[str(path.relative_to(self.base))] = (
                        hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
                elif path.is_dir():
                    seen[str(path.relative_to(self.base))] = "folder"
        for table in TABLES:
            seen[f"table {table}"] = sorted(repr(r) for r in self.sql(f"SELECT * FROM {table}"))
        return seen


def changed_apps(answer: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    """(file name, ref) -> (before, after), each "STATUS CODE...", of every change listed."""
    found = {}
    for f in answer["files"]:
        for a in f["applications"]:
            found[(f["name"], a["ref"])] = (" ".join([a["before"]["status"],
                                                      *a["before"]["codes"]]),
                                            " ".join([a["after"]["status"],
                                                      *a["after"]["codes"]]))
    return found


def _edit(data: bytes, *pairs: tuple[bytes, bytes]) -> bytes:
    for old, new in pairs:
        assert old in data, old
        data = data.replace(old, new)
    return data


def _sid(n: int) -> tuple[bytes, bytes]:
    return b"ACME-20261201-001", f"ACME-20261201-9{n:02d}".encode()


# One file after the other, each in its own run: what the ledger makes of a file.
HISTORY = [
    ("sample", "first.xml", GOOD),  # the good case came before: DUPLICATE (F006)
    ("sample", "reused-id.xml", _edit(GOOD, (b'"PO-4411"', b'"PO-9411"'))),  # F007
    ("sample", "resend.xml", _edit(GOOD, _sid(1))),  # I201
    ("sample", "changed.xml", _edit(GOOD, _sid(2), (b"<QuantityKg>24000<",
                                                    b"<QuantityKg>24001<"))),  # A104
    ("sample", "twice.xml", _edit(GOOD, _sid(3), (b'ref="PO-44', b'ref="PO-55'),
                                  (b'"PO-5512"', b'"PO-5511"'))),  # A105, two passes
    ("sample", "again.csv", ERP),  # the CSV again: DUPLICATE
    # Cut after its first application (F001), then sent whole under its SubmissionId: the
    # later file is no F007 for the first (a run never saw it).
    ("sample", "cut.xml", _edit(GOOD, _sid(5))[:GOOD.index(b"<Application", 300)]),
    ("sample", "whole.xml", _edit(GOOD, _sid(5), (b'ref="PO-44', b'ref="PO-77'))),
    ("quota", "many.xml", GOOD),  # 2 licenses a day for this partner: A109
    ("quota", "more.xml", _edit(GOOD, _sid(4), (b'ref="PO-44', b'ref="PO-66'))),  # A109 all
]


# -- the key property: nothing changed, nothing written ------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_unchanged_archive_replays_without_a_change_and_writes_nothing(
        backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        request: pytest.FixtureRequest) -> None:
    archive = Archive(tmp_path, capsys, request, backend)
    archive.run(AS_OF, *((partner_of(p), p.name, p.read_bytes()) for p in SINGLE))
    for file in HISTORY:
        archive.run(AS_OF, file)
    [(resend_id,)] = archive.sql("SELECT file_id FROM files WHERE remote_name = 'resend.xml'")
    code, out, err = archive.cli("reprocess", resend_id, "--reason", "test", "--as-of", AS_OF)
    assert code == 0, (out, err)
    codes = {c for (c,) in archive.sql("SELECT DISTINCT code FROM findings")}
    assert {"F001", "F004", "F005", "F006", "F007", "I201", "A104", "A105", "A109",
            "A131"} <= codes
    finished = archive.sql("SELECT COUNT(*) FROM files WHERE state = 'DONE'")[0][0]
    assert finished == len(SINGLE) + len(HISTORY) + 1
    before = archive.snapshot()

    code, answer = archive.replay(AS_OF)
    assert code == 0, answer["files"]
    assert answer["files"] == []
    assert answer["summary"] == {
        "as_of": AS_OF, "files": finished, "replayed": finished, "changed": 0,
        "unchanged": finished, "not_replayed": 0, "compared_by_status": 0,
        "applications_changed": 0, "transitions": {}}
    # Another day with the same rules: the import-date windows (A151/A152) are the file's.
    code, answer = archive.replay("2026-12-20")
    assert (code, answer["files"], answer["summary"]["replayed"]) == (0, [], finished)
    code, out, _ = archive.cli("replay", "--as-of", AS_OF)
    assert code == 0
    assert out == (f"replay as of {AS_OF}: {finished} files, {finished} replayed: 0 would "
                   f"change, {finished} unchanged\n")
    assert archive.snapshot() == before


# -- a dated rule: exactly the applications it moves -------------------------------------------


def application(ref: str, import_date: str, *lines: tuple[str, str, str],
                entry_type: str = "01") -> str:
    """One application with product lines (HTS, largest smelt, second smelt); cast CA."""
    export = (date.fromisoformat(import_date) - timedelta(days=5)).isoformat()
    products = "".join(f"""
    <Product line="{n}">
      <HTS>{hts}</HTS>
      <SmeltCountryLargest>{largest}</SmeltCountryLargest>
      <SmeltCountrySecond>{second}</SmeltCountrySecond>
      <CastCountry>CA</CastCountry>
      <QuantityKg>24000</QuantityKg>
      <ValueUSD>61200.00</ValueUSD>
    </Product>""" for n, (hts, largest, second) in enumerate(lines, 1))
    return f"""
  <Application ref="{ref}">
    <EntryType>{entry_type}</EntryType>
    <Importer>ACME ALUMINUM IMPORTS LLC</Importer>
    <Exporter>NORTHERN ROLLING MILLS INC</Exporter>
    <Manufacturer>NORTHERN ROLLING MILLS INC</Manufacturer>
    <CountryOfOrigin>CA</CountryOfOrigin>
    <CountryOfExport>CA</CountryOfExport>
    <ExpectedExportDate>{export}</ExpectedExportDate>
    <ExpectedImportDate>{import_date}</ExpectedImportDate>
    <PortOfEntry>3004</PortOfEntry>{products}
  </Application>"""


def submission(sid: str, *applications: str) -> tuple[str, str, bytes]:
    return ("sample", f"{sid}.xml", f"""<?xml version="1.0" encoding="UTF-8"?>
<LicenseSubmission xmlns="urn:aimgw:license-submission:1" schemaVersion="1.0">
  <Header>
    <SubmissionId>{sid}</SubmissionId>
    <Created>2022-06-01T09:30:00-04:00</Created>
  </Header>{"".join(applications)}
</LicenseSubmission>
""".encode())


CAN = "7606123045"  # covered by every edition
KNOWN = ("CA", "US")
UNKNOWN = ("UNKNOWN", "UNKNOWN")


def test_a_dated_rule_shows_exactly_the_applications_it_moves(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A121 (smelt UNKNOWN) applies from 2022-06-29 (86 FR 27513)."""
    archive = Archive(tmp_path, capsys)
    archive.run("2022-06-20", submission(
        "JUNE-1", application("PO-1", "2022-07-10", (CAN, *UNKNOWN)),
        application("PO-2", "2022-07-10", (CAN, *KNOWN)),
        application("PO-3", "2022-07-10", (CAN, *KNOWN), (CAN, *UNKNOWN))))
    archive.run("2022-06-21", submission(
        "JUNE-2", application("PO-4", "2022-07-11", (CAN, *KNOWN))))
    archive.run("2022-07-05", submission(
        "JULY-1", application("PO-5", "2022-07-20", (CAN, *UNKNOWN)),
        application("PO-6", "2022-07-20", (CAN, *KNOWN))))
    unknown = "A121:{n} A121:{n}"

    code, answer = archive.replay("2022-06-29")
    assert code == 1
    assert changed_apps(answer) == {
        ("JUNE-1.xml", "PO-1"): ("LICENSED", "REJECTED " + unknown.format(n=1)),
        ("JUNE-1.xml", "PO-3"): ("LICENSED", "REJECTED " + unknown.format(n=2))}
    [june] = answer["files"]
    assert (june["before"], june["after"]) == ({"status": "ACCEPTED", "codes": []},
                                               {"status": "PARTIAL", "codes": []})
    assert june["counts"]["after"] == {"applications": 3, "licensed": 1, "not_required": 0,
                                       "rejected": 2, "cancelled": 0}
    assert answer["summary"]["transitions"] == {"LICENSED -> REJECTED": 2}

    code, answer = archive.replay("2022-06-28")  # the last day UNKNOWN was accepted
    assert code == 1
    assert changed_apps(answer) == {
        ("JULY-1.xml", "PO-5"): ("REJECTED " + unknown.format(n=1), "LICENSED")}
    # --since/--until select by the day each file was processed (the day its id carries,
    # here the --as-of it was run with), not by the clock time it arrived (found in review).
    assert archive.replay("2022-06-28", "--until", "2022-07-05")[0] == 1
    assert archive.replay("2022-06-28", "--until", "2022-07-04")[0] == 0
    assert archive.replay("2022-06-28", "--since", "2022-07-06")[0] == 0

    code, out, _ = archive.cli("replay", "--as-of", "2022-06-28")
    assert code == 1
    [head, file, change, summary] = out.splitlines()
    assert head.split()[1:] == ["sample", "JULY-1.xml", "processed", "2022-07-05"]
    assert file.split() == ["file", "PARTIAL", "->", "ACCEPTED", "(licensed", "1", "->", "2,",
                            "rejected", "1", "->", "0)"]
    assert change.split() == ["#1", "PO-5", "REJECTED", "A121:1", "A121:1", "->", "LICENSED"]
    assert summary == ("replay as of 2022-06-28: 3 files, 3 replayed: 1 would change "
                       "(1 application: REJECTED -> LICENSED 1), 2 unchanged")


# -- an HTS edition: exactly the applications it moves -----------------------------------------

DOORS = "7610100000"  # outside every AIM heading: A131 alone until the test's edition lists it
EDITION_DAY = date(2026, 12, 10)


def with_test_edition(original: Callable[[Config, date], RuleContext]) -> Callable[
        [Config, date], RuleContext]:
    """``rule_context`` with a covered list that adds DOORS from EDITION_DAY: an edition
    change, taken where run, check and replay all take their rules."""
    def rule_context(config: Config, on: date) -> RuleContext:
        ctx = original(config, on)
        if on < EDITION_DAY:
            return ctx
        items = {**ctx.covered.items, DOORS: CoveredHts(DOORS, "doors", "test group")}
        return replace(ctx, covered=replace(ctx.covered, items=items))
    return rule_context


def test_an_edition_change_shows_exactly_the_applications_it_moves(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "rule_context", with_test_edition(pipeline.rule_context))
    archive = Archive(tmp_path, capsys)
    archive.run(AS_OF, submission(
        "EDITION-1", application("PO-1", "2026-12-20", (DOORS, *KNOWN)),
        application("PO-2", "2026-12-20", (CAN, *KNOWN), (DOORS, *KNOWN)),
        application("PO-3", "2026-12-20", (CAN, *KNOWN)),
        application("PO-4", "2026-12-20", (DOORS, *KNOWN), entry_type="11")))  # exempt
    archive.run("2026-12-12", submission(
        "EDITION-2", application("PO-9", "2026-12-28", (DOORS, *KNOWN))))

    code, answer = archive.replay("2026-12-10")
    assert code == 1
    assert changed_apps(answer) == {
        ("EDITION-1.xml", "PO-1"): ("NOT_REQUIRED A131:1", "LICENSED"),
        ("EDITION-1.xml", "PO-2"): ("LICENSED A131:2", "LICENSED"),
        ("EDITION-1.xml", "PO-4"): ("NOT_REQUIRED A131:1 A170", "NOT_REQUIRED A170")}
    code, answer = archive.replay("2026-12-09")
    assert code == 1
    assert changed_apps(answer) == {
        ("EDITION-2.xml", "PO-9"): ("LICENSED", "NOT_REQUIRED A131:1")}
    assert archive.replay("2026-12-09", "--partner", "hanse")[0] == 0


# -- what cannot be replayed is said, per file ----------------------------------------------------


def test_purged_missing_or_altered_originals_are_said_and_never_fail_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = Archive(tmp_path, capsys, files_days=1, archive_days=3)
    for n in range(1, 5):
        archive.run(AS_OF, ("sample", f"g{n}.xml", _edit(GOOD, _sid(n), (
            b'ref="PO-44', f'ref="P{n}-44'.encode()), (b'ref="WH-0077"', f'ref="W{n}"'.encode()))))
    # purge --as-of D means the end of D in the gateway's zone: "today" is taken there too, or
    # between midnight UTC and midnight in New York the archive cut-off passes today's files.
    today = datetime.now(archive.config.gateway.zone).date()
    # Details purged (files_days): compared by status and counts, nothing would change.
    assert archive.cli("purge", "--as-of", str(today + timedelta(days=2)),
                       "--reason", "test")[0] == 0
    code, answer = archive.replay(AS_OF)
    assert code == 0
    assert answer["summary"]["compared_by_status"] == 4
    assert all(f["note"].startswith("details purged") and not f["changed"]
               for f in answer["files"])
    paths = dict(archive.sql("SELECT remote_name, archive_path FROM files"))
    Path(paths["g1.xml"]).unlink()
    Path(paths["g2.xml"]).write_bytes(GOOD)
    code, answer = archive.replay(AS_OF)
    assert code == 0
    notes = {f["name"]: f["note"] for f in answer["files"]}
    assert "is not at" in notes["g1.xml"] and "SHA-256 differs" in notes["g2.xml"]
    assert answer["summary"]["not_replayed"] == 2 and answer["summary"]["replayed"] == 2
    # Archives purged (archive_days): said per file.
    assert archive.cli("purge", "--as-of", str(today + timedelta(days=4)),
                       "--reason", "test")[0] == 0
    code, out, _ = archive.cli("replay", "--as-of", AS_OF)
    assert code == 0
    assert out.count("not replayed: the original was purged") == 4
    assert out.splitlines()[-1].endswith("0 would change, 0 unchanged; 4 not replayed")


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    [], ["--as-of", "2026-13-01"], ["--as-of", AS_OF, "--since", "2026-12-02", "--until",
                                    "2026-12-01"], ["--as-of", AS_OF, "--partner", "nobody"],
], ids=["no-as-of", "bad-date", "since-after-until", "unknown-partner"])
def test_usage_errors_exit_2(args: list[str], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    archive = Archive(tmp_path, capsys)
    code, out, err = archive.cli("replay", *args)
    assert code == 2 and out == "" and "Traceback" not in err


def test_before_the_first_run_there_is_nothing_to_replay(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = Archive(tmp_path, capsys)
    code, answer = archive.replay(AS_OF)
    assert code == 0 and answer["files"] == [] and answer["summary"]["files"] == 0
    assert not (tmp_path / "data").exists()


def test_an_unreadable_ledger_is_a_configuration_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nobody listens there
    cfg = ProjectConfig(tmp_path).ledger(f"postgresql://aimgw@127.0.0.1:{port}/aimgw") \
        .partner("sample").write()
    for form in ([], ["--json"]):
        code = main(["--config", str(cfg), "replay", "--as-of", AS_OF, *form])
        out, err = capsys.readouterr()
        assert code == 2 and out == ""
        assert "replay cannot read the ledger" in err and "Traceback" not in err


def test_a_long_replay_draws_a_progress_line_on_a_terminal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.xml"
    big.write_bytes(b"x" * 4_000_000)
    master, slave = pty.openpty()
    tty = os.fdopen(slave, "w")
    try:
        with ReadProgress(None, "replay", tty, interval=0.01) as progress:
            threading.Event().wait(0.05)
            progress.follow(big, "replay 2/3 20261201-000002")
            with open(big, "rb") as fh:
                while fh.read(100_000):
                    threading.Event().wait(0.005)
            out = io.StringIO()
            progress.say("a result\n", out)
        drawn = os.read(master, 65536).decode()
    finally:
        tty.close()
        os.close(master)
    assert "replay  0 s" in drawn  # before the first file: the label and the time
    assert "replay 2/3 20261201-000002 [" in drawn and "/4.0 MB" in drawn
    assert out.getvalue() == "a result\n"


# The bundled samples (tests/cases/inbox: the same files as the shipped inbox/), decided on
# 2026-12-01, then replayed the day before each effective date of contract 1.1: each replay
# names exactly what that 1.1 change moved on the samples, and nothing else (issue 12's
# done-when). Codes compare as the replay reports them ("A133:1" = A133 on line 1).
CHANGES_OF_1_1 = {
    # AIM-HTS-2025 (7601.10.60.30 split, 2025-12-09): the old number is A133 today.
    "2025-12-08": {("acme-20261201-partial.xml", "PO-5012"): ({"A122:1", "A133:1"}, {"A122:1"}),
                   ("nordic-orders-NA-2026-77.xml", "SO-88121"): ({"A133:1"}, set())},
    # A127 (2024-07-10): no sample has Mexican origin, so nothing more than the edition.
    "2024-07-09": "same as 2025-12-08",
    # A126 (2023-03-10): the partial file's applications with Russian second smelt lose it.
    "2023-03-09": {
        ("acme-20261201-partial.xml", "PO-5001"): ({"A126:1"}, set()),
        ("acme-20261201-partial.xml", "PO-5002"): ({"A120", "A126:1"}, {"A120"}),
        ("acme-20261201-partial.xml", "PO-5004"): ({"A111", "A126:1"}, {"A111"}),
        ("acme-20261201-partial.xml", "PO-5008"): ({"A126:1", "A160"}, {"A160"}),
        ("acme-20261201-partial.xml", "PO-5009"): ({"A126:1", "A150"}, {"A150"}),
        ("acme-20261201-partial.xml", "PO-5010"): ({"A105", "A126:1"}, {"A105"}),
        ("acme-20261201-partial.xml", "PO-5012"): ({"A122:1", "A133:1"}, {"A122:1"}),
        ("nordic-orders-NA-2026-77.xml", "SO-88121"): ({"A133:1"}, set())},
}


def _changes(report: dict[str, Any]) -> dict[tuple[str, str], tuple[set[str], set[str]]]:
    out: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for entry in report["files"]:
        for app in entry["applications"]:
            assert app["before"]["status"] == app["after"]["status"], app  # warnings only
            out[(entry["name"], app["ref"])] = (set(app["before"]["codes"]),
                                                set(app["after"]["codes"]))
    return out


def test_replay_over_the_bundled_samples_reports_the_changes_of_1_1_and_nothing_else(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = Archive(tmp_path, capsys)
    archive.run(AS_OF, *((partner, path.name, path.read_bytes())
                         for partner in ("sample", "hanse", "nordic")
                         for path in sorted((CASES / partner).iterdir())))
    code, report = archive.replay(AS_OF)
    assert (code, _changes(report)) == (0, {})
    for as_of, expected in CHANGES_OF_1_1.items():
        wanted = CHANGES_OF_1_1["2025-12-08"] if isinstance(expected, str) else expected
        code, report = archive.replay(as_of)
        assert (code, _changes(report)) == (1, wanted), as_of
