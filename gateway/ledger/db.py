"""The interface of the two databases behind the ledger: SQLite (``gateway.ledger.sqlite``,
the embedded default) and PostgreSQL (``gateway.ledger.postgres``, psycopg 3).

The ledger's SQL is written once, with ``?`` placeholders and SQLite-style DDL; whatever
differs between the two lives in the backend, behind ``Database``: the DDL's types, the clock,
the license counter, the migration lock and schema version, the integrity check, JSON
unnesting and the translation of the driver's errors into the gateway's own
(``LedgerUnavailable``, ``TransientError``). No module outside the backends asks which
database it has. A DSN starting with ``postgresql://`` or ``postgres://`` selects PostgreSQL;
anything else is a SQLite file path (``gateway.ledger.store.connect``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def is_postgres(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_PREFIXES)


def shown(target: str | Path) -> str:
    """The ledger's location as a message may show it: a DSN without its password (messages
    reach logs, alerts and terminals; the password must not)."""
    if not is_postgres(target):
        return str(target)
    parts = urlsplit(str(target))
    if parts.password is None:
        return str(target)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...  # read-only, as the drivers' cursors have it

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Any: ...


class Database(Protocol):
    """One connection to the ledger's database. Statements that fail because of the
    database (busy, out of reach, full) raise ``LedgerUnavailable`` or ``TransientError``;
    a statement's own error (a gateway bug) keeps the driver's type."""

    concurrent: bool  # several workers may share it (license numbers drawn apart)
    upgrade_on_read: bool  # a read-only open upgrades an older schema first

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor: ...

    def execute_later(self, sql: str, params: Sequence[object] = ()) -> None:
        """A statement nobody reads the result of (an INSERT, an UPDATE): inside a
        transaction the database may send it with the transaction's next statement or its
        COMMIT, where its error is raised; outside one it runs at once."""
        ...

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Iterable[Sequence[object]]) -> None:
        """Append ``rows`` (values of ``columns``, in order) to ``table``: the bulk rows of a
        file (licenses, applications, findings)."""
        ...

    def begin(self, synced: bool = True) -> None:
        """Open a transaction; ``synced=False``: its COMMIT does not wait for the disk (the
        database's log is sequential: the next synced commit makes it durable too)."""
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...

    def now(self) -> float:
        """Seconds since the epoch by the clock that every worker of this ledger shares."""
        ...

    def next_license_sequence(self, year: int, series: str = "A", count: int = 1) -> int:
        """The next ``count`` numbers of a series (``A`` regular, ``L`` low-value) in a year,
        from its counter row, unique among workers: the last of them is returned."""
        ...

    def return_license_sequences(self, year: int, series: str, first: int, last: int) -> bool:
        """Set the counter back to ``first - 1`` if it still stands at ``last`` (nobody drew
        after): the numbers ``first``..``last`` were drawn and not issued. False: not."""
        ...

    def migration_lock(self) -> AbstractContextManager[None]:
        """Held while migrations are applied, so that processes starting together take
        turns (each migration also runs in its own write transaction)."""
        ...

    def schema_version(self) -> int: ...

    def set_schema_version(self, version: int) -> None:
        """Record ``version`` inside the transaction that applied its migration."""
        ...

    def ddl(self, statement: str) -> str:
        """A DDL statement of ``gateway.ledger.migrations`` in this database's words."""
        ...

    def lock_receipts(self) -> None:
        """Inside a transaction: hold new receipts (file ids) back until it ends."""
        ...

    def integrity_problems(self) -> list[str]:
        """The database's own storage check; empty when all is well."""
        ...

    def lock_audit(self) -> None:
        """Inside a transaction: hold other appends to the audit log back until it ends
        (gateway.ledger.audit); an error outside one."""
        ...


    def json_elements(self, column: str, alias: str) -> str:
        """A FROM item with one row per element of the JSON array in ``column``."""
        ...

    def json_text(self, element: str, index: int) -> str:
        """The SQL expression for item ``index`` of the JSON array ``element``, as text."""
        ...

    def json_real(self, element: str, index: int) -> str:
        """The SQL expression for item ``index`` of the JSON array ``element``, a float."""
        ...


def like(text: str) -> str:
    """A lower-case LIKE pattern matching ``text`` anywhere, its % and _ (and the escape
    character) taken literally: use it as ``LOWER(column) LIKE ? ESCAPE '\\'``.

    Compared with LOWER(column): PostgreSQL's LIKE is case-sensitive, SQLite's is not.
    """
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
