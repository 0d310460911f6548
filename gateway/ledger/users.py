"""The admin page's users: a name, a role and an argon2id hash of the password.

Roles: ``viewer`` reads every page; ``operator`` also runs every action (every POST of the
web page). The password never reaches the ledger, a log or an event: only its hash is stored,
and ``fingerprint`` (a digest of the hash) is what a session remembers, so that a new password
ends the sessions of the old one.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.errors import FatalError
from gateway.ledger.db import Database

ROLES = ("viewer", "operator")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte "password" is a denial of service
# Letters, digits, . _ - : a name is shown in the audit trail and kept in a cookie.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# argon2-cffi's defaults (RFC 9106's second recommendation: argon2id, 64 MiB, t=3, p=4).
_HASHER = PasswordHasher()


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    password_hash: str
    created_at: str
    changed_at: str

    def __repr__(self) -> str:  # a log line or traceback never shows the hash
        return f"User(name={self.name!r}, role={self.role!r})"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:32]


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise FatalError(f"{name!r} is not a user name: 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise FatalError(f"{role!r} is not a role: {' or '.join(ROLES)}")
    return role


def password_weakness(password: str) -> str | None:
    """Why ``password`` is refused, or None."""
    if len(password) < MIN_PASSWORD:
        return f"it has {len(password)} characters; at least {MIN_PASSWORD} are needed"
    if len(password) > MAX_PASSWORD:
        return f"it has more than {MAX_PASSWORD} characters"
    if len(set(password)) < 5:
        return "it has fewer than 5 distinct characters"
    return None


def hash_password(password: str) -> str:
    if (weakness := password_weakness(password)) is not None:
        raise FatalError(f"password refused: {weakness}")
    return _HASHER.hash(password)


@functools.cache
def _dummy() -> str:
    """Checked when the name is unknown, so that a wrong name costs what a wrong password
    does (made once, when first needed: a hash costs 64 MiB and tens of milliseconds)."""
    return _HASHER.hash("not a password of anyone")


def password_ok(user: User | None, password: str) -> bool:
    """Whether ``password`` is ``user``'s; as slow for an unknown user as for a known one."""
    if len(password) > MAX_PASSWORD:
        return False
    try:
        matched = _HASHER.verify(user.password_hash if user else _dummy(), password)
    except (VerificationError, InvalidHashError):
        return False
    return matched and user is not None


_COLUMNS = "name, role, password_hash, created_at, changed_at"


def find(db: Database, name: str) -> User | None:
    """The user of ``name`` whatever its case: "Alice" is "alice" (one name in the audit
    trail and the sign-in throttle; the ledger's index users_name_nocase keeps it so)."""
    row = db.execute(f"SELECT {_COLUMNS} FROM users WHERE lower(name) = lower(?)",
                     (name,)).fetchone()
    return User(*row) if row else None


def known(db: Database, name: str) -> User:
    user = find(db, name)
    if user is None:
        raise FatalError(f"no user {name!r}")
    return user


def all_users(db: Database) -> list[User]:
    return [User(*r) for r in db.execute(f"SELECT {_COLUMNS} FROM users ORDER BY name")]


def count(db: Database) -> int:
    return int(db.execute("SELECT COUNT(*) FROM users").fetchone()[0])


def add(db: Database, name: str, role: str, password_hash: str, at: str) -> None:
    if (same := find(db, check_name(name))) is not None:
        raise FatalError(f"user {same.name!r} exists already (change it with `user passwd` or "
                         "`user role`)")
    db.execute(f"INSERT INTO users ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
               (name, check_role(role), password_hash, at, at))


def remove(db: Database, name: str) -> User:
    user = known(db, name)
    db.execute("DELETE FROM users WHERE name = ?", (user.name,))
    return user


def set_password(db: Database, name: str, password_hash: str, at: str) -> None:
    user = known(db, name)
    db.execute("UPDATE users SET password_hash = ?, changed_at = ? WHERE name = ?",
               (password_hash, at, user.name))


def set_role(db: Database, name: str, role: str, at: str) -> User:
    """The user as it was (its old role is recorded with the change)."""
    user = known(db, name)
    db.execute("UPDATE users SET role = ?, changed_at = ? WHERE name = ?",
               (check_role(role), at, user.name))
    return user
