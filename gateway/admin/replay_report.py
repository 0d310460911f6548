"""What a replay found (``gateway.admin.replay``), for a terminal or as JSON: per file the
applications whose status or codes would change, and a summary.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from gateway.admin.replay import FileReplay, Replay, State, Summary, Watch
from gateway.textsafe import printable


def file_text(result: FileReplay) -> str:
    row = result.row
    head = (f"{row.file_id}  {row.partner}  {printable(row.remote_name)}  processed "
            f"{row.rule_set_date or '-'}")
    if not result.replayed:
        return f"{head}: {result.note}"
    lines = [head + (f"  ({result.note})" if result.note else "")]
    if result.before != result.after or result.counts is not None:
        assert result.before is not None and result.after is not None
        lines.append(f"  file  {result.before.text()}  ->  {result.after.text()}"
                     + (f"  ({_counts(*result.counts)})" if result.counts else ""))
    for c in result.changes:
        ref = printable(c.ref) if c.ref is not None else "(no ref)"
        lines.append(f"  #{c.seq} {ref}  {c.before.text()}  ->  {c.after.text()}")
    return "\n".join(lines)


def _counts(before: tuple[int, ...], after: tuple[int, ...]) -> str:
    """``licensed 1 -> 2, rejected 1 -> 0``: the counts that differ."""
    names = ("applications", "licensed", "not required", "rejected", "cancelled")
    return ", ".join(f"{name} {b:,} -> {a:,}" for name, b, a in zip(names, before, after,
                                                                 strict=True) if b != a)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def summary_text(s: Summary) -> str:
    text = (f"replay as of {s.as_of}: {_plural(s.files, 'file')}, {s.replayed:,} replayed: "
            f"{s.changed:,} would change")
    if s.changed:
        moves = ", ".join(f"{k} {v:,}" for k, v in sorted(s.transitions.items()))
        text += f" ({_plural(s.applications, 'application')}" + (
            f": {moves}" if moves else "") + ")"
    text += f", {s.replayed - s.changed:,} unchanged"
    if s.partial:
        text += f" ({s.partial:,} compared by status only: see each file's note)"
    if s.not_replayed:
        text += f"; {s.not_replayed:,} not replayed"
    return text


def _state(state: State | None) -> dict[str, Any] | None:
    return None if state is None else {"status": state.status, "codes": list(state.codes)}


def file_json(result: FileReplay) -> dict[str, Any]:
    row = result.row
    keys = ("applications", "licensed", "not_required", "rejected", "cancelled")
    return {
        "file_id": row.file_id, "partner": row.partner, "name": row.remote_name,
        "received_at": row.received_at, "processed_on": row.rule_set_date,
        "replayed": result.replayed, "changed": result.changed, "note": result.note,
        "before": _state(result.before), "after": _state(result.after),
        "counts": None if result.counts is None else {
            "before": dict(zip(keys, result.counts[0], strict=True)),
            "after": dict(zip(keys, result.counts[1], strict=True))},
        "applications": [{"seq": c.seq, "ref": c.ref, "before": _state(c.before),
                          "after": _state(c.after)} for c in result.changes],
    }


def summary_json(s: Summary) -> dict[str, Any]:
    return {"as_of": s.as_of.isoformat(), "files": s.files, "replayed": s.replayed,
            "changed": s.changed, "unchanged": s.replayed - s.changed,
            "not_replayed": s.not_replayed, "compared_by_status": s.partial,
            "applications_changed": s.applications,
            "transitions": dict(sorted(s.transitions.items()))}


def replay_report(replay: Replay, as_json: bool, watch: Watch | None = None,
                  ) -> Iterator[str]:
    """The replay as text (or one JSON object), a chunk at a time as the files are replayed:
    each file that would change, was compared in part or was not replayed, then the summary.
    Nothing is held but the file at hand, and nothing is said before the ledger is read (a
    ledger that cannot be read leaves no half of a JSON object behind)."""
    head = f'{{"as_of": "{replay.as_of}", "files": [' if as_json else ""
    for result in replay.files(watch):
        if not (result.changed or result.note):
            continue
        if as_json:
            yield head + ("\n  " if head else ",\n  ") + json.dumps(file_json(result))
        else:
            yield file_text(result) + "\n"
        head = ""
    if as_json:
        yield f'{head}\n], "summary": {json.dumps(summary_json(replay.summary))}}}\n'
    else:
        yield summary_text(replay.summary) + "\n"
