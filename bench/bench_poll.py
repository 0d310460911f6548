"""Benchmark one whole poll of many small files: take, process, ack, dispose.

    python bench/bench_poll.py [--files 1000] [--apps 3] [--repeat 2] [--no-sftp]
                               [--compare-src DIR] [--unsynced] [--keep]

``--files`` small submissions (``bench/generate.py``, ``--apps`` applications of one product
line each, no errors: every file ACCEPTED) are dropped in a partner's inbox, and ONE
``Runner.poll(partner)`` (``max_files`` = the file count, as of 2026-12-01) takes, processes,
acknowledges and disposes of every one of them: the per-file fixed cost of the gateway (durable
receipt, four ledger commits (two of them synced), progress record, ack, ACE files and
manifests, archive, disposition). The poll runs in a child process (``--child``), which reports
the poll's wall time and the process's CPU time; the child's start-up and imports are not in
the figure.

Two inboxes:

- **local** (always): a local folder (``disposition = "move"``). Baseline in the same run:
  plain Python copying the same files into a folder, each fsynced, the folder fsynced once
  (what any durable intake must do at least). ``--work-dir /dev/shm`` puts every run
  folder on a tmpfs, where an fsync costs nothing: the CPU path alone.
- **sftp** (as root, when sshd is installed; ``--no-sftp`` to skip): the same files on a real
  OpenSSH sshd on 127.0.0.1 (``tests/sftp_server.py``, as ``bench/bench_sftp.py`` starts it),
  ``remote_ack_dir`` set (every ack uploaded), files moved to the remote processed folder.
  Baseline: OpenSSH ``sftp`` ``get *`` of the same files (``bench_sftp.run_sftp``).

Target: at least 200 files/s for the gateway's poll (PASS/FAIL per inbox). ``--compare-src DIR``
also times, alternately in the same run, the poll of another gateway source tree (e.g. a
``git worktree`` of an older commit): the before/after ratio. ``--unsynced`` also times,
alternately, this tree's local poll with every sync skipped (a diagnostic, never a way to run:
the gateway's fsyncs return at once and every ledger commit is unsynced; SQLite's own
checkpoints still sync): what the poll costs on this disk with no durability at all, i.e. the
most that any way of grouping the syncs (a group commit over several files) could give here.

Every run's folder stays until the benchmark ends (the work folder is removed then, or kept
with ``--keep``). Why: on a file system without a journal (this machine's ext4 root), a new
inode never takes a number freed in the last minutes while its block group has another free
one (the kernel's ``recently_deleted`` check in ``find_inode_bit``); when every free inode of
the group is such a number, each create first scans the whole group. Removing the last run's
~6,000 files right before the next poll put that scan into the poll's 4 creates a file: 0.5 to
0.8 ms of system time a create, against 0.02 ms otherwise (measured in the poll's own folders,
each create timed), i.e. a slower second run, which a gateway that archives its files rather
than deleting them never meets. The same holds between two invocations a few minutes apart.

Every poll is checked (a run that fails measures nothing): the poll's report (every file taken,
no error), each file's ledger row (DONE, ACCEPTED, its SHA-256, ``--apps`` licensed) and its
licenses, its ack in the outbox (ACCEPTED, ``--apps`` licensed, equal to the remote copy over
SFTP), its AE/FT files and manifests as the generator's meta says, the inbox empty and every
file in the processed folder. Exit code 0: target met everywhere; 2: missed; 1: a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
RESULTS = OUT / "poll-results.json"
sys.path.insert(0, str(BENCH))

TARGET = 200.0  # files/s, one whole poll
AS_OF = date(2026, 12, 1)
UNSYNCED = "unsynced"  # --unsynced's label: this tree with every sync skipped (a diagnostic)
UNSYNCED_ENV = "AIMGW_BENCH_UNSYNCED"
PARTNER = "poll"
FILER_CODE = "BNC"


class BenchFailure(Exception):
    """A measurement that did not do what it claims: the benchmark stops (exit 1)."""


# --- the files --------------------------------------------------------------------------------


def make_files(folder: Path, files: int, apps: int) -> dict[str, dict[str, object]]:
    """``files`` submissions of ``apps`` one-line applications each (seed = the file's number,
    so every file has its own SubmissionId and refs), oldest first by name; {name: meta}."""
    from generate import generate

    folder.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3600
    metas: dict[str, dict[str, object]] = {}
    for i in range(1, files + 1):
        path = folder / f"sub-{i:05d}.xml"
        meta = generate(apps, 1, path, i, AS_OF, 0.0, filer_code=FILER_CODE)
        path.with_name(path.name + ".meta.json").unlink()
        os.utime(path, (old + i, old + i))  # listing order = name order
        meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        metas[path.name] = meta
    os.sync()  # no writeback of the sources during the measurements
    return metas


def plain_copy(src: Path, names: list[str], dest: Path) -> float:
    """The local baseline: copy each file with plain Python, fsync each, fsync the folder."""
    dest.mkdir(parents=True)
    start = time.perf_counter()
    for name in names:
        with open(src / name, "rb") as fh, open(dest / name, "wb") as out:
            out.write(fh.read())
            out.flush()
            os.fsync(out.fileno())
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    wall = time.perf_counter() - start
    for name in names:
        if (dest / name).stat().st_size != (src / name).stat().st_size:
            raise BenchFailure(f"plain copy of {name}: size differs")
    return wall


# --- the poll, in a child process ---------------------------------------------------------------


def child(config_path: str) -> int:
    """One ``Runner.poll`` of the partner; prints {wall_s, cpu_s, taken, skipped, error} and
    what the poll asked of the disk: the gateway's fsync calls, the ledger's SQL statements
    and commits, and of those the synced ones (each one more fdatasync of SQLite's WAL; a
    commit under ``PRAGMA synchronous=NORMAL`` has none). Counts, unlike times, do not
    depend on how busy the machine's disk is. Over SFTP also the waits for the server: the
    times the poll's thread read the channel and found nothing there yet (each an answer
    waited for, a round trip at least; on a busy machine an answer sometimes comes first)."""
    import sqlite3

    from gateway.inbox import sftp_session

    counts = {"fsync": 0, "sql": 0, "commit": 0, "synced": 0, "sftp_wait": 0}
    buffer: Any = sftp_session._ChannelBuffer  # private: only its read is counted
    real_read = buffer.read

    def read(self: Any, nbytes: int, timeout: float | None = None) -> bytes:
        counts["sftp_wait"] += not len(self)
        return bytes(real_read(self, nbytes, timeout))
    buffer.read = read
    real_fsync, real_connect = os.fsync, sqlite3.connect

    def fsync(fd: int) -> None:
        counts["fsync"] += 1
        real_fsync(fd)

    def connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)  # type: ignore[arg-type]
        unsynced = [False]  # PRAGMA synchronous=NORMAL in force on this connection

        def statement(sql: str) -> None:
            counts["sql"] += 1
            if sql.startswith("PRAGMA synchronous="):
                unsynced[0] = sql.endswith("NORMAL")
            counts["commit"] += sql == "COMMIT"
            counts["synced"] += sql == "COMMIT" and not unsynced[0]

        conn.set_trace_callback(statement)
        return conn

    os.fsync = fsync
    sqlite3.connect = connect  # type: ignore[assignment]
    if os.environ.get(UNSYNCED_ENV) == "1":  # --unsynced: a diagnostic, no durability at all
        from gateway.ledger.sqlite import SqliteDb

        def no_fsync(fd: int) -> None:
            counts["fsync"] += 1

        real_begin = SqliteDb.begin

        def begin_unsynced(self: SqliteDb, synced: bool = True) -> None:
            real_begin(self, False)

        os.fsync = no_fsync
        SqliteDb.begin = begin_unsynced  # type: ignore[method-assign]
    from gateway.config import load_config
    from gateway.service.runner import Runner

    config = load_config(Path(config_path))
    runner = Runner(config, as_of=AS_OF)
    try:
        runner.recover()  # what run_once does first (nothing to finish here): not timed
        before = dict(counts)
        cpu0, start = os.times(), time.perf_counter()
        report = runner.poll(config.partner(PARTNER))
        wall, cpu1 = time.perf_counter() - start, os.times()
    finally:
        runner.close()
    taken = max(1, len(report.taken))
    print(json.dumps({"wall_s": wall, "cpu_s": (cpu1.user + cpu1.system)
                      - (cpu0.user + cpu0.system), "taken": len(report.taken),
                      "skipped": report.skipped, "error": report.error,
                      **{f"{k}_per_file": (counts[k] - before[k]) / taken for k in counts}}))
    return 0


def run_child(config: Path, src_tree: Path, *, unsynced: bool = False) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(src_tree)}
    for key in ("AIMGW_CRASH_AT", "AIMGW_PAUSE_AT", "AIMGW_POLL_TRACE", UNSYNCED_ENV):
        env.pop(key, None)
    if unsynced:
        env[UNSYNCED_ENV] = "1"
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                           str(config)], env=env, capture_output=True, text=True,
                          timeout=3600, cwd=config.parent)
    if done.returncode != 0:
        raise BenchFailure(f"the poll's process exited with {done.returncode}: "
                           f"{done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --- the checks ----------------------------------------------------------------------------------


def verify(run: Path, result: dict[str, object], metas: dict[str, dict[str, object]],
           inbox: Path, processed: Path, remote_acks: Path | None) -> dict[str, object]:
    n = len(metas)
    problems: list[str] = []
    if result["error"] is not None or result["taken"] != n or result["skipped"]:
        problems.append(f"poll: {result['taken']} taken, {result['skipped']} skipped, error "
                        f"{result['error']}; expected {n} taken")
    db = sqlite3.connect(f"file:{run / 'data' / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        rows = {r[0]: r[1:] for r in db.execute(
            "SELECT remote_name, state, status, sha256, licensed, ack_name, ace_names, file_id "
            "FROM files WHERE partner = ?", (PARTNER,))}
        licenses = dict(db.execute("SELECT file_id, count(*) FROM licenses GROUP BY file_id"
                                   ).fetchall())
    finally:
        db.close()
    if sorted(rows) != sorted(metas):
        problems.append(f"ledger: {len(rows)} files, expected {n}")
    outbox, ace = run / "outbox" / PARTNER, run / "outbox" / "ace"
    for name, meta in sorted(metas.items()):
        if name not in rows or problems:
            break
        state, status, sha, licensed, ack, aces, file_id = rows[name]
        exp = meta["expected"]
        assert isinstance(exp, dict)
        if (state, status, sha, licensed) != ("DONE", "ACCEPTED", meta["sha256"],
                                              exp["licensed"]):
            problems.append(f"{name}: ledger says {state} {status} {licensed} licensed")
        if licenses.get(file_id, 0) != exp["licensed"]:
            problems.append(f"{name}: {licenses.get(file_id, 0)} licenses in the ledger")
        ack_bytes = (outbox / str(ack)).read_bytes() if (outbox / str(ack)).exists() else b""
        if ack != f"{name}.ack.xml" or b"<Status>ACCEPTED</Status>" not in ack_bytes or \
                f"<Licensed>{exp['licensed']}</Licensed>".encode() not in ack_bytes:
            problems.append(f"{name}: ack {ack} missing, not ACCEPTED or not "
                            f"{exp['licensed']} licensed")
        elif remote_acks is not None and (remote_acks / str(ack)).read_bytes() != ack_bytes:
            problems.append(f"{name}: the remote ack differs from the gateway's copy")
        wanted = [f"{k}-{file_id}.txt" for k, key in (("AE", "ae_licenses"),
                                                       ("FT", "ft_licenses")) if exp[key]]
        if (aces or "").split(",") != wanted if wanted else aces:
            problems.append(f"{name}: ACE files {aces}, expected {wanted}")
        for ace_name in wanted:
            body = ace / ace_name
            manifest = ace / f"{ace_name}.manifest.json"
            kind = ace_name[:2].lower()
            if not manifest.exists() or not body.exists() or \
                    body.stat().st_size != 81 * int(exp[f"{kind}_records"]):
                problems.append(f"{name}: {ace_name} or its manifest missing or not "
                                f"{exp[f'{kind}_records']} records")
        if len(problems) > 5:
            break
    if problems:
        raise BenchFailure(f"{run}: poll check failed: " + "; ".join(problems[:6]))
    left = [e for e in os.listdir(inbox) if e in metas]
    if left:
        problems.append(f"inbox still holds {len(left)} files, e.g. {left[:3]}")
    moved = sorted(e for e in os.listdir(processed) if e in metas) if processed.is_dir() else []
    if moved != sorted(metas):
        problems.append(f"processed folder holds {len(moved)} files, expected {n}")
    if problems:
        raise BenchFailure(f"{run}: poll check failed: " + "; ".join(problems[:6]))
    return {"files_done": n, "licenses": sum(licenses.values()), "acks": n,
            "ace_files": sum(len(str(rows[m][5] or "").split(",")) for m in metas)}


# --- the cases --------------------------------------------------------------------------------


def local_run(work: Path, src: Path, metas: dict[str, dict[str, object]], label: str,
              tree: Path, rep: int) -> dict[str, object]:
    from project import ProjectConfig

    run = work / f"local-{label}-{rep}"
    shutil.rmtree(run, ignore_errors=True)
    config = ProjectConfig(run).partner(PARTNER, inbox="inbox", max_files=len(metas),
                                        filer_code=FILER_CODE, filer=True)
    inbox = config.inbox(PARTNER)
    for name in metas:
        os.link(src / name, inbox / name)  # the move disposes of the link, not the source
    result = run_child(config.write(), tree, unsynced=label == UNSYNCED)
    result["verified"] = verify(run, result, metas, inbox, inbox / "processed", None)
    result["creates_scanned"] = creates_scanned(run / "data" / "acks" / PARTNER)
    return result  # the folder stays until the end (KEEP_RUNS)


def sftp_runs(args: argparse.Namespace, work: Path, src: Path,
              metas: dict[str, dict[str, object]], trees: dict[str, Path],
              ) -> dict[str, object] | str:
    """The SFTP case, or why it was skipped."""
    if args.no_sftp:
        return "skipped (--no-sftp)"
    if os.geteuid() != 0 or not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        return "skipped (needs root and OpenSSH sshd)"
    from bench_sftp import run_sftp, sha256_file
    from project import ProjectConfig
    from project_config import FILER
    from sftp_server import SshServer, SshServerError

    server = SshServer(work / "sshd")
    try:
        server.start()
    except SshServerError as err:
        return f"skipped (sshd did not start: {err})"
    try:
        runs: dict[str, list[dict[str, object]]] = {"openssh": [], **{k: [] for k in trees}}
        for rep in range(args.repeat):
            order = ["openssh", *trees]
            order = order[rep % len(order):] + order[:rep % len(order)]
            for label in order:
                account = server.account(f"{label}{rep}")
                inbox = Path(account.inbox)
                for name in metas:
                    shutil.copy2(src / name, inbox / name)
                os.sync()
                if label == "openssh":
                    dest = work / f"sftp-get-{rep}"
                    dest.mkdir()
                    wall = run_sftp(server, f"get {account.inbox}/* {dest}/\n", work)
                    got = {p.name: sha256_file(p) for p in dest.iterdir()}
                    if got != {n: m["sha256"] for n, m in metas.items()}:
                        raise BenchFailure(f"sftp get *: {len(got)} files, not the sources")
                    result: dict[str, object] = {"wall_s": wall}
                else:
                    run = work / f"sftp-{label}-{rep}"
                    shutil.rmtree(run, ignore_errors=True)
                    config = ProjectConfig(run).sftp_partner(
                        PARTNER, server, account, timeout=None, patterns=["*.xml"],
                        max_files=len(metas), filer_code=FILER_CODE, filer=dict(FILER))
                    result = run_child(config.write(), trees[label])
                    result["verified"] = verify(run, result, metas, inbox,
                                                Path(account.processed), Path(account.acks))
                    result["creates_scanned"] = creates_scanned(
                        run / "data" / "acks" / PARTNER)
                result["files_per_s"] = len(metas) / num(result["wall_s"])
                runs[label].append(result)
                progress(f"sftp  {label:<10} run {rep + 1}", result)
        return {"runs": runs}
    finally:
        server.stop()


def creates_scanned(folder: Path) -> float:
    """The share of the poll's stored acks (in file id order, one create each) that got a lower
    inode number than the one before: ext4 without a journal gives out a recently freed number,
    from the top of the block group down, only after scanning the whole group (module doc).
    Near 1: the run paid that scan at every create; near 0: it did not."""
    inodes = [e.inode() for e in sorted(os.scandir(folder), key=lambda e: e.name)]
    steps = list(itertools.pairwise(inodes))
    return sum(b < a for a, b in steps) / max(1, len(steps))


def progress(what: str, result: dict[str, object]) -> None:
    cpu = f", CPU {result['cpu_s']:.2f} s" if "cpu_s" in result else ""
    scanned = (f", creates scanned {num(result['creates_scanned']):.0%}"
               if "creates_scanned" in result else "")
    waits = (f", {num(result['sftp_wait_per_file']):.1f} SFTP waits a file"
             if result.get("sftp_wait_per_file") else "")
    print(f"  {what}: {result['wall_s']:.2f} s, {result['files_per_s']:.1f} files/s{cpu}"
          + waits + scanned + (", checked" if "verified" in result else ""), file=sys.stderr)


def best(runs: list[dict[str, object]]) -> dict[str, object]:
    return min(runs, key=lambda r: num(r["wall_s"]))


def num(value: object) -> float:
    return float(str(value))


def table(name: str, runs: dict[str, list[dict[str, object]]], baseline: str,
          baseline_label: str, files: int) -> tuple[str, bool]:
    lines = [f"**{name}** ({files:,} files, best of {len(runs[baseline])}; per file: the "
             "gateway's fsync calls, the ledger's commits, those of them synced (a WAL "
             "fdatasync each), SQL statements and waits for the SFTP server's answers):\n",
             "| what | s | files/s | CPU s | fsyncs | commits | synced | SQL | SFTP waits "
             "| × baseline | target |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    base = best(runs[baseline])
    met = True
    for label, these in runs.items():
        if label == baseline:
            continue
        b = best(these)
        ok = num(b["files_per_s"]) >= TARGET
        met = met and (ok or label != "gateway")
        lines.append(f"| gateway `Runner.poll` ({label}) | {num(b['wall_s']):.2f} "
                     f"| {num(b['files_per_s']):.1f} | {num(b['cpu_s']):.2f} "
                     f"| {num(b['fsync_per_file']):.1f} | {num(b['commit_per_file']):.1f} "
                     f"| {num(b.get('synced_per_file', b['commit_per_file'])):.1f} "
                     f"| {num(b['sql_per_file']):.1f} "
                     f"| {num(b.get('sftp_wait_per_file', 0)):.1f} "
                     f"| {num(base['wall_s']) / num(b['wall_s']):.2f}× "
                     + ("| diagnostic: no durability, not a target |" if label == UNSYNCED
                        else f"| ≥ {TARGET:.0f} files/s: **{'PASS' if ok else 'FAIL'}** |"))
    lines.append(f"| {baseline_label} | {num(base['wall_s']):.2f} "
                 f"| {num(base['files_per_s']):.1f} | | | | | | | 1× | |")
    scanned = [f"{label} {num(best(these)['creates_scanned']):.0%}"
               for label, these in runs.items() if "creates_scanned" in best(these)]
    if scanned:
        lines.append(f"\nCreates in a block group of recently freed inodes (scanned whole, "
                     f"bench/README.md), in the best runs: {', '.join(scanned)}.")
    if "compare" in runs:
        new, old = best(runs["gateway"]), best(runs["compare"])
        lines.append(f"\nThis tree / `--compare-src`: {num(old['wall_s']) / num(new['wall_s']):.2f}"
                     f"× the speed (wall, best of each), CPU {num(new['cpu_s']):.2f} s against "
                     f"{num(old['cpu_s']):.2f} s ({num(old['cpu_s']) / num(new['cpu_s']):.2f}×).")
    return "\n".join(lines) + "\n", met


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000, help="files in the poll (1000)")
    parser.add_argument("--apps", type=int, default=3,
                        help="one-line applications per file (default 3)")
    parser.add_argument("--repeat", type=int, default=2, help="repetitions (default 2)")
    parser.add_argument("--no-sftp", action="store_true", help="the local inbox only")
    parser.add_argument("--compare-src", type=Path, default=None,
                        help="another gateway source tree, timed alternately (before/after)")
    parser.add_argument("--unsynced", action="store_true",
                        help="also time this tree's local poll with every sync skipped (a "
                        "diagnostic: the most a group commit could give on this disk)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--work-dir", type=Path, default=OUT,
                        help="where the run folders go (default bench/out; /dev/shm: a tmpfs, "
                        "where an fsync costs nothing, shows the CPU path alone)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child)
    command = shlex.join([".venv/bin/python", "bench/bench_poll.py",
                          *(argv if argv is not None else sys.argv[1:])])
    trees = {"gateway": ROOT}
    if args.compare_src is not None:
        trees["compare"] = args.compare_src.resolve()
    OUT.mkdir(parents=True, exist_ok=True)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="poll-bench-", dir=args.work_dir))
    signal.signal(signal.SIGTERM, _interrupted)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_start = os.getloadavg()
    try:
        print(f"generating {args.files:,} files of {args.apps} applications ...",
              file=sys.stderr)
        src = work / "src"
        metas = make_files(src, args.files, args.apps)
        names = sorted(metas)
        local_trees = {**trees, **({UNSYNCED: ROOT} if args.unsynced else {})}
        local: dict[str, list[dict[str, object]]] = {"plain": [],
                                                     **{k: [] for k in local_trees}}
        for rep in range(args.repeat):
            order = ["plain", *local_trees]
            order = order[rep % len(order):] + order[:rep % len(order)]
            for label in order:
                if label == "plain":
                    result: dict[str, object] = {"wall_s": plain_copy(
                        src, names, work / f"plain-{rep}")}
                else:
                    result = local_run(work, src, metas, label, local_trees[label], rep)
                result["files_per_s"] = args.files / num(result["wall_s"])
                local[label].append(result)
                progress(f"local {label:<10} run {rep + 1}", result)
        sftp = sftp_runs(args, work, src, metas, trees)
    except BenchFailure as failure:
        print(f"BENCHMARK FAILED: {failure}\n(work folder kept: {work})", file=sys.stderr)
        return 1
    finally:
        if not args.keep and not sys.exc_info()[0]:
            shutil.rmtree(work, ignore_errors=True)
    size = sum(int(str(m["bytes"])) for m in metas.values())
    text, met = table("Local inbox", local, "plain", "plain Python: copy + fsync each file, "
                      "fsync the folder (baseline)", args.files)
    if isinstance(sftp, dict):
        sftp_text, sftp_met = table("SFTP inbox (OpenSSH sshd on 127.0.0.1, acks uploaded)",
                                    sftp["runs"], "openssh",
                                    "OpenSSH `sftp` `get *` (baseline)", args.files)
        text += "\n" + sftp_text
        met = met and sftp_met
    else:
        text += f"\nSFTP inbox: {sftp}\n"
    document = {"measured_at": started, "command": command, "files": args.files,
                "apps_per_file": args.apps, "bytes": size, "target_files_per_s": TARGET,
                "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
                "local": local, "sftp": sftp}
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nAIM gateway: one poll of {args.files:,} small files ({size / args.files:,.0f} "
          f"bytes, {args.apps} applications each), {started}, {os.cpu_count()} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in load_start)} at start, "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at end\n")
    print(text)
    print("Checked: every file DONE and ACCEPTED with its licenses, its ack, its ACE files "
          "and manifests; the inbox empty, every file in the processed folder.")
    print(f"Reproduce: {command}")
    print(f"Results:   {RESULTS.relative_to(ROOT)}")
    print(f"\nTarget ≥ {TARGET:.0f} files/s: {'met' if met else 'NOT met'}")
    return 0 if met else 2


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
