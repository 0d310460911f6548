"""The admin pages, as one Flask Blueprint: each route reads the read model
(``gateway.ledger.reads``; ``charts`` for the charts) on this request's read-only ledger and
renders a template. The one write, reprocess, goes through ``gateway.admin.actions.reprocess``
like the command line does, with the reason the admin typed.

``app.create_app`` registers the Blueprint behind the sign-in (any user reads, an operator
acts: ``app._authenticate``) and the error pages.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from gateway.admin import listing, queries
from gateway.admin.reasons import MAX_REASON, clean_reason
from gateway.admin.web import charts
from gateway.admin.web.auth import web_actor
from gateway.config import Config
from gateway.errors import FatalError, GatewayError
from gateway.ledger.progress import Progress, in_progress
from gateway.ledger.reads.files import (
    FILE_STATUSES,
    FileQuery,
    count_files,
    failure_reason,
    list_files,
    quarantined_count,
    unfinished_count,
)
from gateway.ledger.reads.health_words import describe
from gateway.ledger.reads.licenses import (
    LICENSE_STATES,
    LicenseQuery,
    applications_for_ref,
    count_licenses,
    license_story,
    list_licenses,
)
from gateway.ledger.reads.story import application_page, file_story, finding_groups
from gateway.ledger.store import Ledger, ledger_exists, open_ledger

MAX_ROWS = 200  # rows on a list page; the page says when there are more
EXPORT_ROWS = 100_000  # rows a listing's CSV link gives at most
LATEST = 20  # files shown on a quiet day's dashboard
CONFIG = "AIMGW_CONFIG"  # where create_app puts the gateway's Config in app.config

pages = Blueprint("pages", __name__)


def _config() -> Config:
    config: Config = current_app.config[CONFIG]
    return config


def ledger() -> Ledger:
    """This request's read-only connection (SQLite file or PostgreSQL), opened once."""
    if "ledger" not in g:
        if not ledger_exists(_config()):
            abort(503, "There is no ledger yet: nothing has been received. Run the "
                       "gateway (`aim-gateway run --once` or `serve`) first.")
        g.ledger = open_ledger(_config(), readonly=True)
    opened: Ledger = g.ledger  # flask's g holds Any
    return opened


@pages.teardown_app_request
def _close(_: BaseException | None) -> None:
    opened = g.pop("ledger", None)
    if opened is not None:
        opened.close()


def now_utc() -> datetime:
    return datetime.now(UTC)


def local_today(config: Config, now: datetime | None = None) -> date:
    return (now or now_utc()).astimezone(config.gateway.zone).date()


@pages.app_template_global()
def progress_of(file_id: str) -> Progress | None:
    """How far the file is read, while it is being processed (records read once a page)."""
    if "progress" not in g:
        g.progress = in_progress(_config().gateway.data_dir)
    found: Progress | None = g.progress.get(file_id)
    return found


@pages.get("/")
def dashboard() -> str:
    config, led, now = _config(), ledger(), now_utc()
    today, zone = local_today(config, now), config.gateway.zone
    files = list_files(led, FileQuery(since=today, limit=MAX_ROWS + 1), zone)
    failed = [(row, failure_reason(led.db, row)) for row in list_files(
        led, FileQuery(since=today, status="FAILED", limit=MAX_ROWS + 1), zone)]
    # Nothing today (a quiet morning, a weekend): show the latest files instead.
    latest = [] if files else list_files(led, FileQuery(limit=LATEST), zone)
    health = queries.health(led, config, now)
    return render_template(
        "dashboard.html", today=today, health=health,
        service_note=queries.service_note(led, config, now),
        details={h.partner.id: describe(h, now) for h in health}, files=files[:MAX_ROWS],
        more=len(files) > MAX_ROWS, failed=failed, unfinished=unfinished_count(led.db),
        working=[w for h in health for w in h.in_progress],
        quarantined=quarantined_count(led.db), latest=latest,
        refresh=config.web.refresh_seconds)


def _file_query(limit: int, problems: list[str]) -> FileQuery:
    """The files the page's filter asks for (the page and its CSV link alike)."""
    status = request.args.get("status", "")
    return FileQuery(partner=request.args.get("partner", ""),
                     status=status if status in FILE_STATUSES else "",
                     since=_date_arg("since", problems),
                     text=request.args.get("q", "").strip(), limit=limit)


def _csv_link(endpoint: str) -> str:
    """The CSV of the listing on screen: the same filter, every matching row."""
    query = urlencode(list(request.args.items(multi=True)))
    return url_for(endpoint) + (f"?{query}" if query else "")


@pages.get("/files")
def files() -> str:
    problems: list[str] = []
    query = _file_query(MAX_ROWS + 1, problems)
    rows = list_files(ledger(), query, _config().gateway.zone)
    total = count_files(ledger(), query, _config().gateway.zone) if len(rows) > MAX_ROWS \
        else len(rows)
    return render_template("files.html", rows=rows[:MAX_ROWS], total=total, filt=query,
                           statuses=FILE_STATUSES, problems=problems,
                           csv_url=_csv_link("pages.files_csv"))


@pages.get("/files.csv")
def files_csv() -> Response:
    rows = list_files(ledger(), _file_query(EXPORT_ROWS, []), _config().gateway.zone)
    return _csv("files.csv", listing.files_csv(rows))


def _csv(name: str, text: str) -> Response:
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _offset_arg() -> int:
    text = request.args.get("offset", "")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0


