"""Crash test of the core pipeline (OPERATIONS.md, "Work folders and durability").

For every named crash point in ``gateway.crash.STEPS`` the gateway is run as a subprocess with
``AIMGW_CRASH_AT=<step>``; it must die there (exit 86, ``os._exit``: no cleanup, like kill -9).
A rerun without the variable must then reach exactly the result of a run that never crashed:
the same ledger rows, license numbers and counters, the same outbox (ACE files byte for byte,
acknowledgments up to their <ReceivedAt>/<ProcessedAt> times), the same archive/, failed/ and
processed/ folders, an empty inbox, and no temp file left anywhere.

Each scenario runs in two orders: the clean file first (the crash hits the licensing path) and
the hostile file first (the crash hits the rejection path and failed/). Crash points fire at the
first file that reaches them, so the order decides which code path is crashed.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from conftest import ProjectConfig
from lifecycle_files import application, cancellation, submission

from gateway.crash import STEPS

ROOT = Path(__file__).resolve().parents[1]
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
SAMPLES = CASES_INBOX / "sample"
AS_OF = "2026-12-01"
PARTNER = "acme"
CRASH_EXIT = 86
MAX_RERUNS = 3
EXTRA = "acme-20261202-extra.xml"

# Inbox order (by mtime): the crash fires at the first file that reaches the step.
ORDERS = {
    "good_first": ("acme-20261201-good.xml", "acme-20261201-partial.xml",
                   "acme-20261201-hostile.xml", EXTRA),
    "hostile_first": ("acme-20261201-hostile.xml", "acme-20261201-good.xml", EXTRA,
                      "acme-20261201-partial.xml"),
}

ACK_TIMES = re.compile(rb"<(ReceivedAt|ProcessedAt)>[^<]*</\1>")
ERROR_TXT_RECEIVED = re.compile(rb"^received at: .*$", re.MULTILINE)


# -- helpers -----------------------------------------------------------------------------------


def extra_submission() -> bytes:
    """A fourth valid file: the good sample with its own SubmissionId and refs."""
    text = (SAMPLES / "acme-20261201-good.xml").read_text(encoding="utf-8")
    replaced = (text.replace("ACME-20261201-001", "ACME-20261202-004")
                .replace('ref="PO-44', 'ref="PO-55').replace('ref="WH-0077"', 'ref="WH-0088"'))
    assert replaced.count("PO-55") == 3 and "WH-0088" in replaced and "20261202-004" in replaced
    return replaced.encode("utf-8")


def make_project(base: Path, order: str) -> Path:
    """A gateway project in ``base``: config.toml and an inbox holding the four files."""
    base.mkdir(parents=True, exist_ok=True)
    config = ProjectConfig(base).partner(
        PARTNER, name="Acme crash-test partner", inbox="inbox", processed_dir="processed",
        filer_code="SMP", filer=True).write()
    inbox = base / "inbox"
    inbox.mkdir()
    for index, name in enumerate(ORDERS[order]):
        data = extra_submission() if name == EXTRA else (SAMPLES / name).read_bytes()
        (inbox / name).write_bytes(data)
        mtime = 1_790_000_000 + 60 * index  # fixed, distinct: the same order in every project
        os.utime(inbox / name, (mtime, mtime))
    return config


def run_gateway(config: Path, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AIMGW_CRASH_AT"}
    if crash_at is not None:
        env["AIMGW_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run", "--once", "--as-of", AS_OF,
         "--config", str(config)],
        cwd=config.parent, env=env, capture_output=True, text=True, timeout=60, check=False)


def crash_gateway(config: Path, step: str) -> None:
    result = run_gateway(config, crash_at=step)
    assert result.returncode == CRASH_EXIT, (
        f"no crash at {step}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")


def rerun_until_done(config: Path) -> None:
    """Rerun without a crash until exit 0; one run should do, at most MAX_RERUNS are allowed."""
    outputs = []
    for _ in range(MAX_RERUNS):
        result = run_gateway(config)
        if result.returncode == 0:
            return
        outputs.append(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    pytest.fail(f"no clean rerun in {MAX_RERUNS} tries:\n" + "\n---\n".join(outputs))


def query(base: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
    db = sqlite3.connect(base / "data" / "ledger.sqlite")
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def ledger_snapshot(base: Path) -> dict[str, list[tuple]]:
    tables = {
        "licenses": "SELECT license_number, partner, ref, digest, file_id, issue_date, "
                    "valid_from, valid_through, lines, quantity_kg, value_usd, products, "
                    "kind, source, state, replaces FROM licenses ORDER BY license_number",
        # Each supersession and cancellation, once (``at`` is a clock time).
        "license_changes": "SELECT license_number, partner, ref, change, replaced_by, "
                           "change_date, file_id, reason FROM license_changes "
                           "ORDER BY license_number",
        "applications": "SELECT file_id, seq, ref, status, license_number, reused, lines, "
                        "digest FROM applications ORDER BY file_id, seq",
        "findings": "SELECT file_id, ref, line, code, severity, field, value, message, "
                    "source_line FROM findings ORDER BY file_id, rowid",
        "files": "SELECT file_id, partner, remote_name, size, sha256, local_name, state, "
                 "status, format, submission_id, rule_set_date, applications, licensed, "
                 "not_required, rejected, new_licenses, ack_name, ace_names, error, "
                 "duplicate_of, reprocess_of, changes_name FROM files ORDER BY file_id",
        "file_counter": "SELECT day, last FROM file_counter ORDER BY day",
        "license_counter": "SELECT series, year, last FROM license_counter "
                           "ORDER BY series, year",
    }
    snap = {name: query(base, sql) for name, sql in tables.items()}
    # Absolute paths differ between the two projects: compare them relative to the project.
    snap["archive_paths"] = [
        (file_id, Path(path).relative_to(base).as_posix() if path else None)
        for file_id, path in query(base, "SELECT file_id, archive_path FROM files "
                                         "ORDER BY file_id")]
    return snap


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative name, with its bytes."""
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def normalised(name: str, data: bytes) -> bytes:
    """Blank the clock times that legitimately differ between two runs."""
    if name.endswith(".ack.xml"):
        return ACK_TIMES.sub(rb"<\1>*</\1>", data)
    if name.endswith(".error.txt"):
        return ERROR_TXT_RECEIVED.sub(b"received at: *", data)
    return data


