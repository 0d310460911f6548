"""Benchmark ``aim-gateway run --once`` against lxml parse + XSD validation of the same file,
and the gateway on the same submission as CSV against the gateway on the XML.

    python bench/run_bench.py [--sizes 10000 100000] [--repeat 3] [--lines-per-app 20]
                              [--seed 1] [--csv | --no-csv] [--keep]

For each size: generate a submission into bench/out/ (bench/generate.py), then, in separate
processes so that peak memory is per process, alternately run

- the baseline (bench/baseline.py): ``lxml.etree.parse`` of the file with a safe parser (no
  entities, no DTD, no network) and
  ``XMLSchema(schemas/license-submission-1.0.xsd).validate(tree)``;
- the gateway: ``aim-gateway run --once --as-of 2026-12-01 --config <tmp config>``, the config
  having one local partner whose inbox holds only that file, and a fresh data and outbox folder
  for every repetition (so every run issues its licenses and writes its ACE file and ack).

The CSV case (default for sizes under 1,000,000; ``--csv`` for every size, ``--no-csv`` for
none) generates the same submission as canonical CSV (same seed: same applications, lines,
values, refs and errors) and, in the same repetitions, alternately runs the gateway on the XML
and on the CSV, each in a fresh run folder. Its figure is the CSV throughput over the XML
throughput (= XML best wall time / CSV best wall time), target >= 0.80 at 100,000 lines.

Every gateway run is then checked against the generator's ``.meta.json``: exit code, one file
taken, ack status and counts (the XML ack's head, or the CSV ack's file row and its rows), the
ledger's file row, licenses and application statuses, the ACE files and their record counts;
and each CSV run against the XML run of the same repetition: same status and counts, same
licenses (numbers included) in the same ACE files, the same application outcomes in the
ledger. A run that does not check out stops the benchmark (exit 1).

Wall times are taken around each process (interpreter start included, for both); the best of
the repeats counts. Peak RSS comes from ``/usr/bin/time -v`` (GNU time) when present, else from
``os.wait4``; the largest of the repeats counts. Figures go to stdout as a Markdown table with
the command line, and to bench/out/results.json (merged by size, so separate runs for separate
sizes accumulate there; ``--fresh`` starts it over).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
XSD = ROOT / "schemas" / "license-submission-1.0.xsd"
GNU_TIME = Path("/usr/bin/time")
PARTNER = "bench"
FILER_CODE = "BNC"

RATIO_TARGET = 4.0  # gateway wall time / baseline wall time, at 100,000 lines
CSV_TARGET = 0.80  # CSV throughput / XML throughput of the gateway, same content, at 100,000 lines
RSS_TARGET_MB = 300.0  # peak RSS of the gateway process, MB = 10^6 bytes, every size
DEFAULT_MAX_FILE_BYTES = 209_715_200  # the gateway's default F003 limit (config.toml)

sys.path.insert(0, str(BENCH))
from generate import generator_fingerprint  # noqa: E402
from project import ProjectConfig  # noqa: E402

# Columns of the CSV acknowledgment as guide section 7 names them (the spec, not the code).
CSV_ACK_COLUMNS = ["row", "application_ref", "line_no", "status", "license_number",
                   "valid_from", "valid_through", "codes", "messages"]


class BenchFailure(Exception):
    """A measurement that did not do what it claims: the benchmark stops."""


# --- running one measured process ---------------------------------------------------------


def measure(cmd: list[str], *, cwd: Path | None = None) -> dict[str, object]:
    """Run ``cmd``; return wall seconds, peak RSS (bytes), exit code, stdout and stderr."""
    with tempfile.TemporaryDirectory(prefix="aimgw-bench-") as tmp:
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        time_path = Path(tmp) / "time"
        use_gnu_time = GNU_TIME.exists()
        full = ([str(GNU_TIME), "-v", "-o", str(time_path), *cmd] if use_gnu_time else cmd)
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(full, cwd=cwd, stdout=out, stderr=err)
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
        return {"wall_s": wall, "rss_bytes": rss_kb * 1024, "rss_method": method,
                "returncode": proc.returncode, "stdout": out_path.read_text(errors="replace"),
                "stderr": err_path.read_text(errors="replace")}


# --- the two measured commands -------------------------------------------------------------


def baseline_cmd(python: str, xml: Path) -> list[str]:
    return [python, str(BENCH / "baseline.py"), str(xml), str(XSD)]


def run_baseline(python: str, xml: Path, meta: dict) -> dict[str, object]:
    result = measure(baseline_cmd(python, xml))
    if result["returncode"] != 0:
        raise BenchFailure(f"baseline failed ({result['returncode']}): {result['stderr']}")
    detail = json.loads(str(result["stdout"]).strip().splitlines()[-1])
    expected_children = 1 + meta["expected"]["applications"]  # Header + applications
    if detail["children"] != expected_children or not detail["root"].endswith("}LicenseSubmission"):
        raise BenchFailure(f"baseline did not read the whole file: {detail}")
    result["detail"] = detail
    return result


def write_config(run_dir: Path, file_bytes: int) -> Path:
    """A config with one local partner whose inbox is run_dir/inbox."""
    # The shipped limit (200 MB) rejects a realistic 1,000,000-line file with F003; the
    # benchmark measures processing, so its own config raises the limit when the file needs it.
    max_bytes = max(DEFAULT_MAX_FILE_BYTES, 2 * file_bytes)
    # Likewise the daily license quota (20,000, A109): a file of 1-line applications past it
    # would measure rejections, not licensing.
    return (ProjectConfig(run_dir).set("gateway", max_file_bytes=max_bytes)
            .partner(PARTNER, name="Benchmark partner", inbox="inbox", disposition="keep",
                     filer_code=FILER_CODE, filer=True,
                     max_licenses_per_day=100_000_000).write())


def gateway_cmd(gateway: str, config: Path, as_of: str) -> list[str]:
    return [gateway, "--config", str(config), "run", "--once", "--as-of", as_of]


def run_gateway(gateway: str, source: Path, meta: dict, run_dir: Path) -> dict[str, object]:
    """One measured gateway run on ``source`` (XML or CSV, as ``meta['format']`` says)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    inbox = run_dir / "inbox"
    inbox.mkdir(parents=True)
    try:
        os.link(source, inbox / source.name)  # same bytes, no copy; "keep" leaves it untouched
    except OSError:
        shutil.copyfile(source, inbox / source.name)
    config = write_config(run_dir, source.stat().st_size)
    result = measure(gateway_cmd(gateway, config, meta["as_of"]), cwd=run_dir)
    result["verified"] = verify_gateway(result, run_dir, source.name, meta)
    result["max_file_bytes_raised"] = source.stat().st_size > DEFAULT_MAX_FILE_BYTES
    return result


