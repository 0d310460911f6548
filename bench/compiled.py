"""The opt-in compiled gateway: the hot pure-Python modules compiled to C with mypyc.

    python bench/compiled.py [--dest .venv/compiled]      # build (or reuse) it; `make compiled`

The build copies the package (``gateway/`` and ``schemas/``, which ``gateway.schemas`` finds
beside the package) to ``DEST``, compiles ``HOT_MODULES`` there with mypyc (one shared library,
``gateway/_compiled__mypyc*.so``, plus one small extension per module next to its source) and
writes ``DEST/aim-gateway``: the venv's ``aim-gateway`` with ``PYTHONPATH=DEST``, so that the
copy shadows the editable install for that process only. The working tree never holds a
``.so`` file: ``make run`` and ``make test`` stay pure Python. A build is reused while the
sources it was made from are unchanged (``DEST/source.sha256``).

Measured on 2026-12-04 (bench/README.md, "The compiled gateway"): about 1.2x faster per
``run --once`` (15-25 % less wall time), e.g. 14,000 -> 16,500 applications/s at 1 line per
application; not enough for issue 15's targets. What it costs: a C compiler and Python's
headers at build time (about 22 s of CPU), a test that monkeypatches a compiled module's
function or class does not reach its compiled callers, frozen dataclasses cannot be
unpickled, and a traceback through compiled code has no Python lines.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from measure import BenchFailure

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / ".venv" / "compiled"

# The modules whose per-application Python the profile of a 1-line-per-application run shows
# (bench/README.md, "The compiled gateway"). Not here: findings.py (mypyc's frozen dataclasses
# cannot be unpickled: FrozenInstanceError, and staging spools its Findings with pickle);
# pipeline.py and service/process.py (the tests patch their functions, e.g. pipeline.prepare,
# and the crash suite their classes); the rest, too cold to matter (0.4 s of the 7.6 s
# profiled, all together).
HOT_MODULES = (
    "gateway/model.py",
    "gateway/parse/xml_file.py",
    "gateway/parse/xml_model.py",
    "gateway/validate/amounts.py",
    "gateway/validate/duty.py",
    "gateway/validate/rules.py",
    "gateway/validate/smelt_cast.py",
    "gateway/validate/staging.py",
    "gateway/licensing/decide.py",
    "gateway/licensing/issuer.py",
    "gateway/licensing/results.py",
    "gateway/outputs/ace.py",
    "gateway/outputs/ace_layouts.py",
    "gateway/outputs/ack_xml.py",
)

# mypycify's own setup script, run in DEST. group_name puts the shared library inside the
# package (gateway/_compiled__mypyc*.so); without it the library is a top-level module that
# only a sys.path holding DEST itself can import.
_SETUP = """\
import sys
from setuptools import setup
from mypyc.build import mypycify

setup(name="aim-gateway-compiled", ext_modules=mypycify(
    sys.argv[sys.argv.index("--modules") + 1:], opt_level="3", debug_level="1",
    group_name="gateway._compiled", target_dir="build/c"),
    script_args=sys.argv[1:sys.argv.index("--modules")])
"""

# mypyc type-checks what it compiles and what that imports; pyproject.toml's [tool.mypy] is
# not copied (setuptools would read its [project] table too), so its one override is here.
_MYPY_INI = """\
[mypy]
python_version = 3.11

