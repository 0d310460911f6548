"""Who may use the admin page, and what admins did: the web users (``gateway.ledger.users``)
and the audit trail (``gateway.ledger.audit``), for the ``user`` and ``audit`` commands.

Every change of a user is an admin action like a reprocess: one ``admin.user_<verb>`` event
in the transaction that makes the change, so the audit trail records it with who and why
(never the password or its hash).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gateway.admin import queries
from gateway.admin.reasons import clean_reason
from gateway.config import Config
from gateway.errors import FatalError
from gateway.ledger import audit, users
from gateway.ledger.audit import AuditEntry, Verdict
from gateway.ledger.store import Ledger, open_ledger, utc_stamp
from gateway.service.runner import event_log


@contextmanager
def _change(config: Config) -> Iterator[tuple[Ledger, Callable[..., Any]]]:
    """A writable ledger in a transaction, and the emit of its event log."""
    ledger, events = open_ledger(config), event_log(config)
    try:
        with ledger.transaction():
            yield ledger, lambda kind, **data: events.emit(ledger, kind, **data)
    finally:
        events.close()
        ledger.close()


def add_user(config: Config, name: str, role: str, password: str, actor: str,
             reason: str) -> None:
    why = clean_reason(reason, "user add")
    hashed = users.hash_password(password)  # before the transaction: it takes a while
    with _change(config) as (ledger, emit):
        users.add(ledger.db, name, role, hashed, utc_stamp())
        emit("admin.user_add", actor=actor, reason=why, user=name, role=role)


def remove_user(config: Config, name: str, actor: str, reason: str) -> None:
    why = clean_reason(reason, "user remove")
    with _change(config) as (ledger, emit):
        old = users.remove(ledger.db, name)
        emit("admin.user_remove", actor=actor, reason=why, user=name, role=old.role)


def set_password(config: Config, name: str, password: str, actor: str, reason: str) -> None:
    why = clean_reason(reason, "password change")
    hashed = users.hash_password(password)
    with _change(config) as (ledger, emit):
        users.set_password(ledger.db, name, hashed, utc_stamp())
        emit("admin.user_passwd", actor=actor, reason=why, user=name)


def set_role(config: Config, name: str, role: str, actor: str, reason: str) -> str:
    """Change a user's role; returns the role it had."""
    why = clean_reason(reason, "role change")
    with _change(config) as (ledger, emit):
        old = users.set_role(ledger.db, name, role, utc_stamp())
        emit("admin.user_role", actor=actor, reason=why, user=name, role=role,
             was=old.role)
    return old.role


def list_users(config: Config) -> list[users.User]:
    with queries.reading(config) as ledger:
        return [] if ledger is None else users.all_users(ledger.db)


def audit_entries(config: Config, limit: int) -> list[AuditEntry]:
    with queries.reading(config) as ledger:
        return [] if ledger is None else audit.entries(ledger.db, limit)


def verify_audit(config: Config, expect_head: str | None = None) -> Verdict:
    if expect_head is not None and len(expect_head) != 64:
        raise FatalError(f"--expect-head takes a SHA-256 in hex (64 characters): "
                         f"{expect_head!r}")
    with queries.reading(config) as ledger:
        if ledger is None:
            return audit.Verdict(0, 0, audit.GENESIS) if expect_head is None else audit.Verdict(
                0, 0, audit.GENESIS, 1, f"the expected head {expect_head} is not in the log: "
                "there is no ledger")
        return audit.verify(ledger.db, expect_head and expect_head.lower())
