"""The ledger: what was received, what each application got, every license, finding and event.

SQLite in WAL mode is the embedded default. License numbers come from a counter row per year
inside the same transaction that records the licenses, and (partner, ref) holds at most one
license that is not SUPERSEDED, so a number can neither repeat nor be issued twice for one
request. A license changes state at most once (SUPERSEDED or CANCELLED, guide 5.1b), recorded
in ``license_changes`` keyed by its number.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypedDict

from gateway import crash
from gateway.config import Config
from gateway.errors import FatalError
from gateway.ledger.db import Database, is_postgres, shown
from gateway.ledger.leases import LeaseRecords
from gateway.ledger.licenses import BEFORE, LicenseRecords
from gateway.ledger.migrations import MIGRATIONS, split_statements
from gateway.ledger.sqlite import SqliteDb
from gateway.model import Filer

FILE_COLUMNS = (
    "file_id", "partner", "remote_name", "size", "mtime", "sha256", "local_name", "received_at",
    "state", "status", "format", "submission_id", "processed_at", "rule_set_date",
    "applications", "licensed", "not_required", "rejected", "new_licenses", "ack_name",
    "ace_names", "archive_path", "error", "duplicate_of", "reprocess_of", "duration_ms",
    "details_purged_at", "archive_purged_at", "cancelled",
)

# A quarantined file is never taken again by a poll or a start (gateway.service.quarantine).
QUARANTINED_IDS = "SELECT file_id FROM file_failures WHERE quarantined_at IS NOT NULL"
NOT_QUARANTINED = f"file_id NOT IN ({QUARANTINED_IDS})"
_IDS_PER_QUERY = 500  # parameters of one IN list: far below SQLite's limit (32,766)


def utc_now() -> datetime:
    """Now, in UTC: the clock of every time the ledger stores (a test may fix it)."""
    return datetime.now(UTC)


def utc_stamp(moment: datetime | None = None) -> str:
    """A time as the ledger stores every time: ISO 8601 in UTC (``+00:00``), to the second,
    so that times sort and compare as text whatever the machine's zone."""
    return (moment or utc_now()).astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class FileRow:
    file_id: str
    partner: str
    remote_name: str
    size: int
    mtime: float
    sha256: str
    local_name: str
    received_at: str
    state: str
    status: str | None
    format: str | None
    submission_id: str | None
    processed_at: str | None
    rule_set_date: str | None
    applications: int
    licensed: int
    not_required: int
    rejected: int
    new_licenses: int
    ack_name: str | None
    ace_names: str | None
    archive_path: str | None
    error: str | None
    duplicate_of: str | None
    reprocess_of: str | None
    duration_ms: int | None
    details_purged_at: str | None
    archive_purged_at: str | None
    cancelled: int  # cancellation requests CANCELLED (guide 5.1b)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the gateway knows of a file as it takes it in: its files row is made of this."""

    partner: str
    remote_name: str
    size: int
    mtime: float
    sha256: str
    reprocess_of: str | None = None  # the file an admin's reprocess takes in again


@dataclass(frozen=True, slots=True)
class Event:
    """One row of the events table; ``data`` is stored as JSON (anything else as its text)."""

    at: str
    kind: str
    partner: str | None
    file_id: str | None
    data: Mapping[str, object]


class PartnerState(TypedDict):
    """A partner's health (the partner_state row), or its defaults before the first poll."""

    failures: int  # consecutive failed polls
    last_error: str | None
    last_poll_at: str | None  # UTC ISO text, as every ledger time
    last_success_at: str | None
    next_attempt_at: float  # epoch seconds of the back-off's end; 0 = no back-off
    alerting: int  # 1 while a failure alert is out
    silent: int  # 1 while a silence alert is out
    watched_since: str | None


