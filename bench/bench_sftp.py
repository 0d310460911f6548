"""Benchmark the gateway's SFTP client (paramiko) against OpenSSH's ``sftp``, same run, same sshd.

    python bench/bench_sftp.py [--size-mib 200] [--repeat 3] [--files 1000]
                               [--no-prefetch-off] [--what-if] [--only large|small] [--keep]

It starts a real OpenSSH ``sshd`` on 127.0.0.1 with throwaway keys (``tests/sftp_server.py``,
``SshServer``; needs root for sshd, as the tests do) and measures two things against it:

1. **One large file** (default 200 MiB = 209,715,200 bytes, the gateway's default
   ``max_file_bytes``): ``gateway.inbox.sftp.SftpInbox(partner).fetch(remote, dest)`` with the
   partner loaded from a config.toml for that sshd (the production code path: connect, key and
   host-key checks, download with prefetch, SHA-256, fsync, re-stat), with ``prefetch = true`` (the
   default) and ``prefetch = false``, against ``sftp -b batch ... user@127.0.0.1`` doing ``get``.
   Best of ``--repeat`` for each, the variants alternating; connect time included on both sides.
   Both downloads are checked against the source's SHA-256. Target: gateway throughput at least
   0.7x OpenSSH's (issue 15).
2. **One poll of many small files** (default 1,000 one-application submissions): one
   ``Runner.poll(partner)`` (``max_files`` = the file count, ``remote_ack_dir`` set, as of
   2026-12-01) that takes, processes, disposes of every file and uploads every ack; checked
   against the ledger (every file DONE and ACCEPTED, one license each), the remote ack folder
   (every ack there, equal to the gateway's own copy) and the remote inbox (empty). Baselines in
   the same run: OpenSSH ``sftp`` ``get *`` of the same files, and the gateway's own client
   listing and fetching them without processing. The poll's time is split into the time spent
   in the inbox's SFTP calls (list, fetch, dispose, deliver, connect; timed by a subclass of
   ``SftpInbox`` that only adds timers) and everything else.

``--only large`` or ``--only small`` measures one of the two parts (each checked and
compared with OpenSSH in the same run as always); the targets of the other are not reported.

``--what-if`` adds the gateway's fetch with AES-GCM first in paramiko's cipher preference,
patched in this process only, to show what that change to gateway/inbox/sftp.py would buy.

Figures go to stdout (Markdown table, commands) and to bench/out/sftp-results.json. Exit code 0:
target met; 2: target missed; 1: a check failed (nothing is measured by a run that fails).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
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
from typing import ClassVar

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
RESULTS = OUT / "sftp-results.json"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import paramiko  # noqa: E402
from sftp_server import SftpAccount, SshServer, SshServerError, _children_of  # noqa: E402

sys.path.insert(0, str(BENCH))
from project import ProjectConfig  # noqa: E402

import gateway.inbox.sftp as gateway_sftp  # noqa: E402
import gateway.service.runner as gateway_runner  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.inbox.base import RemoteFile  # noqa: E402
from gateway.inbox.sftp import SftpInbox  # noqa: E402
from gateway.ledger.store import FileRow  # noqa: E402
from gateway.service.runner import Runner  # noqa: E402

RATIO_TARGET = 0.7  # gateway download throughput / OpenSSH sftp throughput, large file
SMALL_TARGET = 1.0  # gateway list + fetch of the small files / OpenSSH get * (issue 15)
POLL_TARGET = 200.0  # files/s of one whole poll of the small files (issue 15)
AS_OF = date(2026, 12, 1)
MIB = 1 << 20
MB = 1e6  # throughput and sizes in the report: MB = 10^6 bytes
BIG_NAME = "bench-large.bin"
STATUS_FILES = {"status.json", "status.csv"}  # a partner's status files, in STATUS_DIR
STATUS_DIR = "status"  # remote_status_dir's default: <remote_ack_dir>/status
SFTP = shutil.which("sftp") or "/usr/bin/sftp"


class BenchFailure(Exception):
    """A measurement that did not do what it claims: the benchmark stops (exit 1)."""


# --- the files ------------------------------------------------------------------------------


def make_large(path: Path, mib: int, seed: int) -> str:
    """``mib`` MiB of incompressible bytes, fast: one random 1 MiB block, each copy stamped
    with its index (so a chunk delivered at the wrong offset changes the SHA-256). Returns
    the SHA-256 hex."""
    block = bytearray(hashlib.shake_256(f"aimgw-sftp-bench-{seed}".encode()).digest(MIB))
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for i in range(mib):
            block[:8] = i.to_bytes(8, "big")
            out.write(block)
            digest.update(block)
        out.flush()
        os.fsync(out.fileno())  # no writeback of the source during the first measurement
    return digest.hexdigest()


# One application, one product line (the first line of inbox/sample/acme-20261201-good.xml),
# licensable on 2026-12-01; every file gets its own SubmissionId and ref, so none is a duplicate.
SMALL_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<LicenseSubmission xmlns="urn:aimgw:license-submission:1" schemaVersion="1.0">
  <Header>
    <SubmissionId>{submission_id}</SubmissionId>
    <Created>2026-12-01T09:30:00-05:00</Created>
  </Header>
  <Application ref="{ref}">
    <EntryType>01</EntryType>
    <Importer>ACME ALUMINUM IMPORTS LLC</Importer>
    <Exporter>NORTHERN ROLLING MILLS INC</Exporter>
    <Manufacturer>NORTHERN ROLLING MILLS INC</Manufacturer>
    <CountryOfOrigin>CA</CountryOfOrigin>
    <CountryOfExport>CA</CountryOfExport>
    <ExpectedExportDate>2026-12-10</ExpectedExportDate>
    <ExpectedImportDate>2026-12-15</ExpectedImportDate>
    <PortOfEntry>3004</PortOfEntry>
    <Product line="1">
      <HTS>7606123045</HTS>
      <Description>Can body stock, alloy 3104, coils</Description>
      <SmeltCountryLargest>CA</SmeltCountryLargest>
      <SmeltCountrySecond>US</SmeltCountrySecond>
      <CastCountry>CA</CastCountry>
      <QuantityKg>24000</QuantityKg>
      <ValueUSD>61200.00</ValueUSD>
    </Product>
  </Application>
</LicenseSubmission>
"""