# --- checking that the gateway really did the work -----------------------------------------


def _ack_head(path: Path) -> dict[str, str]:
    """Status and counts from the head of an XML ack (they come before any Application)."""
    head = path.open("rb").read(64 * 1024).decode("utf-8", errors="replace")
    values = {}
    for tag in ("SubmissionId", "Status", "Applications", "Licensed", "NotRequired", "Rejected"):
        match = re.search(rf"<{tag}>([^<]*)</{tag}>", head)
        values[tag] = match.group(1) if match else ""
    return values


_CSV_COUNTS = re.compile(r"(\d+) application\(s\): (\d+) licensed, (\d+) not required, "
                         r"(\d+) rejected")


def _ack_csv(path: Path, problems: list[str]) -> dict[str, str]:
    """Status and counts of a CSV ack (its first file-level row, ``row`` empty), checked
    against its other rows: one per input row, every row of an application with one status."""
    values = dict.fromkeys(("Status", "Applications", "Licensed", "NotRequired", "Rejected"), "")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        header = next(reader, None)
        file_row = next(reader, None)
        if header != CSV_ACK_COLUMNS or file_row is None or len(file_row) != len(header) \
                or file_row[0] != "":
            problems.append(f"CSV ack header {header!r} / file row {file_row!r}")
            return values
        values["Status"] = file_row[3]
        match = _CSV_COUNTS.search(file_row[8])
        if match:
            for tag, value in zip(("Applications", "Licensed", "NotRequired", "Rejected"),
                                  match.groups(), strict=True):
                values[tag] = value
        else:
            problems.append(f"CSV ack file row has no counts: {file_row!r}")
        status_of: dict[str, str] = {}
        rows = 0
        for row in reader:
            if row[0] == "":
                continue  # another file-level finding
            rows += 1
            ref, status = row[1], row[3]
            if status_of.setdefault(ref, status) != status:
                problems.append(f"CSV ack: rows of {ref} disagree on the status")
    by_status = Counter(status_of.values())
    values["Rows"] = str(rows)
    values["RowsByApplication"] = json.dumps(dict(sorted(by_status.items())))
    for tag, status in (("Licensed", "LICENSED"), ("NotRequired", "NOT_REQUIRED"),
                        ("Rejected", "REJECTED")):
        if values[tag] != str(by_status.get(status, 0)):
            problems.append(f"CSV ack: file row says {tag} {values[tag]}, its rows "
                            f"{by_status.get(status, 0)}")
    return values


