"""The PostgreSQL ledger (psycopg 3): one database shared by several workers.

Everything that is PostgreSQL's own lives here: its placeholders, its DDL, its clock, the
license counter drawn on a second connection, the migration lock and schema version table,
its JSON functions, and which of its errors are the gateway's ``LedgerUnavailable``.
"""

from __future__ import annotations

import functools
import os
import re
import select
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

from gateway.errors import LedgerUnavailable, TransientError
from gateway.ledger.db import Cursor
from gateway.turns import TURNS

_MIGRATION_LOCK = 72_351_001  # advisory lock key: "AIM gateway migrations"
# Pipeline mode needs libpq 14 or later (psycopg[binary] brings its own): without it, BEGIN
# is a round trip of its own, as it was.
_PIPELINE = psycopg.Pipeline.is_supported()

_DDL_RULES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)


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


def _raise_translated(err: psycopg.OperationalError) -> NoReturn:
    """The connection or the server failed, not the file in hand: the ledger is
    unavailable. A full disk is the server's condition too, but one to retry."""
    if isinstance(err, psycopg.errors.DiskFull):
        raise TransientError(f"The ledger database failed: {err}") from err
    raise LedgerUnavailable(f"The ledger database failed: {err}") from err


_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
               "keepalives_count": 3}


def _connect(dsn: str) -> psycopg.Connection[TupleRow]:
    try:
        # TCP keepalives: a connection kept idle for reuse (below) that a firewall or NAT
        # dropped without a word is found dead within a minute or two, not after the
        # kernel's 15 minutes of retransmissions. A DSN's own settings take precedence.
        given = conninfo_to_dict(dsn)
        return psycopg.connect(make_conninfo(dsn, **{
            k: v for k, v in _KEEPALIVES.items() if k not in given}),
            autocommit=True, connect_timeout=15)
    except psycopg.OperationalError as err:
        raise LedgerUnavailable(f"Cannot reach the ledger database: {err}") from err


# Connections closed by a ledger, kept open for the next ledger of this process with the same
# DSN and mode, while another ledger of the process is open on that DSN (the last one closed
# closes them all: a database nobody uses any more is left without sessions, for a DROP or a
# CREATE DATABASE from it as a template). `serve` opens a ledger for every poll's lease
# keeper beside its threads' own, and a new connection is a new server process (fork,
# authentication, catalog caches). 106 of them in 9 s of a one-worker
# benchmark run (24 partners); reused, the server's CPU per run fell from 0.95 s to 0.76-0.85 s.
_IDLE_MAX = 8  # in all: serve's 8 threads close one each at a time; no more held from a server
# (process, DSN, mode) and the connection, the most recently kept last. Keyed by process
# too: a child forked from a process with kept connections never takes one of them (they
# are the parent's, on sockets the two would share).
_idle: list[tuple[tuple[int, str, str], psycopg.Connection[TupleRow], float]] = []
# A connection kept longer than this is closed, not reused: below the idle timeouts of common
# firewalls and NATs, which drop a quiet flow without telling either end (the first statement
# on it would then hang until the kernel gives up). serve's polls reuse theirs within seconds.
_IDLE_SECONDS = 30.0
_open: dict[tuple[int, str], int] = {}  # (process, DSN): its ledgers open


@dataclass(slots=True)
class _Counter:
    conn: psycopg.Connection[TupleRow] | None = None  # None: being connected
    used_at: float = 0.0  # time.monotonic() when last used
    users: int = 0  # threads using it now


# The license counter's connection, one per (process, DSN), shared by the process's ledgers
# while one is open: its statements are single autocommit round trips (psycopg serialises
# threads on a connection), so eight threads need not hold eight. One each was 8 of a
# worker's 26 server processes per benchmark run (log_connections), each 4-6 ms of the
# server's CPU to start and fill its caches. One idle longer than _IDLE_SECONDS, or ended
# by the server, is replaced before use (as kept connections are).
_counters: dict[tuple[int, str], _Counter] = {}
_idle_lock = threading.Lock()
_counter_connect = threading.Lock()  # held while a counter connection is made


