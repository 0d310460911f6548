"""Benchmark ``aim-gateway run --once`` against lxml parse + XSD validation of the same file,
and the gateway on the same submission as CSV against the gateway on the XML.

    python bench/run_bench.py [--sizes 10000 100000] [--lines-per-app 20 [10 5 1]] [--repeat 3]
                              [--seed 1] [--csv | --no-csv] [--serve] [--keep] [--fresh]
                              [--compiled]   # also the mypyc build (bench/compiled.py)
    python bench/run_bench.py --record      # the regression test's ratio -> bench/recorded.json

For each size and each number of lines per application: generate a submission into bench/out/
(bench/generate.py), then, in separate processes so that peak memory is per process,
alternately run

- the baseline (bench/baseline.py): ``lxml.etree.parse`` of the file with a safe parser (no
  entities, no DTD, no network) and ``XMLSchema(schemas/license-submission-1.1.xsd)
  .validate(tree)`` (1.1: the schema the gateway validates every file against);
- the gateway: ``aim-gateway run --once --as-of 2026-12-01 --config <tmp config>``, the config
  having one local partner whose inbox holds only that file, and a fresh data and outbox folder
  for every repetition (so every run issues its licenses and writes its ACE file and ack).

The CSV case (default for sizes under 1,000,000; ``--csv`` for every size, ``--no-csv`` for
none) generates the same submission as canonical CSV (same seed: same applications, lines,
values, refs and errors) and, in the same repetitions, alternately runs the gateway on the XML
and on the CSV, each in a fresh run folder. Its figure is the CSV throughput over the XML
throughput (= XML best wall time / CSV best wall time).

The serve case (``--serve``, bench/serve_case.py) runs the same file through ``serve`` (timed
from its start until the ledger has the file DONE) and through ``run --once``, alternately;
its figure is serve best / run --once best.

Every gateway run is checked against the generator's ``.meta.json`` (bench/verify.py), and
each CSV run against the XML run of the same repetition. A run that does not check out stops
the benchmark (exit 1). Exit 2: a target missed; 0: every target met.

Wall times are taken around each process (interpreter start included, for both); the best of
the repeats counts, and so does the least CPU time (user + sys, ``os.wait4``), shown as a
second, less load-sensitive ratio. Peak RSS: the largest of the repeats. Figures go to stdout
as Markdown tables with the command line, and to bench/out/results.json (merged by size and
lines per application; ``--fresh`` starts it over).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compiled
import regression
from measure import (
    DEFAULT_MAX_FILE_BYTES,
    OUT,
    ROOT,
    BenchFailure,
    baseline_cmd,
    compile_sources,
    find_gateway,
    gateway_cmd,
    generate,
    mb,
    show_path,
)
from serve_case import run_once, run_serve, serve_files
from verify import compare_runs, run_baseline, run_gateway

# The targets (issue 15). The ratio and throughput targets apply from 100,000 lines up
# to (not including) 1,000,000; peak RSS at every size.
RATIO_TARGET = 2.5  # gateway best wall time / baseline best wall time, every lines/application
APPS_TARGET = 25_000  # applications per second of wall time, at 1 line per application
CSV_TARGET = 1.0  # CSV throughput / XML throughput of the gateway, same content
RSS_TARGET_MB = 100.0  # peak RSS of the gateway process, MB = 10^6 bytes
SERVE_TARGET = 1.10  # serve wall time (start to file DONE) / run --once wall time, same file


def csv_case(args: argparse.Namespace, lines: int) -> bool:
    """Whether this size gets the CSV case: ``--csv`` every size, ``--no-csv`` none, by
    default every size under 1,000,000 (where the target applies, and the cheap one)."""
    return bool(args.csv) if args.csv is not None else lines < 1_000_000


def target_sizes(lines: int) -> bool:
    return 100_000 <= lines < 1_000_000


def bench_size(args: argparse.Namespace, lines: int, per_app: int) -> dict[str, Any]:
    xml, meta = generate(args.python, lines, per_app, args.seed, args.as_of)
    with_csv = csv_case(args, lines)
    if with_csv:
        csv_file, csv_meta = generate(args.python, lines, per_app, args.seed, args.as_of, "csv")
        if (csv_meta["content_sha256"] != meta["content_sha256"]
                or csv_meta["expected"] != meta["expected"]):
            raise BenchFailure(f"{csv_file.name} does not hold the content of {xml.name}")
    repeat = args.repeat
    label = f"{lines:>9,} lines k{per_app:<2}"
    base_runs: list[dict[str, Any]] = []
    gw_runs: list[dict[str, Any]] = []
    csv_runs: list[dict[str, Any]] = []
    compiled_runs: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    for i in range(repeat):
        base = run_baseline(args.python, xml, meta)
        base_runs.append(base)
        print(f"  {label} run {i + 1}/{repeat}  baseline {base['wall_s']:7.2f} s "
              f"{base['cpu_s']:7.2f} s CPU {mb(base['rss_bytes']):7.1f} MB", file=sys.stderr)
        # XML then CSV on odd repetitions, CSV then XML on even ones: neither side always
        # runs right after the baseline (or always gets the warmer page cache).
        order = ("xml", "csv") if i % 2 == 0 else ("csv", "xml")
        done: dict[str, dict[str, Any]] = {}
        if args.compiled and i % 2 == 1:  # --compiled: before the pure run every other time
            compiled_runs.append(compiled_run(args, xml, meta, f"{lines}-k{per_app}", i, label))
        for fmt in order if with_csv else ("xml",):
            name = f"{lines}-k{per_app}{'-csv' if fmt == 'csv' else ''}-{i + 1}"
            run_dir = OUT / "runs" / name
            if fmt == "xml":
                gw = run_gateway(args.gateway, xml, meta, run_dir)
                gw_runs.append(gw)
            else:
                gw = run_gateway(args.gateway, csv_file, csv_meta, run_dir)
                csv_runs.append(gw)
            done[fmt] = gw
            print(f"  {label} run {i + 1}/{repeat}  gw {fmt.upper():3}  {gw['wall_s']:7.2f} s "
                  f"{gw['cpu_s']:7.2f} s CPU {mb(gw['rss_bytes']):7.1f} MB  verified",
                  file=sys.stderr)
            if not args.keep:
                shutil.rmtree(run_dir)
        if args.compiled and i % 2 == 0:
            compiled_runs.append(compiled_run(args, xml, meta, f"{lines}-k{per_app}", i, label))
        if args.compiled:
            compiled.same_result(done["xml"], compiled_runs[-1],
                                 f"{lines:,} lines k{per_app}, run {i + 1}")
        if with_csv:
            pairs.append(compare_runs(done["xml"], done["csv"],
                                      f"{lines:,} lines k{per_app}, run {i + 1}"))
    base_best = min(r["wall_s"] for r in base_runs)
    gw_best = min(r["wall_s"] for r in gw_runs)
    gw_rss = max(r["rss_bytes"] for r in gw_runs)
    ratio = gw_best / base_best
    cpu_ratio = min(r["cpu_s"] for r in gw_runs) / min(r["cpu_s"] for r in base_runs)
    pair_ratios = sorted(g["wall_s"] / b["wall_s"] for b, g in zip(base_runs, gw_runs,
                                                                   strict=True))
    applies = target_sizes(lines)
    apps = meta["expected"]["applications"]
    apps_per_s = apps / gw_best
    entry: dict[str, Any] = {
        "lines": lines,
        "lines_per_app": per_app,
        "applications": apps,
        "rejected_applications": meta["expected"]["rejected"],
        "file": str(xml.relative_to(ROOT)),
        "file_bytes": meta["bytes"],
        "repeat": repeat,
        "baseline": {
            "best_wall_s": base_best,
            "walls_s": [r["wall_s"] for r in base_runs],
            "cpus_s": [r["cpu_s"] for r in base_runs],
            "peak_rss_mb": mb(max(r["rss_bytes"] for r in base_runs)),
            "detail_best": min((r["detail"] for r in base_runs),
                               key=lambda d: d["parse_s"] + d["validate_s"]),
            "command": shlex.join(show_path(Path(a)) for a in baseline_cmd(args.python, xml)),
        },
        "gateway": {
            "best_wall_s": gw_best,
            "walls_s": [r["wall_s"] for r in gw_runs],
            "cpus_s": [r["cpu_s"] for r in gw_runs],
            "peak_rss_mb": mb(gw_rss),
            "peak_rss_mb_each": [mb(r["rss_bytes"]) for r in gw_runs],
            "lines_per_s": lines / gw_best,
            "applications_per_s": apps_per_s,
            "command": shlex.join(gateway_cmd(show_path(Path(args.gateway)),
                                              Path("<run>/config.toml"), args.as_of)),
            "max_file_bytes_raised": meta["bytes"] > DEFAULT_MAX_FILE_BYTES,
            "verified": gw_runs[-1]["verified"],
        },
        "ratio": ratio,
        "ratio_median_of_pairs": pair_ratios[len(pair_ratios) // 2],
        "cpu_ratio": cpu_ratio,
        "targets": {
            "ratio": {"limit": RATIO_TARGET, "value": ratio, "applies": applies,
                      "met": ratio <= RATIO_TARGET if applies else None},
            "peak_rss": {"limit_mb": RSS_TARGET_MB, "value": mb(gw_rss), "applies": True,
                         "met": mb(gw_rss) <= RSS_TARGET_MB},
        },
        "rss_method": gw_runs[0]["rss_method"],
    }
    if compiled_runs:  # figures only: the targets (and the exit code) stay the pure gateway's
        entry["compiled"] = compiled.figures(compiled_runs, gw_runs, base_runs, apps)
    if per_app == 1:
        entry["targets"]["applications_per_s"] = {
            "min": APPS_TARGET, "value": apps_per_s, "applies": applies,
            "met": apps_per_s >= APPS_TARGET if applies else None}
    if with_csv:
        csv_best = min(r["wall_s"] for r in csv_runs)
        csv_rss = max(r["rss_bytes"] for r in csv_runs)
        # Throughput ratio: (lines / CSV time) / (lines / XML time) = XML time / CSV time.
        csv_ratio = gw_best / csv_best
        csv_pairs = sorted(x["wall_s"] / c["wall_s"] for x, c in zip(gw_runs, csv_runs,
                                                                     strict=True))
        entry["csv"] = {
            "file": str(csv_file.relative_to(ROOT)),
            "file_bytes": csv_meta["bytes"],
            "content_sha256": csv_meta["content_sha256"],
            "best_wall_s": csv_best,
            "walls_s": [r["wall_s"] for r in csv_runs],
            "cpus_s": [r["cpu_s"] for r in csv_runs],
            "peak_rss_mb": mb(csv_rss),
            "peak_rss_mb_each": [mb(r["rss_bytes"]) for r in csv_runs],
            "lines_per_s": lines / csv_best,
            "xml_lines_per_s": lines / gw_best,
            "throughput_ratio": csv_ratio,
            "throughput_ratio_median_of_pairs": csv_pairs[len(csv_pairs) // 2],
            "command": entry["gateway"]["command"] + "  (inbox: the .csv file)",
            "max_file_bytes_raised": csv_meta["bytes"] > DEFAULT_MAX_FILE_BYTES,
            "verified": csv_runs[-1]["verified"],
            "same_result_as_xml": pairs[-1],
        }
        entry["targets"]["csv_throughput"] = {
            "min": CSV_TARGET, "value": csv_ratio, "applies": applies,
            "met": csv_ratio >= CSV_TARGET if applies else None}
        entry["targets"]["csv_peak_rss"] = {"limit_mb": RSS_TARGET_MB, "value": mb(csv_rss),
                                            "applies": True,
                                            "met": mb(csv_rss) <= RSS_TARGET_MB}
    if args.serve:
        entry["serve"] = serve_pair(args, lines, per_app, ["xml", "csv"] if with_csv else ["xml"])
        for fmt, figures in entry["serve"].items():
            entry["targets"][f"serve_{fmt}"] = {
                "limit": SERVE_TARGET, "value": figures["ratio"], "applies": applies,
                "met": figures["ratio"] <= SERVE_TARGET if applies else None}
    return entry


def compiled_run(args: argparse.Namespace, xml: Path, meta: dict[str, Any], name: str,
                 i: int, label: str) -> dict[str, Any]:
    """``--compiled``: one run of the compiled gateway (bench/compiled.py) on the XML."""
    run_dir = OUT / "runs" / f"{name}-compiled-{i + 1}"
    gw = run_gateway(args.compiled, xml, meta, run_dir)
    print(f"  {label} run {i + 1}/{args.repeat}  compiled {gw['wall_s']:7.2f} s "
          f"{gw['cpu_s']:7.2f} s CPU {mb(gw['rss_bytes']):7.1f} MB  verified", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(run_dir)
    return gw


def serve_pair(args: argparse.Namespace, lines: int,
               per_app: int, formats: list[str]) -> dict[str, dict[str, Any]]:
    """``--serve``: per format, the same file through ``serve`` and ``run --once``,
    alternately, best of ``--repeat`` each (bench/serve_case.py)."""
    files = serve_files(args.python, lines, per_app, args.seed, formats)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        fmt: {"serve": [], "once": []} for fmt in formats}
    for i in range(args.repeat):
        for fmt, (source, meta) in zip(formats, files, strict=True):
            for how in ("serve", "once") if i % 2 == 0 else ("once", "serve"):
                run_dir = OUT / "runs" / f"{lines}-k{per_app}-{fmt}-{how}-{i + 1}"
                run = (run_serve if how == "serve" else run_once)(args.gateway, source, meta,
                                                                  run_dir)
                runs[fmt][how].append(run)
                print(f"  {lines:>9,} lines k{per_app:<2} run {i + 1}/{args.repeat}  {how:5} "
                      f"{fmt.upper():3} {run['wall_s']:7.2f} s {run['cpu_s']:7.2f} s CPU  "
                      "verified", file=sys.stderr)
                if not args.keep:
                    shutil.rmtree(run_dir)
    figures = {}
    for fmt, (source, meta) in zip(formats, files, strict=True):
        serve_best = min(r["wall_s"] for r in runs[fmt]["serve"])
        once_best = min(r["wall_s"] for r in runs[fmt]["once"])
        figures[fmt] = {"file": str(source.relative_to(ROOT)), "as_of": meta["as_of"],
                        "serve_best_wall_s": serve_best, "once_best_wall_s": once_best,
                        "serve_walls_s": [r["wall_s"] for r in runs[fmt]["serve"]],
                        "once_walls_s": [r["wall_s"] for r in runs[fmt]["once"]],
                        "serve_cpus_s": [r["cpu_s"] for r in runs[fmt]["serve"]],
                        "once_cpus_s": [r["cpu_s"] for r in runs[fmt]["once"]],
                        "ratio": serve_best / once_best}
    return figures


# --- report --------------------------------------------------------------------------------


def _mark(target: dict[str, Any] | None) -> str:
    if target is None or not target["applies"]:
        return "n/a"
    return "PASS" if target["met"] else "FAIL"


# How each target reads: measured value, comparison, limit.
_TARGET_TEXT = {
    "ratio": ("gateway / baseline wall time", "{:.2f}×", "≤"),
    "peak_rss": ("gateway peak RSS", "{:.0f} MB", "≤"),
    "applications_per_s": ("applications/s", "{:,.0f}", "≥"),
    "csv_throughput": ("CSV / XML throughput", "{:.2f}", "≥"),
    "csv_peak_rss": ("gateway peak RSS on the CSV", "{:.0f} MB", "≤"),
    "serve_xml": ("serve / run --once wall time, XML", "{:.2f}×", "≤"),
    "serve_csv": ("serve / run --once wall time, CSV", "{:.2f}×", "≤"),
}


def _describe_target(name: str, target: dict[str, Any]) -> str:
    what, fmt, sign = _TARGET_TEXT[name]
    limit = target.get("limit", target.get("limit_mb", target.get("min")))
    return f"{what} {fmt.format(target['value'])} (target {sign} {fmt.format(limit)})"


def table(entries: list[dict[str, Any]]) -> str:
    head = ("| lines | lines/app | apps | file MB | baseline s | gateway s | ratio "
            f"| ≤ {RATIO_TARGET}× | CPU ratio | gateway apps/s | ≥ {APPS_TARGET:,} (1 line/app) "
            f"| gateway lines/s | baseline MB | gateway MB | peak ≤ {RSS_TARGET_MB:.0f} MB "
            "| verified |\n"
            "|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|:---:|---:|---:|---:|:---:|:---:|\n")
    rows = []
    for e in entries:
        b, g, t = e["baseline"], e["gateway"], e["targets"]
        rows.append(
            f"| {e['lines']:,} | {e['lines_per_app']} | {e['applications']:,} "
            f"| {mb(e['file_bytes']):.1f} | {b['best_wall_s']:.2f} | {g['best_wall_s']:.2f} "
            f"| {e['ratio']:.2f}× | {_mark(t['ratio'])} | {e['cpu_ratio']:.2f}× "
            f"| {g['applications_per_s']:,.0f} | {_mark(t.get('applications_per_s'))} "
            f"| {g['lines_per_s']:,.0f} | {b['peak_rss_mb']:.0f} | {g['peak_rss_mb']:.0f} "
            f"| {_mark(t['peak_rss'])} | yes |")
    return head + "\n".join(rows) + "\n"


def csv_table(entries: list[dict[str, Any]]) -> str:
    """The CSV case: the gateway on the same submission as CSV and as XML, same run."""
    head = ("| lines | lines/app | XML MB | CSV MB | gateway XML s | gateway CSV s "
            f"| XML lines/s | CSV lines/s | CSV/XML throughput | ≥ {CSV_TARGET:.2f} "
            f"| XML peak MB | CSV peak MB | CSV peak ≤ {RSS_TARGET_MB:.0f} MB | same result |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|:---:|:---:|\n")
    rows = []
    for e in entries:
        if "csv" not in e:
            continue
        g, c, t = e["gateway"], e["csv"], e["targets"]
        same = c["same_result_as_xml"]
        rows.append(
            f"| {e['lines']:,} | {e['lines_per_app']} | {mb(e['file_bytes']):.1f} "
            f"| {mb(c['file_bytes']):.1f} | {g['best_wall_s']:.2f} | {c['best_wall_s']:.2f} "
            f"| {g['lines_per_s']:,.0f} | {c['lines_per_s']:,.0f} | {c['throughput_ratio']:.2f} "
            f"| {_mark(t['csv_throughput'])} | {g['peak_rss_mb']:.0f} | {c['peak_rss_mb']:.0f} "
            f"| {_mark(t['csv_peak_rss'])} "
            f"| yes{' (ACE files identical)' if same['ace_files_identical'] else ''} |")
    return head + "\n".join(rows) + "\n" if rows else ""


def key(entry: dict[str, Any]) -> str:
    return f"{entry['lines']}-k{entry['lines_per_app']}"


def write_results(entries: list[dict[str, Any]], fresh: bool) -> Path:
    results_path = OUT / "results.json"
    merged: dict[str, dict[str, Any]] = {}
    if results_path.exists() and not fresh:
        try:
            merged = {key(e): e for e in json.loads(results_path.read_text())["sizes"]}
        except (ValueError, KeyError, TypeError):
            merged = {}
    merged.update({key(e): e for e in entries})
    document = {"targets": {"ratio_max": RATIO_TARGET, "applications_per_s_min": APPS_TARGET,
                            "applications_per_s_applies_to": "1 line per application",
                            "ratio_applies_to": "100,000 lines (every size from 100,000 up "
                            "to but not including 1,000,000), every lines per application",
                            "peak_rss_max_mb": RSS_TARGET_MB, "mb": "10^6 bytes",
                            "csv_throughput_min": CSV_TARGET,
                            "csv_throughput": "gateway lines/s on the CSV / lines/s on the XML "
                            "of the same submission, same run; applies where ratio_max does"},
                "sizes": sorted(merged.values(),
                                key=lambda e: (e["lines"], -e.get("lines_per_app", 20)))}
    results_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return results_path


def report(args: argparse.Namespace, entries: list[dict[str, Any]], env: dict[str, Any],
           started: str, command: str, results_path: Path) -> int:
    print(f"\nAIM gateway benchmark, {started} (python {env['python']}, lxml {env['lxml']}, "
          f"libxml2 {env['libxml2']}, {env['cpus']} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in env['load_average'])})\n")
    print(table(entries))
    print(f"Best of {args.repeat} wall times (interpreter start included for both); ratio = "
          "gateway best / baseline best (the target); CPU ratio = least gateway CPU s / least "
          "baseline CPU s (user + sys: less sensitive to load); apps/s and lines/s per wall "
          f"second; peak RSS = largest of the repeats ({entries[0]['rss_method']}), "
          "MB = 10^6 bytes.")
    compiled_part = compiled.table(entries, RATIO_TARGET, APPS_TARGET)
    if compiled_part:
        print("\nCompiled gateway (--compiled, bench/compiled.py: the hot modules compiled "
              "with mypyc), alternating with the pure one against the same baselines; every "
              "compiled run gives the pure run's ACE bytes, ledger and ack counts:\n")
        print(compiled_part)
        print(f"Compiled:  {show_path(Path(args.compiled))} (the same arguments)")
    csv_part = csv_table(entries)
    if csv_part:
        print("\nCSV case: the same submission as canonical CSV (same seed, same content "
              "digest), gateway on the XML and on the CSV alternately in the same run:\n")
        print(csv_part)
        print("CSV/XML throughput = (lines / CSV best) / (lines / XML best), target ≥ "
              f"{CSV_TARGET:.2f} at 100,000 lines; same result = same ack status and counts, "
              "same licenses in the same ACE files, same application outcomes and finding "
              "codes in the ledger, checked on every repetition.")
    for e in entries:
        for fmt, f in e.get("serve", {}).items():
            print(f"serve case, {e['lines']:,} lines, {e['lines_per_app']} line(s)/app, "
                  f"{fmt.upper()} (made for the gateway's today, {f['as_of']}): serve "
                  f"{f['serve_best_wall_s']:.2f} s (start to file DONE) / run --once "
                  f"{f['once_best_wall_s']:.2f} s = {f['ratio']:.2f}× (target ≤ "
                  f"{SERVE_TARGET:.2f}×), best of {args.repeat} each, alternating")
    for e in entries:
        big = [f"{mb(e['file_bytes']):.0f} MB XML"] if e["gateway"]["max_file_bytes_raised"] else []
        if e.get("csv", {}).get("max_file_bytes_raised"):
            big.append(f"{mb(e['csv']['file_bytes']):.0f} MB CSV")
        if big:
            print(f"Note: the {e['lines']:,}-line file ({', '.join(big)}) is above "
                  "the gateway's default max_file_bytes (200 MB, F003): the benchmark config "
                  "raises the limit for it.")
    last = entries[-1]
    print(f"\nReproduce: {command}")
    print(f"Baseline:  {last['baseline']['command']}")
    print(f"Gateway:   {last['gateway']['command']} "
          "(run folder: config.toml + inbox/ holding only the file + fresh data/ and outbox/)")
    csv_entries = [e for e in entries if "csv" in e]
    if csv_entries:
        c = csv_entries[-1]
        print(f"CSV case:  the same command, inbox/ holding only {c['csv']['file']}"
              f" (make it: {show_path(Path(args.python))} bench/generate.py --lines "
              f"{c['lines']} --lines-per-app {c['lines_per_app']} --seed {args.seed} "
              f"--as-of {args.as_of} --format csv --out {c['csv']['file']})")
    print(f"Results:   {results_path.relative_to(ROOT)}\n")
    failed = []
    for e in entries:
        for name, t in e["targets"].items():
            print(f"  {_mark(t):4}  {e['lines']:,} lines, {e['lines_per_app']} line(s)/app: "
                  f"{_describe_target(name, t)}")
            if t["met"] is False:
                failed.append(f"{e['lines']:,} lines k{e['lines_per_app']}: {name}")
    print("\nTargets: " + ("all met" if not failed else "NOT met for " + ", ".join(failed)))
    return 0 if not failed else 2


def record(args: argparse.Namespace) -> int:
    """``--record``: measure the regression test's ratio and write bench/recorded.json."""
    results = []
    for n in range(regression.RECORD_ROUNDS):
        print(f"measurement {n + 1}/{regression.RECORD_ROUNDS}:", file=sys.stderr)
        results.append(regression.measure_ratio(
            args.python, args.gateway, OUT / "regression",
            log=lambda line: print(line, file=sys.stderr)))
        print(regression.describe(results[-1]))
    document = regression.record(results, args.python)
    shutil.rmtree(OUT / "regression" / "run", ignore_errors=True)
    print(f"Median of {regression.RECORD_ROUNDS}: {document['ratio']:.3f}x")
    print(f"Recorded in {regression.RECORDED.relative_to(ROOT)} ({document['recorded_at']}, "
          f"load {' '.join(f'{x:.2f}' for x in document['machine']['load_average'])}); "
          f"tests/test_bench_regression.py fails above {document['ratio']:.3f} × "
          f"{regression.TOLERANCE} = {document['ratio'] * regression.TOLERANCE:.3f}.")
    print(f"Reproduce: {regression.command_line(args.python)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="product lines per file (default 10000 100000)")
    parser.add_argument("--lines-per-app", type=int, nargs="+", default=[20],
                        help="product lines per application, one file (and one baseline) "
                        "each (default 20; e.g. 20 10 5 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per file (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--as-of", default="2026-12-01", help="processing date of every run")
    parser.add_argument("--csv", action=argparse.BooleanOptionalAction, default=None,
                        help="the CSV case: gateway on the same submission as CSV vs XML "
                        "(default: sizes under 1,000,000; --csv every size, --no-csv none)")
    parser.add_argument("--keep", action="store_true",
                        help="keep each run folder (bench/out/runs/<size>-k<K>[-csv]-<n>/)")
    parser.add_argument("--fresh", action="store_true",
                        help="overwrite bench/out/results.json instead of merging")
    parser.add_argument("--serve", action="store_true",
                        help="also the same file through `serve` (start to file DONE) against "
                        "`run --once`, alternately (bench/serve_case.py)")
    parser.add_argument("--record", action="store_true",
                        help="measure the regression test's instruction ratio "
                        "(bench/regression.py) and write it to bench/recorded.json; nothing else")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the baseline and the generator")
    parser.add_argument("--gateway", default=None,
                        help="aim-gateway executable (default: next to --python, else PATH)")
    parser.add_argument("--compiled", action="store_true",
                        help="also the compiled gateway (bench/compiled.py, built or reused in "
                        ".venv/compiled), alternating with the pure one; figures only")
    args = parser.parse_args(argv)
    args.gateway = (os.path.abspath(args.gateway) if args.gateway and os.sep in args.gateway
                    else args.gateway or find_gateway(args.python))
    if args.gateway is None:
        parser.error("aim-gateway not found: pip install -e . or pass --gateway")
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        if args.record:
            return record(args)
        command = shlex.join([show_path(Path(args.python)), "bench/run_bench.py",
                              *(argv if argv is not None else sys.argv[1:])])
        env = regression.machine(args.python)
        started = datetime.now(UTC).isoformat(timespec="seconds")
        entries = []
        compile_sources()
        if args.compiled:
            try:
                args.compiled = str(compiled.build(python=args.python, log=False))
            except RuntimeError as error:
                raise BenchFailure(str(error)) from error
        for lines in args.sizes:
            for per_app in args.lines_per_app:
                print(f"{lines:,} lines, {per_app} line(s) per application:", file=sys.stderr)
                entries.append(bench_size(args, lines, per_app))
    except BenchFailure as failure:
        print(f"BENCHMARK FAILED: {failure}", file=sys.stderr)
        return 1
    for e in entries:
        e.update({"measured_at": started, "command": command, "environment": env})
    runs = OUT / "runs"
    if runs.is_dir() and not any(runs.iterdir()):
        runs.rmdir()
    return report(args, entries, env, started, command, write_results(entries, args.fresh))


if __name__ == "__main__":
    sys.exit(main())
