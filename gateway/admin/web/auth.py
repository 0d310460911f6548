"""Who may see the page and who may act on it: named users (``gateway.ledger.users``) who
sign in with the login form, and, for a transition, the one shared token of earlier versions.

A user signs in once (``login``); the browser then holds a session cookie (HttpOnly,
SameSite=Strict, Secure over HTTPS) naming the user, its expiry and a fingerprint of the
user's password hash, signed with a secret made when the page starts: a restart, a new
password or a removed user ends the session, and the role is read from the ledger on every
request, so a role change applies at once. Every POST carries a CSRF token derived from the
session cookie (a page of another site can neither read it nor, with SameSite=Strict, send the
cookie along). Failed sign-ins are throttled per name, and per address for a remote peer
(``Throttle``, ``login.throttle_keys``).

The shared token (``?token=`` once, or ``Authorization: Bearer``), when its environment
variable is set, still signs in as the operator ``token`` (docs/security.md says until when).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import os
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from flask import g, request

from gateway.errors import FatalError

COOKIE = "aimgw_session"
TOKEN_USER = "token"  # the name the shared token signs in as (role operator)
OPERATOR = "operator"
SESSION_SECONDS = 12 * 3600  # a session ends after a working day, whatever happens
MAX_FAILURES = 5  # failed sign-ins per name (and remote address) within FAILURE_WINDOW …
FAILURE_WINDOW = 15 * 60.0  # … before further attempts are refused until the oldest ages out
# A token must be long and varied: it is the only thing between the network and the ledger.
# Typed tokens ("aaaa…", "abab…", "password" repeated, "0123456789abcdef" twice, "abcdef…")
# are refused; random ones pass: every one of 100,000 secrets.token_urlsafe(32) (43 characters
# of 64 kinds), and all but 2 of 300,000 secrets.token_hex(16) (32 hex digits).
MIN_TOKEN_LENGTH = 32
MIN_DISTINCT = 8
MIN_BITS_PER_CHAR = 2.8  # Shannon entropy of the token's own characters
MAKE_TOKEN = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'


@dataclass(frozen=True)
class Guard:
    """The secret and the values derived from it; ``repr`` never shows the token."""

    token: str

    def __repr__(self) -> str:
        return "Guard(token=<hidden>)"

    def _derive(self, purpose: str) -> str:
        return hmac.new(self.token.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    @property
    def session_value(self) -> str:
        return self._derive("aimgw-web-session")

    @property
    def csrf_token(self) -> str:
        return self._derive("aimgw-web-csrf")

    def token_ok(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(),
                                                           self.token.encode())

    def session_ok(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(),
                                                           self.session_value.encode())

    def csrf_ok(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(),
                                                           self.csrf_token.encode())


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def guard_from_env(token_env: str, environ: Mapping[str, str] | None = None) -> Guard | None:
    """The guard for the transitional token in ``$token_env``, None when it is not set;
    FatalError (start refused) when it is set but too weak."""
    env = os.environ if environ is None else environ
    token = env.get(token_env, "")
    if not token:
        return None
    if (weakness := token_weakness(token)) is not None:
        raise FatalError(f"the token in {token_env} is refused: {weakness}. Make one with "
                         f"`{MAKE_TOKEN}` and start again, or unset it and sign in as a user "
                         "(`aim-gateway user add NAME --role operator`)")
    return Guard(token)


def token_weakness(token: str) -> str | None:
    """Why ``token`` is too weak to guard the page, or None when it will do."""
    if token.strip() != token:
        return "it has spaces around it"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"it has {len(token)} characters; at least {MIN_TOKEN_LENGTH} are needed"
    if len(set(token)) < MIN_DISTINCT:
        return (f"it has only {len(set(token))} distinct characters; at least {MIN_DISTINCT} "
                "are needed")
    counts = Counter(token).values()
    bits = -sum(n / len(token) * math.log2(n / len(token)) for n in counts)
    if bits < MIN_BITS_PER_CHAR:
        return (f"its characters vary too little ({bits:.1f} bits each; at least "
                f"{MIN_BITS_PER_CHAR:.1f} are needed)")
    if token in (token + token)[1:-1]:
        return "it repeats a shorter pattern"
    steps = sum(abs(ord(a) - ord(b)) == 1 for a, b in itertools.pairwise(token))
    if steps * 2 > len(token) - 1:
        return "it is mostly a run of neighbouring characters (abc…, 123…)"
    return None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent this request: a user (or the shared token), its role, its CSRF token."""

    name: str
    role: str
    csrf: str

    @property
    def operator(self) -> bool:
        return self.role == OPERATOR


@dataclass(frozen=True)
class Sessions:
    """Signed session cookies: ``name|expires|fingerprint|signature``."""

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def _sign(self, purpose: str, payload: str) -> str:
        return hmac.new(self.secret, f"{purpose}\n{payload}".encode(),
                        hashlib.sha256).hexdigest()

    def cookie(self, name: str, fingerprint: str, now: float | None = None) -> str:
        payload = f"{name}|{int((now or time.time()) + SESSION_SECONDS)}|{fingerprint}"
        return f"{payload}|{self._sign('session', payload)}"

    def parse(self, value: str | None, now: float | None = None) -> tuple[str, str] | None:
        """(name, fingerprint) of a cookie this page signed and that has not expired."""
        if not value or value.count("|") != 3:
            return None
        payload, _, signature = value.rpartition("|")
        if not hmac.compare_digest(signature.encode(),
                                   self._sign("session", payload).encode()):
            return None
        name, expires, fingerprint = payload.split("|")
        if not expires.isdigit() or int(expires) < (now or time.time()):
            return None
        return name, fingerprint

    def csrf(self, cookie: str) -> str:
        return self._sign("csrf", cookie)

    @property
    def login_csrf(self) -> str:
        return self._sign("login", "")


class Throttle:
    """Failed sign-ins per key (a user name, an address) within ``FAILURE_WINDOW``."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()  # waitress serves from several threads

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def wait(self, keys: list[str], now: float | None = None) -> float:
        """Seconds until ``keys`` may try again; 0 when they may now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            waits = [times[0] + self.window - now for key in keys
                     if len(times := self._recent(key, now)) >= self.limit]
        return max(waits, default=0.0)

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._failures) > 10_000:  # names made up by a guesser: forget the stale
                for key in [k for k in self._failures if not self._recent(k, now)]:
                    del self._failures[key]
            for key in keys:
                self._recent(key, now).append(now)


def foreign_origin() -> bool:
    """Whether the request names an ``Origin`` other than this page's: a form posted by
    another site (the one check, for the sign-in form and for every other POST)."""
    origin = request.headers.get("Origin")
    return origin is not None and origin.rstrip("/") != request.host_url.rstrip("/")


def web_actor() -> str:
    """Who did it, for the audit trail: the signed-in user and the address it came from (no
    proxy header is trusted: server.py). The one place that says it."""
    principal: Principal = g.principal
    return f"web:{principal.name}@{request.remote_addr}"