def _reuse_or_connect(dsn: str, mode: str) -> tuple[psycopg.Connection[TupleRow], bool]:
    """An idle connection this process kept (``_keep``), else a new one (True: new). One the
    server ended meanwhile (a restart, pg_terminate_backend) has something to read (the
    server's goodbye, or the end of the stream): closed and skipped, so that a reused
    connection fails no more often than a new one would."""
    key = (os.getpid(), dsn, mode)
    while True:
        conn, kept_at = None, 0.0
        with _idle_lock:
            for index in range(len(_idle) - 1, -1, -1):
                if _idle[index][0] == key:
                    _, conn, kept_at = _idle.pop(index)
                    break
        if conn is None:
            return _connect(dsn), True
        if time.monotonic() - kept_at > _IDLE_SECONDS:
            conn.close()
            continue
        if not _ended(conn):
            return conn, False
        conn.close()


def _ended(conn: psycopg.Connection[TupleRow]) -> bool:
    """An idle connection with something to read: the server ended it (its goodbye, or the
    end of the stream)."""
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError, psycopg.Error):
        return True


def _opened(dsn: str) -> None:
    with _idle_lock:
        key = (os.getpid(), dsn)
        _open[key] = _open.get(key, 0) + 1


def _closed(dsn: str, owner: int,
            conns: Sequence[tuple[str, psycopg.Connection[TupleRow]]]) -> None:
    """A ledger of process ``owner`` closed, with its connections (mode, connection): kept
    for reuse if idle and another ledger of the process is open on ``dsn``, else closed, as
    are the kept ones of ``dsn`` when it was the last; the one kept longest ago is closed
    when more than ``_IDLE_MAX`` are kept."""
    if owner != os.getpid():  # a forked child's copy: the parent's sessions, left alone
        return
    closing = []
    with _idle_lock:
        key = (owner, dsn)
        _open[key] = _open.get(key, 1) - 1
        if _open[key] <= 0:
            del _open[key]
            closing = [c for _, c in conns]
            closing += [c for k, c, _ in _idle if k[:2] == key]
            if key in _counters:
                closing += [c for c in [_counters.pop(key).conn] if c is not None]
            _idle[:] = [entry for entry in _idle if entry[0][:2] != key]
        else:
            for mode, conn in conns:
                if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
                    closing.append(conn)
                else:
                    _idle.append(((owner, dsn, mode), conn, time.monotonic()))
            # The oldest of this process's: a forked child's list still holds its parent's
            # entries, whose sessions a close from here would end.
            mine = [i for i, entry in enumerate(_idle) if entry[0][0] == owner]
            for index in reversed(mine[:max(0, len(mine) - _IDLE_MAX)]):
                closing.append(_idle.pop(index)[1])
    for conn in closing:
        conn.close()