STATUS_FILES = ("status.json", "status.csv")


def folders_snapshot(base: Path) -> dict[str, dict[str, bytes]]:
    snap = {}
    for label, folder in (("outbox", base / "outbox"), ("acks", base / "data" / "acks"),
                          ("archive", base / "data" / "archive"),
                          ("failed", base / "data" / "failed"),
                          ("processed", base / "processed"), ("inbox", base / "inbox")):
        # status.json/.csv are a view rewritten after every poll (with its clock), not an
        # output of the durable order: tests/test_admin.py checks them.
        snap[label] = {name: normalised(name, data) for name, data in tree(folder).items()
                       if name.rsplit("/", 1)[-1] not in STATUS_FILES}
    return snap


def assert_ledger_sound(base: Path, files: int = 4) -> None:
    assert query(base, "PRAGMA integrity_check") == [("ok",)]
    states = query(base, "SELECT remote_name, state FROM files ORDER BY file_id")
    assert len(states) == files, states
    assert all(state == "DONE" for _, state in states), states
    # (A cancellation's application names the license it cancelled: not issued by it.)
    issued = query(base, "SELECT license_number FROM applications WHERE license_number IS "
                         "NOT NULL AND reused = 0 AND status = 'LICENSED'")
    numbers = [n for (n,) in issued]
    assert len(numbers) == len(set(numbers)), f"license number issued twice: {numbers}"
    licenses = [n for (n,) in query(base, "SELECT license_number FROM licenses")]
    assert sorted(numbers) == sorted(licenses), "applications and licenses disagree"


def assert_no_leftovers(base: Path) -> None:
    work = base / "data" / "work"
    for sub in ("tmp", "received"):
        left = sorted(p.name for p in (work / sub).iterdir()) if (work / sub).exists() else []
        assert left == [], f"left in data/work/{sub}: {left}"
    for top in ("data", "outbox", "processed"):
        hidden = sorted(p.relative_to(base).as_posix() for p in (base / top).rglob(".*"))
        assert hidden == [], f"temp files left: {hidden}"


def assert_matches_reference(base: Path, reference: Path, files: int = 4) -> None:
    assert_ledger_sound(base, files)
    assert_no_leftovers(base)
    got_ledger, want_ledger = ledger_snapshot(base), ledger_snapshot(reference)
    for table, rows in want_ledger.items():
        assert got_ledger[table] == rows, f"ledger table {table} differs from the reference"
    got, want = folders_snapshot(base), folders_snapshot(reference)
    for label, files in want.items():
        assert sorted(got[label]) == sorted(files), f"{label}/ holds other file names"
        for name, data in files.items():
            assert got[label][name] == data, f"{label}/{name} differs from the reference"


