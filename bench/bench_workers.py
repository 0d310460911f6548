"""Scaling of `aim-gateway serve` workers on PostgreSQL, against one SQLite worker.

One batch (partners × files × lines, the generator of bench/generate.py), processed from
start to finish by: 1 worker on SQLite (the baseline), then 1, 2 and 3 workers on one
PostgreSQL ledger with shared folders (``--workers 1 2 3`` for three as well). Each run starts
from empty folders and an empty database; the time is from the workers' start until every
file is DONE in the ledger (polled every 0.2 s). Every run is verified: all files DONE, the
expected number of licenses, no number twice.

Beside the wall time, the CPU time of the run: the workers' (user + system, ``os.wait4``) and
the PostgreSQL server's (its processes' and its exited backends', from /proc), and the cores
they kept busy (CPU / wall). On a machine shared with other work the wall time is noisy;
the CPU time says what the run itself cost, and whether two workers had the cores to go
twice as fast (its ratio to SQLite's is printed too). Issue 15's targets are printed last,
PASS or FAIL: one PostgreSQL worker at least 0.9x one SQLite worker, two PostgreSQL workers
at least 1.7x one.

    .venv/bin/python bench/bench_workers.py [--partners 6] [--files 8] [--lines 2000]

``--statements``: the server loads pg_stat_statements, and each PostgreSQL run prints its
statements per file, the costliest first (calls and execution time per file; the time
includes lock waits and a COPY's wait for the client's rows, so it is not the server's CPU).

The cluster runs with fsync and synchronous_commit on (printed at the end), so that a
PostgreSQL commit waits for the disk as a SQLite one does (until 2026-12-05 it ran with the
tests' fsync=off, which made PostgreSQL's commits free and its figures too good).

Needs PostgreSQL's initdb/pg_ctl (the test suite's tests/pg_server.py starts a throwaway
cluster) and runs as root or as a user who may run them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pg_server import PgServer, _binary  # noqa: E402  (the tests' throwaway PostgreSQL)

sys.path.insert(0, str(ROOT / "bench"))
from project import ProjectConfig  # noqa: E402

PYTHON = sys.executable
TICK = os.sysconf("SC_CLK_TCK")
TARGETS = (("PostgreSQL 1 worker / SQLite 1 worker", ("PostgreSQL", 1), ("SQLite", 1), 0.9),
           ("PostgreSQL 2 workers / PostgreSQL 1 worker", ("PostgreSQL", 2), ("PostgreSQL", 1),
            1.7))


def make_batch(folder: Path, partners: int, files: int, lines: int) -> tuple[list[str], int]:
    """Generate the inputs once; returns partner ids and the expected license count."""
    names = [f"p{n:02d}" for n in range(partners)]
    expected = 0
    for p_index, partner in enumerate(names):
        inbox = folder / partner
        inbox.mkdir(parents=True)
        for f_index in range(files):
            out = inbox / f"{partner}-{f_index:03d}.xml"
            subprocess.run([PYTHON, str(ROOT / "bench" / "generate.py"), "--lines", str(lines),
                            "--lines-per-app", "20", "--seed", str(p_index * 1000 + f_index),
                            "--out", str(out)], check=True, capture_output=True)
            meta_path = out.with_name(out.name + ".meta.json")
            expected += int(json.loads(meta_path.read_text())["expected"]["licensed"])
            meta_path.unlink()
    return names, expected


def write_config(run: Path, inputs: Path, names: list[str], ledger: str | None) -> Path:
    config = ProjectConfig(run).set("gateway", poll_interval_seconds=1, lease_seconds=30,
                                    max_file_bytes=2_000_000_000)
    if ledger:
        config.ledger(ledger)
    for partner in names:
        shutil.copytree(inputs / partner, run / "in" / partner)
        config.partner(partner, name=partner, inbox=run / "in" / partner, disposition="delete")
    return config.write()


class Probe:
    """The run's ledger as the benchmark watches it. While the workers run it asks only for
    the files DONE, on one connection: a new connection every 0.2 s started a PostgreSQL
    backend each time, and the licenses counted every time (COUNT DISTINCT over all of them)
    cost the server 0.47 s of a 2 s run, all of it counted as the run's."""

    def __init__(self, run: Path, ledger: str | None) -> None:
        self.run, self.ledger = run, ledger
        self.conn: Any = None

    def _query(self, query: str) -> tuple[int, ...] | None:
        try:
            if self.conn is None:
                if self.ledger:
                    import psycopg

                    self.conn = psycopg.connect(self.ledger, autocommit=True)
                else:
                    self.conn = sqlite3.connect(self.run / "data" / "ledger.sqlite")
            row = self.conn.execute(query).fetchone()
        except Exception:  # the ledger is not created yet
            self.close()
            return None
        return tuple(int(v) for v in row)

    def files_done(self) -> int:
        row = self._query("SELECT COUNT(*) FROM files WHERE state = 'DONE'")
        return row[0] if row else 0

    def done(self) -> tuple[int, int, int]:
        """(files DONE, licenses, distinct license numbers)."""
        return self._query(
            "SELECT (SELECT COUNT(*) FROM files WHERE state = 'DONE'), (SELECT COUNT(*) FROM "
            "licenses), (SELECT COUNT(DISTINCT license_number) FROM licenses)") or (0, 0, 0)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def server_cpu(server: PgServer | None) -> float:
    """CPU seconds the PostgreSQL server has used so far: the postmaster's own and its
    exited children's (backends of closed connections), and its live children's."""
    if server is None:
        return 0.0
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == postmaster:  # utime, stime, cutime, cstime
            total += sum(int(f) for f in fields[11:15])
        elif ppid == postmaster:
            total += sum(int(f) for f in fields[11:13])
    return total / TICK