def verify_gateway(result: dict, run_dir: Path, name: str, meta: dict) -> dict[str, object]:
    exp = meta["expected"]
    fmt = meta.get("format", "xml")
    problems: list[str] = []
    if result["returncode"] != 0:
        problems.append(f"exit code {result['returncode']}: {result['stderr'][-2000:]}")
    if f"{PARTNER}: 1 file(s) taken" not in result["stdout"]:
        problems.append(f"stdout does not say one file was taken: {result['stdout']!r}")
    # CSV input gets a CSV acknowledgment, anything else an XML one (guide section 7).
    ack = run_dir / "outbox" / PARTNER / f"{name}.ack.{fmt}"
    ack_values: dict[str, str] = {}
    if not ack.is_file():
        problems.append(f"no acknowledgment {ack}")
    else:
        wanted = {"Status": exp["status"],
                  "Applications": str(exp["applications"]), "Licensed": str(exp["licensed"]),
                  "NotRequired": str(exp["not_required"]), "Rejected": str(exp["rejected"])}
        if fmt == "csv":
            ack_values = _ack_csv(ack, problems)
            wanted["Rows"] = str(meta["lines"])  # one ack row per input row
        else:
            ack_values = _ack_head(ack)
            wanted["SubmissionId"] = meta["submission_id"]
        for tag, value in wanted.items():
            if ack_values.get(tag) != value:
                problems.append(f"ack {tag} is {ack_values.get(tag)!r}, expected {value!r}")
        if ack_values.get("Status") not in ("ACCEPTED", "PARTIAL"):
            problems.append(f"ack status {ack_values.get('Status')!r}")
    ledger_path = run_dir / "data" / "ledger.sqlite"
    committed = None
    outcomes: dict[str, object] = {}
    if ledger_path.is_file():
        db = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
        try:
            committed = db.execute("SELECT count(*) FROM licenses").fetchone()[0]
            states = db.execute("SELECT state, status, format, submission_id FROM files"
                                ).fetchall()
            by_status = dict(db.execute("SELECT status, count(*) FROM applications "
                                        "GROUP BY status ORDER BY status").fetchall())
            digest = hashlib.sha256()
            for row in db.execute("SELECT seq, ref, status, license_number, lines, digest "
                                  "FROM applications ORDER BY seq"):
                digest.update(repr(row).encode())
            codes = dict(db.execute("SELECT code, count(*) FROM findings GROUP BY code "
                                    "ORDER BY code").fetchall())
        finally:
            db.close()
        if committed != exp["licensed"]:
            problems.append(f"{committed} licenses in the ledger, expected {exp['licensed']}")
        if states != [("DONE", exp["status"], fmt, meta["submission_id"])]:
            problems.append(f"ledger files rows {states}, expected one DONE {exp['status']} "
                            f"{fmt} {meta['submission_id']}")
        want_status = {k: v for k, v in (("LICENSED", exp["licensed"]),
                                         ("NOT_REQUIRED", exp["not_required"]),
                                         ("REJECTED", exp["rejected"])) if v}
        if by_status != want_status:
            problems.append(f"ledger applications {by_status}, expected {want_status}")
        # Seq, ref, status, license number, line count and content digest of every
        # application: equal for the XML and the CSV of one submission.
        outcomes = {"by_status": by_status, "sha256": digest.hexdigest(), "finding_codes": codes}
    else:
        problems.append("no ledger")
    ace = {}
    for kind in ("AE", "FT"):
        want_licenses = exp[f"{kind.lower()}_licenses"]
        want_records = exp[f"{kind.lower()}_records"]
        files = sorted((run_dir / "outbox" / "ace").glob(f"{kind}-*.txt"))
        if not want_licenses:
            if files:
                problems.append(f"unexpected {kind} file {files}")
            continue
        if len(files) != 1:
            problems.append(f"expected one {kind} ACE file, found {files}")
            continue
        manifest = json.loads(files[0].with_name(files[0].name + ".manifest.json").read_text())
        size = files[0].stat().st_size
        ace[kind] = {"file": files[0].name, "bytes": size, "records": manifest["record_count"],
                     "licenses": len(manifest["licenses"]),
                     "licenses_sha256": hashlib.sha256(
                         "\n".join(manifest["licenses"]).encode()).hexdigest(),
                     "sha256": manifest["sha256"]}
        if manifest["record_count"] != want_records or size != want_records * 81:
            problems.append(f"{kind}: {manifest['record_count']} records, {size} bytes; "
                            f"expected {want_records} records of 81 bytes")
        if len(manifest["licenses"]) != want_licenses:
            problems.append(f"{kind}: {len(manifest['licenses'])} licenses, "
                            f"expected {want_licenses}")
    if problems:
        raise BenchFailure(f"gateway run ({fmt}) did not check out:\n  "
                           + "\n  ".join(problems) + f"\n  (run folder kept: {run_dir})")
    return {"ack": ack_values, "ledger_licenses": committed, "ledger_applications": outcomes,
            "ace": ace}


