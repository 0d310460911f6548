"""The SQLite ledger: one file in WAL mode, the embedded default.

Everything that is SQLite's own lives here (STYLE: one place for each piece of logic): its
pragmas, its clock, its schema version (``PRAGMA user_version``), its integrity check, its
JSON functions, and which of its errors are the gateway's ``LedgerUnavailable``.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gateway.errors import FatalError, LedgerUnavailable, TransientError
from gateway.ledger.db import Cursor

# What SQLite says when the database, not the statement, is at fault: the file is busy, out
# of reach or full. Anything else (a syntax error, a missing column) is a gateway bug and
# keeps its own type and traceback.
_BUSY = ("locked", "busy")
_UNAVAILABLE = ("unable to open", "disk i/o error", "disk is full", "readonly database")


def _translated(err: sqlite3.OperationalError) -> TransientError | None:
    """The gateway's own error for a database condition; None for a bug."""
    text = str(err).lower()
    if any(word in text for word in _BUSY):
        return LedgerUnavailable(f"The ledger is busy: {err}")
    if any(words in text for words in _UNAVAILABLE):
        return TransientError(f"The ledger failed: {err}")
    return None


def _raise_translated(err: sqlite3.OperationalError) -> None:
    """Raise ``err`` as the gateway's own error when it is a database condition."""
    mine = _translated(err)
    if mine is not None:
        raise mine from err


class SqliteDb:
    """SQLite in WAL mode; ``begin`` takes the write lock at once (BEGIN IMMEDIATE)."""

    # One writer at a time: license numbers are counted in the file's own transaction.
    concurrent = False
    # A reader of a ledger file written by an older gateway selects the newer columns: the
    # file is upgraded once (schema only) before it is read.
    upgrade_on_read = True

    def __init__(self, path: Path, readonly: bool) -> None:
        self.path = path
        self._unsynced = False  # an unsynced transaction is open (begin)
        try:
            if readonly:
                # With no -wal file no writer is active: open immutable, so that a dry run
                # does not even create the -shm file. With a writer active, a normal
                # read-only connection sees its committed data.
                wal = path.with_name(path.name + "-wal")
                mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
                self.conn = sqlite3.connect(f"file:{path}?{mode}", uri=True,
                                            isolation_level=None, check_same_thread=False)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Long waits: with serve, partners poll in parallel and one large file holds
                # the write lock for as long as it takes to process. One thread uses a
                # connection at a time; closing may happen on another thread.
                self.conn = sqlite3.connect(str(path), isolation_level=None, timeout=300,
                                            check_same_thread=False)
                _enable_wal(self.conn)
                self.conn.execute("PRAGMA synchronous=FULL")
                self.conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.OperationalError as err:
            raise FatalError(f"Cannot open the ledger {path}: {err}") from err

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.OperationalError as err:
            _raise_translated(err)
            raise

    def execute_later(self, sql: str, params: Sequence[object] = ()) -> None:
        """At once: an embedded database has no round trip to save."""
        self.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        try:
            self.conn.executemany(sql, rows)
        except sqlite3.OperationalError as err:
            _raise_translated(err)
            raise

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Iterable[Sequence[object]]) -> None:
        marks = ", ".join("?" for _ in columns)
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def begin(self, synced: bool = True) -> None:
        if synced:
            self._synced_again()  # a NORMAL that a failed COMMIT left never outlives it
        else:
            # This transaction's COMMIT only (commit/rollback set FULL again): in WAL mode
            # NORMAL appends the commit to the WAL without an fdatasync; the WAL is
            # sequential, so the next FULL commit makes it durable too.
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._unsynced = True
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            self._synced_again()
            _raise_translated(err)
            raise TransientError(f"The ledger failed: {err}") from err

    def commit(self) -> None:
        try:
            self.execute("COMMIT")
        finally:
            self._synced_again()

    def rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        finally:
            self._synced_again()

    def _synced_again(self) -> None:
        # Only outside a transaction (SQLite refuses the PRAGMA inside one: a COMMIT that
        # failed leaves it open, and that error, not this one, is the one to raise); the
        # flag stays until it is done, and the next synced begin does it.
        if self._unsynced and not self.conn.in_transaction:
            self.conn.execute("PRAGMA synchronous=FULL")
            self._unsynced = False

    def close(self) -> None:
        self.conn.close()

    # -- what is SQLite's own ----------------------------------------------------------------

    def now(self) -> float:
        """The machine's clock: an SQLite ledger has one machine's workers only."""
        return time.time()

    def next_license_sequence(self, year: int, series: str = "A", count: int = 1) -> int:
        """Draw the year's next ``count`` license numbers from its counter row (the last
        returned). The one writer holds the write lock for the whole transaction: the
        numbers are unique, and a rollback takes them back."""
        row = self.execute(
            "INSERT INTO license_counter (series, year, last) VALUES (?, ?, ?) ON CONFLICT "
            "(series, year) DO UPDATE SET last = license_counter.last + ? RETURNING last",
            (series, year, count, count)).fetchone()
        return int(row[0])

    def return_license_sequences(self, year: int, series: str, first: int, last: int) -> bool:
        cursor = self.execute(
            "UPDATE license_counter SET last = ? WHERE series = ? AND year = ? AND last = ?",
            (first - 1, series, year, last))
        return cursor.rowcount == 1

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Nothing to take: each migration runs under BEGIN IMMEDIATE, the write lock."""
        yield

    def schema_version(self) -> int:
        return int(self.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {int(version)}")

    def ddl(self, statement: str) -> str:
        """The ledger's DDL is written in SQLite's own words."""
        return statement

    def lock_receipts(self) -> None:
        """Nothing to take: the transaction's write lock already keeps receipts out."""

    def lock_audit(self) -> None:
        """BEGIN IMMEDIATE already holds the one write lock; outside a transaction the head
        read and the insert could interleave with another writer's, so that is refused."""
        if not self.conn.in_transaction:
            raise RuntimeError("audit entries are appended inside the change's transaction")

    def integrity_problems(self) -> list[str]:
        return [r[0] for r in self.execute("PRAGMA integrity_check") if r[0] != "ok"]

    def json_elements(self, column: str, alias: str) -> str:
        """json_each: a row per element, the element in its ``value`` column."""
        return f"json_each({column}) {alias}"

    def json_text(self, element: str, index: int) -> str:
        return f"json_extract({element}, '$[{int(index)}]')"

    def json_real(self, element: str, index: int) -> str:
        return f"CAST(json_extract({element}, '$[{int(index)}]') AS REAL)"


def _enable_wal(conn: sqlite3.Connection, patience: float = 60.0) -> None:
    """Put the ledger in WAL mode (a no-op once it is).

    When several processes open a new ledger at once, turning it into WAL can answer
    "database is locked" at once, without the busy timeout: SQLite refuses to wait where
    waiting could deadlock. That is a lost race, not a failure: try again for a while.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))  # apart, so as not to race again
