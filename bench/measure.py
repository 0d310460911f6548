"""Measuring one benchmark process, and the two measured commands: the one place for both,
shared by ``run_bench.py`` (the figures of the issue's table) and ``regression.py`` (the
regression test's CPU ratio).

A measured process is run on its own and reaped with ``os.wait4``: that gives its wall time,
its CPU time (user + sys of the process and every child it waited for) and its peak RSS.
Peak RSS comes from GNU ``/usr/bin/time -v`` when present (wrapped around the command), else
from the same ``os.wait4`` (the same kernel counter, ``ru_maxrss``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
# The schema the gateway validates every file against (gateway/schemas.py: files of
# schemaVersion 1.0 and 1.1 are both validated with 1.1). The baseline validates against the
# same one, so that the floor does the same XSD work the gateway must do; 1.1 is 1.0 plus a
# choice of Application or Cancellation and a few optional items.
XSD = ROOT / "schemas" / "license-submission-1.1.xsd"
GNU_TIME = Path("/usr/bin/time")
PARTNER = "bench"
FILER_CODE = "BNC"
DEFAULT_MAX_FILE_BYTES = 209_715_200  # the gateway's default F003 limit (config.toml)

sys.path.insert(0, str(BENCH))
from generate import generator_fingerprint  # noqa: E402
from project import ProjectConfig  # noqa: E402


class BenchFailure(Exception):
    """A measurement that did not do what it claims: the benchmark stops."""


def mb(n: float) -> float:
    return n / 1e6


def measure(cmd: list[str], *, cwd: Path | None = None, gnu_time: bool = True,
            prefix: Sequence[str] = (), env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; return wall seconds, CPU seconds (user + sys), peak RSS (bytes), exit code,
    stdout and stderr. ``gnu_time=False`` skips the ``/usr/bin/time`` wrapper (peak RSS then
    from ``os.wait4``): one process fewer where only the CPU time counts. ``prefix`` runs
    ``cmd`` under another program (the regression check's instruction counter); ``env``
    replaces the environment."""
    with tempfile.TemporaryDirectory(prefix="aimgw-bench-") as tmp:
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        time_path = Path(tmp) / "time"
        use_gnu_time = gnu_time and GNU_TIME.exists()
        full = [*prefix, *cmd]
        if use_gnu_time:
            full = [str(GNU_TIME), "-v", "-o", str(time_path), *full]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(full, cwd=cwd, stdout=out, stderr=err, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        rss_kb = usage.ru_maxrss  # Linux: kilobytes; the largest of the child and its children
        method = "os.wait4"
        if use_gnu_time:
            text = time_path.read_text(errors="replace")
            match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
            if match:
                rss_kb, method = int(match.group(1)), "/usr/bin/time -v"
            status_match = re.search(r"Exit status: (\d+)", text)
            if status_match:
                proc.returncode = int(status_match.group(1))
        return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                "rss_bytes": rss_kb * 1024, "rss_method": method,
                "returncode": proc.returncode, "stdout": out_path.read_text(errors="replace"),
                "stderr": err_path.read_text(errors="replace")}


# --- the two measured commands -------------------------------------------------------------


def compile_sources() -> None:
    """Compile the gateway's modules to bytecode before measuring, as an installed package
    has them (pip compiles at install). Here the package is installed editable and
    PYTHONDONTWRITEBYTECODE=1 is set, so without this every measured run compiled some 170
    modules again: 70-85 ms of CPU a run (measured), which no deployed gateway pays. The
    baseline's lxml comes compiled from its wheel. Stale bytecode is never used: Python
    compares it with the source's mtime and size."""
    import compileall

    compileall.compile_dir(str(ROOT / "gateway"), quiet=1)


def baseline_cmd(python: str, xml: Path) -> list[str]:
    return [python, str(BENCH / "baseline.py"), str(xml), str(XSD)]


def gateway_cmd(gateway: str, config: Path, as_of: str) -> list[str]:
    return [gateway, "--config", str(config), "run", "--once", "--as-of", as_of]


def find_gateway(python: str) -> str | None:
    """The ``aim-gateway`` next to ``python`` (the same virtual environment), else on PATH."""
    beside = Path(python).parent / "aim-gateway"
    found = str(beside) if beside.exists() else shutil.which("aim-gateway")
    return os.path.abspath(found) if found and os.sep in found else found


def write_config(run_dir: Path, file_bytes: int, in_process: bool = False) -> Path:
    """A config with one local partner whose inbox is run_dir/inbox; ``in_process``: the
    file is read without a second process (``read_process_min_bytes = 0``)."""
    # The shipped limit (200 MB) rejects a realistic 1,000,000-line file with F003; the
    # benchmark measures processing, so its own config raises the limit when the file needs it.
    max_bytes = max(DEFAULT_MAX_FILE_BYTES, 2 * file_bytes)
    # Likewise the daily license quota (20,000, A109): a file of 1-line applications past it
    # would measure rejections, not licensing.
    config = ProjectConfig(run_dir).set("gateway", max_file_bytes=max_bytes)
    if in_process:
        config.set("gateway", read_process_min_bytes=0)
    return (config
            .partner(PARTNER, name="Benchmark partner", inbox="inbox", disposition="keep",
                     filer_code=FILER_CODE, filer=True,
                     max_licenses_per_day=100_000_000).write())


def prepare_run(source: Path, run_dir: Path, in_process: bool = False) -> Path:
    """A fresh run folder whose inbox holds only ``source``; returns its config."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    inbox = run_dir / "inbox"
    inbox.mkdir(parents=True)
    try:
        os.link(source, inbox / source.name)  # same bytes, no copy; "keep" leaves it untouched
    except OSError:
        shutil.copyfile(source, inbox / source.name)
    return write_config(run_dir, source.stat().st_size, in_process)


def generate(python: str, lines: int, per_app: int, seed: int, as_of: str,
             fmt: str = "xml", out_dir: Path = OUT) -> tuple[Path, dict[str, Any]]:
    """The generated submission (bench/generate.py) and its meta, reused when a file of the
    same generator and arguments is already there."""
    path = out_dir / f"bench-{lines}-k{per_app}-s{seed}.{fmt}"
    cmd = [python, str(BENCH / "generate.py"), "--lines", str(lines), "--lines-per-app",
           str(per_app), "--seed", str(seed), "--as-of", as_of, "--format", fmt,
           "--out", str(path)]
    meta_path = path.with_name(path.name + ".meta.json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if (meta.get("bytes") == path.stat().st_size and meta.get("as_of") == as_of
                and meta.get("format", "xml") == fmt
                and meta.get("generator_sha256") == generator_fingerprint()):
            return path, meta  # same generator, same arguments: same bytes, reuse
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"  generated in {time.perf_counter() - started:.1f} s: {shlex.join(cmd)}",
          file=sys.stderr)
    return path, json.loads(meta_path.read_text())


def show_path(path: Path) -> str:
    """``path`` relative to the project when it lies inside it (commands run from there)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)
