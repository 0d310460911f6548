"""Running the two measured commands and checking that the gateway really did the work: every
gateway run of a benchmark (``run_bench.py``, ``regression.py``) goes through ``run_gateway``,
which checks the run against the generator's ``.meta.json`` (exit code, one file taken, the
ack's status and counts, the ledger, the ACE files and their record counts); a run that does
not check out raises ``BenchFailure`` and keeps its run folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from measure import PARTNER, BenchFailure, baseline_cmd, gateway_cmd, measure, prepare_run

# Columns of the CSV acknowledgment as guide section 7 names them (the spec, not the code).
CSV_ACK_COLUMNS = ["row", "application_ref", "line_no", "status", "license_number",
                   "valid_from", "valid_through", "codes", "messages"]


def run_baseline(python: str, xml: Path, meta: dict[str, Any], *, gnu_time: bool = True,
                 prefix: Sequence[str] = (), env: dict[str, str] | None = None
                 ) -> dict[str, Any]:
    """One measured baseline run on ``xml``, checked: it read the whole file. ``prefix`` and
    ``env`` as for ``measure``."""
    result = measure(baseline_cmd(python, xml), gnu_time=gnu_time, prefix=prefix, env=env)
    if result["returncode"] != 0:
        raise BenchFailure(f"baseline failed ({result['returncode']}): {result['stderr']}")
    detail = json.loads(str(result["stdout"]).strip().splitlines()[-1])
    expected_children = 1 + meta["expected"]["applications"]  # Header + applications
    if detail["children"] != expected_children or not detail["root"].endswith("}LicenseSubmission"):
        raise BenchFailure(f"baseline did not read the whole file: {detail}")
    result["detail"] = detail
    return result


def run_gateway(gateway: str, source: Path, meta: dict[str, Any], run_dir: Path, *,
                gnu_time: bool = True, in_process: bool = False, prefix: Sequence[str] = (),
                env: dict[str, str] | None = None) -> dict[str, Any]:
    """One measured gateway run on ``source`` (XML or CSV, as ``meta['format']`` says) in a
    fresh ``run_dir``, checked; ``in_process``: read without a second process
    (``gateway.read_process_min_bytes = 0``); ``prefix`` and ``env`` as for ``measure``."""
    config = prepare_run(source, run_dir, in_process=in_process)
    result = measure(gateway_cmd(gateway, config, meta["as_of"]), cwd=run_dir,
                     gnu_time=gnu_time, prefix=prefix, env=env)
    result["verified"] = verify_gateway(result, run_dir, source.name, meta)
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


def verify_gateway(result: dict, run_dir: Path, name: str, meta: dict, *,
                   serve: bool = False) -> dict[str, object]:
    """The run's outputs against the meta; ``serve``: a run of ``serve`` (stopped by SIGTERM,
    no per-run summary on stdout)."""
    exp = meta["expected"]
    fmt = meta.get("format", "xml")
    problems: list[str] = []
    if result["returncode"] != 0:
        problems.append(f"exit code {result['returncode']}: {result['stderr'][-2000:]}")
    if not serve and f"{PARTNER}: 1 file(s) taken" not in result["stdout"]:
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
