"""The admin web app: a thin Flask edge (STYLE 2) around the pages of ``pages`` (one
Blueprint).

Every request needs a signed-in user and every POST an operator (``_authenticate``: the one
check; ``auth`` and ``login`` say how users sign in), every response carries the same security
headers, and an error (a wrong URL, a busy ledger) is a page that says what to do. The pages
read the ledger through a read-only connection opened for that request.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, current_app, g, redirect, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from gateway.admin.hosts import host_allowed
from gateway.admin.web.auth import (
    COOKIE,
    OPERATOR,
    TOKEN_USER,
    Guard,
    Principal,
    Sessions,
    bearer,
    foreign_origin,
)
from gateway.admin.web.login import (
    ANY_USER_POSTS,
    OPEN,
    SESSIONS,
    local_path,
    login,
    login_page,
    set_session_cookie,
)
from gateway.admin.web.operations import ops
from gateway.admin.web.pages import CONFIG, ledger, pages
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.findings import CODES
from gateway.ledger import users
from gateway.ledger.reads.clock import person_time
from gateway.ledger.reads.files import display_status, is_failed
from gateway.ledger.store import ledger_exists

# No inline script or style, nothing from elsewhere: an injected tag could do nothing. The one
# script is our own file (static/refresh.js: the dashboard reloading itself).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
GUARD = "AIMGW_GUARD"  # where create_app keeps the token guard (or None) in app.config
SERVED_ON = "AIMGW_SERVED_ON"  # the address served on: its Host header is answered too
ROLE_MESSAGE = ("{name} is a {role}: only an operator may change anything. Ask an operator, "
                "or an administrator to run `aim-gateway user role {name} operator`.")


def create_app(config: Config, guard: Guard | None = None, host: str | None = None) -> Flask:
    """The admin app: the pages behind the sign-in, the security headers and the error
    pages; ``config``, ``guard`` (the transitional shared token, if set) and ``host`` (the
    address served on, default ``[web] host``) are kept in the app's config for them, with
    this start's session secret."""
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024, TEMPLATES_AUTO_RELOAD=False)
    app.config[CONFIG], app.config[GUARD] = config, guard
    app.config[SERVED_ON] = host or config.web.host
    app.config[SESSIONS] = Sessions()
    app.jinja_env.autoescape = True  # every template, whatever its name ends with
    app.jinja_env.filters.update(local=lambda text: _local(config, text), tons=_tons)
    app.jinja_env.filters["show"] = _show
    app.jinja_env.globals.update(status_of=display_status, is_failed=is_failed,
                                 rule_text=lambda code: CODES.get(code, ("", ""))[1])
    app.before_request(_host_check)  # first: a rebound page gets nothing, not even the form
    app.before_request(_authenticate)
    app.after_request(_headers)
    app.register_error_handler(HTTPException, _error)
    app.register_error_handler(GatewayError, _busy)  # a busy or unreachable ledger
    app.context_processor(_common)
    app.register_blueprint(pages)
    app.register_blueprint(ops)  # downloads and actions (issue 14 item 11)
    app.register_blueprint(login)
    return app


def _guard() -> Guard | None:
    guard: Guard | None = current_app.config[GUARD]
    return guard


def _host_check() -> None:
    """421 for a Host header that is not this machine's (DNS rebinding: ``hosts``), unless
    the page serves other machines (``[web] allow_remote``)."""
    config: Config = current_app.config[CONFIG]
    if not host_allowed(request.headers.get("Host"), current_app.config[SERVED_ON],
                        config.web.allow_remote):
        abort(421, "This page answers to its own address only: open it as "
                   "http://127.0.0.1:PORT/ or http://localhost:PORT/.")


def _authenticate() -> BaseResponse | None:
    """Central authorization: a GET needs any signed-in user, every POST the operator role
    (and a CSRF token from our own form); a new POST route needs nothing of its own."""
    if request.endpoint in OPEN:
        return None
    found = _principal()
    if isinstance(found, BaseResponse):
        return found
    if found is None:
        return _refuse(401)
    g.principal = found
    if request.method == "POST":
        if foreign_origin() or not hmac.compare_digest(request.form.get("csrf", "").encode(),
                                                       found.csrf.encode()):
            return _refuse(403)
        if not found.operator and request.endpoint not in ANY_USER_POSTS:
            return _refuse(403, ROLE_MESSAGE.format(name=found.name, role=found.role))
    return None


def _principal() -> Principal | BaseResponse | None:
    """The user (or token) this request comes from; a redirect when ``?token=`` came."""
    guard = _guard()
    header = request.headers.get("Authorization")
    if guard is not None and (offered := request.args.get("token")) is not None:
        if not guard.token_ok(offered):
            return None
        # The token leaves the URL at once: out of history, logs and Referer headers.
        rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
        target = local_path(request.path) + ("?" + urlencode(rest) if rest else "")
        response = redirect(target, 303)
        set_session_cookie(response, guard.session_value)
        return response
    cookie = request.cookies.get(COOKIE)
    if guard is not None and (guard.token_ok(bearer(header)) if header is not None
                              else guard.session_ok(cookie)):
        return Principal(TOKEN_USER, OPERATOR, guard.csrf_token)
    return None if header is not None else user_principal(cookie)


def user_principal(cookie: str | None) -> Principal | None:
    """The user of a session cookie, as the ledger has it now (role, password)."""
    sessions: Sessions = current_app.config[SESSIONS]
    signed = sessions.parse(cookie)
    if cookie is None or signed is None or not ledger_exists(current_app.config[CONFIG]):
        return None
    name, fingerprint = signed
    user = users.find(ledger().db, name)
    if user is None or not hmac.compare_digest(user.fingerprint.encode(), fingerprint.encode()):
        return None
    return Principal(user.name, user.role, sessions.csrf(cookie))


def _headers(response: Response) -> Response:
    response.headers.update({
        "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
        # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on
        # our own form, and the Origin check above could not tell it from a foreign one.
        "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store"})
    return response


def _error(err: HTTPException) -> tuple[str, int]:
    return render_template("error.html", code=err.code, title=err.name,
                           message=err.description), err.code or 500


def _busy(err: Exception) -> tuple[str, int]:
    """The ledger busy or out of reach: each backend translates its driver's errors into the
    gateway's own (gateway.ledger.sqlite / postgres), so the page never sees a driver's."""
    return render_template("error.html", code=503, title="Ledger unavailable",
                           message=f"The ledger could not be read ({err}); reload."), 503


def _common() -> dict[str, Any]:
    config: Config = current_app.config[CONFIG]
    principal: Principal | None = g.get("principal")
    return {"csrf_token": principal.csrf if principal else "", "user": principal,
            "partners": config.partners, "zone": config.gateway.timezone}


def _refuse(code: int, message: str | None = None) -> Response:
    """401: the sign-in form (the page asked for comes back after it); 403: refused."""
    if code == 401:
        response = Response(login_page(), 401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="aim-gateway"'
        return response
    return Response(render_template("error.html", code=code, title="Refused", message=(
        message or "The form was not sent from this page (missing or wrong CSRF token). "
        "Reload the page and try again.")), code)


def _local(config: Config, text: object) -> str:
    """A time from the ledger as people read it (``person_time``); a dash for none."""
    shown = person_time(text if isinstance(text, str | datetime) else None,
                        config.gateway.zone)
    return shown or ("–" if not text else str(text))


def _show(value: object) -> str:
    """An event's value as text: lists joined, nothing as a dash."""
    if value is None or value == []:
        return "–"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _tons(value: float) -> str:
    return f"{value:,.3f}"
