"""The ledger's schema, as migrations: SQLite DDL, translated for PostgreSQL by
``gateway.ledger.postgres.PostgresDb.ddl``. Append only: a released migration never changes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from gateway.errors import FatalError
from gateway.ledger.audit import backfill
from gateway.ledger.db import Database

# The times the ledger stores, by table and key. Older gateways wrote received_at and
# processed_at with the machine's local offset; the web page's "today" compares them with UTC
# text (issue 10, "Store every ledger time in UTC").
_TIME_COLUMNS = (
    ("files", "file_id", ("received_at", "processed_at", "details_purged_at",
                          "archive_purged_at")),
    ("partner_state", "partner", ("last_poll_at", "last_success_at", "watched_since")),
)
_CHUNK = 5000


def times_to_utc(db: Database) -> None:
    """Rewrite every stored time that has another offset than UTC's as UTC (the same instant).

    In Python, for both databases: neither parses an ISO offset the same way in SQL. Chunks
    by key, so that a large ledger is never held in memory whole.
    """
    for table, key, columns in _TIME_COLUMNS:
        last = ""
        while rows := db.execute(
                f"SELECT {key}, {', '.join(columns)} FROM {table} WHERE {key} > ? "
                f"ORDER BY {key} LIMIT {_CHUNK}", (last,)).fetchall():
            last = rows[-1][0]
            for n, column in enumerate(columns, start=1):
                db.executemany(f"UPDATE {table} SET {column} = ? WHERE {key} = ?",
                               [(utc, row[0]) for row in rows
                                if (utc := _as_utc(row[n])) != row[n]])


def _as_utc(text: str | None) -> str | None:
    """``text`` as UTC ISO 8601; unchanged when it is not an ISO time with an offset."""
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return text
    if moment is None or moment.tzinfo is None:
        return text
    return moment.astimezone(UTC).isoformat()


MIGRATIONS: tuple[str | Callable[[Database], None], ...] = (
    """
    CREATE TABLE files (
        file_id       TEXT PRIMARY KEY,
        partner       TEXT NOT NULL,
        remote_name   TEXT NOT NULL,
        size          INTEGER NOT NULL,
        mtime         REAL NOT NULL,
        sha256        TEXT NOT NULL,
        local_name    TEXT NOT NULL,
        received_at   TEXT NOT NULL,
        state         TEXT NOT NULL,      -- RECEIVED, PROCESSED, ARCHIVED, DONE
        status        TEXT,               -- ACCEPTED, PARTIAL, REJECTED, DUPLICATE
        format        TEXT,
        submission_id TEXT,
        processed_at  TEXT,
        rule_set_date TEXT,
        applications  INTEGER NOT NULL DEFAULT 0,
        licensed      INTEGER NOT NULL DEFAULT 0,
        not_required  INTEGER NOT NULL DEFAULT 0,
        rejected      INTEGER NOT NULL DEFAULT 0,
        new_licenses  INTEGER NOT NULL DEFAULT 0,
        ack_name      TEXT,
        ace_names     TEXT,
        archive_path  TEXT,
        error         TEXT,
        duplicate_of  TEXT,
        reprocess_of  TEXT,
        duration_ms   INTEGER
    );
    CREATE INDEX files_partner_sha ON files (partner, sha256);
    CREATE INDEX files_partner_remote ON files (partner, remote_name, size, mtime);
    CREATE INDEX files_partner_submission ON files (partner, submission_id);
    CREATE INDEX files_state ON files (state);
    CREATE TABLE file_counter (day TEXT PRIMARY KEY, last INTEGER NOT NULL);
    CREATE TABLE license_counter (year INTEGER PRIMARY KEY, last INTEGER NOT NULL);
    CREATE TABLE licenses (
        license_number TEXT PRIMARY KEY,
        partner        TEXT NOT NULL,
        ref            TEXT NOT NULL,
        digest         TEXT NOT NULL,
        file_id        TEXT NOT NULL REFERENCES files (file_id),
        issue_date     TEXT NOT NULL,
        valid_from     TEXT NOT NULL,
        valid_through  TEXT NOT NULL,
        entry_type     TEXT NOT NULL,
        port_of_entry  TEXT NOT NULL,
        importer       TEXT NOT NULL,
        exporter       TEXT NOT NULL,
        manufacturer   TEXT NOT NULL,
        country_of_origin TEXT NOT NULL,
        lines          INTEGER NOT NULL,
        quantity_kg    TEXT NOT NULL,
        value_usd      TEXT NOT NULL,
        -- what AIM monitors, per (HTS, smelt countries, cast country): a JSON array of
        -- [hts, product_group, smelt_country_largest, smelt_country_second, cast_country,
        -- lines, quantity_kg, value_usd] (licensing.PRODUCT_FIELDS). One column, not a row
        -- per line, so that a million-line file does not cost a million inserts; SQLite's
        -- json_each reads it
        products       TEXT NOT NULL,
        UNIQUE (partner, ref)
    );
    CREATE TABLE applications (
        file_id        TEXT NOT NULL REFERENCES files (file_id),
        seq            INTEGER NOT NULL,
        ref            TEXT,
        status         TEXT NOT NULL,
        license_number TEXT,
        reused         INTEGER NOT NULL DEFAULT 0,
        lines          INTEGER NOT NULL,
        digest         TEXT,
        PRIMARY KEY (file_id, seq)
    );
    CREATE INDEX applications_ref ON applications (ref);
    CREATE TABLE findings (
        file_id     TEXT NOT NULL REFERENCES files (file_id),
        ref         TEXT,
        line        INTEGER,
        code        TEXT NOT NULL,
        severity    TEXT NOT NULL,
        field       TEXT,
        value       TEXT,
        message     TEXT NOT NULL,
        source_line INTEGER
    );
    CREATE INDEX findings_file ON findings (file_id);
    CREATE TABLE events (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        at       TEXT NOT NULL,
        kind     TEXT NOT NULL,
        partner  TEXT,
        file_id  TEXT,
        data     TEXT NOT NULL
    );
    CREATE INDEX events_file ON events (file_id);
    """,
    """
    -- What each poll saw of a partner's remote files: a file is complete ("stable") when a
    -- later listing shows the same size and mtime at least min_age seconds after this one.
    CREATE TABLE remote_seen (
        partner     TEXT NOT NULL,
        name        TEXT NOT NULL,
        size        INTEGER NOT NULL,
        mtime       REAL NOT NULL,
        first_seen  REAL NOT NULL,
        PRIMARY KEY (partner, name)
    );
    -- Health of each partner: consecutive failures, back-off, one alert per failing spell.
    CREATE TABLE partner_state (
        partner          TEXT PRIMARY KEY,
        failures         INTEGER NOT NULL DEFAULT 0,
        last_error       TEXT,
        last_poll_at     TEXT,
        last_success_at  TEXT,
        next_attempt_at  REAL NOT NULL DEFAULT 0,
        alerting         INTEGER NOT NULL DEFAULT 0
    );
    """,
    """
    -- A worker polls a partner only while it holds the partner's lease (several workers on
    -- one ledger): taken when free or expired, renewed while working, released after.
    CREATE TABLE partner_lease (
        partner     TEXT PRIMARY KEY,
        owner       TEXT NOT NULL,
        expires_at  REAL NOT NULL
    );
    """,
    """
    -- A partner silent for longer than its expected cadence: one alert per silent spell, kept
    -- here so that a restart neither repeats nor forgets it. watched_since starts the silence
    -- of a partner that never sent a file.
    ALTER TABLE partner_state ADD COLUMN silent INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE partner_state ADD COLUMN watched_since TEXT;
    -- Retention (admin.purge): a file's row stays (it is the memory of what was taken, and
    -- licenses refer to it); its findings, applications and events, and its archived original,
    -- go, and these say when.
    ALTER TABLE files ADD COLUMN details_purged_at TEXT;
    ALTER TABLE files ADD COLUMN archive_purged_at TEXT;
    CREATE INDEX files_partner_received ON files (partner, received_at);
    CREATE INDEX files_reprocess_of ON files (reprocess_of);
    CREATE INDEX events_at ON events (at);
    CREATE INDEX events_partner_kind ON events (partner, kind);
    CREATE INDEX licenses_file ON licenses (file_id);
    CREATE INDEX licenses_issue_date ON licenses (issue_date);
    """,
    """
    -- Issue 10 item 5, license numbers as a shared resource (guide 5.1a): alerts that fire
    -- once only (a partner's daily quota reached, per day; a year's numbers past 80 percent),
    -- recorded in the transaction that emits them, so that neither a restart nor a second
    -- worker repeats one.
    CREATE TABLE alerts_sent (
        alert  TEXT PRIMARY KEY,
        at     TEXT NOT NULL
    );
    -- The daily quota counts one partner's licenses of one issue date.
    CREATE INDEX licenses_partner_issue ON licenses (partner, issue_date);
    """,
    """
    -- Issue 10 item 9: a later file under a name that already has its ack gets an ack of its
    -- own; finding whether an ack name is taken is one index look-up.
    CREATE INDEX files_partner_ack ON files (partner, ack_name);
    """,
    """
    -- Issue 10 item 1 (poison files): consecutive failures of one received file (any error
    -- while processing, acknowledging or disposing of it). A row goes when the file is done;
    -- at 3 the file is quarantined (quarantined_at) and no poll takes it again until an
    -- admin releases it (``aim-gateway release``).
    CREATE TABLE file_failures (
        file_id         TEXT PRIMARY KEY REFERENCES files (file_id),
        partner         TEXT NOT NULL,
        failures        INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        last_failed_at  TEXT,
        quarantined_at  TEXT
    );
    CREATE INDEX file_failures_partner ON file_failures (partner, quarantined_at);
    """,
    # Issue 10, "Store every ledger time in UTC": older local-offset times rewritten as UTC.
    times_to_utc,
    """
    -- Issue 11 item 7: the applicant of a file's licenses (guide 2.3, 19 CFR
    -- 361.103(c)(1)(i)-(ii)): the XML header's Filer, else the partner's profile, as a JSON
    -- object (model.Filer's fields); NULL for a file none of whose applications was decided.
    ALTER TABLE files ADD COLUMN filer TEXT;
    """,
    """
    -- Issue 13, the license lifecycle (guide 5.1a, 5.1b). A ref may now hold several
    -- licenses (a correction issues a new one and supersedes the old), so UNIQUE (partner,
    -- ref) gives way to: one license per (partner, ref) that is not SUPERSEDED. SQLite cannot
    -- drop a constraint: the table is made anew and its rows copied (both databases).
    --   kind:     REGULAR or LOW_VALUE (an L number, its own sequence)
    --   source:   gateway (minted here) or commerce (a registered license, sent by the partner)
    --   state:    ACTIVE, SUPERSEDED or CANCELLED; EXPIRED is never stored (an ACTIVE license
    --             past its valid_through on the date asked)
    --   replaces: the license this one corrects (I202)
    CREATE TABLE licenses_v2 (
        license_number TEXT PRIMARY KEY,
        partner        TEXT NOT NULL,
        ref            TEXT NOT NULL,
        digest         TEXT NOT NULL,
        file_id        TEXT NOT NULL REFERENCES files (file_id),
        issue_date     TEXT NOT NULL,
        valid_from     TEXT NOT NULL,
        valid_through  TEXT NOT NULL,
        entry_type     TEXT NOT NULL,
        port_of_entry  TEXT NOT NULL,
        importer       TEXT NOT NULL,
        exporter       TEXT NOT NULL,
        manufacturer   TEXT NOT NULL,
        country_of_origin TEXT NOT NULL,
        lines          INTEGER NOT NULL,
        quantity_kg    TEXT NOT NULL,
        value_usd      TEXT NOT NULL,
        products       TEXT NOT NULL,
        kind           TEXT NOT NULL DEFAULT 'REGULAR',
        source         TEXT NOT NULL DEFAULT 'gateway',
        state          TEXT NOT NULL DEFAULT 'ACTIVE',
        replaces       TEXT
    );
    INSERT INTO licenses_v2 (license_number, partner, ref, digest, file_id, issue_date,
        valid_from, valid_through, entry_type, port_of_entry, importer, exporter, manufacturer,
        country_of_origin, lines, quantity_kg, value_usd, products)
        SELECT license_number, partner, ref, digest, file_id, issue_date, valid_from,
        valid_through, entry_type, port_of_entry, importer, exporter, manufacturer,
        country_of_origin, lines, quantity_kg, value_usd, products FROM licenses;
    DROP TABLE licenses;
    ALTER TABLE licenses_v2 RENAME TO licenses;
    CREATE UNIQUE INDEX licenses_current ON licenses (partner, ref) WHERE state != 'SUPERSEDED';
    CREATE INDEX licenses_file ON licenses (file_id);
    CREATE INDEX licenses_issue_date ON licenses (issue_date);
    CREATE INDEX licenses_partner_issue ON licenses (partner, issue_date);
    CREATE INDEX licenses_state ON licenses (state, valid_through);
    -- Every supersession and cancellation, once: a license changes state at most once
    -- (both are final), so the license number is the key, and two workers racing to change
    -- one license cannot both record it. file_id: the file whose correction or cancellation
    -- made the change; its changes report (outbox/changes/CHG-<file id>.csv) lists it.
    CREATE TABLE license_changes (
        license_number TEXT PRIMARY KEY REFERENCES licenses (license_number),
        partner        TEXT NOT NULL,
        ref            TEXT NOT NULL,
        change         TEXT NOT NULL,   -- SUPERSEDED or CANCELLED
        replaced_by    TEXT,            -- the correction's new license (SUPERSEDED)
        change_date    TEXT NOT NULL,   -- the processing date of the change (YYYY-MM-DD)
        at             TEXT NOT NULL,   -- when it was recorded (UTC, as every ledger time)
        file_id        TEXT NOT NULL REFERENCES files (file_id),
        reason         TEXT
    );
    CREATE INDEX license_changes_file ON license_changes (file_id);
    -- One counter per series and year: A (regular) and L (low-value) numbers (guide 5.1a).
    CREATE TABLE license_counter_v2 (
        series  TEXT NOT NULL,
        year    INTEGER NOT NULL,
        last    INTEGER NOT NULL,
        PRIMARY KEY (series, year)
    );
    INSERT INTO license_counter_v2 (series, year, last) SELECT 'A', year, last
        FROM license_counter;
    DROP TABLE license_counter;
    ALTER TABLE license_counter_v2 RENAME TO license_counter;
    -- The changes report of a file (guide 5.1b), beside its ace_names.
    ALTER TABLE files ADD COLUMN changes_name TEXT;
    """,
    """
    -- Issue 13: a cancellation counts as an application of the file (guide 5.1b): the
    -- Cancelled count of its acknowledgment, kept with the others for every reader.
    ALTER TABLE files ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
    """,
    """
    -- Issue 14 item 9a: each running `serve` with the configuration it runs with (its
    -- file's fingerprint and the partners it polls), so that every view can tell a partner
    -- the service does not know yet, or a configuration it has not reloaded.
    CREATE TABLE services (
        worker       TEXT PRIMARY KEY,   -- host:pid:nonce
        started_at   TEXT NOT NULL,
        loaded_at    TEXT NOT NULL,      -- its start or its last reload (SIGHUP)
        seen_at      TEXT NOT NULL,      -- its last heartbeat
        fingerprint  TEXT NOT NULL,
        partners     TEXT NOT NULL       -- JSON list of the partner ids it polls
    );
    """,
    """
    -- Issue 14 item 9: e-mails queued in the transaction that decided them (an alert, a
    -- file's rejection) and sent after its commit (gateway.service.mail): one a crash or a
    -- down server kept back is sent at the next flush.
    CREATE TABLE mail_outbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        queued_at   TEXT NOT NULL,
        kind        TEXT NOT NULL,      -- alert, notice
        partner     TEXT,
        file_id     TEXT,
        recipients  TEXT NOT NULL,      -- comma-separated addresses
        subject     TEXT NOT NULL,
        body        TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        claimed_at  REAL NOT NULL DEFAULT 0,  -- a worker sending it since (epoch seconds)
        sent_at     TEXT,
        last_error  TEXT
    );
    CREATE INDEX mail_outbox_unsent ON mail_outbox (sent_at);
    """,
    """
    -- Issue 14 item 11: a partner an admin paused is not polled (service/runner skips it)
    -- until resumed; one row while it is paused, removed by the resume.
    CREATE TABLE partner_pause (
        partner    TEXT PRIMARY KEY,
        paused_at  TEXT NOT NULL,
        paused_by  TEXT NOT NULL,
        reason     TEXT NOT NULL
    );
    """,
    """
    -- Issue 14 item 12: named web users and the hash-chained audit trail.
    -- users: the admin page's accounts; password_hash is argon2id (gateway.ledger.users),
    -- never the password. role: viewer (reads) or operator (reads and every action).
    CREATE TABLE users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        changed_at    TEXT NOT NULL
    );
    -- audit_log: one entry per admin.<verb> event, append only (gateway.ledger.audit).
    -- hash = SHA-256(prev_hash + canonical JSON of the other columns); prev_hash UNIQUE: no
    -- entry can have two successors (no fork, even from a writer that skipped the lock).
    CREATE TABLE audit_log (
        seq       INTEGER PRIMARY KEY,
        at        TEXT NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        reason    TEXT,
        partner   TEXT,
        file_id   TEXT,
        details   TEXT NOT NULL,
        prev_hash TEXT NOT NULL UNIQUE,
        hash      TEXT NOT NULL
    );
    """,
    # Issue 14 item 12: the admin events recorded before the audit log, chained in order.
    backfill,
    # Issue 14 web review item 5: a user name is one whatever its case ("Alice" is "alice",
    # as the sign-in throttle and users.find read it); the ledger refuses a second case.
    "CREATE UNIQUE INDEX users_name_nocase ON users (lower(name));",
)


def split_statements(script: str) -> Iterator[str]:
    """The statements of an SQL script, split where SQLite says one is complete.

    (executescript would COMMIT the migration's transaction half-way.)
    """
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        raise FatalError(f"incomplete SQL statement in a migration: {pending.strip()[:80]}")