class PostgresDb:
    """PostgreSQL through psycopg 3, in autocommit mode with explicit transactions."""

    # Several workers may share it: license numbers come from a counter committed at once.
    concurrent = True
    # A shared server's schema is upgraded by a writer or ``db upgrade``, never by a reader.
    upgrade_on_read = False

    def __init__(self, dsn: str, readonly: bool) -> None:
        self._dsn = dsn
        self._mode = "read" if readonly else "write"
        self._owner = os.getpid()
        self._begin_pending = False  # ``begin``: sent with the transaction's first statement
        self._in_transaction = False  # between ``begin`` and ``commit``/``rollback``
        # ``execute_later``'s statements, sent with the transaction's next one (``_send``).
        self._later: list[tuple[str, Sequence[object]]] = []
        self.conn, new = _reuse_or_connect(dsn, self._mode)
        if readonly and new:  # a kept read connection has it already
            try:
                self.execute("SET default_transaction_read_only = on")
            except BaseException:
                self.conn.close()
                raise
        self._closed = False
        _opened(dsn)

    # Every statement waits for the server without the pass's turn (gateway.turns): a turn is
    # never held across a wait for the server or one of its locks.

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        try:
            with TURNS.released():
                if self._begin_pending or self._later:
                    return self._send(format_params(sql), params)
                return self.conn.execute(format_params(sql), params)
        except psycopg.OperationalError as err:
            _raise_translated(err)

    def execute_later(self, sql: str, params: Sequence[object] = ()) -> None:
        """Inside a transaction (pipeline mode), kept for the transaction's next statement
        or its COMMIT: a receipt's files row and event went out with its COMMIT, one round
        trip instead of three, while the receipt holds the day's file counter row (which
        every other receipt waits for; each round trip there also waits for this thread's
        turn at the GIL, up to 5 ms with the other threads parsing). A statement's error
        comes with the next statement's, which fails the transaction as it would have."""
        if self._in_transaction and _PIPELINE:
            self._later.append((format_params(sql), params))
        else:
            self.execute(sql, params)

    def _send(self, query: str, params: Sequence[object]) -> Cursor:
        """A pending BEGIN, the statements kept by ``execute_later`` and ``query``, in one
        round trip (pipeline mode): a BEGIN of its own was 4.5 of a file's 49 round trips
        (pg_stat_statements and cProfile of a 24-file run). It changes nothing a transaction
        does: BEGIN takes no lock and writes nothing, and the statements run in order inside
        it as before."""
        with self.conn.pipeline():
            self._send_pending()
            cursor = self.conn.execute(query, params)
        return cursor  # its results were fetched when the pipeline ended

    def _send_pending(self) -> None:
        """A pending BEGIN and the kept statements (in a pipeline: in one round trip)."""
        later, self._later = self._later, []
        if self._begin_pending:
            self._begin_pending = False
            self.conn.execute("BEGIN")
        for query, params in later:
            self.conn.execute(query, params)

    def _send_begin(self) -> None:
        """A pending BEGIN and kept statements on their own: COPY and executemany are not
        pipelined."""
        if self._later:
            with self.conn.pipeline():
                self._send_pending()
        else:
            self._send_pending()

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        try:
            with TURNS.released():
                self._send_begin()
                with self.conn.cursor() as cursor:
                    cursor.executemany(format_params(sql), list(rows))
        except psycopg.OperationalError as err:
            _raise_translated(err)

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Iterable[Sequence[object]]) -> None:
        """COPY instead of INSERTs: 96,000 rows (applications and findings) took 0.07 s of
        the worker's CPU and 0.53 s of the server's, against 0.80 s and 0.87 s through
        executemany (measured on the tests' throwaway cluster). A row that breaks a
        constraint fails the COPY, and the file's transaction, as an INSERT would."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
        try:
            with TURNS.released():
                self._send_begin()
                with self.conn.cursor() as cursor, cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row(row)
        except psycopg.errors.UniqueViolation as err:
            # The licenses' primary key, the number (a migration renamed the table: it is
            # "licenses_v2_pkey"); (partner, ref) is another key, and no race of workers.
            if err.diag.table_name != "licenses" or \
                    not (err.diag.constraint_name or "").endswith("_pkey"):
                raise
            # A number registered by another worker's partner (guide 5.1a) after this file
            # last looked (``LicenseIssuer._check_held``): the file is decided again at the
            # next poll, when the number is seen held and skipped; it never fails for it.
            raise TransientError(
                "a license number of this file was recorded by another worker meanwhile: "
                "the file is decided again at the next poll") from err
        except psycopg.OperationalError as err:
            _raise_translated(err)

    def begin(self, synced: bool = True) -> None:
        self._in_transaction, self._later = True, []
        if _PIPELINE:
            self._begin_pending = True  # sent with the first statement (``_send``)
        else:
            self.execute("BEGIN")
        if not synced:  # this transaction only: the WAL is flushed by the next synced commit
            # Kept for the first statement: a file's ARCHIVED and DONE transactions, BEGIN,
            # this, their UPDATE and events and the COMMIT, went out in 1-2 round trips (4-5).
            self.execute_later("SET LOCAL synchronous_commit TO OFF")

    def commit(self) -> None:
        try:
            # With a statement kept by ``execute_later``, and a transaction without any
            # statement: BEGIN + COMMIT, as before.
            self.execute("COMMIT")
        finally:
            self._in_transaction = False

    def rollback(self) -> None:
        self._later = []  # never sent: nothing of them to undo
        self._in_transaction = False
        self.execute("ROLLBACK")

    def close(self) -> None:
        if self._closed:
            return
        self._closed, self._begin_pending, self._later = True, False, []
        _closed(self._dsn, self._owner, [(self._mode, self.conn)])

    # -- what is PostgreSQL's own ------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the epoch by the server's clock: leases of workers on several
        machines are compared on one clock, not on each machine's."""
        row = self.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())").fetchone()
        return float(row[0])

    def next_license_sequence(self, year: int, series: str = "A", count: int = 1) -> int:
        """Draw ``count`` numbers from the year's counter row on a second, autocommit
        connection: it commits at once, so workers never wait on each other's file
        transactions, and a rollback of the file leaves a gap, never a repeat. A block of
        numbers is one round trip (``LicenseIssuer`` draws a file's numbers in blocks)."""
        cursor = self._on_counter(
            "INSERT INTO license_counter (series, year, last) VALUES (%s, %s, %s) ON CONFLICT "
            "(series, year) DO UPDATE SET last = license_counter.last + %s RETURNING last",
            (series, year, count, count))
        return int(cursor.fetchone()[0])

    def return_license_sequences(self, year: int, series: str, first: int, last: int) -> bool:
        """On the counter's own connection too: committed at once, never holding the
        counter row's lock for the rest of a file's transaction."""
        cursor = self._on_counter(
            "UPDATE license_counter SET last = %s WHERE series = %s AND year = %s AND last = %s",
            (first - 1, series, year, last))
        return cursor.rowcount == 1

    def _on_counter(self, sql: str, params: Sequence[object]) -> Cursor:
        """On the process's counter connection (``_counters``), connected when there is
        none fit to use; one that failed is dropped, so that the next draw connects anew."""
        key = (os.getpid(), self._dsn)
        with _idle_lock:
            entry = _counters.get(key)
            if entry is not None and entry.users == 0 and entry.conn is not None and (
                    time.monotonic() - entry.used_at > _IDLE_SECONDS or _ended(entry.conn)):
                entry.conn.close()
                entry = None
            if entry is None:
                entry = _counters[key] = _Counter()
            entry.users += 1
        try:
            # Without the pass's turn (gateway.turns), the connect as the statement.
            with TURNS.released():
                with _counter_connect:  # one thread connects; the others wait and use it
                    if entry.conn is None:
                        entry.conn = _connect(self._dsn)
                return entry.conn.execute(sql, params)
        except psycopg.OperationalError as err:
            with _idle_lock:
                if _counters.get(key) is entry:
                    del _counters[key]
            if entry.conn is not None:
                entry.conn.close()
            _raise_translated(err)
        finally:
            with _idle_lock:
                entry.used_at = time.monotonic()
                entry.users -= 1

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """An advisory lock, held while migrations run: DDL does not lock a table that does
        not exist yet. The schema version table is made under it."""
        self.execute("SELECT pg_advisory_lock(?)", (_MIGRATION_LOCK,))
        try:
            self.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            yield
        finally:
            self.execute("SELECT pg_advisory_unlock(?)", (_MIGRATION_LOCK,))

    def schema_version(self) -> int:
        if self.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
            return 0
        row = self.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def set_schema_version(self, version: int) -> None:
        self.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def ddl(self, statement: str) -> str:
        """The ledger's DDL is written for SQLite: PostgreSQL gets wider integers and
        floats."""
        for pattern, replacement in _DDL_RULES:
            statement = pattern.sub(replacement, statement)
        return statement

    def lock_receipts(self) -> None:
        """A receipt draws its file id from file_counter: a table lock on it keeps new
        receipts out until the transaction ends (waiting at most a few seconds)."""
        self.execute("SET LOCAL lock_timeout = '5s'")
        self.execute("LOCK TABLE file_counter IN SHARE ROW EXCLUSIVE MODE")

    def lock_audit(self) -> None:
        """A lock that conflicts with itself only: readers go on, a second appender waits.
        PostgreSQL refuses LOCK TABLE outside a transaction, so an append made outside the
        change's transaction fails rather than racing."""
        self.execute("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")

    def integrity_problems(self) -> list[str]:
        """The server checks its own storage: nothing to ask here."""
        return []

    def json_elements(self, column: str, alias: str) -> str:
        return f"jsonb_array_elements({column}::jsonb) {alias}"

    def json_text(self, element: str, index: int) -> str:
        """``->>``: the item as text (the column is text: cast to jsonb where unnested)."""
        return f"{element}->>{int(index)}"

    def json_real(self, element: str, index: int) -> str:
        return f"CAST({element}->>{int(index)} AS DOUBLE PRECISION)"
