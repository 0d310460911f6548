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
import os
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import FatalError

COOKIE = "aimgw_session"
MIN_TOKEN_LENGTH = 16  # shorter tokens are guessable; secrets.token_urlsafe(32) gives 43


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
            "(for example to the output of `python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`) and start it again")
    if len(token) < MIN_TOKEN_LENGTH or token.strip() != token:
        raise FatalError(f"the token in {token_env} must be at least {MIN_TOKEN_LENGTH} "
                         "characters with no surrounding spaces")
    return Guard(token)
