"""The audit trail: every ``admin.<verb>`` event, hash-chained in the ``audit_log`` table.

Each entry stores the SHA-256 of the previous entry's hash and the canonical JSON of its own
fields (seq, at, actor, action, reason, partner, file_id, details), so that editing, removing,
reordering or inserting an entry breaks the chain at that entry (``verify``). Entries are
written by ``gateway.ledger.events.EventLog.emit`` only, inside the transaction of the change
they record: a rolled-back change leaves no entry, and an action that emits ``admin.<verb>``
is audited with no code of its own.

Two writers never fork the chain: the append holds the audit lock (``Database.lock_audit``:
SQLite's write transaction, a PostgreSQL table lock) from reading the head to writing the new
entry, and ``prev_hash`` is UNIQUE, so that even a writer that skipped the lock could not give
one entry two successors. What a writer of the database itself can still do is in
docs/security.md ("Audit trail").
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from gateway.ledger.db import Database

ADMIN_PREFIX = "admin."
GENESIS = "0" * 64  # the previous hash of the first entry
UNKNOWN_ACTOR = "unknown"  # only for events recorded before the audit log (``backfill``)
_COLUMNS = ("seq", "at", "actor", "action", "reason", "partner", "file_id", "details",
            "prev_hash", "hash")
_CHUNK = 1000  # entries read at a time by ``verify``


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: str  # UTC ISO 8601, the event's own time
    actor: str  # who: cli:<login>, web:<user>@<address>
    action: str  # what: the verb of admin.<verb> (reprocess, release, purge, user_add…)
    reason: str | None  # why, as the admin typed it
    partner: str | None
    file_id: str | None
    details: str  # the event's other fields, canonical JSON
    prev_hash: str
    hash: str

    def fields(self) -> dict[str, object]:
        """What the hash covers (everything but the two hashes)."""
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
                "reason": self.reason, "partner": self.partner, "file_id": self.file_id,
                "details": self.details}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``verify`` found: the entries read, the last good one, the first problem."""

    entries: int
    head_seq: int  # 0 when the log is empty
    head_hash: str
    bad_seq: int | None = None  # the first entry that is not what the chain says
    problem: str | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


def canonical(value: object) -> str:
    """One text per value: sorted keys, no spaces, UTF-8 as is (RFC 8785-like for the
    strings and integers the log holds)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def entry_hash(prev_hash: str, fields: Mapping[str, object]) -> str:
    return hashlib.sha256((prev_hash + canonical(fields)).encode("utf-8")).hexdigest()


def is_audited(kind: str) -> bool:
    return kind.startswith(ADMIN_PREFIX)


def append(db: Database, at: str, kind: str, partner: str | None, file_id: str | None,
           data: Mapping[str, Any]) -> AuditEntry:
    """Add the entry of event ``kind``; call inside the transaction of the change.
    ValueError when it names no actor: an admin action nobody did is a bug of its caller."""
    actor = data.get("actor")
    if not actor:
        raise ValueError(f"{kind} names no actor: who did it is recorded with every action")
    db.lock_audit()
    row = db.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (int(row[0]) + 1, str(row[1])) if row else (1, GENESIS)
    rest = {k: v for k, v in data.items() if k not in ("actor", "reason")}
    reason = data.get("reason")
    entry = AuditEntry(seq, at, str(actor),
                       kind.removeprefix(ADMIN_PREFIX), None if reason is None else str(reason),
                       partner, file_id, canonical(rest), prev, "")
    entry = replace(entry, hash=entry_hash(prev, entry.fields()))
    db.execute(f"INSERT INTO audit_log ({', '.join(_COLUMNS)}) VALUES "
               f"({', '.join('?' for _ in _COLUMNS)})",
               tuple(getattr(entry, c) for c in _COLUMNS))
    return entry


def _rows(db: Database, after: int, limit: int, newest_first: bool = False) -> list[AuditEntry]:
    order, compare = ("DESC", "<") if newest_first else ("ASC", ">")
    rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM audit_log WHERE seq {compare} ? "
                      f"ORDER BY seq {order} LIMIT ?", (after, limit)).fetchall()
    return [AuditEntry(*r) for r in rows]


def entries(db: Database, limit: int = 100) -> list[AuditEntry]:
    """The newest ``limit`` entries, newest first."""
    return _rows(db, 2**62, limit, newest_first=True)


def _all(db: Database) -> Iterator[AuditEntry]:
    after = -(2**62)
    while chunk := _rows(db, after, _CHUNK):
        yield from chunk
        after = chunk[-1].seq


def verify(db: Database, expect_head: str | None = None) -> Verdict:
    """Walk the chain from the first entry; the first entry that breaks it is named.

    ``expect_head``: a hash printed by an earlier verify and kept elsewhere; it must still be
    an entry's hash, else the log was cut or rewritten back to before it."""
    count, prev, seq_before, seen_head = 0, GENESIS, 0, expect_head is None
    audited: Counter[tuple[str, str, str]] = Counter()
    for entry in _all(db):
        problem = _problem(entry, seq_before, prev)
        if problem is not None:
            return Verdict(count, seq_before, prev, entry.seq, problem)
        count, prev, seq_before = count + 1, entry.hash, entry.seq
        seen_head = seen_head or entry.hash == expect_head
        audited[(entry.at, entry.action, entry.actor)] += 1
    if not seen_head:
        return Verdict(count, seq_before, prev, seq_before + 1,
                       f"the expected head {expect_head} is not in the log: entries were "
                       "removed from its end or the log was rewritten")
    missing = _unaudited(db, audited)
    if missing is not None:
        return Verdict(count, seq_before, prev, None, missing)
    return Verdict(count, seq_before, prev)


