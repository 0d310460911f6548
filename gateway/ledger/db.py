"""The two databases behind the ledger: SQLite (embedded default) and PostgreSQL (psycopg 3).

Both are used through one small interface (``execute``, ``executemany``, ``begin``, ``commit``,
``rollback``), with the ledger's SQL written once with ``?`` placeholders and SQLite-style DDL
that ``translate_ddl`` turns into PostgreSQL's. A DSN starting with ``postgresql://`` or
``postgres://`` selects PostgreSQL; anything else is a SQLite file path.
"""

from __future__ import annotations

import functools
import random
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import FatalError, LedgerUnavailable, TransientError

POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def is_postgres(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_PREFIXES)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...  # read-only, as the drivers' cursors have it

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Any: ...


class Database(Protocol):
    dialect: str

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


class SqliteDb:
    """SQLite in WAL mode; ``begin`` takes the write lock at once (BEGIN IMMEDIATE)."""

    dialect = "sqlite"

    def __init__(self, path: Path, readonly: bool) -> None:
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
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self.conn.executemany(sql, rows)

    def begin(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                raise LedgerUnavailable(f"The ledger is busy: {err}") from err
            raise TransientError(f"The ledger failed: {err}") from err

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


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


@functools.lru_cache(maxsize=512)
def format_params(sql: str) -> str:
    """The gateway's ``?`` placeholders written as psycopg's ``%s``.

    Only a ``?`` outside quotes and comments is a placeholder; every ``%`` is doubled (psycopg
    reads ``%`` as the start of a placeholder anywhere in the text), so that a literal ``?``
    or ``%`` in a query (``LIKE '%x'``, ``'why?'``) reaches PostgreSQL as written.
    """
    out: list[str] = []
    quote = ""  # the quote we are inside of: ', " or -- (a comment, to the end of the line)
    i = 0
    while i < len(sql):
        c = sql[i]
        if c == "%":
            out.append("%%")
        elif quote == "--":
            out.append(c)
            if c == "\n":
                quote = ""
        elif quote:
            out.append(c)
            if c == quote:
                quote = ""  # a doubled quote ('') closes and opens again: same result
        elif c in "'\"":
            out.append(c)
            quote = c
        elif sql.startswith("--", i):
            out.append("--")
            quote = "--"
            i += 1
        elif c == "?":
            out.append("%s")
        else:
            out.append(c)
        i += 1
    return "".join(out)


class PostgresDb:
    """PostgreSQL through psycopg 3, in autocommit mode with explicit transactions."""

    dialect = "postgresql"

    def __init__(self, dsn: str, readonly: bool) -> None:
        import psycopg

        self._psycopg = psycopg
        try:
            self.conn = psycopg.connect(dsn, autocommit=True, connect_timeout=15)
        except psycopg.OperationalError as err:
            raise LedgerUnavailable(f"Cannot reach the ledger database: {err}") from err
        if readonly:
            self.conn.execute("SET default_transaction_read_only = on")
        self._dsn = dsn
        self._counter: Any = None

    @staticmethod
    def _sql(sql: str) -> str:
        return format_params(sql)

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        try:
            return self.conn.execute(self._sql(sql), params)
        except self._psycopg.OperationalError as err:
            if isinstance(err, self._psycopg.errors.DiskFull):
                raise TransientError(f"The ledger database failed: {err}") from err
            # The connection or the server, not the file in hand.
            raise LedgerUnavailable(f"The ledger database failed: {err}") from err

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(self._sql(sql), list(rows))

    def begin(self) -> None:
        self.conn.execute("BEGIN")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def counter_connection(self) -> Any:
        """A second, autocommit connection: counters drawn there commit at once, so that
        workers never wait on each other's file transactions to get a license number."""
        if self._counter is None:
            self._counter = self._psycopg.connect(self._dsn, autocommit=True,
                                                  connect_timeout=15)
        return self._counter

    def close(self) -> None:
        if self._counter is not None:
            self._counter.close()
        self.conn.close()


def like(text: str) -> str:
    """A lower-case LIKE pattern matching ``text`` anywhere, its % and _ (and the escape
    character) taken literally: use it as ``LOWER(column) LIKE ? ESCAPE '\\'``.

    Compared with LOWER(column): PostgreSQL's LIKE is case-sensitive, SQLite's is not.
    """
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def connect(target: str | Path, readonly: bool = False) -> Database:
    if is_postgres(target):
        return PostgresDb(str(target), readonly)
    return SqliteDb(Path(target), readonly)


_DDL_RULES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)


def translate_ddl(sql: str, dialect: str) -> str:
    """The ledger's DDL is written for SQLite; PostgreSQL gets wider integers and floats."""
    if dialect != "postgresql":
        return sql
    for pattern, replacement in _DDL_RULES:
        sql = pattern.sub(replacement, sql)
    return sql