def compare_runs(xml_run: dict, csv_run: dict, label: str) -> dict[str, object]:
    """The CSV run against the XML run of the same content: same answer, same licenses."""
    x, c = xml_run["verified"], csv_run["verified"]
    problems = []
    for tag in ("Status", "Applications", "Licensed", "NotRequired", "Rejected"):
        if x["ack"].get(tag) != c["ack"].get(tag):
            problems.append(f"ack {tag}: XML {x['ack'].get(tag)!r}, CSV {c['ack'].get(tag)!r}")
    if x["ledger_licenses"] != c["ledger_licenses"]:
        problems.append(f"ledger licenses: XML {x['ledger_licenses']}, "
                        f"CSV {c['ledger_licenses']}")
    xo, co = x["ledger_applications"], c["ledger_applications"]
    if xo["by_status"] != co["by_status"]:
        problems.append(f"applications: XML {xo['by_status']}, CSV {co['by_status']}")
    if xo["sha256"] != co["sha256"]:
        problems.append("the ledger's applications (ref, status, license number, lines, "
                        "digest) differ between XML and CSV")
    if xo["finding_codes"] != co["finding_codes"]:
        problems.append(f"findings: XML {xo['finding_codes']}, CSV {co['finding_codes']}")
    for kind in sorted(set(x["ace"]) | set(c["ace"])):
        xa, ca = x["ace"].get(kind, {}), c["ace"].get(kind, {})
        for key in ("licenses", "licenses_sha256", "records"):
            if xa.get(key) != ca.get(key):
                problems.append(f"{kind} {key}: XML {xa.get(key)}, CSV {ca.get(key)}")
    if problems:
        raise BenchFailure(f"{label}: the CSV run does not give the XML run's result:\n  "
                           + "\n  ".join(problems))
    return {"same_status_and_counts": True, "same_licenses": True,
            "same_application_outcomes": True, "same_finding_codes": True,
            # Informational: the ACE files of both runs byte for byte (no timestamps in them).
            "ace_files_identical": all(x["ace"][k]["sha256"] == c["ace"][k]["sha256"]
                                       for k in x["ace"])}


