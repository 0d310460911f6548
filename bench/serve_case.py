"""The serve case of ``run_bench.py --serve`` (issue 15, row 4: "``serve`` within 10 % of
``run --once`` on the same file"): the same file through ``aim-gateway serve`` and through
``aim-gateway run --once``, alternately, each in a fresh run folder, each checked.

``serve`` has no ``--as-of``: it processes on the gateway's today (its time zone,
``gateway.timezone``, America/New_York by default). So this case generates its own file for
that day, and its ``run --once`` runs without ``--as-of`` too: both process on the same day.

- ``run --once``: timed around the process, as in the main benchmark.
- ``serve``: timed from the start of the process until the ledger has the file ``DONE``
  (polled every 0.05 s, read-only): the ledger commit is the last step of a file (the ACE
  files and the ack are published before it), so that is when the work is done; then SIGTERM,
  and the exit code must be 0. Its CPU seconds (``os.wait4``) include the few idle ticks until
  the SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from measure import OUT, BenchFailure, generate, measure, prepare_run
from verify import verify_gateway

GATEWAY_ZONE = "America/New_York"  # the default gateway.timezone, which the bench config keeps
POLL_S = 0.05
TIMEOUT_S = 900.0


def gateway_today() -> str:
    return datetime.now(ZoneInfo(GATEWAY_ZONE)).date().isoformat()


def serve_files(python: str, lines: int, per_app: int, seed: int,
                formats: list[str]) -> list[tuple[Path, dict[str, Any]]]:
    """The file(s) of the serve case, made for the gateway's today."""
    today = gateway_today()
    # A folder of their own: the main benchmark's file of the same size is made for another day.
    return [generate(python, lines, per_app, seed, today, fmt, out_dir=OUT / f"serve-{today}")
            for fmt in formats]


def _done(ledger: Path) -> bool:
    try:
        db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=0.05)
        try:
            return db.execute("SELECT count(*) FROM files WHERE state = 'DONE'").fetchone()[0] > 0
        finally:
            db.close()
    except sqlite3.Error:
        return False  # not created yet, or busy: look again


def run_once(gateway: str, source: Path, meta: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    config = prepare_run(source, run_dir)
    result = measure([gateway, "--config", str(config), "run", "--once"], cwd=run_dir)
    result["verified"] = verify_gateway(result, run_dir, source.name, meta)
    return result


def run_serve(gateway: str, source: Path, meta: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    config = prepare_run(source, run_dir)
    ledger = run_dir / "data" / "ledger.sqlite"
    out_path, err_path = run_dir / "serve.out", run_dir / "serve.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([gateway, "--config", str(config), "serve"], cwd=run_dir,
                                stdout=out, stderr=err)
        try:
            while not _done(ledger):
                if proc.poll() is not None:
                    raise BenchFailure(f"serve exited ({proc.returncode}) before the file was "
                                       f"done: {err_path.read_text(errors='replace')[-2000:]}")
                if time.perf_counter() - start > TIMEOUT_S:
                    raise BenchFailure(f"serve did not finish the file in {TIMEOUT_S:.0f} s")
                time.sleep(POLL_S)
            wall = time.perf_counter() - start
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    result: dict[str, Any] = {
        "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_bytes": usage.ru_maxrss * 1024, "returncode": proc.returncode,
        "stdout": out_path.read_text(errors="replace"),
        "stderr": err_path.read_text(errors="replace")}
    result["verified"] = verify_gateway(result, run_dir, source.name, meta, serve=True)
    return result
