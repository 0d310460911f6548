"""The admin pages: a thin Flask edge over ``queries`` and ``charts`` (STYLE 2).

Every request needs the token (see ``auth``); every page reads the ledger through a read-only
connection opened for that request; the one write, reprocess, goes through
``gateway.admin.actions.reprocess`` like the command line does, with the reason the admin typed.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from gateway.admin.queries import day_start_utc
from gateway.admin.web import charts, queries
from gateway.admin.web.auth import COOKIE, Guard, bearer
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.findings import CODES
from gateway.ledger.db import Database
from gateway.ledger.store import Ledger, ledger_exists, open_ledger

MAX_REASON = 500
# No script, no inline style, nothing from elsewhere: an injected tag could do nothing.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


def create_app(config: Config, guard: Guard) -> Flask:
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024, TEMPLATES_AUTO_RELOAD=False)
    app.jinja_env.autoescape = True  # every template, whatever its name ends with
    app.jinja_env.filters.update(local=lambda text: _local(config, text), tons=_tons)
    app.jinja_env.filters["show"] = _show
    app.jinja_env.globals.update(status_of=queries.display_status, is_failed=queries.is_failed,
                                 rule_text=lambda code: CODES.get(code, ("", ""))[1])

    def ledger() -> Ledger:
        """This request's read-only connection (SQLite file or PostgreSQL), opened once."""
        if "ledger" not in g:
            if not ledger_exists(config):
                abort(503, "There is no ledger yet: nothing has been received. Run the "
                           "gateway (`aim-gateway run --once` or `serve`) first.")
            g.ledger = open_ledger(config, readonly=True)
        ledger: Ledger = g.ledger  # flask's g holds Any
        return ledger

    def db() -> Database:
        return ledger().db

    @app.teardown_request
    def _close(_: BaseException | None) -> None:
        led = g.pop("ledger", None)
        if led is not None:
            led.close()

    @app.before_request
    def _authenticate() -> BaseResponse | None:
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

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.update({
            "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on
            # our own form, and the Origin check above could not tell it from a foreign one.
            "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store"})
        return response

    @app.errorhandler(HTTPException)
    def _error(err: HTTPException) -> tuple[str, int]:
        return render_template("error.html", code=err.code, title=err.name,
                               message=err.description), err.code or 500

    # TransientError: the ledger busy or out of reach (each backend translates its driver's
    # errors into the gateway's own, gateway.ledger.db).
    @app.errorhandler(GatewayError)
    def _busy(err: Exception) -> tuple[str, int]:
        return render_template("error.html", code=503, title="Ledger unavailable",
                               message=f"The ledger could not be read ({err}); reload."), 503

    @app.context_processor
    def _common() -> dict[str, Any]:
        return {"csrf_token": guard.csrf_token, "partners": config.partners,
                "zone": config.gateway.timezone}

    @app.get("/")
    def dashboard() -> str:
        now = queries.now_utc()
        today = queries.local_today(config, now)
        start = day_start_utc(config, today)
        conn = db()
        files = queries.list_files(config, conn, queries.FileFilter(since=today))
        failed = [(row, queries.failure_reason(conn, row)) for row in queries.list_files(
            config, conn, queries.FileFilter(since=today, status="FAILED"))]
        # Nothing today (a quiet morning, a weekend): show the latest files instead.
        latest = [] if files else queries.list_files(config, conn, queries.FileFilter())[:20]
        unfinished = conn.execute("SELECT COUNT(*) FROM files WHERE state != 'DONE'"
                                  ).fetchone()[0]
        quarantined = conn.execute("SELECT COUNT(*) FROM file_failures "
                                   "WHERE quarantined_at IS NOT NULL").fetchone()[0]
        return render_template(
            "dashboard.html", today=today, health=queries.partner_health(
                config, ledger(), start, now), files=files[:queries.MAX_ROWS],
            more=len(files) > queries.MAX_ROWS, failed=failed, unfinished=unfinished,
            quarantined=quarantined, latest=latest)

    @app.get("/files")
    def files() -> str:
        problems: list[str] = []
        status = request.args.get("status", "")
        filt = queries.FileFilter(
            partner=request.args.get("partner", ""),
            status=status if status in queries.FILE_STATUSES else "",
            since=_date_arg("since", problems), text=request.args.get("q", "").strip())
        rows = queries.list_files(config, db(), filt)
        return render_template("files.html", rows=rows[:queries.MAX_ROWS],
                               more=len(rows) > queries.MAX_ROWS, filt=filt,
                               statuses=queries.FILE_STATUSES, problems=problems)

    def render_file(file_id: str, error: str | None = None, reason: str = "",
                    code: int = 200) -> tuple[str, int]:
        story = queries.file_story(db(), ledger(), file_id)
        if story is None:
            abort(404, f"No file {file_id!r} in the ledger.")
        return render_template("file.html", s=story, f=story.row, error=error, reason=reason,
                               max_rows=queries.MAX_ROWS), code

    @app.get("/files/<file_id>")
    def file_page(file_id: str) -> tuple[str, int]:
        return render_file(file_id)

    @app.post("/files/<file_id>/reprocess")
    def reprocess(file_id: str) -> Any:
        reason = " ".join(request.form.get("reason", "").split())
        if not reason:
            return render_file(file_id, "Give a reason: it is recorded with the reprocess.",
                               code=400)
        if len(reason) > MAX_REASON:
            return render_file(file_id, f"Keep the reason under {MAX_REASON} characters.",
                               reason, 400)
        from gateway.admin import actions  # written alongside; imported late so pages work without

        try:
            new_id = actions.reprocess(config, file_id, reason,
                                     actor=f"web:{request.remote_addr}")
        except actions.ReprocessFailed as err:  # received as a new file, which failed
            return render_file(file_id, f"Reprocess failed: {err}", reason, 500)
        except GatewayError as err:
            return render_file(file_id, f"Not reprocessed: {err}", reason, 409)
        return redirect(url_for("file_page", file_id=new_id), 303)

    @app.get("/licenses")
    def licenses() -> str:
        problems: list[str] = []
        search = queries.LicenseSearch(
            text=request.args.get("q", "").strip(),
            importer=request.args.get("importer", "").strip(),
            partner=request.args.get("partner", ""),
            issued_from=_date_arg("from", problems), issued_to=_date_arg("to", problems))
        conn = db()
        rows = [] if search.empty else queries.search_licenses(conn, search)
        apps = queries.applications_for_ref(conn, search.text) if search.text else []
        return render_template("licenses.html", search=search, rows=rows[:queries.MAX_ROWS],
                               more=len(rows) > queries.MAX_ROWS,
                               apps=apps[:queries.MAX_ROWS], problems=problems)

    @app.get("/licenses/<number>")
    def license_page(number: str) -> str:
        found = queries.license_detail(db(), number)
        if found is None:
            abort(404, f"No license {number!r} in the ledger.")
        lic, products = found
        return render_template("license.html", lic=lic, products=products)

    @app.get("/charts")
    def charts_page() -> str:
        conn = db()
        first, last = charts.default_months(conn, queries.local_today(config))
        problems: list[str] = []
        first = _month_arg("from") or first
        last = _month_arg("to") or last
        if first > last:
            problems.append("'from' is after 'to': the two were swapped.")
            first, last = last, first
        partner = request.args.get("partner", "")
        months = charts.month_range(first, last)
        built = [charts.build_chart(dim, months,
                                    charts.monthly_tons(conn, dim, first, months[-1], partner))
                 for dim in charts.DIMENSIONS]
        return render_template("charts.html", charts=built, first=first, last=months[-1],
                               partner=partner, problems=problems)

    return app


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


def _date_arg(name: str, problems: list[str]) -> date | None:
    text = request.args.get(name, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append(f"'{name}' is not a date YYYY-MM-DD; ignored.")
        return None


def _month_arg(name: str) -> str | None:
    """The month ``name`` of the query (``YYYY-MM``), None when not given; 400 otherwise."""
    text = request.args.get(name, "").strip()
    if not text:
        return None
    if not charts.valid_month(text):
        abort(400, f"'{name}' must be a month YYYY-MM from {charts.FIRST_MONTH} to "
                   f"{charts.LAST_MONTH}, not {text[:40]!r}.")
    return text


def _local(config: Config, text: object) -> str:
    """A UTC ISO time from the ledger as the admin's wall clock (gateway time zone)."""
    moment = queries.parse_time(text)
    if moment is None:
        return "–" if not text else str(text)
    return moment.astimezone(config.gateway.zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _show(value: object) -> str:
    """An event's value as text: lists joined, nothing as a dash."""
    if value is None or value == []:
        return "–"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _tons(value: float) -> str:
    return f"{value:,.3f}"
