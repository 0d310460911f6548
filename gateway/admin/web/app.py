"""The admin web app: a thin Flask edge (STYLE 2) around the pages of ``pages`` (one
Blueprint).

Every request needs the token (see ``auth``), every response carries the same security
headers, and an error (a wrong URL, a busy ledger) is a page that says what to do. The pages
read the ledger through a read-only connection opened for that request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, current_app, redirect, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from gateway.admin.web.auth import COOKIE, Guard, bearer
from gateway.admin.web.pages import CONFIG, pages
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.findings import CODES
from gateway.ledger.reads.clock import person_time
from gateway.ledger.reads.files import display_status, is_failed

# No script, no inline style, nothing from elsewhere: an injected tag could do nothing.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
GUARD = "AIMGW_GUARD"  # where create_app keeps the token guard in app.config


def create_app(config: Config, guard: Guard) -> Flask:
    """The admin app: the pages behind the token check, the security headers and the error
    pages; ``config`` and ``guard`` are kept in the app's config for them."""
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024, TEMPLATES_AUTO_RELOAD=False)
    app.config[CONFIG], app.config[GUARD] = config, guard
    app.jinja_env.autoescape = True  # every template, whatever its name ends with
    app.jinja_env.filters.update(local=lambda text: _local(config, text), tons=_tons)
    app.jinja_env.filters["show"] = _show
    app.jinja_env.globals.update(status_of=display_status, is_failed=is_failed,
                                 rule_text=lambda code: CODES.get(code, ("", ""))[1])
    app.before_request(_authenticate)
    app.after_request(_headers)
    app.register_error_handler(HTTPException, _error)
    app.register_error_handler(GatewayError, _busy)  # a busy or unreachable ledger
    app.context_processor(_common)
    app.register_blueprint(pages)
    return app


def _guard() -> Guard:
    guard: Guard = current_app.config[GUARD]
    return guard


def _authenticate() -> BaseResponse | None:
    guard = _guard()
    offered = request.args.get("token")
    if offered is not None:
        if not guard.token_ok(offered):
            return _refuse(401)
        # The token leaves the URL at once: out of history, logs and Referer headers.
        rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
        # One leading slash: "//host/…" would send the browser to another site.
        target = "/" + request.path.lstrip("/") + ("?" + urlencode(rest) if rest else "")
        response = redirect(target, 303)
        response.set_cookie(COOKIE, guard.session_value, httponly=True, samesite="Strict",
                            secure=request.is_secure, path="/")
        return response
    header = request.headers.get("Authorization")
    if header is not None:
        if not guard.token_ok(bearer(header)):
            return _refuse(401)
    elif not guard.session_ok(request.cookies.get(COOKIE)):
        return _refuse(401)
    if request.method == "POST":  # the one write: it must come from our own form
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") != request.host_url.rstrip("/"):
            return _refuse(403)
        if not guard.csrf_ok(request.form.get("csrf")):
            return _refuse(403)
    return None


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
    return {"csrf_token": _guard().csrf_token, "partners": config.partners,
            "zone": config.gateway.timezone}


def _refuse(code: int) -> Response:
    titles = {401: "Token required", 403: "Refused"}
    messages = {
        401: "This page needs the access token. Open it once as /?token=<the value of the "
             "token environment variable the server was started with>, or send "
             "'Authorization: Bearer <token>'.",
        403: "The form was not sent from this page (missing or wrong CSRF token). Reload "
             "the page and try again."}
    response = Response(render_template("error.html", code=code, title=titles[code],
                                        message=messages[code]), code)
    if code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="aim-gateway"'
    return response


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