class Ledger(LicenseRecords, LeaseRecords):
    """The ledger on SQLite (a file path) or PostgreSQL (a ``postgresql://`` DSN).

    One instance per thread. Migrations run when a writable ledger opens (and with
    ``aim-gateway db upgrade``).
    """

    def __init__(self, target: Path | str, *, readonly: bool = False,
                 migrate: bool = True) -> None:
        self.path = target
        self.readonly = readonly
        self.db: Database = connect(target, readonly)
        self.concurrent = self.db.concurrent  # several workers may share it
        if not readonly and migrate:
            try:
                self.upgrade()
            except BaseException:
                # Closed here: nobody holds this ledger to close it (PostgreSQL counts the
                # ledgers open on a database to know when its kept connections may go).
                self.db.close()
                raise
        elif readonly and self.db.upgrade_on_read and self.schema_version() < len(MIGRATIONS):
            # A ledger written by an older gateway: readers select the newer columns, so
            # upgrade it once (schema only, no data), then read that.
            self.db.close()
            Ledger(target).close()
            self.db = connect(target, readonly)

    def close(self) -> None:
        self.db.close()

    def schema_version(self) -> int:
        return self.db.schema_version()

    def upgrade(self) -> list[int]:
        """Apply the migrations this ledger lacks, each in its own transaction.

        Processes starting together on a new ledger take turns: each migration is applied
        under the write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock too, as
        DDL does not lock a table that does not exist yet), and the schema version is read
        again inside it, so that a migration another process applied meanwhile is skipped.
        """
        # The usual case, a current schema, is seen without the write lock (which a long
        # file may hold for minutes), and without PostgreSQL's migration lock: a version only
        # grows, so one seen current stays current. Taken first, the advisory lock made the
        # ledger opens of all threads and workers take turns, five round trips each (up to
        # 30 ms a wait per open in bench_workers.py with two workers, pg_stat_statements).
        if self.schema_version() == len(MIGRATIONS):
            return []
        with self.db.migration_lock():
            applied: list[int] = []
            if self.schema_version() == len(MIGRATIONS):  # another process upgraded meanwhile
                return applied
            crash.pause("before_migrate")  # tests/test_first_run.py widens the race here
            while (number := self._apply_next_migration()) is not None:
                applied.append(number)
            return applied

    def _apply_next_migration(self) -> int | None:
        """Apply the first migration the ledger lacks, inside the write lock; return its
        number, or None when the schema is current.

        Only the last migration's COMMIT waits for the disk: in WAL order it makes the ones
        before it durable too, and one a power cut takes back is applied again at the next
        start (its version is recorded in its own transaction). About 2 ms a migration on a
        new ledger (19 of them), the first run's cost (issue 15)."""
        with self.transaction(synced=self.schema_version() + 1 >= len(MIGRATIONS)):
            version = self.schema_version()
            if version > len(MIGRATIONS):
                raise FatalError(f"The ledger {shown(self.path)} is schema {version}; this gateway "
                                 f"knows {len(MIGRATIONS)}. Upgrade the gateway.")
            if version == len(MIGRATIONS):
                return None
            step = MIGRATIONS[version]
            if callable(step):  # a data migration, written in Python for both databases
                step(self.db)
            else:
                for statement in split_statements(step):
                    self.db.execute(self.db.ddl(statement))
            self.db.set_schema_version(version + 1)
        return version + 1

    @contextmanager
    def transaction(self, *, synced: bool = True) -> Iterator[None]:
        """BEGIN … COMMIT (SQLite: IMMEDIATE, one writer); rolled back on any exception.

        ``synced=False``: the COMMIT does not wait for the disk, for a record that a power cut
        may take back to the state before it because the recovery redoes its step (a file's
        ARCHIVED and DONE: Runner._complete); it is durable at the next synced commit."""
        self.db.begin(synced)
        try:
            yield
        except BaseException:
            self.db.rollback()
            raise
        try:
            self.db.commit()
        except BaseException:
            # A COMMIT that failed may leave the transaction open (SQLite): never the next
            # one's. The COMMIT's error is the one raised; a rollback that fails too (the
            # connection is gone) adds nothing to it.
            with contextlib.suppress(Exception):
                self.db.rollback()
            raise

    @contextmanager
    def receipts_paused(self) -> Iterator[None]:
        """A transaction during which no receipt is in flight: it waits (briefly) for those
        under way to end and holds new ones back until it ends. A receipt draws its file id
        from file_counter; SQLite's write lock, or PostgreSQL's table lock on file_counter,
        excludes that. TransientError when the lock is not had within a few seconds."""
        with self.transaction():
            self.db.lock_receipts()
            yield

    # -- files -------------------------------------------------------------------------------

    def new_file_id(self, day: date) -> str:
        """``YYYYMMDD-NNNNNN``: sortable, readable, fits the A record's user data (21 chars)."""
        key = day.strftime("%Y%m%d")
        row = self.db.execute(
            "INSERT INTO file_counter (day, last) VALUES (?, 1) "
            "ON CONFLICT (day) DO UPDATE SET last = file_counter.last + 1 RETURNING last",
            (key,),
        ).fetchone()
        return f"{key}-{row[0]:06d}"

    def add_file(self, file_id: str, receipt: Receipt, *, local_name: str, received_at: str,
                 state: str = "RECEIVED") -> None:
        self.db.execute_later(
            "INSERT INTO files (file_id, partner, remote_name, size, mtime, sha256, "
            "reprocess_of, local_name, received_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (file_id, receipt.partner, receipt.remote_name, receipt.size, receipt.mtime,
             receipt.sha256, receipt.reprocess_of, local_name, received_at, state))

    def update_file(self, file_id: str, **values: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        self.db.execute_later(f"UPDATE files SET {sets} WHERE file_id = ?",
                              (*values.values(), file_id))

    def file(self, file_id: str) -> FileRow | None:
        row = self.db.execute(
            f"SELECT {', '.join(FILE_COLUMNS)} FROM files WHERE file_id = ?", (file_id,)
        ).fetchone()
        return FileRow(*row) if row else None

    def local_names(self, file_ids: Sequence[str]) -> dict[str, str]:
        """The local names of those of ``file_ids`` the ledger records (the others absent),
        a few hundred ids a query: every poll looks up each file in work/received
        (``clean_leftovers``), and one query per file was 7 of a file's 67 statements with two
        PostgreSQL workers, some inside the lock that holds every receipt back."""
        found: dict[str, str] = {}
        for start in range(0, len(file_ids), _IDS_PER_QUERY):
            chunk = file_ids[start:start + _IDS_PER_QUERY]
            found.update(self.db.execute(
                f"SELECT file_id, local_name FROM files WHERE file_id IN "
                f"({', '.join('?' for _ in chunk)})", tuple(chunk)).fetchall())
        return found

    def known_file(self, file_id: str) -> FileRow:
        """The row of a file the caller knows is recorded (it has just written it)."""
        row = self.file(file_id)
        if row is None:
            raise LookupError(f"file {file_id} is not in the ledger")
        return row

    def files(self, where: str = "1 = 1", params: tuple[object, ...] = (), limit: int = 1000,
              *, few: bool = False) -> list[FileRow]:
        """The latest files first. ``few``: ``where`` names an indexed column that leaves a
        handful of rows (a SHA-256, a SubmissionId, an ack name): the same rows in the same
        order, sorted after that index is searched. (Sorted by ``received_at`` itself, SQLite
        walks every file of the partner by (partner, received_at) instead: 0.3 ms a lookup at
        1,000 files, growing with the ledger; three per file processed.)"""
        order = "COALESCE(received_at, '')" if few else "received_at"
        rows = self.db.execute(
            f"SELECT {', '.join(FILE_COLUMNS)} FROM files WHERE {where} "
            f"ORDER BY {order} DESC, file_id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [FileRow(*r) for r in rows]

    def filer(self, file_id: str) -> Filer | None:
        """The applicant recorded with a file (``files.filer``), None if none was."""
        row = self.db.execute("SELECT filer FROM files WHERE file_id = ?", (file_id,)).fetchone()
        return Filer.from_json(row[0]) if row and row[0] else None

    def already_taken(self, partner: str, remote_name: str, size: int, mtime: float) -> bool:
        return self.db.execute(
            "SELECT 1 FROM files WHERE partner = ? AND remote_name = ? AND size = ? AND mtime = ?"
            " AND reprocess_of IS NULL LIMIT 1", (partner, remote_name, size, mtime)
        ).fetchone() is not None

    def original_of(self, partner: str, sha256: str, before: str) -> FileRow | None:
        """The first completed, non-duplicate file with these bytes for this partner, of the
        files before id ``before`` ("" = every file: no sentinel that a collation may sort)."""
        rows = self.files(
            "partner = ? AND sha256 = ? AND state != 'RECEIVED' AND status IS NOT NULL "
            f"AND status != 'DUPLICATE' AND reprocess_of IS NULL{BEFORE}",
            (partner, sha256, before, before), limit=1, few=True)
        return rows[0] if rows else None

    def submission_id_conflict(self, partner: str, submission_id: str, sha256: str,
                               file_id: str, before: str = "") -> FileRow | None:
        """An earlier file of this partner with this SubmissionId and other bytes (F007)."""
        rows = self.files(
            "partner = ? AND submission_id = ? AND sha256 != ? AND file_id != ? "
            "AND state != 'RECEIVED' AND status IS NOT NULL AND status != 'DUPLICATE' "
            f"AND error IS NULL{BEFORE}", (partner, submission_id, sha256, file_id, before, before),
            limit=1, few=True,
        )
        return rows[0] if rows else None

    def unfinished_files(self) -> list[FileRow]:
        """Files received but not yet through every step: finished first at start."""
        rows = self.db.execute(
            f"SELECT {', '.join(FILE_COLUMNS)} FROM files WHERE state != 'DONE' "
            f"AND {NOT_QUARANTINED} ORDER BY file_id"
        ).fetchall()
        return [FileRow(*r) for r in rows]

    def add_applications(self, rows: Iterable[tuple[object, ...]]) -> None:
        self.db.insert_rows("applications", ("file_id", "seq", "ref", "status",
                                             "license_number", "reused", "lines", "digest"), rows)

    def add_findings(self, rows: Iterable[tuple[object, ...]]) -> None:
        self.db.insert_rows("findings", ("file_id", "ref", "line", "code", "severity", "field",
                                         "value", "message", "source_line"), rows)

    # -- events ------------------------------------------------------------------------------

    def add_event(self, event: Event) -> None:
        self.db.execute_later(
            "INSERT INTO events (at, kind, partner, file_id, data) VALUES (?, ?, ?, ?, ?)",
            (event.at, event.kind, event.partner, event.file_id,
             json.dumps(event.data, sort_keys=True, default=str)),
        )

    def alert_once(self, alert: str, at: str) -> bool:
        """Record that ``alert`` fires now; False when it fired before. Called in the
        transaction that emits it, so that a rollback forgets both."""
        return self.db.execute(
            "INSERT INTO alerts_sent (alert, at) VALUES (?, ?) ON CONFLICT (alert) DO NOTHING "
            "RETURNING alert", (alert, at)).fetchone() is not None

    # -- remote listings and partner health ------------------------------------------------

    def stable_since(self, partner: str, name: str, size: int, mtime: float,
                     now: float) -> float:
        """When this (size, mtime) of a remote file was first seen; records it if new."""
        row = self.db.execute(
            "SELECT size, mtime, first_seen FROM remote_seen WHERE partner = ? AND name = ?",
            (partner, name)).fetchone()
        if row is not None and row[0] == size and row[1] == mtime:
            return float(row[2])
        self.db.execute(
            "INSERT INTO remote_seen (partner, name, size, mtime, first_seen) VALUES "
            "(?, ?, ?, ?, ?) ON CONFLICT (partner, name) DO UPDATE SET size = excluded.size, "
            "mtime = excluded.mtime, first_seen = excluded.first_seen",
            (partner, name, size, mtime, now))
        return now

    def forget_remote(self, partner: str, names: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM remote_seen WHERE partner = ? AND name = ?",
                            [(partner, n) for n in names])

    def remote_seen_names(self, partner: str) -> set[str]:
        return {r[0] for r in self.db.execute(
            "SELECT name FROM remote_seen WHERE partner = ?", (partner,))}

    def partner_state(self, partner: str) -> PartnerState:
        row = self.db.execute(
            "SELECT failures, last_error, last_poll_at, last_success_at, next_attempt_at, "
            "alerting, silent, watched_since FROM partner_state WHERE partner = ?",
            (partner,)).fetchone()
        if row is None:
            row = (0, None, None, None, 0.0, 0, 0, None)
        failures, last_error, last_poll, last_success, next_attempt, alerting, silent, \
            watched_since = row
        return PartnerState(failures=failures, last_error=last_error, last_poll_at=last_poll,
                            last_success_at=last_success, next_attempt_at=next_attempt,
                            alerting=alerting, silent=silent, watched_since=watched_since)

    def set_partner_state(self, partner: str, **values: object) -> None:
        self.db.execute("INSERT INTO partner_state (partner) VALUES (?) "
                        "ON CONFLICT (partner) DO NOTHING", (partner,))
        sets = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE partner_state SET {sets} WHERE partner = ?",
                        (*values.values(), partner))

    def unfinished_for(self, partner: str) -> list[FileRow]:
        rows = self.db.execute(
            f"SELECT {', '.join(FILE_COLUMNS)} FROM files WHERE state != 'DONE' AND partner = ? "
            f"AND {NOT_QUARANTINED} ORDER BY file_id", (partner,)).fetchall()
        return [FileRow(*r) for r in rows]

    def integrity_problems(self) -> list[str]:
        """The database's own check plus the ledger's invariants; empty when all is well."""
        problems = self.db.integrity_problems()
        dup = self.db.execute(
            "SELECT license_number FROM applications WHERE reused = 0 AND status = 'LICENSED' "
            "AND license_number IS NOT NULL GROUP BY license_number HAVING COUNT(*) > 1"
        ).fetchall()
        problems += [f"license {n} issued to two applications" for (n,) in dup]
        # A license's state and its one change row agree (guide 5.1b: each change once).
        unrecorded = self.db.execute(
            "SELECT l.license_number FROM licenses l LEFT JOIN license_changes c ON "
            "c.license_number = l.license_number WHERE l.state != COALESCE(c.change, 'ACTIVE') "
            "ORDER BY l.license_number").fetchall()
        problems += [f"license {n}: its state and its recorded change disagree"
                     for (n,) in unrecorded]
        return problems


def connect(target: str | Path, readonly: bool = False) -> Database:
    """The database at ``target``: PostgreSQL for a ``postgresql://`` DSN, else a SQLite file.
    psycopg is loaded only for PostgreSQL."""
    if is_postgres(target):
        from gateway.ledger.postgres import PostgresDb

        return PostgresDb(str(target), readonly)
    return SqliteDb(Path(target), readonly)


def ledger_location(config: Config) -> Path | str:
    """Where the configured ledger lives: the ``gateway.ledger`` DSN (PostgreSQL), else the
    SQLite file in the data folder. The one place that knows; every reader asks here."""
    return config.gateway.ledger or config.gateway.data_dir / "ledger.sqlite"


def ledger_exists(config: Config) -> bool:
    """False before the first run on SQLite (no file yet: nothing to show, nothing to
    check against); a PostgreSQL ledger is taken to exist (opening it says otherwise)."""
    target = ledger_location(config)
    return is_postgres(target) or Path(target).exists()


def open_ledger(config: Config, *, readonly: bool = False, migrate: bool = True) -> Ledger:
    """The configured ledger: PostgreSQL when ``gateway.ledger`` is a DSN, else SQLite."""
    return Ledger(ledger_location(config), readonly=readonly, migrate=migrate)
