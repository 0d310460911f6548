"""Who may see the page: one shared token from the environment, checked on every request.

The token itself travels once (``?token=`` or ``Authorization: Bearer``); the browser then
holds a value derived from it in an HttpOnly, SameSite=Strict cookie, and the URL is
redirected without it so that it stays out of history, logs and Referer headers. The CSRF
token of the reprocess form is derived from the same secret: a page of another site can
neither read it nor, with SameSite=Strict, send the cookie along.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import FatalError

COOKIE = "aimgw_session"
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


def guard_from_env(token_env: str, environ: Mapping[str, str] | None = None) -> Guard:
    """The guard for the token in ``$token_env``; FatalError (start refused) when unusable."""
    env = os.environ if environ is None else environ
    token = env.get(token_env, "")
    if not token:
        raise FatalError(
            f"the web page needs an access token: set the environment variable {token_env} "
            f"(for example to the output of `{MAKE_TOKEN}`) and start it again")
    if (weakness := token_weakness(token)) is not None:
        raise FatalError(f"the token in {token_env} is refused: {weakness}. Make one with "
                         f"`{MAKE_TOKEN}` and start again")
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