def first_file_state(base: Path) -> tuple[int, str | None]:
    """(rows in the files table, state of the first file)."""
    rows = query(base, "SELECT state FROM files ORDER BY file_id")
    return len(rows), rows[0][0] if rows else None


# -- the reference, once per inbox order -------------------------------------------------------


def build_references(factory: pytest.TempPathFactory, prefix: str, keys: Iterable[str],
                     make: Callable[[Path, str], Path]) -> dict[str, Path]:
    """A project per key, made by ``make`` and run once without a crash."""
    built = {}
    for key in keys:
        base = factory.mktemp(f"{prefix}-{key}")
        result = run_gateway(make(base, key))
        assert result.returncode == 0, result.stderr
        built[key] = base
    return built


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_references(tmp_path_factory, "reference", ORDERS, make_project)


@pytest.fixture(scope="module")
def lifecycle_references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # A project per stage of a license's lifecycle (defined below, with its tests).
    return build_references(tmp_path_factory, "lifecycle", STAGES, make_lifecycle_project)


def test_reference_runs_are_meaningful(references: dict[str, Path]) -> None:
    """Guards the comparisons below against passing on an empty or trivial result."""
    for order, base in references.items():
        assert_ledger_sound(base)
        assert_no_leftovers(base)
        outbox = tree(base / "outbox")
        assert any(re.fullmatch(r"ace/AE-\d{8}-\d{6}\.txt", n) for n in outbox), order
        assert any(re.fullmatch(r"ace/FT-\d{8}-\d{6}\.txt", n) for n in outbox), order
        assert any(n.endswith(".manifest.json") for n in outbox), order
        acks = [n for n in outbox if n.startswith(f"{PARTNER}/") and ".ack." in n]
        assert len(acks) == 4, order
        assert {f"{PARTNER}/status.json", f"{PARTNER}/status.csv"} <= set(outbox), order
        assert tree(base / "data" / "failed"), order
        assert len(tree(base / "data" / "archive")) == 3, order
        assert sorted(tree(base / "processed")) == sorted(ORDERS[order]), order
        assert tree(base / "inbox") == {}, order
        statuses = dict(query(base, "SELECT remote_name, status FROM files"))
        assert statuses[EXTRA] == statuses["acme-20261201-good.xml"] == "ACCEPTED", statuses
        assert len(query(base, "SELECT 1 FROM licenses")) >= 8, order


def copy_project(source: Path, dest: Path) -> Path:
    """A copy of a finished project whose ledger paths point into the copy."""
    shutil.copytree(source, dest)
    db = sqlite3.connect(dest / "data" / "ledger.sqlite")
    with db:
        db.execute("UPDATE files SET archive_path = replace(archive_path, ?, ?)",
                   (str(source), str(dest)))
    db.close()
    return dest


def _first(base: Path, pattern: str) -> Path:
    found = sorted(base.glob(pattern))
    assert found, pattern
    return found[0]


def _sql(base: Path, statement: str) -> None:
    db = sqlite3.connect(base / "data" / "ledger.sqlite")
    with db:
        changed = db.execute(statement).rowcount
    db.close()
    assert changed > 0, statement


def _flip_last_byte(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))


MUTATIONS = {
    "ace_byte": lambda b: _flip_last_byte(_first(b, "outbox/ace/AE-*.txt")),
    "ace_manifest_missing": lambda b: _first(b, "outbox/ace/FT-*.manifest.json").unlink(),
    "ack_status": lambda b: (lambda p: p.write_bytes(p.read_bytes().replace(
        b"<Status>ACCEPTED", b"<Status>PARTIAL")))(_first(b, f"outbox/{PARTNER}/*good*.xml")),
    "dot_temp_in_outbox": lambda b: (b / "outbox" / "ace" / ".AE-x.txt.1.tmp").write_bytes(b""),
    "left_in_received": lambda b: (b / "data" / "work" / "received" / "x__y.xml").write_bytes(
        b"x"),
    "left_in_work_tmp": lambda b: (b / "data" / "work" / "tmp" / "1-acme-y.part").write_bytes(
        b"x"),
    "input_back_in_inbox": lambda b: _first(b, "processed/*good*").rename(
        b / "inbox" / "acme-20261201-good.xml"),
    "archive_bytes": lambda b: _flip_last_byte(_first(b, "data/archive/*/*/*partial*")),
    "error_reason": lambda b: (lambda p: p.write_bytes(p.read_bytes().replace(
        b"reason:", b"reason: x")))(_first(b, "data/failed/*/*.error.txt")),
    "license_counter": lambda b: _sql(b, "UPDATE license_counter SET last = last + 1"),
    "file_counter": lambda b: _sql(b, "UPDATE file_counter SET last = last + 1"),
    "file_not_done": lambda b: _sql(b, "UPDATE files SET state = 'ARCHIVED' "
                                       "WHERE file_id = (SELECT MAX(file_id) FROM files)"),
    "license_validity": lambda b: _sql(
        b, "UPDATE licenses SET valid_through = '2099-01-01' "
           "WHERE license_number = (SELECT MAX(license_number) FROM licenses)"),
    "finding_lost": lambda b: _sql(b, "DELETE FROM findings WHERE rowid = "
                                      "(SELECT MAX(rowid) FROM findings)"),
}


