"""Crash suite (issue 6 point 1): SIGKILL the gateway at random moments of a mixed batch.

A batch of partner files (canonical XML and CSV, a mapped CSV partner, an XSLT partner; good,
partly bad, rejected whole, a duplicate, a re-sent request, a few hundred-line files) is put in
the inboxes of a temporary project. The gateway (``run --once`` as a subprocess) is started,
killed with SIGKILL after a random delay, started again, killed again ... until the requested
number of kills has hit a running process; then it is run without kills until a run finds
nothing left to do. The result must be exactly that of a reference run that was never killed:

- every input file has exactly one ledger row, in state DONE, with the reference's final status,
  counts, findings, acknowledgment name and ACE names;
- every input has exactly one acknowledgment in ``outbox/<partner>/`` (and one stored copy in
  ``data/acks/<partner>/``), equal to the reference's up to clock times;
- every application the reference licensed has exactly one license with the same number (the
  inbox order is fixed by the files' mtimes, so file ids and license numbers are deterministic
  and are compared exactly); no license number is used twice;
- each license number appears in exactly one application of exactly one ACE file (52 records,
  positions 5-14; FT60 records, positions 51-72), ACE files are byte-identical to the
  reference's, and each manifest matches its file (sha256, record count, licenses);
- a license's lifecycle (partner ``life``: an application, its correction with a cancellation,
  the correction cancelled, that cancellation again): each supersession and cancellation is
  recorded once and written to exactly one changes report, its own file's
  (``outbox/changes/CHG-<file id>.csv``), whose manifest matches it;
- nothing is left in ``data/work/tmp`` or ``data/work/received``, no dot-prefixed temp file
  under ``data/``, ``outbox/`` or ``processed/``;
- ``Ledger.integrity_problems()`` is empty and ``PRAGMA integrity_check`` says ok;
- every input is in ``data/archive/`` or ``data/failed/`` exactly once, with its own bytes;
  the partners' inboxes were disposed of as configured (move, keep, delete);
- a further run takes nothing and changes nothing (the reruns converge).

Replaying a failure: the delays come from ``random.Random(AIMGW_CRASH_SEED)``; rerun with the
seed and kill count printed in the failure (timing still varies a little from run to run).

    AIMGW_CRASH_SEED=7 AIMGW_CRASH_KILLS=40 .venv/bin/pytest tests/test_crash_suite.py -q
    AIMGW_SLOW=1 .venv/bin/pytest tests/test_crash_suite.py -q -s      # the long run

The long run (``@pytest.mark.slow``: ``pytest --slow`` or ``AIMGW_SLOW=1``) uses a bigger batch
and at least 100 kills (``AIMGW_CRASH_KILLS``, default 150; 33 files per 10 kills), prints its
figures and writes them to ``/tmp/aimgw-crash-suite.json`` (or ``AIMGW_CRASH_FIGURES``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from conftest import ProjectConfig
from lifecycle_files import application, cancellation, submission

from gateway.inbox.receipt import clean_work
from gateway.ledger.store import Ledger
from gateway.storage import Layout, safe_name

ROOT = Path(__file__).resolve().parents[1]
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
SAMPLE_INBOX = CASES_INBOX / "sample"
HANSE_SAMPLE = CASES_INBOX / "hanse" / "ZAIM_EXPORT_20261201.csv"
NORDIC_SAMPLE = CASES_INBOX / "nordic" / "nordic-orders-NA-2026-77.xml"
MAPPINGS = ROOT / "mappings"
AS_OF = "2026-12-01"
DEFAULT_SEED = 20261201
FAST_KILLS = 20
LONG_KILLS = 150
LONG_MIN_KILLS = 100
FIGURES_FILE = Path(os.environ.get("AIMGW_CRASH_FIGURES", "/tmp/aimgw-crash-suite.json"))
RUN_TIMEOUT = 300  # seconds for one run that is not killed
MAX_FINISHING_RUNS = 4  # after the kills: one run finishes the batch, the next finds nothing
PACE = 1.3  # the batch should be done at about 1.3 x the kills: every kill lands in the batch
EARLY = 0.2  # share of the kills drawn from the start-up (imports, ledger, recovery)
KILLS_PER_SCALE = 10  # the long run's batch: 33 files for every 10 kills (495 for 150)

# Partners shaped like config.toml's: ``sample`` (XML and canonical CSV), ``hanse`` (mapped
# CSV), ``nordic`` (XSLT). Each disposes of its files differently, so that each disposition is
# crashed: move (to processed/), keep, delete. ``max_files`` holds a whole batch: each partner's
# files are taken in one poll, so the order of the files (and with it every file id and license
# number) is the same however often the gateway is killed and restarted.
# Every gateway setting is left at its default.


def crash_config(base: Path) -> ProjectConfig:
    config = ProjectConfig(base)
    # First: its files are decided before any other partner's, so the licenses it corrects
    # and cancels have the numbers its files name (A26000001 ...), however often killed.
    config.partner("life", name="Lifecycle partner (crash suite)", patterns=["*.xml"],
                   processed_dir="processed/life", max_files=5000, filer_code="LFC")
    config.partner("sample", name="Sample Aluminum Importer (crash suite)",
                   processed_dir="processed/sample", max_files=5000, filer_code="SMP",
                   filer=True)
    config.partner("hanse", name="Hanse Metall Handel GmbH (crash suite)", patterns=["*.csv"],
                   disposition="keep", max_files=5000, filer_code="HMH",
                   mapping="mappings/hanse-metall.toml")
    config.partner("nordic", name="Nordic Aluminium Trading AS (crash suite)",
                   patterns=["*.xml"], disposition="delete", max_files=5000, filer_code="NAT",
                   mapping="mappings/nordic-orders.xsl")
    return config


PARTNERS = ("life", "sample", "hanse", "nordic")
DISPOSITION = {"life": "move", "sample": "move", "hanse": "keep", "nordic": "delete"}
LIFECYCLE = (
    ("life-1.xml", submission("LIFE-1", application("PO-1"), application("PO-2"))),
    ("life-2.xml", submission("LIFE-2", application("PO-1", corrects="A26000001",
                                                    quantity="25000"),
                              cancellation("PO-2", "A26000002", "order cancelled"))),
    ("life-3.xml", submission("LIFE-3", cancellation("PO-1", "A26000003", "not needed"))),
    ("life-4.xml", submission("LIFE-4", cancellation("PO-1", "A26000003", "not needed"))),
)

# Clock times that legitimately differ between two runs (ReceivedAt/ProcessedAt, the receipt
# time quoted by F006 and by .error.txt).
CLOCK_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?")
STATUS_FILES = {"status.json", "status.csv"}
FINAL_STATUSES = {"ACCEPTED", "PARTIAL", "REJECTED", "DUPLICATE"}


# -- the batch ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    partner: str
    name: str
    data: bytes
    kind: str  # what it is meant to exercise (for the figures)


def _sub(text: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return text


def _sample(name: str) -> str:
    return (SAMPLE_INBOX / name).read_text(encoding="utf-8")


def good_xml(n: int) -> bytes:
    """The good sample as a new submission: its own SubmissionId and refs."""
    return _sub(_sample("acme-20261201-good.xml"), [
        ("ACME-20261201-001", f"ACME-CS-G{n:03d}"), ('ref="PO-44', f'ref="G{n:03d}-44'),
        ('ref="WH-0077"', f'ref="G{n:03d}-W77"')]).encode()


def partial_xml(n: int) -> bytes:
    return _sub(_sample("acme-20261201-partial.xml"), [
        ("ACME-20261201-002", f"ACME-CS-P{n:03d}"), ('ref="PO-50', f'ref="P{n:03d}-50')]).encode()


def hostile_xml(n: int) -> bytes:
    return _sub(_sample("acme-20261201-hostile.xml"), [
        ("ACME-20261201-003", f"ACME-CS-H{n:03d}"), ('ref="PO-6666"', f'ref="H{n:03d}-66"')]
    ).encode()


def _elements_copied(text: str, tag: str, copies: int,
                     edit: Callable[[str, int], str]) -> tuple[str, str, str]:
    """(head, the ``tag`` elements ``copies`` times over, each edited by ``edit(body, copy)``
    and ended by a newline, tail) of an XML ``text``."""
    head, rest = text.split(f"  <{tag} ", 1)
    body, tail = rest.rsplit(f"</{tag}>", 1)
    body = f"  <{tag} {body}</{tag}>"
    return head, "".join(edit(body, copy) + "\n" for copy in range(copies)), tail


def big_xml(n: int, copies: int, *, truncate: bool = False) -> bytes:
    """The good sample's applications ``copies`` times over (4 applications, 5 lines each
    time), each copy with its own refs; ``truncate`` cuts the document near its end (F001
    after most applications were already licensed in the open transaction)."""
    head, bodies, tail = _elements_copied(
        _sample("acme-20261201-good.xml"), "Application", copies,
        lambda body, copy: _sub(body, [('ref="PO-44', f'ref="B{n:03d}{copy:03d}-44'),
                                       ('ref="WH-0077"', f'ref="B{n:03d}{copy:03d}-W77"')]))
    document = _sub(head, [("ACME-20261201-001", f"ACME-CS-B{n:03d}")]) + bodies + tail
    if truncate:
        document = document[: len(document) - 700]
    return document.encode()


def erp_csv(n: int) -> bytes:
    return _sub(_sample("acme-20261202-erp.csv"), [
        ("ACME-20261202-CSV", f"ACME-CS-C{n:03d}"), (",PO-700", f",C{n:03d}-700")]).encode()


def _rows_copied(text: str, copies: int, edit: Callable[[str, int], str],
                 last: tuple[str, str] | None) -> str:
    """The header, then the rows ``copies`` times over, each edited by ``edit(row, copy)``;
    ``last`` (old, new) edits the last row (another submission id: F005 at the end)."""
    lines = text.splitlines(keepends=True)
    out = [lines[0], *(edit(row, copy) for copy in range(copies) for row in lines[1:])]
    if last is not None:
        out[-1] = out[-1].replace(*last)
    return "".join(out)


def big_csv(n: int, copies: int, *, bad_last_row: bool = False) -> bytes:
    """The ERP sample's rows ``copies`` times over with their own refs; ``bad_last_row`` gives
    the last row another submission_id (F005 at the end of the file)."""
    sid = f"ACME-CS-D{n:03d}"
    return _rows_copied(
        _sample("acme-20261202-erp.csv"), copies,
        lambda row, copy: row.replace("ACME-20261202-CSV", sid).replace(
            ",PO-700", f",D{n:03d}{copy:03d}-700"),
        (sid, f"ACME-CS-X{n:03d}") if bad_last_row else None).encode()


def hanse_csv(n: int, copies: int = 1, *, bad_last_row: bool = False) -> bytes:
    """The Hanse export (Windows-1252, semicolons) with its own Belegnr and order numbers."""
    sid = f"HMH-CS-{n:04d}"
    return _rows_copied(
        HANSE_SAMPLE.read_bytes().decode("cp1252"), copies,
        lambda row, copy: row.replace("HMH-2026-1201", sid).replace(
            ";45000123", f";7{n:03d}{copy:03d}"),
        (sid, f"HMH-CX-{n:04d}") if bad_last_row else None).encode("cp1252")


def nordic_xml(n: int, copies: int = 1, *, broken: bool = False) -> bytes:
    """The Nordic order export with its own batch id and order numbers."""
    head, bodies, tail = _elements_copied(
        NORDIC_SAMPLE.read_text(encoding="utf-8"), "Order", copies,
        lambda body, copy: body.replace('no="SO-8812', f'no="N{n:03d}{copy:03d}-'))
    document = (_sub(head, [('id="NA-2026-77"', f'id="NA-CS-{n:04d}"')]) + bodies
                + tail.lstrip("\n"))
    if broken:
        document = document.replace("</Importer>", "</Imp>", 1)
    return document.encode()


def build_batch(scale: int) -> list[Input]:
    """A mixed batch of 33 * ``scale`` files over the three partners."""
    batch: list[Input] = []

    def add(partner: str, name: str, data: bytes, kind: str) -> None:
        batch.append(Input(partner, name, data, kind))

    for name, data in LIFECYCLE:
        add("life", name, data, "xml lifecycle")

    big = 100  # copies: 400 applications (XML), 600 rows (CSV), 200 orders (XSLT), 500 rows
    #            (mapped CSV): each takes a good part of a run, so kills land inside them
    for s in range(scale):
        k = s * 100
        for i in range(5):
            add("sample", f"acme-good-{k + i:03d}.xml", good_xml(k + i), "xml good")
        add("sample", f"acme-partial-{k:03d}.xml", partial_xml(k), "xml partial")
        add("sample", f"acme-partial-{k + 1:03d}.xml", partial_xml(k + 1), "xml partial")
        add("sample", f"acme-hostile-{k:03d}.xml", hostile_xml(k), "xml F004")
        add("sample", f"acme-broken-{k:03d}.xml", good_xml(k + 50)[:1500], "xml F001")
        for i in range(3):
            add("sample", f"acme-erp-{k + i:03d}.csv", erp_csv(k + i), "csv partial")
        add("sample", f"acme-big-{k:03d}.xml", big_xml(s, big), "xml big")
        add("sample", f"acme-big-{k + 1:03d}.csv", big_csv(s, big), "csv big")
        add("sample", f"acme-bigcut-{k:03d}.xml", big_xml(s + 500, big, truncate=True),
            "xml big F001")
        add("sample", f"acme-bigbad-{k:03d}.csv", big_csv(s + 500, big, bad_last_row=True),
            "csv big F005")
        # The same bytes again under another name (DUPLICATE), the same requests in a new
        # submission (I201, licenses reused), and a SubmissionId reused with other bytes (F007).
        add("sample", f"acme-resent-{k:03d}.xml", good_xml(k), "xml DUPLICATE")
        add("sample", f"acme-again-{k:03d}.xml",
            good_xml(k + 1).replace(f"ACME-CS-G{k + 1:03d}".encode(),
                                    f"ACME-CS-A{k:03d}".encode()), "xml I201")
        add("sample", f"acme-reuse-id-{k:03d}.xml",
            partial_xml(k + 2).replace(f"ACME-CS-P{k + 2:03d}".encode(),
                                       f"ACME-CS-G{k + 2:03d}".encode()), "xml F007")
        for i in range(5):
            add("hanse", f"ZAIM_EXPORT_{k + i:04d}.csv", hanse_csv(k + i), "mapped csv partial")
        add("hanse", f"ZAIM_EXPORT_{k + 10:04d}.csv", hanse_csv(k + 10, big // 2),
            "mapped csv big")
        add("hanse", f"ZAIM_EXPORT_{k + 11:04d}.csv",
            hanse_csv(k + 11, 3, bad_last_row=True), "mapped csv F005")
        for i in range(5):
            add("nordic", f"nordic-orders-{k + i:04d}.xml", nordic_xml(k + i), "xslt good")
        add("nordic", f"nordic-orders-{k + 10:04d}.xml", nordic_xml(k + 10, big),
            "xslt big")
        add("nordic", f"nordic-orders-{k + 11:04d}.xml", nordic_xml(k + 11, broken=True),
            "xslt F001")
    names = [(i.partner, i.name) for i in batch]
    assert len(names) == len(set(names))
    return batch


def make_project(base: Path, batch: list[Input]) -> Path:
    """A project in ``base``: config, mappings, and the batch in the inboxes (fixed mtimes)."""
    base.mkdir(parents=True, exist_ok=True)
    config = crash_config(base).write()
    (base / "mappings").mkdir()
    for name in ("hanse-metall.toml", "nordic-orders.xsl"):
        shutil.copyfile(MAPPINGS / name, base / "mappings" / name)
    for index, item in enumerate(batch):
        path = base / "inbox" / item.partner / item.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.data)
        mtime = 1_790_000_000 + 60 * index  # fixed and distinct: the same order every time
        os.utime(path, (mtime, mtime))
    return config


# -- running the gateway -----------------------------------------------------------------------


def gateway_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", "run", "--once", "--as-of", AS_OF,
            "--config", str(config)]


def gateway_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AIMGW_CRASH_AT"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_gateway(config: Path) -> RunResult:
    started = time.monotonic()
    done = subprocess.run(gateway_command(config), cwd=config.parent, env=gateway_env(),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    return RunResult(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def run_until_nothing_left(config: Path, what: str) -> list[RunResult]:
    """Run without kills until a run exits 0 having taken nothing new and left nothing
    unfinished; fail if that does not come within MAX_FINISHING_RUNS runs."""
    results = []
    for _ in range(MAX_FINISHING_RUNS):
        before = file_count(config.parent)
        result = run_gateway(config)
        results.append(result)
        assert result.returncode == 0, (
            f"{what}: run exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        if file_count(config.parent) == before and not unfinished(config.parent):
            return results
    pytest.fail(f"{what}: no run found nothing left to do in {MAX_FINISHING_RUNS} runs:\n"
                + "\n---\n".join(r.stdout + r.stderr for r in results))


def query(base: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
    """Read the ledger without writing to it (no checkpoint: a crashed WAL stays as it is)."""
    db = sqlite3.connect(f"file:{base / 'data' / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def ledger_ready(base: Path) -> bool:
    """The ledger exists and holds its tables. A kill while the gateway created it can leave
    a hot rollback journal that only a writer can undo ("attempt to write a readonly
    database"): not ready then, and the gateway's next start, not this test, recovers it."""
    if not (base / "data" / "ledger.sqlite").exists():
        return False
    try:
        return bool(query(base, "SELECT 1 FROM sqlite_master WHERE name = 'events'"))
    except sqlite3.OperationalError:
        return False


def file_count(base: Path) -> int:
    if not ledger_ready(base):
        return -1
    return query(base, "SELECT COUNT(*) FROM files")[0][0]


def unfinished(base: Path) -> list[tuple]:
    if not ledger_ready(base):
        return [("no ledger",)]
    return query(base, "SELECT file_id, state FROM files WHERE state != 'DONE'")


# -- the kill loop -----------------------------------------------------------------------------


@dataclass
class CrashFigures:
    seed: int
    kills_requested: int
    files: int = 0
    input_bytes: int = 0
    kills_hit: int = 0  # SIGKILLs that hit a process still running
    kills_during_batch: int = 0  # ... while part of the batch was still not DONE
    runs_started: int = 0
    runs_exited_before_kill: int = 0
    finishing_runs: int = 0
    startup_seconds: float = 0.0
    reference_seconds: float = 0.0
    delay_scale_range: tuple[float, float] = (1.0, 1.0)
    delays_early: list[float] = field(default_factory=list)  # from the start
    delays_after_open: list[float] = field(default_factory=list)  # from the ledger's opening
    ledger_open_seconds: list[float] = field(default_factory=list)
    # Kills by what they left behind (seen before the restart): where they landed.
    traces: Counter[str] = field(default_factory=Counter)
    licenses: int = 0
    applications: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    # events.jsonl lines that are not JSON (a kill in the middle of a log write): reported,
    # not failed on, since the log is not the record (the ledger's events table is)
    events_log_torn_lines: int = 0
    elapsed_seconds: float = 0.0


def batch_bytes_left(base: Path, batch: list[Input]) -> int:
    """Bytes of the inputs not yet DONE (a rough measure of the work still waiting)."""
    if not ledger_ready(base):
        return sum(len(i.data) for i in batch)
    done = set(query(base, "SELECT partner, remote_name FROM files WHERE state = 'DONE'"))
    return sum(len(i.data) for i in batch if (i.partner, i.name) not in done)


def is_process_lock(base: Path, path: Path) -> bool:
    """The data folder's process lock (leases.sole_process): kept on purpose, not a temp."""
    return path.parent == base / "data" and path.name.endswith(".lock")


def temp_files(base: Path) -> set[Path]:
    """Every temp a run can leave: work/tmp, dot-files under data/ and outbox/, and received
    files the ledger does not know (pid-tagged names: each run's are new)."""
    found: set[Path] = set()
    tmp = base / "data" / "work" / "tmp"
    if tmp.is_dir():
        found.update(tmp.iterdir())
    for top in ("data", "outbox"):
        if (base / top).is_dir():
            found.update(p for p in (base / top).rglob(".*") if not is_process_lock(base, p))
    received = base / "data" / "work" / "received"
    if received.is_dir():
        known = ({f for (f,) in query(base, "SELECT file_id FROM files")}
                 if ledger_ready(base) else set())
        found.update(p for p in received.iterdir() if p.name.split("__")[0] not in known)
    return found


def file_states(base: Path) -> set[tuple[str, str]]:
    if not ledger_ready(base):
        return set()
    return set(query(base, "SELECT file_id, state FROM files WHERE state != 'DONE'"))


def kill_traces(base: Path, temps_before: set[Path], states_before: set[tuple[str, str]],
                events_before: int) -> set[str]:
    """Where a kill most likely landed, from what it left for recovery that was not there
    before the run (temp names carry the pid: each run's are new)."""
    found = set()
    for path in temp_files(base) - temps_before:
        where = path.parent.relative_to(base).as_posix()
        name = path.name
        if where == "data/work/received":
            found.add("receipt: received file without its ledger row")
        elif name.endswith(".part"):
            found.add("fetching: work/tmp .part")
        elif name.endswith((".staged", ".raw")):
            found.add("two-pass staging: work/tmp spool")
        elif name.endswith(".mapped.xml"):
            found.add("XSLT mapping (or processing after it): work/tmp mapped.xml")
        elif name.endswith((".spool", ".body")):
            found.add("licensing: ACE/ack spools open")
        elif where == "outbox/ace":
            found.add("publishing an ACE file or manifest: outbox/ace dot-temp")
        elif where.startswith("outbox/"):
            found.add("publishing an ack or status file: outbox/<partner> dot-temp")
        elif where.startswith("data/acks/"):
            found.add("writing the stored ack: data/acks dot-temp")
        elif where.startswith("data/failed/"):
            found.add("writing .error.txt: data/failed dot-temp")
        else:
            found.add(f"other temp in {where}")
    if not ledger_ready(base):
        return found | {"start-up: ledger not created (or not readable) yet"}
    for _, state in file_states(base) - states_before:
        found.add(f"a file left {state}")
    if not found:
        (events,) = query(base, "SELECT COUNT(*) FROM events")[0]
        found.add("between files (after a commit)" if events > events_before else
                  "no trace (start-up, recovery, or work rolled back)")
    return found


def wait_for_ledger_open(proc: subprocess.Popen, ledger: Path, limit: float) -> float | None:
    """Seconds until ``proc`` holds the ledger open (its imports and config are behind it),
    seen in /proc/<pid>/fd; None when it exited first or /proc cannot tell (not Linux)."""
    started = time.monotonic()
    fds = Path(f"/proc/{proc.pid}/fd")
    target = str(ledger.resolve())
    while time.monotonic() - started < limit and proc.poll() is None:
        try:
            for fd in fds.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == target:
                        return time.monotonic() - started
        except OSError:
            return None
        time.sleep(0.002)
    return None


def crash_run(config: Path, batch: list[Input], kills: int, seed: int,
              startup: float, full_run: float) -> CrashFigures:
    """Start the gateway, SIGKILL it after a seeded random delay, until ``kills`` kills hit a
    running process; then run it without kills until nothing is left.

    A share ``EARLY`` of the kills comes uniformly in [0, startup] after the start (imports,
    config, opening and migrating the ledger); ``startup`` is the clean run's time from start
    to first receipt. The others come a uniform [0, 2 W x scale] after the process opened the
    ledger (seen in /proc): in recovery, receipt, processing, archiving or disposal. W is the
    clean run's work divided by ``PACE`` x the kills, so that the batch would be done at about
    PACE x the kills; the machine's load varies, so ``scale`` keeps the batch on that schedule
    (ahead of it: -5 %, behind it: +5 %). Most kills thus land while the batch is under way;
    the runs without kills finish what is left.
    """
    base = config.parent
    ledger = base / "data" / "ledger.sqlite"
    rng = random.Random(seed)
    figures = CrashFigures(seed=seed, kills_requested=kills, files=len(batch),
                           input_bytes=sum(len(i.data) for i in batch),
                           startup_seconds=round(startup, 3),
                           reference_seconds=round(full_run, 3))
    total = figures.input_bytes
    span = 2 * max(full_run - startup, 0.2) / (PACE * kills)
    scale = 1.0
    logs = base.parent / f"{base.name}-logs"
    logs.mkdir(exist_ok=True)
    attempts = 0
    while figures.kills_hit < kills:
        attempts += 1
        assert attempts <= 10 * kills + 50, "the kill loop does not get its kills"
        left = batch_bytes_left(base, batch)
        schedule = max(0.0, 1.0 - figures.kills_hit / (PACE * kills))
        if left / total < schedule - 0.02:
            scale = max(0.05, scale * 0.95)
        elif left / total > schedule + 0.02:
            scale = min(10.0, scale * 1.05)
        figures.delay_scale_range = (min(figures.delay_scale_range[0], round(scale, 3)),
                                     max(figures.delay_scale_range[1], round(scale, 3)))
        early = rng.random() < EARLY
        delay = rng.uniform(0.0, startup) if early else rng.uniform(0.0, span * scale)
        events_before = (query(base, "SELECT COUNT(*) FROM events")[0][0]
                         if ledger_ready(base) else 0)
        states_before = file_states(base)
        temps_before = temp_files(base)
        out = open(logs / "stdout.txt", "w")  # noqa: SIM115 (closed below, after the wait)
        err = open(logs / "stderr.txt", "w")  # noqa: SIM115
        try:
            proc = subprocess.Popen(gateway_command(config), cwd=base, env=gateway_env(),
                                    stdout=out, stderr=err)
            figures.runs_started += 1
            if not early:
                opened = wait_for_ledger_open(proc, ledger, RUN_TIMEOUT)
                if opened is None:
                    delay += startup  # no /proc: count from the start instead
                else:
                    figures.ledger_open_seconds.append(round(opened, 4))
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        finally:
            out.close()
            err.close()
        if proc.returncode == -signal.SIGKILL:
            figures.kills_hit += 1
            (figures.delays_early if early else figures.delays_after_open).append(
                round(delay, 4))
            if left:
                figures.kills_during_batch += 1
            figures.traces.update(kill_traces(base, temps_before, states_before,
                                              events_before))
            continue
        figures.runs_exited_before_kill += 1
        assert proc.returncode == 0, (
            f"a run that was not killed failed (exit {proc.returncode}, seed {seed}, after "
            f"{figures.kills_hit} kills):\n{(logs / 'stdout.txt').read_text()}\n"
            f"{(logs / 'stderr.txt').read_text()}")
    figures.finishing_runs = len(run_until_nothing_left(config, f"after the kills (seed {seed})"))
    return figures


# -- the checks --------------------------------------------------------------------------------


def normalised(data: bytes) -> bytes:
    return CLOCK_TIME.sub(b"*", data)


def tree(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def compared(files: dict[str, bytes]) -> dict[str, bytes]:
    """Leave out the partners' status files (outputs/status_files.py): a per-poll report of the
    poll history (which differs with the number of runs), not a result of the batch."""
    return {name: data for name, data in files.items()
            if name.rsplit("/", 1)[-1] not in STATUS_FILES}


def ledger_snapshot(base: Path) -> dict[str, list[tuple]]:
    """The ledger's results, without clock times and absolute paths."""
    tables = {
        "files": "SELECT file_id, partner, remote_name, size, mtime, sha256, local_name, state,"
                 " status, format, submission_id, rule_set_date, applications, licensed, "
                 "not_required, rejected, new_licenses, ack_name, ace_names, error, "
                 "duplicate_of, reprocess_of, changes_name FROM files ORDER BY file_id",
        "licenses": "SELECT license_number, partner, ref, digest, file_id, issue_date, "
                    "valid_from, valid_through, entry_type, port_of_entry, importer, exporter,"
                    " manufacturer, country_of_origin, lines, quantity_kg, value_usd, products"
                    ", kind, source, state, replaces FROM licenses ORDER BY license_number",
        "license_changes": "SELECT license_number, partner, ref, change, replaced_by, "
                           "change_date, file_id, reason FROM license_changes "
                           "ORDER BY license_number",
        "applications": "SELECT file_id, seq, ref, status, license_number, reused, lines, "
                        "digest FROM applications ORDER BY file_id, seq",
        "findings": "SELECT file_id, ref, line, code, severity, field, value, message, "
                    "source_line FROM findings ORDER BY file_id, rowid",
        "file_counter": "SELECT day, last FROM file_counter ORDER BY day",
        "license_counter": "SELECT series, year, last FROM license_counter "
                           "ORDER BY series, year",
    }
    snap = {}
    for name, sql in tables.items():
        snap[name] = [tuple(normalised(v.encode()).decode() if isinstance(v, str) else v
                            for v in row) for row in query(base, sql)]
    snap["archive_paths"] = [
        (file_id, Path(path).relative_to(base).as_posix() if path else None)
        for file_id, path in query(base, "SELECT file_id, archive_path FROM files "
                                         "ORDER BY file_id")]
    return snap


def ace_licenses(outbox: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(file, license) once per licensed application in every ACE file, and problems found."""
    found: list[tuple[str, str]] = []
    problems: list[str] = []
    for path in sorted((outbox / "ace").glob("*.txt")):
        data = path.read_bytes()
        records = data.decode("ascii").splitlines()
        manifest_path = path.with_name(path.name + ".manifest.json")
        if not manifest_path.is_file():
            problems.append(f"{path.name}: no manifest")
            continue
        manifest = json.loads(manifest_path.read_text())
        in_file: list[str] = []
        if path.name.startswith("AE-"):
            current: str | None = None  # the license of the application (10 record) in hand
            for record in records:
                if record.startswith("10"):
                    current = None
                elif record.startswith("52"):
                    number = record[4:14].strip()
                    if current is None:
                        current = number
                        in_file.append(number)
                    elif number != current:
                        problems.append(f"{path.name}: two licenses in one application")
        elif path.name.startswith("FT-"):
            in_file = [r[50:72].strip() for r in records if r.startswith("60")]
        else:
            problems.append(f"unexpected ACE file {path.name}")
        if manifest.get("file_name") != path.name:
            problems.append(f"{path.name}: manifest names {manifest.get('file_name')}")
        if manifest.get("sha256") != hashlib.sha256(data).hexdigest():
            problems.append(f"{path.name}: manifest sha256 differs from the file")
        if manifest.get("record_count") != len(records):
            problems.append(f"{path.name}: manifest says {manifest.get('record_count')} "
                            f"records, the file has {len(records)}")
        if manifest.get("licenses") != in_file:
            problems.append(f"{path.name}: manifest licenses differ from the file's")
        if any(len(r) != 80 for r in records):
            problems.append(f"{path.name}: a record is not 80 characters")
        found.extend((path.name, n) for n in in_file)
    for manifest_path in sorted((outbox / "ace").glob("*.manifest.json")):
        if not manifest_path.with_name(manifest_path.name.removesuffix(".manifest.json")
                                       ).is_file():
            problems.append(f"{manifest_path.name}: manifest without its file")
    return found, problems


def check_changes_reports(base: Path) -> None:
    """Each change recorded once, in exactly one report (its file's), as its manifest says."""
    recorded = query(base, "SELECT license_number, change, file_id FROM license_changes")
    named = dict(query(base, "SELECT file_id, changes_name FROM files WHERE changes_name IS "
                             "NOT NULL"))
    folder = base / "outbox" / "changes"
    reports = sorted(folder.glob("CHG-*.csv")) if folder.is_dir() else []
    assert sorted(p.name for p in reports) == sorted(named.values()), (
        f"changes reports {[p.name for p in reports]}, recorded {sorted(named.values())}")
    written: list[tuple[str, str, str]] = []
    for path in reports:
        data = path.read_bytes()
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
        file_id = path.name.removeprefix("CHG-").removesuffix(".csv")
        written += [(r["license_number"], r["change"], file_id) for r in rows]
        manifest = json.loads(path.with_name(path.name + ".manifest.json").read_bytes())
        assert manifest["file_name"] == path.name
        assert manifest["sha256"] == hashlib.sha256(data).hexdigest(), path.name
        assert manifest["record_count"] == len(rows), path.name
        assert manifest["licenses"] == [r["license_number"] for r in rows], path.name
    assert sorted(written) == sorted(recorded), (
        f"changes reports {sorted(written)} differ from the ledger's {sorted(recorded)}")


def check_invariants(base: Path, batch: list[Input]) -> None:
    """The invariants of a finished batch, on their own (without the reference)."""
    by_input = {(i.partner, i.name): i for i in batch}
    rows = query(base, "SELECT file_id, partner, remote_name, state, status, local_name, "
                       "sha256, ack_name, archive_path, error, duplicate_of FROM files")
    seen = Counter((partner, name) for _, partner, name, *_ in rows)
    extra = sorted(k for k in seen if k not in by_input)
    assert not extra, f"ledger rows for files not in the batch: {extra}"
    counts = {k: seen.get(k, 0) for k in by_input}
    wrong = {k: n for k, n in counts.items() if n != 1}
    assert not wrong, f"inputs without exactly one ledger row (lost or taken twice): {wrong}"

    archived = tree(base / "data" / "archive")
    failed = tree(base / "data" / "failed")
    for file_id, partner, name, state, status, local_name, sha256, ack, path, error, dup in rows:
        item = by_input[(partner, name)]
        what = f"{partner}/{name} ({file_id})"
        assert state == "DONE", f"{what} is {state}, not DONE"
        assert status in FINAL_STATUSES, f"{what} has no final status: {status}"
        assert dup != file_id, f"{what} is a duplicate of itself"
        assert sha256 == hashlib.sha256(item.data).hexdigest(), f"{what}: other bytes received"
        # exactly one acknowledgment for this input, in the outbox and in the store
        kind = ack.rsplit(".", 1)[-1]
        assert ack == f"{safe_name(name)}.ack.{kind}", f"{what}: ack name {ack}"
        acks = [p.name for p in (base / "outbox" / partner).glob(f"{safe_name(name)}.ack.*")]
        assert acks == [ack], f"{what}: acknowledgments in outbox/{partner}: {acks}"
        stored = [p.name for p in (base / "data" / "acks" / partner).glob(f"{file_id}.ack.*")]
        assert stored == [f"{file_id}.ack.{kind}"], f"{what}: stored acks {stored}"
        # exactly once in archive/ or failed/, with its own bytes
        places = [n for n in archived if n.endswith("/" + local_name)]
        places += [n for n in failed if n.endswith("/" + local_name)]
        assert len(places) == 1, f"{what}: in archive/failed {len(places)} times: {places}"
        where = base / "data" / ("failed" if error else "archive") / places[0]
        assert where.is_file() and Path(path) == where, f"{what}: archived at {path}"
        assert where.read_bytes() == item.data, f"{what}: archived bytes differ"
        if error:
            assert (where.parent / f"{local_name}.error.txt").is_file(), f"{what}: no .error.txt"
    for partner in PARTNERS:
        acks = sorted(p.name for p in (base / "outbox" / partner).glob("*.ack.*"))
        assert len(acks) == sum(1 for i in batch if i.partner == partner), (
            f"outbox/{partner} holds other acknowledgments: {acks}")

    # the inboxes, disposed of as configured
    for partner in PARTNERS:
        mine = {i.name: i.data for i in batch if i.partner == partner}
        left = tree(base / "inbox" / partner)
        if DISPOSITION[partner] == "keep":
            assert left == mine, f"inbox/{partner} changed"
        else:
            assert left == {}, f"inbox/{partner} still holds {sorted(left)}"
        if DISPOSITION[partner] == "move":
            assert tree(base / "processed" / partner) == mine, f"processed/{partner} differs"

    # licenses: no number twice, the two tables agree, every ACE license exactly once
    # (A cancellation's application names the license it cancelled: not issued by it.)
    issued = [n for (n,) in query(base, "SELECT license_number FROM applications WHERE "
                                        "license_number IS NOT NULL AND reused = 0 AND "
                                        "status = 'LICENSED'")]
    twice = sorted(n for n, c in Counter(issued).items() if c > 1)
    assert not twice, f"license numbers issued twice: {twice}"
    licenses = [n for (n,) in query(base, "SELECT license_number FROM licenses")]
    assert sorted(issued) == sorted(licenses), "applications and licenses disagree"
    reused = {n for (n,) in query(base, "SELECT license_number FROM applications "
                                        "WHERE reused = 1")}
    assert reused <= set(licenses), "a reused license that was never issued"
    unlicensed = query(base, "SELECT file_id, ref FROM applications WHERE status = 'LICENSED'"
                             " AND license_number IS NULL")
    assert not unlicensed, f"licensed applications without a license: {unlicensed}"
    stray = query(base, "SELECT license_number FROM licenses WHERE license_number NOT IN "
                        "(SELECT license_number FROM applications WHERE status = 'LICENSED' "
                        "AND license_number IS NOT NULL AND reused = 0)")
    assert not stray, f"licenses of no licensed application: {stray}"
    in_ace, problems = ace_licenses(base / "outbox")
    assert not problems, problems
    check_changes_reports(base)
    numbers = Counter(n for _, n in in_ace)
    assert not [n for n, c in numbers.items() if c > 1], (
        f"licenses in more than one ACE application: {[n for n, c in numbers.items() if c > 1]}")
    assert sorted(numbers) == sorted(licenses), (
        f"ACE files and ledger disagree: only in ACE {sorted(set(numbers) - set(licenses))}, "
        f"only in the ledger {sorted(set(licenses) - set(numbers))}")

    # no leftovers
    for sub in ("tmp", "received", "progress"):
        folder = base / "data" / "work" / sub
        left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        assert left == [], f"left in data/work/{sub}: {left}"
    for top in ("data", "outbox", "processed"):
        hidden = sorted(p.relative_to(base).as_posix() for p in (base / top).rglob(".*")
                        if not is_process_lock(base, p))
        assert hidden == [], f"temp files left: {hidden}"

    # the ledger
    assert query(base, "PRAGMA integrity_check") == [("ok",)]
    ledger = Ledger(base / "data" / "ledger.sqlite")
    try:
        assert ledger.integrity_problems() == []
    finally:
        ledger.close()


def check_matches_reference(base: Path, reference: Path) -> None:
    """Everything the batch produced is what the run without kills produced."""
    got, want = ledger_snapshot(base), ledger_snapshot(reference)
    for table, rows in want.items():
        if got[table] != rows:
            missing = [r for r in rows if r not in got[table]][:5]
            surplus = [r for r in got[table] if r not in rows][:5]
            pytest.fail(f"ledger table {table} differs from the reference: missing {missing},"
                        f" surplus {surplus}")
    for label in ("outbox", "data/acks", "data/archive", "data/failed", "processed", "inbox"):
        got_files, want_files = compared(tree(base / label)), compared(tree(reference / label))
        assert sorted(got_files) == sorted(want_files), (
            f"{label}/ holds other files: only here {sorted(set(got_files) - set(want_files))},"
            f" only in the reference {sorted(set(want_files) - set(got_files))}")
        for name, data in want_files.items():
            assert normalised(got_files[name]) == normalised(data), (
                f"{label}/{name} differs from the reference")


def check_converged(config: Path) -> None:
    """One more run takes nothing and changes nothing."""
    base = config.parent

    def state() -> tuple[object, ...]:
        return (ledger_snapshot(base), compared(tree(base / "outbox")),
                tree(base / "data" / "archive"), tree(base / "data" / "failed"))

    before = state()
    result = run_gateway(config)
    assert result.returncode == 0, result.stdout + result.stderr
    after = state()
    assert after == before, "a run with nothing to do changed the results"


# -- the reference -----------------------------------------------------------------------------


@dataclass
class Reference:
    base: Path
    batch: list[Input]
    seconds: float  # the first run: the whole batch
    startup: float  # from the process start to the first receipt


def build_reference(base: Path, batch: list[Input]) -> Reference:
    """The run without kills; measures the whole run and the start-up (process start to the
    first receipt: imports, config, ledger, recovery's cleaning)."""
    config = make_project(base, batch)
    launched = time.time()
    first = run_gateway(config)
    assert first.returncode == 0, first.stdout + first.stderr
    run_until_nothing_left(config, "reference")
    (first_event,) = query(base, "SELECT MIN(at) FROM events")[0]
    startup = datetime.fromisoformat(first_event).timestamp() - launched
    return Reference(base, batch, first.seconds, min(max(startup, 0.05), first.seconds))


def assert_reference_meaningful(ref: Reference) -> None:
    """Guards the comparisons against passing on a trivial result."""
    base = ref.base
    check_invariants(base, ref.batch)
    statuses = Counter(s for (s,) in query(base, "SELECT status FROM files"))
    assert set(statuses) == FINAL_STATUSES, statuses
    codes = {c for (c,) in query(base, "SELECT DISTINCT code FROM findings")}
    assert {"F001", "F004", "F005", "F006", "F007", "I201", "A105", "I202", "I203"} <= codes, \
        codes
    assert query(base, "SELECT license_number, change FROM license_changes ORDER BY 1") == [
        ("A26000001", "SUPERSEDED"), ("A26000002", "CANCELLED"), ("A26000003", "CANCELLED")]
    assert len(list((base / "outbox" / "changes").glob("CHG-*.csv"))) == 2
    assert query(base, "SELECT COUNT(*) FROM applications WHERE reused = 1")[0][0] > 0
    formats = {f for (f,) in query(base, "SELECT DISTINCT format FROM files")}
    assert {"xml", "csv"} <= formats, formats
    outbox = tree(base / "outbox")
    assert any(n.startswith("ace/AE-") for n in outbox)
    assert any(n.startswith("ace/FT-") for n in outbox)
    assert any(n.endswith(".ack.csv") for n in outbox)
    for partner in PARTNERS:
        licensed = query(base, "SELECT COUNT(*) FROM licenses WHERE partner = ?", (partner,))
        assert licensed[0][0] > 0, f"{partner} got no license"
    assert query(base, "SELECT COUNT(*) FROM licenses")[0][0] > 300


def crash_seed() -> int:
    return int(os.environ.get("AIMGW_CRASH_SEED", DEFAULT_SEED))


def crash_test(tmp_path: Path, ref: Reference, kills: int) -> CrashFigures:
    seed = crash_seed()
    started = time.monotonic()
    config = make_project(tmp_path / "crashed", ref.batch)
    replay = f"replay: AIMGW_CRASH_SEED={seed} AIMGW_CRASH_KILLS={kills}"
    try:
        figures = crash_run(config, ref.batch, kills, seed, ref.startup, ref.seconds)
        check_invariants(config.parent, ref.batch)
        check_matches_reference(config.parent, ref.base)
        check_converged(config)
    except (AssertionError, pytest.fail.Exception) as err:
        raise AssertionError(f"{err}\n({replay})") from err
    figures.elapsed_seconds = round(time.monotonic() - started, 1)
    base = config.parent
    figures.licenses = query(base, "SELECT COUNT(*) FROM licenses")[0][0]
    figures.applications = query(base, "SELECT COUNT(*) FROM applications")[0][0]
    figures.statuses = dict(query(base, "SELECT status, COUNT(*) FROM files GROUP BY status"))
    figures.events_log_torn_lines = torn_lines(base / "data")
    assert figures.kills_hit >= kills
    return figures


def torn_lines(data_dir: Path) -> int:
    torn = 0
    for log in data_dir.glob("events.jsonl*"):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                json.loads(line)
            except ValueError:
                torn += 1
    return torn


def report(figures: CrashFigures, path: Path | None) -> None:
    data: dict[str, object] = {}
    for key, value in figures.__dict__.items():
        if isinstance(value, list):
            data[key] = {"count": len(value), "min": min(value), "median": statistics.median(
                value), "max": max(value)} if value else {"count": 0}
        elif isinstance(value, Counter):
            data[key] = dict(value.most_common())
        else:
            data[key] = value
    text = json.dumps(data, indent=2)
    print("\ncrash suite figures:\n" + text)
    if path is not None:
        path.write_text(text + "\n")


# -- the tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fast_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return build_reference(tmp_path_factory.mktemp("reference"), build_batch(1))


def test_batch_is_mixed_and_large_enough() -> None:
    batch = build_batch(1)
    assert len(batch) >= 30
    assert {i.partner for i in batch} == set(PARTNERS)
    assert {i.name.rsplit(".", 1)[-1] for i in batch} == {"xml", "csv"}
    assert sum(1 for i in batch if "big" in i.kind) >= 4
    assert max(len(i.data) for i in batch) > 100_000


def test_reference_is_meaningful(fast_reference: Reference) -> None:
    assert_reference_meaningful(fast_reference)


def _dup_ace_license(base: Path) -> None:
    ft = sorted((base / "outbox" / "ace").glob("FT-*.txt"))[0]
    records = ft.read_bytes().splitlines(keepends=True)
    line = next(r for r in records if r.startswith(b"60"))
    ft.write_bytes(b"".join(records[:-1]) + line + records[-1])


MUTATIONS = {
    "license_twice_in_ace": _dup_ace_license,
    "ack_missing": lambda b: sorted((b / "outbox" / "hanse").iterdir())[0].unlink(),
    "extra_ack": lambda b: (b / "outbox" / "nordic" / "x.xml.ack.xml").write_bytes(b"x"),
    "spool_left": lambda b: (b / "outbox" / "ace" / ".AE-x.txt.1.block00000.spool"
                             ).write_bytes(b""),
    "received_left": lambda b: (b / "data" / "work" / "received" / "x__y.xml").write_bytes(
        b"x"),
    "file_not_done": lambda b: _sql(b, "UPDATE files SET state = 'ARCHIVED' WHERE file_id = "
                                       "(SELECT MAX(file_id) FROM files)"),
    "archived_twice": lambda b: shutil.copyfile(
        next((b / "data" / "archive").rglob("*.xml")),
        b / "data" / "failed" / "sample" / next((b / "data" / "archive").rglob("*.xml")).name),
    "changes_report_missing": lambda b: sorted((b / "outbox" / "changes").glob("CHG-*.csv")
                                               )[0].unlink(),
    "changes_report_bytes": lambda b: (lambda p: p.write_bytes(p.read_bytes().replace(
        b"SUPERSEDED", b"CANCELLED")))(sorted((b / "outbox" / "changes").glob("CHG-*.csv"))[0]),
    "license_in_ace_only": lambda b: _sql(
        b, "DELETE FROM licenses WHERE license_number = (SELECT MAX(license_number) FROM "
           "licenses)"),
}


def _sql(base: Path, statement: str) -> None:
    db = sqlite3.connect(base / "data" / "ledger.sqlite")
    db.execute("PRAGMA foreign_keys=OFF")
    with db:
        assert db.execute(statement).rowcount > 0
    db.close()


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_checks_catch_each_kind_of_defect(tmp_path: Path, fast_reference: Reference,
                                          mutation: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(fast_reference.base, copy)
    db = sqlite3.connect(copy / "data" / "ledger.sqlite")
    with db:
        db.execute("UPDATE files SET archive_path = replace(archive_path, ?, ?)",
                   (str(fast_reference.base), str(copy)))
    db.close()
    check_invariants(copy, fast_reference.batch)
    check_matches_reference(copy, fast_reference.base)
    MUTATIONS[mutation](copy)
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        check_invariants(copy, fast_reference.batch)
        check_matches_reference(copy, fast_reference.base)


def test_recovery_removes_temps_a_kill_left_in_failed(tmp_path: Path) -> None:
    """Found by the long run: a kill while ``_archive`` wrote ``<name>.error.txt`` left its
    dot-temp in data/failed/<partner>/, and no later run removed it."""
    layout = Layout(tmp_path / "data", tmp_path / "outbox")
    leftover = layout.failed("sample") / ".20261201-000016__x.csv.error.txt.30013.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"file:        x.csv\n")
    kept = layout.failed("sample") / "20261201-000016__x.csv.error.txt"
    kept.write_bytes(b"reason: F005\n")
    ledger = Ledger(layout.data_dir / "ledger.sqlite")
    try:
        clean_work(ledger, layout)
    finally:
        ledger.close()
    assert not leftover.exists()
    assert kept.exists()


def test_crash_suite_fast(tmp_path: Path, fast_reference: Reference) -> None:
    kills = int(os.environ.get("AIMGW_CRASH_KILLS", FAST_KILLS))
    figures = crash_test(tmp_path, fast_reference, kills)
    report(figures, None)


@pytest.mark.slow
def test_crash_suite_long(tmp_path: Path) -> None:
    kills = max(LONG_MIN_KILLS, int(os.environ.get("AIMGW_CRASH_KILLS", LONG_KILLS)))
    ref = build_reference(tmp_path / "reference",
                          build_batch(max(3, kills // KILLS_PER_SCALE)))
    assert_reference_meaningful(ref)
    figures = crash_test(tmp_path, ref, kills)
    report(figures, FIGURES_FILE)
