"""The gateway writes SQL with ``?`` placeholders; PostgreSQL (psycopg) takes ``%s``. Only a
``?`` outside quotes and comments is a placeholder, and a literal ``%`` or ``?`` reaches the
database as written (issue 11: the old rewrite changed every ``?`` and broke on ``%``)."""

from __future__ import annotations

import pytest

from gateway.ledger.postgres import PostgresDb, format_params


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
    ("SELECT 'why?' WHERE a = ?", "SELECT 'why?' WHERE a = %s"),
    ("SELECT 'it''s ?' , ?", "SELECT 'it''s ?' , %s"),
    ('SELECT "odd?name" FROM t WHERE a = ?', 'SELECT "odd?name" FROM t WHERE a = %s'),
    ("SELECT 1 -- who? \nWHERE a = ?", "SELECT 1 -- who? \nWHERE a = %s"),
    ("SELECT a FROM t WHERE a LIKE '%x%' AND b = ?",
     "SELECT a FROM t WHERE a LIKE '%%x%%' AND b = %s"),
    ("SELECT 5 % 3", "SELECT 5 %% 3"),
    ("", ""),
])
def test_placeholders_and_literals(sql: str, expected: str) -> None:
    assert format_params(sql) == expected


def test_literal_question_marks_and_percents_reach_postgresql(pg_dsn: str) -> None:
    db = PostgresDb(pg_dsn, readonly=True)
    try:
        row = db.execute("SELECT 'why?', 'a%b', 7 % 4, ? || '?', 'x' LIKE '%'",
                         ("done",)).fetchone()
    finally:
        db.close()
    assert tuple(row) == ("why?", "a%b", 3, "done?", True)
