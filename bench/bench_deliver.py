"""Benchmark the SFTP end of a file: its ack delivered, then the file disposed of, over a link
with latency.

    python bench/bench_deliver.py [--files 60] [--rounds 4] [--delay-ms 5] --compare-src DIR

For each of ``--files`` small files on a real OpenSSH sshd (``tests/sftp_server.py``, as root),
a child process of each gateway tree (this one and ``--compare-src``, e.g. ``git archive`` of
main; alternating, the order swapped every round) runs ``SftpInbox.deliver`` of a 1.5 KB ack
then ``SftpInbox.dispose`` (a move), as ``Runner._complete`` does (``dispose_next`` first where
the tree has it), through a TCP proxy that forwards each chunk ``--delay-ms`` after it arrived
(a link's latency; on loopback alone a round trip costs about a thread switch, and the CPU
and disk of the rest of a poll hide it). Reported per tree: wall time (median and best), CPU,
the time in deliver and in dispose, and the reads of the channel that found nothing yet
(waits for the server). Checked: every file in the processed folder, every ack uploaded whole.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]

CHILD = r'''
import dataclasses, json, os, sys, time
from pathlib import Path
from gateway.config import load_config
from gateway.inbox import sftp_session
from gateway.inbox.sftp import SftpInbox
from gateway.ledger.store import FileRow
inbox = SftpInbox(load_config(Path(sys.argv[1])).partner("poll"))
ack = Path(sys.argv[2])
waits, spent, phase = {"deliver": 0, "dispose": 0}, {"deliver": 0.0, "dispose": 0.0}, ["deliver"]
buffer = sftp_session._ChannelBuffer
real_read = buffer.read
def read(self, nbytes, timeout=None):
    waits[phase[0]] += not len(self)
    return real_read(self, nbytes, timeout)
buffer.read = read
rows = []
for f in inbox.list():
    fields = {x.name: None for x in dataclasses.fields(FileRow)}
    fields.update(file_id="x", partner="poll", remote_name=f.name, size=f.size, mtime=f.mtime,
                  sha256="", local_name=f.name, received_at="", state="ARCHIVED",
                  applications=0, licensed=0, not_required=0, rejected=0, new_licenses=0,
                  cancelled=0)
    rows.append(FileRow(**fields))
cpu0, start = os.times(), time.perf_counter()
for row in rows:
    if hasattr(inbox, "dispose_next"):
        inbox.dispose_next(row)
    phase[0], t0 = "deliver", time.perf_counter()
    inbox.deliver(ack, row.remote_name + ".ack.xml")
    phase[0], t1 = "dispose", time.perf_counter()
    assert inbox.dispose(row) is None
    spent["deliver"] += t1 - t0
    spent["dispose"] += time.perf_counter() - t1
wall, cpu1 = time.perf_counter() - start, os.times()
inbox.close()
print(json.dumps({"wall_s": wall, "cpu_s": cpu1.user + cpu1.system - cpu0.user - cpu0.system,
                  "files": len(rows), "waits": waits, "spent": spent}))
'''


def latency_proxy(target_port: int, delay: float) -> Any:
    """A ``TcpCutProxy`` whose pumps forward each chunk ``delay`` s after it arrived."""
    from sftp_server import TcpCutProxy

    class Delayed(TcpCutProxy):
        def _pump(self, source: socket.socket, target: socket.socket, record: Any,
                  to_client: bool) -> None:
            chunks: queue.SimpleQueue[tuple[float, bytes | None]] = queue.SimpleQueue()
            # A router forwards what it gets at once; a proxy's own sockets would hold a small
            # write back until the previous one is acknowledged (Nagle), and the other end
            # delays that acknowledgement up to 40 ms: a stall no real path between the
            # gateway and a partner's server has, which hid half of what the round trips cost.
            target.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def writer() -> None:
                try:
                    while (item := chunks.get())[1] is not None:
                        time.sleep(max(0.0, item[0] - time.monotonic()))
                        target.sendall(item[1] or b"")
                    target.shutdown(socket.SHUT_WR)
                except OSError:
                    self._close_both(source, target)

            thread = threading.Thread(target=writer, daemon=True)
            thread.start()
            try:
                while data := source.recv(65536):
                    chunks.put((time.monotonic() + delay, data))
            except OSError:
                pass
            chunks.put((0.0, None))
            thread.join()

    return Delayed(target_port).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--delay-ms", type=float, default=5.0, help="each way (default 5)")
    parser.add_argument("--compare-src", type=Path, required=True,
                        help="the other gateway source tree (before)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (a real sshd)", file=sys.stderr)
        return 1
    from project import ProjectConfig
    from sftp_server import SshServer

    trees = {"this tree": ROOT, "compare": args.compare_src.resolve()}
    work = Path(tempfile.mkdtemp(prefix="bench-deliver-"))
    server = SshServer(work / "sshd")
    server.start()
    proxy = latency_proxy(server.port, args.delay_ms / 1000)
    server.trust_port(proxy.port)
    ack = work / "ack.xml"
    ack.write_bytes(b"<Ack>" + b"x" * 1500 + b"</Ack>\n")
    (work / "child.py").write_text(CHILD)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
    try:
        for rnd in range(args.rounds):
            for label in (list(trees) if rnd % 2 == 0 else list(trees)[::-1]):
                account = server.account(f"r{rnd}{'ab'[list(trees).index(label)]}")
                for i in range(args.files):
                    Path(account.inbox, f"f{i:05d}.xml").write_bytes(b"<x/>\n" * 100)
                config = ProjectConfig(work / f"run-{rnd}-{len(runs[label])}-{label[0]}")
                cfg = config.sftp_partner("poll", server, account, timeout=None,
                                          patterns=["*.xml"], max_files=args.files,
                                          port=proxy.port).write()
                done = subprocess.run([sys.executable, str(work / "child.py"), str(cfg),
                                       str(ack)], env={**os.environ, "PYTHONPATH": str(
                                           trees[label])}, capture_output=True, text=True,
                                      timeout=1800)
                if done.returncode != 0:
                    print(done.stderr[-3000:], file=sys.stderr)
                    return 1
                result = json.loads(done.stdout.strip().splitlines()[-1])
                moved = sorted(os.listdir(account.processed))
                acks = [Path(account.acks, f"f{i:05d}.xml.ack.xml") for i in range(args.files)]
                if result["files"] != args.files or len(moved) != args.files or \
                        os.listdir(account.inbox) or any(
                            a.read_bytes() != ack.read_bytes() for a in acks):
                    print(f"{label}: check failed (moved {len(moved)}, inbox "
                          f"{len(os.listdir(account.inbox))})", file=sys.stderr)
                    return 1
                runs[label].append(result)
                print(f"  {label:<9} round {rnd + 1}: {result['wall_s']:.2f} s, waits "
                      f"{result['waits']}, checked", file=sys.stderr)
    finally:
        proxy.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    n = args.files
    print(f"\nSFTP deliver + dispose of {n} files, {args.delay_ms:g} ms each way, "
          f"{args.rounds} alternating rounds, load {os.getloadavg()[0]:.1f}:\n")
    print("| tree | median s | best s | ms a file (median) | deliver ms | dispose ms "
          "| waits a file | CPU s |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    medians = {}
    for label, these in runs.items():
        med = statistics.median(r["wall_s"] for r in these)
        medians[label] = med
        deliver = statistics.median(r["spent"]["deliver"] for r in these) * 1000 / n
        dispose = statistics.median(r["spent"]["dispose"] for r in these) * 1000 / n
        waits = statistics.median(sum(r["waits"].values()) for r in these) / n
        print(f"| {label} | {med:.2f} | {min(r['wall_s'] for r in these):.2f} "
              f"| {med * 1000 / n:.1f} | {deliver:.1f} | {dispose:.1f} | {waits:.1f} "
              f"| {statistics.median(r['cpu_s'] for r in these):.2f} |")
    print(f"\nThis tree / --compare-src: {medians['compare'] / medians['this tree']:.2f}x the "
          "speed (median wall). Checked: every file moved, every ack uploaded whole.")
    print("Reproduce: .venv/bin/python bench/bench_deliver.py "
          + shlex.join(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