def make_small(folder: Path, count: int) -> dict[str, str]:
    """``count`` small submissions in ``folder``, oldest first by name; {name: SHA-256}."""
    sums = {}
    old = time.time() - 3600
    for i in range(1, count + 1):
        name = f"bench-{i:05d}.xml"
        data = SMALL_TEMPLATE.format(submission_id=f"BENCH-SFTP-{i:05d}",
                                     ref=f"BS-{i:05d}").encode()
        (folder / name).write_bytes(data)
        os.utime(folder / name, (old + i, old + i))  # listing order = name order
        sums[name] = hashlib.sha256(data).hexdigest()
    os.sync()  # no writeback of them during the measurements
    return sums


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


# --- the configuration ------------------------------------------------------------------------


def write_config(work: Path, server: SshServer, big: SftpAccount, poll: SftpAccount,
                 files: int) -> Path:
    """The large file read with and without prefetch, and a poll of many small files (the
    timeouts are the defaults: a large download must not trip a test's short ones)."""
    config = ProjectConfig(work)
    config.sftp_partner("large", server, big, timeout=None, patterns=["*.bin"])
    config.sftp_partner("large-noprefetch", server, big, timeout=None, patterns=["*.bin"],
                        prefetch=False)
    config.sftp_partner("poll", server, poll, timeout=None, patterns=["*.xml"],
                        max_files=files, filer_code="BNC")
    return config.write()


# --- OpenSSH sftp -----------------------------------------------------------------------------


def sftp_cmd(server: SshServer, batch: Path) -> list[str]:
    return [SFTP, "-b", str(batch), "-i", str(server.key_file),
            "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-P", str(server.port), f"{server.user}@{server.host}"]


