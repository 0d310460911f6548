"""Property tests (hypothesis) for license numbering (issue 6 point 4).

``format_license`` is ``A`` + two-digit year + six-digit sequence and reads back to what made
it. Under concurrent issuance (several threads and several processes, each with its own
``Ledger`` on one SQLite file, issuing through ``LicenseIssuer`` inside ``Ledger.transaction()``
and recording ``licenses`` rows as ``service/process.py`` does; and several
``aim-gateway run --once`` sharing one data folder) every number is unique, each year's numbers
are contiguous from 1, and the year's counter row equals the count.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import date
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import ProjectConfig, examples
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import FatalError
from gateway.ledger.store import Ledger, Receipt
from gateway.licensing.issuer import MAX_SEQUENCE, LicenseIssuer, format_license

PURE = examples(200)
LICENSE = re.compile(r"A(\d{2})(\d{6})")
ROOT = Path(__file__).resolve().parents[1]

# --- format ----------------------------------------------------------------------------------


@PURE
@given(year=st.integers(2000, 2099), sequence=st.integers(1, MAX_SEQUENCE))
def test_format_license_reads_back(year: int, sequence: int) -> None:
    number = format_license(year, sequence)
    match = LICENSE.fullmatch(number)
    assert match, number
    assert (2000 + int(match.group(1)), int(match.group(2))) == (year, sequence)


@PURE
@given(a=st.tuples(st.integers(2000, 2099), st.integers(1, MAX_SEQUENCE)),
       b=st.tuples(st.integers(2000, 2099), st.integers(1, MAX_SEQUENCE)))
def test_format_license_is_unique_within_a_century(a: tuple[int, int],
                                                   b: tuple[int, int]) -> None:
    assert (format_license(*a) == format_license(*b)) == (a == b)


@PURE
@given(last=st.integers(MAX_SEQUENCE - 3, MAX_SEQUENCE), wanted=st.integers(1, 5))
def test_issuer_never_writes_a_seven_digit_sequence(tmp_path_factory: pytest.TempPathFactory,
                                                    last: int, wanted: int) -> None:
    ledger = Ledger(tmp_path_factory.mktemp("l") / "ledger.sqlite")
    try:
        with ledger.transaction():
            ledger.set_license_sequence(2026, last)
            issuer = LicenseIssuer(ledger, date(2026, 12, 1), 75)
            issued = []
            try:
                for _ in range(wanted):
                    issued.append(issuer.next_number())
            except FatalError:
                assert last + len(issued) == MAX_SEQUENCE
            assert all(LICENSE.fullmatch(n) for n in issued)
            assert len(issued) == min(wanted, MAX_SEQUENCE - last)
    finally:
        ledger.close()


# --- concurrent issuance through the ledger ----------------------------------------------------

# Issue dates on both sides of a new year: each year has its own counter.
ISSUE_DATES = (date(2026, 12, 31), date(2027, 1, 1))


def wait_for_all(barrier: Path, worker: str, total: int) -> None:
    """Start together: each worker marks itself ready, then waits for the others."""
    (barrier / worker).touch()
    deadline = time.monotonic() + 60
    while len(list(barrier.iterdir())) < total:
        assert time.monotonic() < deadline, "the other workers never started"
        time.sleep(0.005)


def issue(path: str, worker: str, batches: int, per_batch: int, barrier: str,
          total: int) -> list[str]:
    """What ``FileProcessor._license`` does per file: in one transaction, a file row, a
    ``LicenseIssuer`` drawing numbers, the ``licenses`` and ``applications`` rows, the counter."""
    ledger = Ledger(Path(path))
    numbers: list[str] = []
    wait_for_all(Path(barrier), worker, total)
    try:
        for batch in range(batches):
            day = ISSUE_DATES[batch % len(ISSUE_DATES)]
            with ledger.transaction():
                file_id = ledger.new_file_id(day)
                ledger.add_file(file_id, Receipt(worker, f"{batch}.csv", 1, 0.0,
                                                 f"{worker}-{batch}"),
                                local_name=f"{file_id}.csv",
                                received_at=f"{day}T00:00:00+00:00")
                issuer = LicenseIssuer(ledger, day, 75)
                drawn = [issuer.next_number() for _ in range(per_batch)]
                ledger.add_licenses([
                    (number, worker, f"PO-{batch}-{i}", "digest", file_id, day.isoformat(),
                     day.isoformat(), issuer.valid_through.isoformat(), "01", "3004", "I", "E",
                     "M", "CA", 1, "24000", "61200", "[]", "REGULAR", "gateway", None)
                    for i, number in enumerate(drawn)])
                ledger.add_applications([
                    (file_id, i + 1, f"PO-{batch}-{i}", "LICENSED", number, 0, 1, "digest")
                    for i, number in enumerate(drawn)])
                issuer.save()
            numbers += drawn
    finally:
        ledger.close()
    return numbers


def _process_worker(args: tuple[str, str, int, int, str, int]) -> list[str]:
    return issue(*args)


def check_ledger(path: Path, issued: list[str]) -> None:
    """Unique, contiguous per year from 1, and the counter row equals the count."""
    assert len(issued) == len(set(issued)), "a license number was issued twice"
    with sqlite3.connect(path) as db:
        rows = [r[0] for r in db.execute("SELECT license_number FROM licenses")]
        counters = dict(db.execute("SELECT year, last FROM license_counter").fetchall())
        problems = Ledger(path, readonly=True)
        try:
            assert problems.integrity_problems() == []
        finally:
            problems.close()
    assert sorted(rows) == sorted(issued)
    by_year: dict[int, list[int]] = defaultdict(list)
    for number in rows:
        match = LICENSE.fullmatch(number)
        assert match, number
        by_year[2000 + int(match.group(1))].append(int(match.group(2)))
    assert set(by_year) == set(counters)
    for year, sequences in by_year.items():
        assert sorted(sequences) == list(range(1, len(sequences) + 1)), year
        assert counters[year] == len(sequences), year


def test_numbers_are_unique_across_threads_and_processes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()  # migrated once, before the race
    barrier = tmp_path / "ready"
    barrier.mkdir()
    threads, processes, batches, per_batch = 4, 3, 10, 5
    total = threads + processes
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run(worker: str) -> None:
        try:
            results.append(issue(str(path), worker, batches, per_batch, str(barrier), total))
        except BaseException as err:  # reported below, not lost in the thread
            errors.append(err)

    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        pending = pool.map_async(_process_worker, [
            (str(path), f"proc{i}", batches, per_batch, str(barrier), total)
            for i in range(processes)])
        workers = [threading.Thread(target=run, args=(f"thread{i}",)) for i in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(timeout=120)
        results += pending.get(timeout=120)
    assert not errors, errors
    issued = [n for worker in results for n in worker]
    assert len(issued) == total * batches * per_batch
    check_ledger(path, issued)
    with sqlite3.connect(path) as db:
        order = [r[0] for r in db.execute("SELECT partner FROM files ORDER BY file_id")]
    # The workers did race: their transactions interleave (not one worker after another).
    switches = sum(a != b for a, b in pairwise(order))
    assert switches >= total, order


# --- concurrent `aim-gateway run --once` on one data folder -------------------------------------

CSV_HEADER = ("submission_id,application_ref,entry_type,entry_number,importer,exporter,"
              "manufacturer,country_of_origin,country_of_export,expected_export_date,"
              "expected_import_date,port_of_entry,line_no,hts,description,"
              "smelt_country_largest,smelt_country_second,cast_country,quantity_kg,value_usd")


def partner_csv(partner: str, applications: int) -> bytes:
    rows = [CSV_HEADER]
    for i in range(applications):
        rows.append(f"SUB-{partner},PO-{i},01,,ACME LLC,MILL INC,MILL INC,CA,CA,2026-12-05,"
                    f"2026-12-10,3004,1,7606123045,,CA,US,CA,24000,61200.00")
    return ("\r\n".join(rows) + "\r\n").encode()


def test_concurrent_runs_share_one_counter(tmp_path: Path) -> None:
    """Several gateways (one partner each) run at once on one data folder and ledger."""
    partners, applications = ("p1", "p2", "p3"), 6
    data, outbox = tmp_path / "data", tmp_path / "outbox"
    configs = []
    for partner in partners:
        inbox = tmp_path / "inbox" / partner
        inbox.mkdir(parents=True)
        (inbox / f"{partner}.csv").write_bytes(partner_csv(partner, applications))
        configs.append(ProjectConfig(tmp_path / partner)
                       .set("gateway", data_dir=data, outbox_dir=outbox)
                       .partner(partner, inbox=inbox, filer_code="ACM").write())
    Ledger(data / "ledger.sqlite").close()  # migrated once, before the race
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(c), "run",
                              "--once", "--as-of", "2026-12-01"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for c in configs]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, (out, err)
    with sqlite3.connect(data / "ledger.sqlite") as db:
        issued = [r[0] for r in db.execute("SELECT license_number FROM licenses")]
        per_partner = dict(db.execute("SELECT partner, COUNT(*) FROM licenses GROUP BY 1"))
        done = {r[0] for r in db.execute("SELECT partner FROM files WHERE state = 'DONE'")}
    # A file's licenses are committed together or not at all. Not asserted: that every file
    # is done. With SQLite, runs that overlap on one data folder can break each other's file
    # (a run's start-up clean-up, intake.clean_work, removes the other's temp files at once)
    # and leave it for the next run.
    assert per_partner == dict.fromkeys(done, applications)
    assert done, "no run processed its file"
    check_ledger(data / "ledger.sqlite", issued)