[mypy-apscheduler.*]
ignore_missing_imports = True
"""


def can_build() -> str | None:
    """Why this machine cannot build the compiled gateway, or None if it can."""
    if shutil.which(os.environ.get("CC", "gcc")) is None and shutil.which("cc") is None:
        return "no C compiler (gcc/cc)"
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not include.exists():
        return f"no Python headers ({include})"
    try:
        import mypyc  # noqa: F401  (ships with mypy, a test dependency)
    except ImportError:
        return "mypyc is not installed (pip install mypy)"
    return None


def source_digest(root: Path = ROOT) -> str:
    """What a build depends on: every Python source of the package, the schemas, the list."""
    h = hashlib.sha256("\n".join(HOT_MODULES).encode())
    for path in sorted([*(root / "gateway").rglob("*.py"), *(root / "schemas").rglob("*")]):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def wrapper(dest: Path) -> Path:
    return dest / "aim-gateway"


def build(dest: Path = DEFAULT_DEST, *, python: str = sys.executable,
          log: bool = True) -> Path:
    """Build the compiled gateway into ``dest`` unless an up-to-date build is there; returns
    the ``aim-gateway`` wrapper that runs it."""
    digest = source_digest()
    stamp = dest / "source.sha256"
    if wrapper(dest).exists() and stamp.exists() and stamp.read_text() == digest:
        return wrapper(dest)
    why = can_build()
    if why:
        raise RuntimeError(f"cannot build the compiled gateway: {why}")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    shutil.copytree(ROOT / "gateway", dest / "gateway", ignore=ignore)
    shutil.copytree(ROOT / "schemas", dest / "schemas", ignore=ignore)
    (dest / "setup.py").write_text(_SETUP)
    (dest / "mypy.ini").write_text(_MYPY_INI)
    done = subprocess.run(
        [python, "setup.py", "build_ext", "--inplace", "--build-temp", "build/temp",
         "--modules", *HOT_MODULES],
        cwd=dest, capture_output=not log, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"mypyc build failed ({done.returncode}): "
                           f"{(done.stdout or '')[-2000:]}{(done.stderr or '')[-2000:]}")
    # C sources, objects and mypy's cache: megabytes nobody reads again.
    for scratch in ("build", ".mypy_cache"):
        shutil.rmtree(dest / scratch, ignore_errors=True)
    # The modules left in Python get their bytecode now, as an installed package has it (the
    # benchmark runs with PYTHONDONTWRITEBYTECODE=1; see measure.compile_sources).
    compileall.compile_dir(str(dest / "gateway"), quiet=1)
    gateway = Path(python).parent / "aim-gateway"
    script = wrapper(dest)
    script.write_text(f'#!/bin/sh\n# The compiled gateway (bench/compiled.py).\n'
                      f'PYTHONPATH="{dest}${{PYTHONPATH:+:$PYTHONPATH}}" '
                      f'exec "{gateway}" "$@"\n')
    script.chmod(0o755)
    stamp.write_text(digest)
    return script


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help="where the compiled copy goes (default .venv/compiled)")
    args = parser.parse_args(argv)
    try:
        script = build(args.dest.resolve())
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"compiled gateway: {script} (the same arguments as aim-gateway); "
          f"{len(HOT_MODULES)} modules compiled with mypyc")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# --- run_bench.py --compiled: the compiled gateway beside the pure one, in the same run ------


def same_result(pure: dict[str, Any], compiled: dict[str, Any], label: str) -> None:
    """The compiled run against the pure run of the same repetition: byte-identical ACE files,
    the same ledger applications (ref, status, license number, lines, digest) and findings,
    the same ack status and counts. Raises BenchFailure otherwise."""
    p, c = pure["verified"], compiled["verified"]
    problems = [f"{what}: pure {p[what]!r}, compiled {c[what]!r}"
                for what in ("ack", "ledger_licenses", "ledger_applications")
                if p[what] != c[what]]
    problems += [f"ACE {kind}: not byte-identical" for kind in sorted(set(p["ace"]) | set(c["ace"]))
                 if p["ace"].get(kind, {}).get("sha256") != c["ace"].get(kind, {}).get("sha256")]
    if problems:
        raise BenchFailure(f"{label}: the compiled gateway does not give the pure one's "
                           "result:\n  " + "\n  ".join(problems))


def figures(compiled_runs: list[dict[str, Any]], pure_runs: list[dict[str, Any]],
            base_runs: list[dict[str, Any]], applications: int) -> dict[str, Any]:
    best = min(r["wall_s"] for r in compiled_runs)
    base_best = min(r["wall_s"] for r in base_runs)
    return {
        "best_wall_s": best,
        "walls_s": [r["wall_s"] for r in compiled_runs],
        "cpus_s": [r["cpu_s"] for r in compiled_runs],
        "ratio": best / base_best,
        "cpu_ratio": (min(r["cpu_s"] for r in compiled_runs)
                      / min(r["cpu_s"] for r in base_runs)),
        "applications_per_s": applications / best,
        "pure_best_wall_s": min(r["wall_s"] for r in pure_runs),
        "pure_ratio": min(r["wall_s"] for r in pure_runs) / base_best,
        "speedup": min(r["wall_s"] for r in pure_runs) / best,
        # The same in CPU seconds (least of each): less disturbed by other load than wall time.
        "cpu_speedup": (min(r["cpu_s"] for r in pure_runs)
                        / min(r["cpu_s"] for r in compiled_runs)),
        "peak_rss_mb": max(r["rss_bytes"] for r in compiled_runs) / 1e6,
        "same_result_as_pure": True,
        "modules": list(HOT_MODULES),
    }


def table(entries: list[dict[str, Any]], ratio_target: float, apps_target: int) -> str:
    """The compiled gateway's rows: its ratio against the same baseline as the pure one."""
    rows = [e for e in entries if "compiled" in e]
    if not rows:
        return ""
    out = [f"| lines | lines/app | baseline s | pure s | compiled s | pure ratio "
           f"| compiled ratio | ≤ {ratio_target}× | compiled CPU ratio | pure apps/s "
           f"| compiled apps/s | ≥ {apps_target:,} (1 line/app) | pure / compiled "
           "| the same in CPU s | compiled MB | same result |",
           "|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|:---:|---:|---:|---:|:---:|"]
    for e in rows:
        c = e["compiled"]
        apps_mark = ("PASS" if c["applications_per_s"] >= apps_target else "FAIL") \
            if e["lines_per_app"] == 1 else "n/a"
        out.append(
            f"| {e['lines']:,} | {e['lines_per_app']} | {e['baseline']['best_wall_s']:.2f} "
            f"| {c['pure_best_wall_s']:.2f} | {c['best_wall_s']:.2f} | {c['pure_ratio']:.2f}× "
            f"| {c['ratio']:.2f}× | {'PASS' if c['ratio'] <= ratio_target else 'FAIL'} "
            f"| {c['cpu_ratio']:.2f}× | {e['gateway']['applications_per_s']:,.0f} "
            f"| {c['applications_per_s']:,.0f} | {apps_mark} | {c['speedup']:.2f}× "
            f"| {c['cpu_speedup']:.2f}× | {c['peak_rss_mb']:.0f} | yes (ACE bytes) |")
    return "\n".join(out) + "\n"
