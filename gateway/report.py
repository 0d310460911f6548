"""What admins read: per-partner status and the whole story of one file (text or JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict

from gateway.config import Config
from gateway.ledger import Ledger
from gateway.runner import open_ledger


def _ledger(config: Config) -> Ledger | None:
    path = config.gateway.data_dir / "ledger.sqlite"
    return open_ledger(config, readonly=True) if path.exists() else None


def _table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) if c is not None else "-" for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def status(config: Config, *, as_json: bool = False) -> str:
    ledger = _ledger(config)
    rows = []
    for partner in config.partners:
        entry: dict[str, object] = {"partner": partner.id, "enabled": partner.enabled,
                                    "kind": partner.kind}
        if ledger is not None:
            db = ledger.db
            last = db.execute(
                "SELECT file_id, remote_name, status, received_at FROM files WHERE partner = ? "
                "ORDER BY file_id DESC LIMIT 1", (partner.id,)).fetchone()
            counts = dict(db.execute(
                "SELECT COALESCE(status, 'IN PROGRESS'), COUNT(*) FROM files WHERE partner = ? "
                "GROUP BY 1", (partner.id,)).fetchall())
            unfinished = db.execute(
                "SELECT COUNT(*) FROM files WHERE partner = ? AND state != 'DONE'",
                (partner.id,)).fetchone()[0]
            licenses = db.execute("SELECT COUNT(*) FROM licenses WHERE partner = ?",
                                  (partner.id,)).fetchone()[0]
            entry.update(last_file=last[0] if last else None,
                         last_name=last[1] if last else None,
                         last_status=last[2] if last else None,
                         last_received=last[3] if last else None,
                         files=counts, unfinished=unfinished, licenses=licenses)
        rows.append(entry)
    if ledger is not None:
        ledger.close()
    if as_json:
        return json.dumps(rows, indent=2)
    return _table(
        ["partner", "kind", "last file", "status", "received", "files", "unfinished",
         "licenses"],
        [[r["partner"], r["kind"], r.get("last_name"), r.get("last_status"),
          r.get("last_received"),
          ", ".join(f"{k} {v}" for k, v in sorted(r.get("files", {}).items())) or "0",  # type: ignore[union-attr]
          r.get("unfinished", 0), r.get("licenses", 0)] for r in rows])


def show(config: Config, file_id: str, *, as_json: bool = False) -> str | None:
    ledger = _ledger(config)
    if ledger is None:
        return None
    try:
        row = ledger.file(file_id)
        if row is None:
            return None
        db = ledger.db
        findings = db.execute(
            "SELECT code, severity, ref, line, field, value, message FROM findings "
            "WHERE file_id = ? ORDER BY rowid", (file_id,)).fetchall()
        apps = db.execute(
            "SELECT seq, ref, status, license_number, reused FROM applications "
            "WHERE file_id = ? ORDER BY seq", (file_id,)).fetchall()
        events = db.execute(
            "SELECT at, kind, data FROM events WHERE file_id = ? ORDER BY id",
            (file_id,)).fetchall()
    finally:
        ledger.close()
    story = {
        "file": asdict(row),
        "applications": [dict(zip(("seq", "ref", "status", "license", "reused"), a,
                                  strict=True)) for a in apps],
        "findings": [dict(zip(("code", "severity", "ref", "line", "field", "value", "message"),
                              f, strict=True)) for f in findings],
        "events": [{"at": e[0], "event": e[1], **json.loads(e[2])} for e in events],
    }
    if as_json:
        return json.dumps(story, indent=2)
    f = story["file"]
    out = [f"file {f['file_id']}  {f['remote_name']}  partner {f['partner']}",
           f"  received {f['received_at']}  size {f['size']}  sha256 {f['sha256']}",
           f"  status {f['status']}  state {f['state']}  processed {f['processed_at']}  "
           f"rule set {f['rule_set_date']}",
           f"  applications {f['applications']}: licensed {f['licensed']} "
           f"(new {f['new_licenses']}), not required {f['not_required']}, "
           f"rejected {f['rejected']}",
           f"  ack {f['ack_name']}  ACE {f['ace_names'] or '-'}  stored at {f['archive_path']}"]
    if f["error"]:
        out.append(f"  error {f['error']}")
    if apps:
        out += ["", _table(["#", "ref", "status", "license", "reused"],
                           [list(a) for a in apps[:200]])]
    if findings:
        out += ["", _table(["code", "severity", "ref", "line", "field", "value", "message"],
                           [list(x) for x in findings[:500]])]
    out += ["", "events:"] + [f"  {e['at']} {e['event']}" for e in story["events"]]
    return "\n".join(out)
