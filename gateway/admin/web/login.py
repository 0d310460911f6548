"""Signing in and out of the admin page: the login form, checked against the ledger's users
(``gateway.ledger.users``: argon2id, as slow for an unknown name as for a wrong password),
with failed attempts throttled per name, and per address for a remote peer
(``auth.Throttle``, ``throttle_keys``).

``app._authenticate`` lets the form and the stylesheet through unsigned (``OPEN``) and lets
any signed-in user sign out (``ANY_USER_POSTS``); every other POST needs an operator.
"""

from __future__ import annotations

import hmac
import logging
import math
import re
from urllib.parse import unquote, urlsplit

from flask import Blueprint, current_app, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from gateway.admin.web.auth import COOKIE, Sessions, Throttle, foreign_origin
from gateway.admin.web.pages import CONFIG, ledger
from gateway.config_service import is_loopback
from gateway.ledger import users
from gateway.ledger.store import ledger_exists
from gateway.textsafe import printable

SESSIONS = "AIMGW_SESSIONS"  # where create_app keeps this start's Sessions in app.config
THROTTLE = "AIMGW_THROTTLE"
OPEN = frozenset({"login.form", "login.sign_in", "static"})
ANY_USER_POSTS = frozenset({"login.sign_out"})

login = Blueprint("login", __name__)
log = logging.getLogger("gateway.web")


def _sessions() -> Sessions:
    sessions: Sessions = current_app.config[SESSIONS]
    return sessions


def _throttle() -> Throttle:
    throttle: Throttle = current_app.config.setdefault(THROTTLE, Throttle())
    return throttle


ON_THIS_SITE = re.compile(r"/(?!/)")  # "/page"; "//host" is another site


def local_path(target: str | None) -> str:
    """``target`` when it is a path on this site, else "/". Read as a browser reads it: a
    browser drops tabs and newlines and takes a backslash for "/", so "/<tab>/evil.com" and
    "/<backslash>evil.com" are "//evil.com", another site; those characters go first, and
    what is left must be a path with no scheme and no host, percent-decoded too (a target
    decoded once more on its way, as "/%09/evil.com" in a query is, stays on this site)."""
    text = _as_browsed(target or "")
    return text if _on_this_site(text) and _on_this_site(_as_browsed(unquote(text))) else "/"


def _as_browsed(text: str) -> str:
    return "".join(c for c in text if c.isprintable() and not c.isspace()).replace("\\", "/")


def _on_this_site(text: str) -> bool:
    parts = urlsplit(text)
    return ON_THIS_SITE.match(text) is not None and not (parts.scheme or parts.netloc)


def throttle_keys(name: str) -> list[str]:
    """What a failed sign-in counts against: the name, whatever its case (names are one
    whatever their case: ``users``), and the address of a remote peer. Not a loopback one:
    behind an SSH tunnel or ``serve`` every user comes from 127.0.0.1, and a guesser trying
    names would lock them all out."""
    address = request.remote_addr or ""
    return [f"name:{name.lower()}"] + ([] if is_loopback(address) else [f"address:{address}"])


def login_page(error: str | None = None, name: str = "") -> str:
    """The sign-in form; after it the browser goes back to the page asked for."""
    target = request.form.get("next") if request.method == "POST" else request.full_path
    return render_template("login.html", login_csrf=_sessions().login_csrf, error=error,
                           name=name, next=local_path(target).rstrip("?"))


def set_session_cookie(response: BaseResponse, value: str) -> None:
    # Secure whenever the page is reached over HTTPS; plain HTTP is loopback only (server.py).
    response.set_cookie(COOKIE, value, httponly=True, samesite="Strict",
                        secure=request.is_secure, path="/")


@login.get("/login")
def form() -> str:
    return login_page()


@login.post("/login")
def sign_in() -> BaseResponse | tuple[str, int]:
    if foreign_origin() or not hmac.compare_digest(request.form.get("csrf", "").encode(),
                                                   _sessions().login_csrf.encode()):
        return login_page("The form was not sent from this page: sign in again."), 403
    name, password = request.form.get("name", "").strip(), request.form.get("password", "")
    keys = throttle_keys(name)
    if wait := _throttle().wait(keys):
        return login_page(f"Too many failed sign-ins: try again in {math.ceil(wait / 60)} "
                          "minute(s).", name), 429
    known = users.NAME.fullmatch(name) and ledger_exists(current_app.config[CONFIG])
    user = users.find(ledger().db, name) if known else None
    if not users.password_ok(user, password):
        _throttle().failed(keys)
        # The name and address only: never the password, which is sometimes typed there.
        log.warning("failed sign-in as %s from %s", printable(name[:64]), request.remote_addr)
        return login_page("Wrong name or password.", name), 401
    assert user is not None
    response = redirect(local_path(request.form.get("next")), 303)
    set_session_cookie(response, _sessions().cookie(user.name, user.fingerprint))
    return response


@login.post("/logout")
def sign_out() -> BaseResponse:
    response = redirect("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response