def run_sftp(server: SshServer, batch_text: str, work: Path) -> float:
    batch = work / "sftp.batch"
    batch.write_text(batch_text, encoding="utf-8")
    start = time.perf_counter()
    done = subprocess.run(sftp_cmd(server, batch), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchFailure(f"sftp exited with {done.returncode}: {done.stderr.strip()}")
    return wall


# --- CPU time: robust where wall time is not (a shared, busy machine) ------------------------


def cpu_snapshot(server: SshServer) -> tuple[float, float, float]:
    """(this process, its reaped children, sshd's reaped sessions) CPU seconds so far. The
    sessions' CPU reaches sshd's own counters once they ended and were reaped: wait for that."""
    pid = server.pid
    server_cpu = 0.0
    if pid is not None:
        deadline = time.monotonic() + 3.0
        while _children_of(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            server_cpu = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system, server_cpu


# --- part 1: one large file -------------------------------------------------------------------


# --what-if: the gateway's fetch with one or two changes applied from outside, in this process
# only (gateway/ is not edited): AES-GCM first in the cipher preference (paramiko prefers
# aes128-ctr + hmac-sha2-256), and/or another read size than gateway.inbox.sftp._CHUNK (1 MiB).
GCM_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
WHAT_IF = {
    "whatif_gcm": {"gcm": True, "chunk": None,
                   "label": "what-if: AES-GCM preferred (not the gateway's code)"},
}


def _gcm_first_transport(sock, **kwargs):  # type: ignore[no-untyped-def]
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    options.ciphers = GCM_FIRST + tuple(c for c in options.ciphers if c not in GCM_FIRST)
    return transport


@contextlib.contextmanager
def what_if(gcm: bool = False, chunk: int | None = None):  # type: ignore[no-untyped-def]
    real_connect, real_chunk = paramiko.SSHClient.connect, gateway_sftp._CHUNK

    def connect(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("transport_factory", _gcm_first_transport)
        return real_connect(self, *args, **kwargs)

    if gcm:
        paramiko.SSHClient.connect = connect  # type: ignore[method-assign]
    if chunk:
        gateway_sftp._CHUNK = chunk
    try:
        yield
    finally:
        paramiko.SSHClient.connect = real_connect  # type: ignore[method-assign]
        gateway_sftp._CHUNK = real_chunk


def gateway_download(config_path: Path, partner_id: str, remote: RemoteFile,
                     dest: Path) -> dict[str, object]:
    partner = load_config(config_path).partner(partner_id)
    inbox = SftpInbox(partner)
    try:
        start = time.perf_counter()
        inbox.connect()
        connected = time.perf_counter()
        size, sha = inbox.fetch(remote, dest)
        fetched = time.perf_counter()
        transport = inbox._client.get_transport() if inbox._client else None
        cipher = transport.remote_cipher if transport else None
    finally:
        inbox.close()
    wall = time.perf_counter() - start
    return {"wall_s": wall, "connect_s": connected - start, "fetch_s": fetched - connected,
            "bytes": size, "sha256_reported": sha, "cipher": cipher}


def bench_large(args: argparse.Namespace, server: SshServer, account: SftpAccount,
                cfg: Path, work: Path) -> dict[str, object]:
    src = Path(account.inbox) / BIG_NAME
    print(f"large file: writing {args.size_mib} MiB into the remote inbox ...", file=sys.stderr)
    source_sha = make_large(src, args.size_mib, args.seed)
    size = src.stat().st_size
    # The RemoteFile as production gets it: from the partner's listing (size, SFTP mtime).
    lister = SftpInbox(load_config(cfg).partner("large"))
    try:
        remote = next((r for r in lister.list() if r.name == BIG_NAME), None)
    finally:
        lister.close()
    if remote is None or remote.size != size:
        raise BenchFailure(f"{BIG_NAME} not listed by the gateway as {size} bytes: {remote}")

    variants = ["gateway", "openssh"] + ([] if args.no_prefetch_off else ["gateway_noprefetch"])
    if args.what_if:
        variants += list(WHAT_IF)
    runs: dict[str, list[dict[str, object]]] = {v: [] for v in variants}
    dest = work / "download.bin"
    for i in range(args.repeat):
        # prefetch off is slow (one 32 KiB request per round trip): once, mid-run
        these = [v for v in variants if v != "gateway_noprefetch" or i == args.repeat // 2]
        order = these[i % len(these):] + these[:i % len(these)]
        for variant in order:
            dest.unlink(missing_ok=True)
            cpu_before = cpu_snapshot(server)
            if variant == "openssh":
                wall = run_sftp(server, f"get {src} {dest}\n", work)
                # Not part of the timed figure: what the gateway's fsync costs OpenSSH's file.
                fs_start = time.perf_counter()
                fd = os.open(dest, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                run = {"wall_s": wall, "fsync_after_s": time.perf_counter() - fs_start}
            else:
                partner_id = "large-noprefetch" if variant == "gateway_noprefetch" else "large"
                change = WHAT_IF.get(variant, {})
                with what_if(bool(change.get("gcm")), change.get("chunk")):  # type: ignore[arg-type]
                    run = gateway_download(cfg, partner_id, remote, dest)
                if run["sha256_reported"] != source_sha or run["bytes"] != size:
                    raise BenchFailure(f"{variant}: fetch reported {run['bytes']} bytes, "
                                       f"SHA-256 {run['sha256_reported']}; source {source_sha}")
            cpu_after = cpu_snapshot(server)
            run["client_cpu_s"] = (cpu_after[0] - cpu_before[0]) + (cpu_after[1] - cpu_before[1])
            run["sshd_cpu_s"] = cpu_after[2] - cpu_before[2]
            got = dest.stat().st_size if dest.exists() else -1
            sha = sha256_file(dest) if got == size else None
            if sha != source_sha:
                raise BenchFailure(f"{variant} run {i + 1}: downloaded {got} bytes, SHA-256 "
                                   f"{sha}; the source is {size} bytes, {source_sha}")
            run.update({"mb_s": size / MB / float(run["wall_s"]), "sha256_ok": True})
            runs[variant].append(run)
            print(f"  run {i + 1}/{args.repeat}  {variant:<19} {run['wall_s']:6.2f} s "
                  f"{run['mb_s']:7.1f} MB/s  CPU client {run['client_cpu_s']:5.2f} s, sshd "
                  f"{run['sshd_cpu_s']:5.2f} s  SHA-256 ok", file=sys.stderr)
    dest.unlink(missing_ok=True)
    src.unlink()

    def best(variant: str) -> dict[str, object]:
        return min(runs[variant], key=lambda r: float(r["wall_s"]))

    result: dict[str, object] = {
        "file_bytes": size, "file_mib": args.size_mib, "source_sha256": source_sha,
        "repeat": args.repeat, "order": "variants rotated every repetition; prefetch off "
        "runs once, in the middle repetition",
    }
    for variant in variants:
        b = best(variant)
        result[variant] = {"best_wall_s": b["wall_s"], "best_mb_s": b["mb_s"], "best": b,
                           "walls_s": [r["wall_s"] for r in runs[variant]],
                           "min_client_cpu_s": min(r["client_cpu_s"] for r in runs[variant]),
                           "min_sshd_cpu_s": min(r["sshd_cpu_s"] for r in runs[variant])}
    gw, ossh = best("gateway"), best("openssh")
    ratio = float(gw["mb_s"]) / float(ossh["mb_s"])
    pairs = sorted(float(o["wall_s"]) / float(g["wall_s"])
                   for g, o in zip(runs["gateway"], runs["openssh"], strict=True))
    result["ratio"] = ratio
    result["ratio_median_of_pairs"] = pairs[len(pairs) // 2]
    for variant in variants[2:]:
        result[f"ratio_{variant.removeprefix('gateway_')}"] = float(
            best(variant)["mb_s"]) / float(ossh["mb_s"])
    result["target"] = {"min": RATIO_TARGET, "met": ratio >= RATIO_TARGET}
    return result


# --- part 2: one poll of many small files ----------------------------------------------------


class TimedSftpInbox(SftpInbox):
    """``SftpInbox`` unchanged, but adding up the wall time spent in each Inbox call, so the
    poll's time can be split into SFTP and everything else (processing, ledger, fsyncs)."""

    spent: ClassVar[dict[str, float]] = {}
    calls: ClassVar[dict[str, int]] = {}

    def _timed(self, what: str, fn, *args):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            TimedSftpInbox.spent[what] = TimedSftpInbox.spent.get(what, 0.0) + (
                time.perf_counter() - start)
            TimedSftpInbox.calls[what] = TimedSftpInbox.calls.get(what, 0) + 1

    def connect(self) -> paramiko.SFTPClient:
        if self._sftp is not None:
            return self._sftp
        return self._timed("connect", super().connect)

    # Each call connects first (timed as "connect", once), so no time is counted twice.
    def list(self) -> list[RemoteFile]:
        self.connect()
        return self._timed("list", super().list)

    def fetch(self, remote: RemoteFile, dest: Path, limit: int | None = None,
              ) -> tuple[int, str]:
        self.connect()
        return self._timed("fetch", super().fetch, remote, dest, limit)

    def dispose(self, taken: FileRow) -> str | None:
        self.connect()
        return self._timed("dispose", super().dispose, taken)

    def deliver(self, local: Path, name: str, status: bool = False) -> None:
        if self.source.remote_ack_dir:
            self.connect()
        return self._timed("status" if status else "deliver", super().deliver, local, name,
                           status)


def bench_poll(args: argparse.Namespace, server: SshServer, account: SftpAccount,
               cfg: Path, work: Path) -> dict[str, object]:
    inbox = Path(account.inbox)
    print(f"poll: writing {args.files:,} small submissions into the remote inbox ...",
          file=sys.stderr)
    sums = make_small(inbox, args.files)
    total_bytes = sum((inbox / n).stat().st_size for n in sums)

    # Baseline 1: OpenSSH sftp, `get *` of the same files into a temp folder.
    ossh_walls = []
    for i in range(args.repeat):
        dest = work / "sftp-get"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        ossh_walls.append(run_sftp(server, f"get {account.inbox}/* {dest}/\n", work))
        got = {p.name: sha256_file(p) for p in dest.iterdir()}
        if got != sums:
            matching = sum(got[n] == sums.get(n) for n in got)
            raise BenchFailure(f"sftp get *: {len(got)} files, {matching} matching, "
                               f"expected {len(sums)}")
        print(f"  run {i + 1}/{args.repeat}  openssh get *      {ossh_walls[-1]:6.2f} s  "
              f"{len(got):,} files, SHA-256 ok", file=sys.stderr)
        shutil.rmtree(dest)

    # Baseline 2: the gateway's own client, list + fetch each file, no processing, no dispose.
    partner = load_config(cfg).partner("poll")
    gw_walls = []
    for i in range(args.repeat):
        dest = work / "gw-fetch"
        shutil.rmtree(dest, ignore_errors=True)
        client = SftpInbox(partner)
        start = time.perf_counter()
        try:
            listed = client.list()
            fetched = {r.name: client.fetch(r, dest / r.name)[1] for r in listed}
        finally:
            client.close()
        gw_walls.append(time.perf_counter() - start)
        if fetched != sums:
            raise BenchFailure(f"gateway list+fetch: {len(fetched)} files, expected {len(sums)}"
                               " with the source's SHA-256")
        print(f"  run {i + 1}/{args.repeat}  gateway list+fetch {gw_walls[-1]:6.2f} s  "
              f"{len(fetched):,} files, SHA-256 ok", file=sys.stderr)
        shutil.rmtree(dest)

    # The measurement: one Runner.poll that takes, processes and disposes of every file.
    config = load_config(cfg)
    partner = config.partner("poll")
    runner = Runner(config, as_of=AS_OF)
    TimedSftpInbox.spent, TimedSftpInbox.calls = {}, {}
    real_open_inbox = gateway_runner.open_inbox
    gateway_runner.open_inbox = lambda p, ledger=None: (  # type: ignore[assignment]
        TimedSftpInbox(p, ledger) if p.kind == "sftp" else real_open_inbox(p, ledger))
    try:
        start = time.perf_counter()
        report = runner.poll(partner)
        wall = time.perf_counter() - start
    finally:
        gateway_runner.open_inbox = real_open_inbox
        runner.close()
    print(f"  one Runner.poll                      {wall:6.2f} s  {len(report.taken):,} files "
          f"taken", file=sys.stderr)
    verified = verify_poll(report, sums, account, work, config.gateway.data_dir)
    sftp_s = sum(TimedSftpInbox.spent.values())
    return {
        "files": args.files, "bytes": total_bytes, "as_of": AS_OF.isoformat(),
        "max_files": partner.max_files,
        "poll": {"wall_s": wall, "files_per_s": args.files / wall,
                 "sftp_calls_s": dict(TimedSftpInbox.spent),
                 "sftp_calls": dict(TimedSftpInbox.calls),
                 "sftp_s": sftp_s, "other_s": wall - sftp_s, "verified": verified},
        "openssh_get_all": {"best_wall_s": min(ossh_walls), "walls_s": ossh_walls,
                            "files_per_s": args.files / min(ossh_walls),
                            "command_batch": "get <remote inbox>/* <temp folder>/"},
        "gateway_list_fetch": {"best_wall_s": min(gw_walls), "walls_s": gw_walls,
                               "files_per_s": args.files / min(gw_walls)},
    }


def verify_poll(report: gateway_runner.PollReport, sums: dict[str, str], account: SftpAccount,
                work: Path, data_dir: Path) -> dict[str, object]:
    n = len(sums)
    problems = []
    if report.error is not None:
        problems.append(f"poll error: {report.error}")
    if len(report.taken) != n or report.skipped:
        problems.append(f"{len(report.taken)} taken, {report.skipped} skipped; expected {n} taken")
    db = sqlite3.connect(f"file:{data_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT remote_name, state, status, sha256, licensed FROM files "
                          "WHERE partner = 'poll'").fetchall()
        licenses = db.execute("SELECT count(*) FROM licenses WHERE partner = 'poll'"
                              ).fetchone()[0]
    finally:
        db.close()
    done = [r for r in rows if r[1] == "DONE"]
    accepted = [r for r in rows if r[2] == "ACCEPTED"]
    if len(rows) != n or len(done) != n or len(accepted) != n:
        problems.append(f"ledger: {len(rows)} files, {len(done)} DONE, {len(accepted)} ACCEPTED;"
                        f" expected {n} of each")
    if {r[0]: r[3] for r in rows} != sums:
        problems.append("ledger: names or SHA-256 differ from the files dropped")
    if licenses != n or sum(r[4] for r in rows) != n:
        problems.append(f"ledger: {licenses} licenses, expected {n}")
    left = sorted(os.listdir(account.inbox))
    if left:
        problems.append(f"remote inbox not empty: {len(left)} entries, e.g. {left[:3]}")
    processed = sorted(os.listdir(account.processed))
    if processed != sorted(sums):
        problems.append(f"remote processed folder holds {len(processed)} files, expected {n}")
    entries = sorted(os.listdir(account.acks))
    acks = [e for e in entries if e.endswith(".ack.xml")]
    # Besides the acks, the status folder (remote_status_dir, default <ack dir>/status) with
    # the partner's status files (status.json, status.csv: rewritten each poll when
    # status_files is on); nothing else (no leftover temp upload).
    others = [e for e in entries if not e.endswith(".ack.xml")]
    status_dir = Path(account.acks, STATUS_DIR)
    status = sorted(os.listdir(status_dir)) if status_dir.is_dir() else []
    wanted = sorted(f"{name}.ack.xml" for name in sums)
    if acks != wanted or not set(others) <= {STATUS_DIR} or not set(status) <= STATUS_FILES:
        problems.append(f"remote ack folder holds {len(acks)} acks, expected {n}; other "
                        f"entries {others[:5]}, status folder {status[:5]} (only the folder "
                        f"{STATUS_DIR} holding {sorted(STATUS_FILES)} allowed)")
    else:
        outbox = work / "outbox" / "poll"
        for ack in acks:
            remote = Path(account.acks, ack).read_bytes()
            if b"<Status>ACCEPTED</Status>" not in remote or \
                    remote != (outbox / ack).read_bytes():
                problems.append(f"remote ack {ack} is not ACCEPTED or differs from the "
                                "gateway's own copy")
                break
    if problems:
        raise BenchFailure("poll check failed: " + "; ".join(problems))
    return {"files_done": len(done), "files_accepted": len(accepted), "licenses": licenses,
            "remote_acks": len(acks), "remote_ack_dir_other_entries": others,
            "remote_inbox_entries": len(left),
            "remote_processed": len(processed), "acks_equal_local_copy": True}


# --- report -----------------------------------------------------------------------------------


def large_table(large: dict, env: dict) -> str:
    size_mb = large["file_bytes"] / MB
    lines = [
        f"**Large file** ({large['file_mib']} MiB = {size_mb:.1f} MB, best of "
        f"{large['repeat']}, connect included; CPU = least of the runs, client = every "
        "thread of the gateway's process, or `sftp` + `ssh`):\n",
        "| client | runs | best s | MB/s | × OpenSSH | client CPU s | sshd CPU s | SHA-256 |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    ossh = large["openssh"]["best_mb_s"]
    rows = [("gateway `SftpInbox.fetch`, prefetch on (default)", "gateway"),
            ("gateway `SftpInbox.fetch`, prefetch off", "gateway_noprefetch"),
            ("OpenSSH `sftp` `get`", "openssh"),
            *((v["label"], k) for k, v in WHAT_IF.items())]
    for label, key in rows:
        if key not in large:
            continue
        v = large[key]
        lines.append(f"| {label} | {len(v['walls_s'])} | {v['best_wall_s']:.2f} "
                     f"| {v['best_mb_s']:.1f} | {v['best_mb_s'] / ossh:.2f}× "
                     f"| {v['min_client_cpu_s']:.2f} | {v['min_sshd_cpu_s']:.2f} | ok |")
    mark = "PASS" if large["target"]["met"] else "FAIL"
    gw_best = large["gateway"]["best"]
    lines += [
        "",
        f"Ratio gateway/OpenSSH = **{large['ratio']:.2f}×** (target ≥ {RATIO_TARGET}×: "
        f"**{mark}**; median of the per-repetition ratios {large['ratio_median_of_pairs']:.2f}×)."
        f" Gateway best split: connect {gw_best['connect_s']:.2f} s, fetch (download, SHA-256,"
        f" fsync, re-stat) {gw_best['fetch_s']:.2f} s. fsync of OpenSSH's download, untimed: "
        f"{large['openssh']['best']['fsync_after_s']:.2f} s. Ciphers: gateway (paramiko) "
        f"{gw_best['cipher']} + its MAC, OpenSSH {env.get('openssh_cipher')}.",
    ]
    return "\n".join(lines) + "\n"


def poll_table(poll: dict) -> str:
    lines = [
        f"**One poll of {poll['files']:,} small files** ({poll['bytes'] / poll['files']:,.0f} "
        f"bytes each, 1 application, 1 line; max_files = {poll['max_files']:,}):\n",
        "| what | s | files/s |",
        "|---|---:|---:|",
    ]
    p = poll["poll"]
    lines.append(f"| gateway `Runner.poll`: take, process, dispose, upload ack "
                 f"| {p['wall_s']:.2f} | {p['files_per_s']:,.1f} |")
    calls = p["sftp_calls_s"]
    lines.append(f"| … of which SFTP calls (list {calls.get('list', 0):.2f}, fetch "
                 f"{calls.get('fetch', 0):.2f}, dispose {calls.get('dispose', 0):.2f}, deliver "
                 f"{calls.get('deliver', 0):.2f}, connect {calls.get('connect', 0):.2f}) "
                 f"| {p['sftp_s']:.2f} | |")
    lines.append(f"| … of which everything else (processing, ledger, fsyncs) "
                 f"| {p['other_s']:.2f} | |")
    g = poll["gateway_list_fetch"]
    lines.append(f"| gateway client alone: list + fetch all, no processing (best of "
                 f"{len(g['walls_s'])}) | {g['best_wall_s']:.2f} | {g['files_per_s']:,.1f} |")
    o = poll["openssh_get_all"]
    lines.append(f"| OpenSSH `sftp` `get *` of the same files (best of {len(o['walls_s'])}) "
                 f"| {o['best_wall_s']:.2f} | {o['files_per_s']:,.1f} |")
    small = o["best_wall_s"] / g["best_wall_s"]
    lines += ["", f"List + fetch / OpenSSH `get *` = **{small:.2f}×** (target ≥ {SMALL_TARGET}×: "
              f"**{'PASS' if small >= SMALL_TARGET else 'FAIL'}**; the gateway fsyncs every "
              "file, `get *` none). Whole poll **"
              f"{p['files_per_s']:,.1f} files/s** (target ≥ {POLL_TARGET:.0f}: "
              f"**{'PASS' if p['files_per_s'] >= POLL_TARGET else 'FAIL'}**; "
              "`bench/bench_poll.py` splits it)."]
    v = p["verified"]
    lines += ["", f"Verified: {v['files_done']:,} files DONE and ACCEPTED in the ledger, "
              f"{v['licenses']:,} licenses, {v['remote_acks']:,} acks in the remote ack folder "
              f"(each equal to the gateway's copy; besides them: "
              f"{', '.join(v['remote_ack_dir_other_entries']) or 'nothing'}), remote inbox empty "
              f"({v['remote_inbox_entries']} entries), {v['remote_processed']:,} files moved to "
              "the remote processed folder."]
    return "\n".join(lines) + "\n"


def openssh_cipher(server: SshServer) -> str | None:
    """The cipher OpenSSH's client negotiates with this sshd (``ssh -v``, untimed)."""
    try:
        done = subprocess.run(
            ["ssh", "-v", "-i", str(server.key_file), "-o",
             f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
             "-o", "BatchMode=yes", "-p", str(server.port), f"{server.user}@{server.host}",
             "true"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in done.stderr.splitlines():
        if "server->client cipher:" in line:
            return line.split("cipher:", 1)[1].split()[0]
    return None


def environment(server: SshServer) -> dict[str, object]:
    ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return {"python": sys.version.split()[0], "paramiko": paramiko.__version__,
            "cryptography": __import__("cryptography").__version__, "openssh": ssh_v,
            "openssh_cipher": openssh_cipher(server),
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg()}


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=200,
                        help="size of the large file in MiB (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--files", type=int, default=1000,
                        help="small files in the poll (default 1000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-prefetch-off", action="store_true",
                        help="skip the gateway download with prefetch = false")
    parser.add_argument("--what-if", action="store_true",
                        help="also time the gateway's fetch with AES-GCM first in paramiko's "
                        "cipher preference (patched in this process only; not the gateway's "
                        "code)")
    parser.add_argument("--only", choices=("large", "small"),
                        help="measure only the large file (part 1) or only the small files "
                        "(part 2: get *, list + fetch, one poll); default both")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (sshd, config, ledger) under bench/out/")
    args = parser.parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/bench_sftp.py",
                          *(argv if argv is not None else sys.argv[1:])])
    if not Path(SFTP).exists():
        print(f"OpenSSH sftp not found ({SFTP}): apt-get install openssh-client",
              file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sftp-bench-", dir=OUT))
    # A SIGTERM (a timeout killing us) must still stop sshd: turn it into an exception.
    signal.signal(signal.SIGTERM, _interrupted)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    server: SshServer | None = None
    try:
        try:
            server = SshServer(work / "sshd")
            server.start()
        except SshServerError as err:
            print(f"BENCHMARK FAILED: {err}", file=sys.stderr)
            return 1
        env = environment(server)
        cfg = write_config(work, server, server.account("large"), server.account("poll"),
                           args.files)
        t0 = time.perf_counter()
        large = None if args.only == "small" else \
            bench_large(args, server, server.account("large"), cfg, work)
        poll = None if args.only == "large" else \
            bench_poll(args, server, server.account("poll"), cfg, work)
        total = time.perf_counter() - t0
        example = shlex.join(sftp_cmd(server, Path("BATCH")))
    except BenchFailure as failure:
        print(f"BENCHMARK FAILED: {failure}", file=sys.stderr)
        print(f"(work folder kept: {work})", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    example = (example.replace(str(server.key_file), "KEY")
               .replace(str(server.known_hosts), "KNOWN")
               .replace(f"-P {server.port}", "-P PORT"))
    document = {
        "measured_at": started, "command": command, "total_s": total, "environment": env,
        "load_average_at_end": os.getloadavg(),
        "mb": "10^6 bytes", "target": {"ratio_min": RATIO_TARGET,
                                       "ratio": "gateway MB/s / OpenSSH sftp MB/s, large file, "
                                       "best of each, connect included on both sides"},
        "openssh_command": example, "large_file": large, "small_files_poll": poll,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")

    print(f"\nAIM gateway SFTP benchmark, {started} (python {env['python']}, paramiko "
          f"{env['paramiko']}, {env['openssh']}, {env['cpus']} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in env['load_average_at_start'])} at start, "
          f"{' '.join(f'{x:.2f}' for x in document['load_average_at_end'])} at end); sshd on "
          f"127.0.0.1, MB = 10^6 bytes\n")
    if large is not None:
        print(large_table(large, env))
    if poll is not None:
        print(poll_table(poll))
    print(f"Reproduce: {command}   (as root: it starts sshd; {total:.0f} s this time)")
    print(f"OpenSSH:   {example}  (BATCH: 'get <remote file> <local file>', or "
          "'get <remote inbox>/* <folder>/')")
    print("Gateway:   SftpInbox(load_config(cfg).partner(...)).fetch(remote, dest); "
          "Runner(load_config(cfg), as_of=date(2026, 12, 1)).poll(partner)")
    print(f"Results:   {RESULTS.relative_to(ROOT)}")
    met = {}
    if large is not None:
        met[f"large file ≥ {RATIO_TARGET}× OpenSSH"] = (large["target"]["met"],
                                                        f"{large['ratio']:.2f}×")
    if poll is not None:
        small = (poll["openssh_get_all"]["best_wall_s"] /
                 poll["gateway_list_fetch"]["best_wall_s"])
        rate = poll["poll"]["files_per_s"]
        met[f"small files list + fetch ≥ {SMALL_TARGET}× get *"] = (small >= SMALL_TARGET,
                                                                    f"{small:.2f}×")
        met[f"whole poll ≥ {POLL_TARGET:.0f} files/s"] = (rate >= POLL_TARGET, f"{rate:,.1f}")
    print()
    for what, (ok, figure) in met.items():
        print(f"Target {what}: {'PASS' if ok else 'FAIL'} ({figure})")
    return 0 if all(ok for ok, _ in met.values()) else 2


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