def render_file(file_id: str, error: str | None = None, reason: str = "",
                code: int = 200, *, action: str = "reprocess",
                done: str | None = None) -> tuple[str, int]:
    """The file page; ``error`` (with the ``reason`` typed) shown in ``action``'s section,
    ``done`` the name of the action that just went through (``operations.DONE``)."""
    story = file_story(ledger(), _config(), file_id, limit=MAX_ROWS,
                       today=local_today(_config()))
    if story is None:
        abort(404, f"No file {file_id!r} in the ledger.")
    rejected = request.args.get("apps") == "rejected"
    apps = application_page(ledger(), file_id, _offset_arg(), MAX_ROWS, rejected)
    return render_template("file.html", s=story, f=story.shown,
                           groups=finding_groups(ledger(), file_id), error=error,
                           reason=reason, max_rows=MAX_ROWS, action=action,
                           done=done, apps=apps, rejected_only=rejected), code


@pages.get("/files/<file_id>/findings.csv")
def findings_csv(file_id: str) -> Response:
    story = file_story(ledger(), _config(), file_id)
    if story is None:
        abort(404, f"No file {file_id!r} in the ledger.")
    return _csv(f"{file_id}-findings.csv", listing.findings_csv(story.findings))


@pages.get("/files/<file_id>/applications.csv")
def applications_csv(file_id: str) -> Response:
    if ledger().file(file_id) is None:
        abort(404, f"No file {file_id!r} in the ledger.")
    apps = application_page(ledger(), file_id, rejected_only=request.args.get("apps") ==
                            "rejected")
    return _csv(f"{file_id}-applications.csv", listing.applications_csv(apps.rows))


@pages.get("/files/<file_id>")
def file_page(file_id: str) -> tuple[str, int]:
    return render_file(file_id, done=request.args.get("done"))


@pages.post("/files/<file_id>/reprocess")
def reprocess(file_id: str) -> Any:
    typed = request.form.get("reason", "")
    try:
        reason = clean_reason(typed, "reprocess")
    except FatalError as err:
        return render_file(file_id, f"Give a reason ({err}).", typed[:MAX_REASON], 400)
    from gateway.admin import actions  # written alongside; imported late so pages work without

    try:
        new_id = actions.reprocess(_config(), file_id, reason,
                                   actor=web_actor())
    except actions.ReprocessFailed as err:  # received as a new file, which failed
        return render_file(file_id, f"Reprocess failed: {err}", reason, 500)
    except GatewayError as err:
        return render_file(file_id, f"Not reprocessed: {err}", reason, 409)
    return redirect(url_for("pages.file_page", file_id=new_id), 303)


def _license_query(limit: int, problems: list[str]) -> LicenseQuery:
    """The licenses the page's search asks for (the page and its CSV link alike); no search:
    the newest, as ``aim-gateway licenses`` lists them."""
    state = request.args.get("state", "").strip().upper()
    if state and state not in LICENSE_STATES:
        problems.append(f"'state' is not a license state ({', '.join(LICENSE_STATES)}); "
                        "ignored.")
        state = ""
    return LicenseQuery(
        text=request.args.get("q", "").strip(),
        importer=request.args.get("importer", "").strip(),
        partner=request.args.get("partner", ""),
        issued_from=_date_arg("from", problems), issued_to=_date_arg("to", problems),
        state=state, expiring_within=_days_arg("expiring", problems),
        on=_date_arg("as_of", problems) or local_today(_config()), limit=limit)


@pages.get("/licenses")
def licenses() -> str:
    problems: list[str] = []
    search = _license_query(MAX_ROWS, problems)
    rows = list_licenses(ledger(), search)
    total = count_licenses(ledger(), search) if len(rows) == MAX_ROWS else len(rows)
    apps = applications_for_ref(ledger(), search.text, MAX_ROWS + 1) if search.text else []
    return render_template("licenses.html", search=search, rows=rows, total=total,
                           apps=apps[:MAX_ROWS], apps_more=len(apps) > MAX_ROWS,
                           problems=problems, states=LICENSE_STATES,
                           csv_url=_csv_link("pages.licenses_csv"))


@pages.get("/licenses.csv")
def licenses_csv() -> Response:
    return _csv("licenses.csv", listing.licenses_csv(
        list_licenses(ledger(), _license_query(EXPORT_ROWS, []))))


@pages.get("/licenses/<number>")
def license_page(number: str) -> str:
    problems: list[str] = []
    today = _date_arg("as_of", problems) or local_today(_config())
    story = license_story(ledger(), number, today)
    if story is None:
        abort(404, f"No license {number!r} in the ledger.")
    return render_template("license.html", lic=story.license, products=story.products,
                           history=story.history, today=today, problems=problems)


@pages.get("/charts")
def charts_page() -> str:
    conn = ledger().db
    first, last = charts.default_months(conn, local_today(_config()))
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
                           partner=partner, problems=problems,
                           left_out=charts.left_out(conn, first, months[-1], partner))


def _date_arg(name: str, problems: list[str]) -> date | None:
    text = request.args.get(name, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append(f"'{name}' is not a date YYYY-MM-DD; ignored.")
        return None


def _days_arg(name: str, problems: list[str]) -> int | None:
    """A number of days (0 or more) of the query; None when not given or not one."""
    text = request.args.get(name, "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        problems.append(f"'{name}' is not a number of days (0 or more); ignored.")
        return None
    return int(text)


def _month_arg(name: str) -> str | None:
    """The month ``name`` of the query (``YYYY-MM``), None when not given; 400 otherwise."""
    text = request.args.get(name, "").strip()
    if not text:
        return None
    if not charts.valid_month(text):
        abort(400, f"'{name}' must be a month YYYY-MM from {charts.FIRST_MONTH} to "
                   f"{charts.LAST_MONTH}, not {text[:40]!r}.")
    return text