# --- one size ------------------------------------------------------------------------------


def mb(n: float) -> float:
    return n / 1e6


def generate(python: str, lines: int, per_app: int, seed: int, as_of: str,
             fmt: str = "xml") -> tuple[Path, dict]:
    path = OUT / f"bench-{lines}-k{per_app}-s{seed}.{fmt}"
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


def csv_case(args: argparse.Namespace, lines: int) -> bool:
    """Whether this size gets the CSV case: ``--csv`` every size, ``--no-csv`` none, by
    default every size under 1,000,000 (where the target applies, and the cheap one)."""
    return args.csv if args.csv is not None else lines < 1_000_000


def bench_size(args: argparse.Namespace, lines: int) -> dict[str, object]:
    xml, meta = generate(args.python, lines, args.lines_per_app, args.seed, args.as_of)
    with_csv = csv_case(args, lines)
    if with_csv:
        csv_file, csv_meta = generate(args.python, lines, args.lines_per_app, args.seed,
                                      args.as_of, "csv")
        if (csv_meta["content_sha256"] != meta["content_sha256"]
                or csv_meta["expected"] != meta["expected"]):
            raise BenchFailure(f"{csv_file.name} does not hold the content of {xml.name}")
    repeat = args.repeat
    base_runs: list[dict] = []
    gw_runs: list[dict] = []
    csv_runs: list[dict] = []
    pairs: list[dict] = []
    for i in range(repeat):
        base = run_baseline(args.python, xml, meta)
        base_runs.append(base)
        print(f"  {lines:>9,} lines  run {i + 1}/{repeat}  baseline {base['wall_s']:7.2f} s "
              f"{mb(base['rss_bytes']):7.1f} MB", file=sys.stderr)
        # XML then CSV on odd repetitions, CSV then XML on even ones: neither side always
        # runs right after the baseline (or always gets the warmer page cache).
        order = ("xml", "csv") if i % 2 == 0 else ("csv", "xml")
        done: dict[str, dict] = {}
        for fmt in order if with_csv else ("xml",):
            if fmt == "xml":
                run_dir = OUT / "runs" / f"{lines}-{i + 1}"
                gw = run_gateway(args.gateway, xml, meta, run_dir)
                gw_runs.append(gw)
                label = "gateway "
            else:
                run_dir = OUT / "runs" / f"{lines}-csv-{i + 1}"
                gw = run_gateway(args.gateway, csv_file, csv_meta, run_dir)
                csv_runs.append(gw)
                label = "gw CSV  "
            done[fmt] = gw
            print(f"  {lines:>9,} lines  run {i + 1}/{repeat}  {label} {gw['wall_s']:7.2f} s "
                  f"{mb(gw['rss_bytes']):7.1f} MB  verified", file=sys.stderr)
            if not args.keep:
                shutil.rmtree(run_dir)
        if with_csv:
            pairs.append(compare_runs(done["xml"], done["csv"], f"{lines:,} lines, run {i + 1}"))
    base_best = min(r["wall_s"] for r in base_runs)
    gw_best = min(r["wall_s"] for r in gw_runs)
    gw_rss = max(r["rss_bytes"] for r in gw_runs)
    ratio = gw_best / base_best
    pair_ratios = sorted(g["wall_s"] / b["wall_s"] for b, g in zip(base_runs, gw_runs,
                                                                   strict=True))
    ratio_applies = 100_000 <= lines < 1_000_000
    entry = {
        "lines": lines,
        "lines_per_app": args.lines_per_app,
        "applications": meta["expected"]["applications"],
        "rejected_applications": meta["expected"]["rejected"],
        "file": str(xml.relative_to(ROOT)),
        "file_bytes": meta["bytes"],
        "repeat": repeat,
        "baseline": {
            "best_wall_s": base_best,
            "walls_s": [r["wall_s"] for r in base_runs],
            "peak_rss_mb": mb(max(r["rss_bytes"] for r in base_runs)),
            "detail_best": min((r["detail"] for r in base_runs),
                               key=lambda d: d["parse_s"] + d["validate_s"]),
            "command": shlex.join(_show_path(Path(a)) for a in baseline_cmd(args.python, xml)),
        },
        "gateway": {
            "best_wall_s": gw_best,
            "walls_s": [r["wall_s"] for r in gw_runs],
            "peak_rss_mb": mb(gw_rss),
            "peak_rss_mb_each": [mb(r["rss_bytes"]) for r in gw_runs],
            "lines_per_s": lines / gw_best,
            "command": shlex.join(gateway_cmd(_show_path(Path(args.gateway)),
                                              Path("<run>/config.toml"), args.as_of)),
            "max_file_bytes_raised": gw_runs[0]["max_file_bytes_raised"],
            "verified": gw_runs[-1]["verified"],
        },
        "ratio": ratio,
        "ratio_median_of_pairs": pair_ratios[len(pair_ratios) // 2],
        "targets": {
            "ratio": {"limit": RATIO_TARGET, "applies": ratio_applies,
                      "met": ratio <= RATIO_TARGET if ratio_applies else None},
            "peak_rss": {"limit_mb": RSS_TARGET_MB, "applies": True,
                         "met": mb(gw_rss) < RSS_TARGET_MB},
        },
        "rss_method": gw_runs[0]["rss_method"],
    }
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
            "peak_rss_mb": mb(csv_rss),
            "peak_rss_mb_each": [mb(r["rss_bytes"]) for r in csv_runs],
            "lines_per_s": lines / csv_best,
            "xml_lines_per_s": lines / gw_best,
            "throughput_ratio": csv_ratio,
            "throughput_ratio_median_of_pairs": csv_pairs[len(csv_pairs) // 2],
            "command": entry["gateway"]["command"] + "  (inbox: the .csv file)",
            "max_file_bytes_raised": csv_runs[0]["max_file_bytes_raised"],
            "verified": csv_runs[-1]["verified"],
            "same_result_as_xml": pairs[-1],
        }
        entry["targets"]["csv_throughput"] = {
            "min": CSV_TARGET, "applies": ratio_applies,
            "met": csv_ratio >= CSV_TARGET if ratio_applies else None}
        entry["targets"]["csv_peak_rss"] = {"limit_mb": RSS_TARGET_MB, "applies": True,
                                            "met": mb(csv_rss) < RSS_TARGET_MB}
    return entry


def _show_path(path: Path) -> str:
    """``path`` relative to the project when it lies inside it (commands run from there)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --- report --------------------------------------------------------------------------------


def _mark(target: dict) -> str:
    if not target["applies"]:
        return "n/a"
    return "PASS" if target["met"] else "FAIL"


def table(entries: list[dict]) -> str:
    head = ("| lines | apps | file MB | baseline s | baseline MB | gateway s | gateway MB "
            "| gateway lines/s | ratio | ratio ≤ 4× | peak < 300 MB | verified |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|:---:|\n")
    rows = []
    for e in entries:
        b, g, t = e["baseline"], e["gateway"], e["targets"]
        ratio = f"{e['ratio']:.2f}×"
        rows.append(
            f"| {e['lines']:,} | {e['applications']:,} | {mb(e['file_bytes']):.1f} "
            f"| {b['best_wall_s']:.2f} | {b['peak_rss_mb']:.0f} | {g['best_wall_s']:.2f} "
            f"| {g['peak_rss_mb']:.0f} | {g['lines_per_s']:,.0f} | {ratio} "
            f"| {_mark(t['ratio'])} | {_mark(t['peak_rss'])} | yes |")
    return head + "\n".join(rows) + "\n"


def csv_table(entries: list[dict]) -> str:
    """The CSV case: the gateway on the same submission as CSV and as XML, same run."""
    head = ("| lines | XML MB | CSV MB | gateway XML s | gateway CSV s | XML lines/s "
            "| CSV lines/s | CSV/XML throughput | ≥ 0.80 | XML peak MB | CSV peak MB "
            "| CSV peak < 300 MB | same result |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|:---:|:---:|\n")
    rows = []
    for e in entries:
        if "csv" not in e:
            continue
        g, c, t = e["gateway"], e["csv"], e["targets"]
        same = c["same_result_as_xml"]
        rows.append(
            f"| {e['lines']:,} | {mb(e['file_bytes']):.1f} | {mb(c['file_bytes']):.1f} "
            f"| {g['best_wall_s']:.2f} | {c['best_wall_s']:.2f} | {g['lines_per_s']:,.0f} "
            f"| {c['lines_per_s']:,.0f} | {c['throughput_ratio']:.2f} "
            f"| {_mark(t['csv_throughput'])} | {g['peak_rss_mb']:.0f} | {c['peak_rss_mb']:.0f} "
            f"| {_mark(t['csv_peak_rss'])} "
            f"| yes{' (ACE files identical)' if same['ace_files_identical'] else ''} |")
    return head + "\n".join(rows) + "\n" if rows else ""


def environment(args: argparse.Namespace) -> dict[str, object]:
    probe = subprocess.run(
        [args.python, "-c", "import lxml.etree as e, sys, json; print(json.dumps("
         "{'python': sys.version.split()[0], 'lxml': e.__version__, "
         "'libxml2': '.'.join(map(str, e.LIBXML_VERSION))}))"],
        capture_output=True, text=True, check=True)
    env = json.loads(probe.stdout)
    env.update({"platform": platform.platform(), "cpus": os.cpu_count(),
                "load_average_at_start": os.getloadavg()})
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="product lines per file (default 10000 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (default 3)")
    parser.add_argument("--lines-per-app", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--as-of", default="2026-12-01", help="processing date of every run")
    parser.add_argument("--csv", action=argparse.BooleanOptionalAction, default=None,
                        help="the CSV case: gateway on the same submission as CSV vs XML "
                        "(default: sizes under 1,000,000; --csv every size, --no-csv none)")
    parser.add_argument("--keep", action="store_true",
                        help="keep each run's folder (bench/out/runs/<size>[-csv]-<n>/)")
    parser.add_argument("--fresh", action="store_true",
                        help="overwrite bench/out/results.json instead of merging by size")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the baseline and the generator")
    parser.add_argument("--gateway", default=None,
                        help="aim-gateway executable (default: next to --python, else PATH)")
    args = parser.parse_args(argv)
    if args.gateway is None:
        beside = Path(args.python).parent / "aim-gateway"
        args.gateway = str(beside) if beside.exists() else shutil.which("aim-gateway")
        if args.gateway is None:
            parser.error("aim-gateway not found: pip install -e . or pass --gateway")
    if os.sep in args.gateway:
        args.gateway = os.path.abspath(args.gateway)  # gateway runs are started in their folder
    command = shlex.join([_show_path(Path(args.python)), "bench/run_bench.py",
                          *(argv if argv is not None else sys.argv[1:])])

    OUT.mkdir(parents=True, exist_ok=True)
    env = environment(args)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    entries = []
    try:
        for lines in args.sizes:
            print(f"size {lines:,}:", file=sys.stderr)
            entries.append(bench_size(args, lines))
    except BenchFailure as failure:
        print(f"BENCHMARK FAILED: {failure}", file=sys.stderr)
        return 1
    for e in entries:
        e.update({"measured_at": started, "command": command, "environment": env})
    runs = OUT / "runs"
    if runs.is_dir() and not any(runs.iterdir()):
        runs.rmdir()

    results_path = OUT / "results.json"
    merged: dict[str, dict] = {}
    if results_path.exists() and not args.fresh:
        try:
            merged = {str(e["lines"]): e for e in json.loads(results_path.read_text())["sizes"]}
        except (ValueError, KeyError, TypeError):
            merged = {}
    merged.update({str(e["lines"]): e for e in entries})
    document = {"targets": {"ratio_max": RATIO_TARGET, "ratio_applies_to": "100,000 lines "
                            "(every size from 100,000 up to but not including 1,000,000)",
                            "peak_rss_max_mb": RSS_TARGET_MB, "mb": "10^6 bytes",
                            "csv_throughput_min": CSV_TARGET,
                            "csv_throughput": "gateway lines/s on the CSV / lines/s on the XML "
                            "of the same submission, same run; applies where ratio_max does"},
                "sizes": sorted(merged.values(), key=lambda e: e["lines"])}
    results_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")

    print(f"\nAIM gateway benchmark, {started} (python {env['python']}, lxml {env['lxml']}, "
          f"libxml2 {env['libxml2']}, {env['cpus']} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in env['load_average_at_start'])})\n")
    print(table(entries))
    print(f"Best of {args.repeat} wall times per size (interpreter start included for both); "
          f"peak RSS = largest of the repeats ({entries[0]['rss_method'] if entries else ''}), "
          "MB = 10^6 bytes; ratio = gateway best / baseline best.")
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
        big = [f"{mb(e['file_bytes']):.0f} MB XML"] if e["gateway"]["max_file_bytes_raised"] else []
        if e.get("csv", {}).get("max_file_bytes_raised"):
            big.append(f"{mb(e['csv']['file_bytes']):.0f} MB CSV")
        if big:
            print(f"Note: the {e['lines']:,}-line file ({', '.join(big)}) is above "
                  "the gateway's default max_file_bytes (200 MB, F003): the benchmark config "
                  "raises the limit for it.")
    print(f"\nReproduce: {command}")
    print(f"Baseline:  {entries[-1]['baseline']['command'] if entries else ''}")
    print(f"Gateway:   {entries[-1]['gateway']['command'] if entries else ''} "
          "(run folder: config.toml + inbox/ holding only the file + fresh data/ and outbox/)")
    csv_entries = [e for e in entries if "csv" in e]
    if csv_entries:
        print(f"CSV case:  the same command, inbox/ holding only {csv_entries[-1]['csv']['file']}"
              f" (make it: {_show_path(Path(args.python))} bench/generate.py --lines "
              f"{csv_entries[-1]['lines']} --lines-per-app {args.lines_per_app} --seed "
              f"{args.seed} --as-of {args.as_of} --format csv --out "
              f"{csv_entries[-1]['csv']['file']})")
    print(f"Results:   {results_path.relative_to(ROOT)}")
    failed = [f"{e['lines']:,} lines: {name}" for e in entries
              for name, t in e["targets"].items() if t["met"] is False]
    print("\nTargets: " + ("all met" if not failed else "NOT met for " + ", ".join(failed)))
    return 0 if not failed else 2


if __name__ == "__main__":
    sys.exit(main())