def test_comparison_accepts_an_identical_copy_up_to_clock_times(
        tmp_path: Path, references: dict[str, Path]) -> None:
    reference = references["good_first"]
    copy = copy_project(reference, tmp_path / "copy")
    acks = sorted((copy / "outbox" / PARTNER).glob("*.ack.xml"))
    assert len(acks) == 4
    for ack in acks:
        original = ack.read_bytes()
        ack.unlink()  # a new inode, as after a rerun (outbox acks are hard links)
        retimed = ACK_TIMES.sub(rb"<\1>2030-01-01T00:00:00+00:00</\1>", original)
        assert retimed != original
        ack.write_bytes(retimed)
    assert_matches_reference(copy, reference)


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_comparison_catches_each_kind_of_difference(
        tmp_path: Path, references: dict[str, Path], mutation: str) -> None:
    reference = references["good_first"]
    copy = copy_project(reference, tmp_path / "copy")
    MUTATIONS[mutation](copy)
    with pytest.raises(AssertionError):
        assert_matches_reference(copy, reference)


# -- crash at each step, rerun, compare --------------------------------------------------------

# What the ledger and inbox show right after the crash, for the first file: proof that the
# process died at that step and not somewhere else. (files rows, first file's state, inbox
# still holding the first file)
AFTER_CRASH = {
    "after_fetch": (0, None, True),
    "after_receipt": (1, "RECEIVED", True),
    "after_changes": (1, "RECEIVED", True),
    "after_outputs": (1, "RECEIVED", True),
    "after_commit": (1, "PROCESSED", True),
    "after_archive": (1, "ARCHIVED", True),
    "after_disposition": (1, "DONE", False),
}


# A file rejected whole (the hostile one) writes no changes report: a crash there hits the
# next file, after the first one was done.
AFTER_CRASH_OF_ORDER = {("after_changes", "hostile_first"): (2, "DONE", False)}


def test_every_step_has_an_expected_crash_state() -> None:
    assert set(AFTER_CRASH) == set(STEPS)


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("step", STEPS)
def test_crash_then_rerun_matches_reference(tmp_path: Path, references: dict[str, Path],
                                            step: str, order: str) -> None:
    config = make_project(tmp_path, order)
    crash_gateway(config, step)
    rows, state, in_inbox = AFTER_CRASH_OF_ORDER.get((step, order), AFTER_CRASH[step])
    assert first_file_state(tmp_path) == (rows, state)
    assert (tmp_path / "inbox" / ORDERS[order][0]).exists() is in_inbox
    rerun_until_done(config)
    assert_matches_reference(tmp_path, references[order])


@pytest.mark.parametrize("order", list(ORDERS))
def test_crash_after_outputs_is_before_the_commit(tmp_path: Path, references: dict[str, Path],
                                                  order: str) -> None:
    config = make_project(tmp_path, order)
    crash_gateway(config, "after_outputs")
    first = ORDERS[order][0]
    ack = tmp_path / "outbox" / PARTNER / f"{first}.ack.xml"
    assert ack.is_file(), "the acknowledgment should be published before the crash"
    recorded = query(tmp_path, "SELECT file_id, state, status, ack_name FROM files")
    assert len(recorded) == 1
    file_id, state, status, ack_name = recorded[0]
    assert (state, status, ack_name) == ("RECEIVED", None, None)
    assert query(tmp_path, "SELECT COUNT(*) FROM applications") == [(0,)]
    assert query(tmp_path, "SELECT COUNT(*) FROM licenses") == [(0,)]
    assert query(tmp_path, "SELECT COUNT(*) FROM license_counter") == [(0,)]
    assert (tmp_path / "data" / "work" / "received" / f"{file_id}__{first}").is_file()
    rerun_until_done(config)
    assert_matches_reference(tmp_path, references[order])