def _unaudited(db: Database, audited: Counter[tuple[str, str, str]]) -> str | None:
    """The first ``admin.*`` event of the events table with no audit entry (same time,
    action and actor): entries cut from the end of the log, or the whole log emptied, leave
    a chain that is intact in itself, but the events table still holds what was done.
    (Events older than [retention] files_days are purged; their entries stay, so only this
    direction is checked.)"""
    rows = db.execute("SELECT id, at, kind, data FROM events WHERE kind LIKE 'admin.%' "
                      "ORDER BY id").fetchall()
    for event_id, at, kind, data in rows:
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {}
        actor = (parsed.get("actor") if isinstance(parsed, dict) else None) or UNKNOWN_ACTOR
        key = (str(at), str(kind).removeprefix(ADMIN_PREFIX), str(actor))
        if audited[key] > 0:
            audited[key] -= 1
            continue
        return (f"the {kind} event #{event_id} of {at} by {actor} has no audit entry: "
                "entries were removed (from the end of the log, or all of it)")
    return None


def _problem(entry: AuditEntry, seq_before: int, prev: str) -> str | None:
    if entry.seq != seq_before + 1:
        what = "missing" if entry.seq > seq_before + 1 else "out of order"
        return (f"sequence {entry.seq} follows {seq_before}: entries {what} "
                "(removed, inserted or renumbered)")
    if entry.prev_hash != prev:
        return ("its previous hash is not the hash of the entry before it (an entry was "
                "removed, inserted, reordered or rewritten)")
    if entry_hash(entry.prev_hash, entry.fields()) != entry.hash:
        return "its hash does not match its contents (the entry was edited)"
    return None


def backfill(db: Database) -> None:
    """Migration step: the admin events recorded before the audit log existed, chained in
    the order they were recorded (their original time kept)."""
    rows = db.execute("SELECT at, kind, partner, file_id, data FROM events "
                      "WHERE kind LIKE 'admin.%' ORDER BY id").fetchall()
    for at, kind, partner, file_id, data in rows:
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {"data": data}
        fields = parsed if isinstance(parsed, dict) else {"data": parsed}
        # An older gateway may have recorded an action without its actor: said so, kept.
        append(db, at, kind, partner, file_id, {**fields, "actor": fields.get("actor")
                                                or UNKNOWN_ACTOR})