def server_durability(server: PgServer) -> str:
    """The cluster's fsync and synchronous_commit, as the report shows them."""
    import psycopg

    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        fsync = conn.execute("SHOW fsync").fetchone()[0]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
    return f"fsync={fsync}, synchronous_commit={sync}"


def count_statements(server: PgServer) -> None:
    """``--statements``: the server loads pg_stat_statements (a restart), to count what each
    file's transaction sends. Off by default: the counting costs the server CPU itself."""
    import psycopg

    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    server._run(_binary("pg_ctl"), "-D", str(server.data), "-l",
                str(server.base / "server.log"), "-w", "-t", "30", "restart")
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def statements_report(server: PgServer, dsn: str, files_total: int) -> None:
    """The statements of the run's database per file, the costliest first (the
    benchmark's own probe left out), with the server's execution time per file."""
    import psycopg

    database = dsn.rsplit("/", 1)[1]
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT calls, total_exec_time, rows, query FROM pg_stat_statements WHERE dbid = "
            "(SELECT oid FROM pg_database WHERE datname = %s) AND query NOT LIKE "
            "'%%state = $1%%' ORDER BY total_exec_time DESC", (database,)).fetchall()
    calls = sum(r[0] for r in rows)
    ms = sum(r[1] for r in rows)
    print(f"statements: {calls / files_total:.1f} per file, their execution "
          f"{ms / files_total:.2f} ms per file ({files_total} files)")
    for count, total, got, query in rows[:25]:
        text = " ".join(query.split())[:110]
        print(f"  {count / files_total:7.2f}/file {total / files_total:7.3f} ms/file "
              f"rows {got:6d}  {text}")