@pytest.mark.parametrize("order", list(ORDERS))
def test_crash_during_recovery_then_rerun_matches_reference(
        tmp_path: Path, references: dict[str, Path], order: str) -> None:
    config = make_project(tmp_path, order)
    crash_gateway(config, "after_receipt")
    assert first_file_state(tmp_path) == (1, "RECEIVED")
    crash_gateway(config, "after_commit")  # recover() takes the first file, dies after commit
    assert first_file_state(tmp_path) == (1, "PROCESSED")
    rerun_until_done(config)
    assert_matches_reference(tmp_path, references[order])


# -- a license's lifecycle: a crash at each step of its correction, and of its cancellation --
# A first run licenses PO-1 and PO-2 (A26000001, A26000002); the crash run takes one more file:
# "correction" corrects PO-1 (A26000003 supersedes A26000001) and cancels A26000002 in one
# file; "cancellation" (after that file) cancels the correction A26000003. Each crash hits the
# file that changes licenses, and a rerun must end as the run without the crash: the ledger
# (licenses, their states, the changes), the acks, ACE files and the changes reports.

LIFECYCLE = {
    "life-1.xml": submission("LIFE-1", application("PO-1"), application("PO-2")),
    "life-2.xml": submission("LIFE-2", application("PO-1", corrects="A26000001",
                                                   quantity="25000"),
                             cancellation("PO-2", "A26000002", "order cancelled")),
    "life-3.xml": submission("LIFE-3", cancellation("PO-1", "A26000003", "not needed")),
}
# stage -> (the files run before, the file the crash run takes)
STAGES = {"correction": (("life-1.xml",), "life-2.xml"),
          "cancellation": (("life-1.xml", "life-2.xml"), "life-3.xml")}


def make_lifecycle_project(base: Path, stage: str) -> Path:
    """A project whose earlier files of ``stage`` are done and whose inbox holds its file."""
    base.mkdir(parents=True, exist_ok=True)
    config = ProjectConfig(base).partner(
        PARTNER, name="Acme lifecycle crash test", inbox="inbox", processed_dir="processed",
        filer_code="SMP", filer=True).write()
    (base / "inbox").mkdir()
    before, last = STAGES[stage]
    for index, name in enumerate((*before, last)):
        (base / "inbox" / name).write_bytes(LIFECYCLE[name])
        mtime = 1_790_000_000 + 60 * index
        os.utime(base / "inbox" / name, (mtime, mtime))
        if name != last:
            result = run_gateway(config)
            assert result.returncode == 0, result.stderr
    return config


def test_lifecycle_references_are_meaningful(lifecycle_references: dict[str, Path]) -> None:
    for stage, base in lifecycle_references.items():
        files = len(STAGES[stage][0]) + 1
        assert_ledger_sound(base, files)
        assert_no_leftovers(base)
        reports = sorted(n for n in tree(base / "outbox" / "changes"))
        assert len(reports) == 2 * (files - 1), reports  # a report and its manifest each
        changes = query(base, "SELECT change FROM license_changes ORDER BY license_number")
        assert changes == [("SUPERSEDED",), ("CANCELLED",), ("CANCELLED",)][:files], stage
        ace = [n for n in tree(base / "outbox" / "ace") if n.endswith(".txt")]
        assert len(ace) == 2, ace  # life-1's and the correction's, none for a cancellation


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("step", STEPS)
def test_lifecycle_crash_then_rerun_matches_reference(
        tmp_path: Path, lifecycle_references: dict[str, Path], step: str, stage: str) -> None:
    config = make_lifecycle_project(tmp_path, stage)
    crash_gateway(config, step)
    rerun_until_done(config)
    assert_matches_reference(tmp_path, lifecycle_references[stage],
                             files=len(STAGES[stage][0]) + 1)


@pytest.mark.parametrize("stage", list(STAGES))
def test_lifecycle_crash_after_changes_is_before_the_commit(
        tmp_path: Path, lifecycle_references: dict[str, Path], stage: str) -> None:
    config = make_lifecycle_project(tmp_path, stage)
    changed_before = query(tmp_path, "SELECT COUNT(*) FROM license_changes")
    crash_gateway(config, "after_changes")
    [(file_id, state)] = query(tmp_path, "SELECT file_id, state FROM files WHERE "
                                         "remote_name = ?", (STAGES[stage][1],))
    assert state == "RECEIVED"
    report = tmp_path / "outbox" / "changes" / f"CHG-{file_id}.csv"
    assert report.is_file() and report.with_name(report.name + ".manifest.json").is_file()
    assert query(tmp_path, "SELECT COUNT(*) FROM license_changes") == changed_before
    rerun_until_done(config)
    assert_matches_reference(tmp_path, lifecycle_references[stage],
                             files=len(STAGES[stage][0]) + 1)