def run_workers(inputs: Path, names: list[str], files_total: int, expected: int,
                workers: int, ledger: str | None,
                server: PgServer | None = None,
                statements: bool = False) -> tuple[float, float, float]:
    """(wall seconds, the workers' CPU seconds, the server's CPU seconds)."""
    run = Path(tempfile.mkdtemp(prefix="aimgw-bench-run-"))
    try:
        cfg = write_config(run, inputs, names, ledger)
        if ledger:  # the schema first, so that workers start equal
            subprocess.run([PYTHON, "-m", "gateway.cli", "db", "upgrade", "--config", str(cfg)],
                           check=True, capture_output=True)
        if statements and server is not None:
            with __import__("psycopg").connect(server.dsn("postgres"),
                                               autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
        server_before = server_cpu(server)
        started = time.perf_counter()
        # Each worker's log to a file: a pipe nobody reads until the end fills up (64 KiB of
        # "poll missed" warnings with 24 partners) and the worker's logging blocks for good.
        logs = [run / f"worker-{n}.log" for n in range(workers)]
        procs = []
        for log in logs:
            with open(log, "wb") as err:
                procs.append(subprocess.Popen(
                    [PYTHON, "-m", "gateway.cli", "serve", "--config", str(cfg)],
                    stdout=subprocess.DEVNULL, stderr=err))
        probe = Probe(run, ledger)
        try:
            while probe.files_done() < files_total:
                if any(p.poll() is not None for p in procs):
                    raise SystemExit("a worker died: " + "".join(
                        log.read_text(errors="replace") for log in logs)[-2000:])
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
        finally:
            for proc in procs:
                proc.terminate()
            cpu = 0.0
            for proc in procs:
                _, _, usage = os.wait4(proc.pid, 0)
                proc.returncode = 0  # reaped here
                cpu += usage.ru_utime + usage.ru_stime
        files_done, licenses, distinct = probe.done()
        probe.close()
        if not (files_done == files_total and licenses == distinct == expected):
            raise SystemExit(f"run not verified: {files_done} files, {licenses} licenses "
                             f"({distinct} distinct), {expected} expected")
        time.sleep(0.5)  # the backends of the closed connections exit and are reaped
        if statements and server is not None and ledger:
            statements_report(server, ledger, files_total)
        return elapsed, cpu, server_cpu(server) - server_before
    finally:
        shutil.rmtree(run, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partners", type=int, default=6)
    parser.add_argument("--files", type=int, default=8, help="files per partner")
    parser.add_argument("--lines", type=int, default=2000, help="product lines per file")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="PostgreSQL worker counts to run (1 and 2: the targets)")
    parser.add_argument("--statements", action="store_true",
                        help="count each run's statements per file (pg_stat_statements)")
    args = parser.parse_args()
    inputs = Path(tempfile.mkdtemp(prefix="aimgw-bench-in-"))
    # fsync on, synchronous_commit on (the default): a commit waits for the disk, as the
    # SQLite ledger's does; the tests' cluster (fsync off) made PostgreSQL's commits free.
    server = PgServer(durable=True)
    server.start()
    if args.statements:
        count_statements(server)
    durability = server_durability(server)
    results: list[tuple[str, int, float, float, float]] = []
    try:
        names, expected = make_batch(inputs, args.partners, args.files, args.lines)
        files_total = args.partners * args.files
        lines_total = files_total * args.lines
        results.append(("SQLite", 1, *run_workers(inputs, names, files_total, expected, 1,
                                                  None)))
        for workers in args.workers:
            dsn = server.create(f"bench_{workers}_{os.getpid()}")
            results.append(("PostgreSQL", workers, *run_workers(
                inputs, names, files_total, expected, workers, dsn, server, args.statements)))
    finally:
        server.stop()
        shutil.rmtree(inputs, ignore_errors=True)
    base = results[0][2]
    print(f"\nbatch: {args.partners} partners x {args.files} files x {args.lines} lines "
          f"= {lines_total:,} product lines; {os.cpu_count()} CPUs; load average at the end "
          f"{os.getloadavg()[0]:.2f}; PostgreSQL {durability}\n")
    print("| ledger | workers | seconds | lines/s | vs SQLite, 1 worker | workers' CPU s | "
          "server's CPU s | cores busy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for ledger, workers, seconds, cpu, server_s in results:
        print(f"| {ledger} | {workers} | {seconds:.2f} | {lines_total / seconds:,.0f} | "
              f"{base / seconds:.2f}x | {cpu:.2f} | {server_s:.2f} | "
              f"{(cpu + server_s) / seconds:.2f} |")
    timed = {(r[0], r[1]): r[2] for r in results}
    print()
    for label, faster, slower, target in TARGETS:
        if faster in timed and slower in timed:
            ratio = timed[slower] / timed[faster]
            print(f"{label}: {ratio:.2f}x (target >= {target}x) "
                  f"{'PASS' if ratio >= target else 'FAIL'}")
    # The CPU each run cost (workers + server), against SQLite's: on a machine shared with
    # other work the wall times above swing by 50 % from run to run, the CPU far less.
    run_cpu = {(r[0], r[1]): r[3] + r[4] for r in results}
    for (ledger, workers), spent in run_cpu.items():
        if ledger == "PostgreSQL":
            print(f"CPU, workers + server: PostgreSQL {workers} worker(s) / SQLite 1 worker: "
                  f"{spent / run_cpu['SQLite', 1]:.2f}x")
    workers_arg = " ".join(str(w) for w in args.workers)
    print(f"\nReproduce: .venv/bin/python bench/bench_workers.py --partners {args.partners} "
          f"--files {args.files} --lines {args.lines} --workers {workers_arg}")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "workers-results.json").write_text(json.dumps(
        {"partners": args.partners, "files": args.files, "lines": args.lines,
         "results": [{"ledger": r[0], "workers": r[1], "seconds": r[2], "worker_cpu": r[3],
                      "server_cpu": r[4]} for r in results]},
        indent=2))


if __name__ == "__main__":
    main()
