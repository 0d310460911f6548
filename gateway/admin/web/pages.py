"""The admin pages, as one Flask Blueprint: each route reads the read model
(``gateway.ledger.reads``; ``charts`` for the charts) on this request's read-only ledger and
renders a template. The one write, reprocess, goes through ``gateway.admin.actions.reprocess``
like the command line does, with the reason the admin typed.

``app.create_app`` registers the Blueprint behind the token check and the error pages.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for

from gateway.admin import queries
from gateway.admin.web import charts
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.ledger.progress import Progress, in_progress
from gateway.ledger.reads.clock import parse_time
from gateway.ledger.reads.files import (
    FILE_STATUSES,
    FileQuery,
    failure_reason,
    list_files,
    quarantined_count,
    unfinished_count,
)
from gateway.ledger.reads.health import PartnerHealth
from gateway.ledger.reads.licenses import (
    LICENSE_STATES,
    LicenseQuery,
    applications_for_ref,
    license_story,
    list_licenses,
)
from gateway.ledger.reads.story import file_story, finding_groups
from gateway.ledger.store import Ledger, ledger_exists, open_ledger

MAX_REASON = 500
MAX_ROWS = 200  # rows on a list page; the page says when there are more
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
        details={h.partner.id: describe(h, now) for h in health}, files=files[:MAX_ROWS],
        more=len(files) > MAX_ROWS, failed=failed, unfinished=unfinished_count(led.db),
        working=[w for h in health for w in h.in_progress],
        quarantined=quarantined_count(led.db), latest=latest)


@pages.get("/files")
def files() -> str:
    problems: list[str] = []
    status = request.args.get("status", "")
    query = FileQuery(partner=request.args.get("partner", ""),
                      status=status if status in FILE_STATUSES else "",
                      since=_date_arg("since", problems),
                      text=request.args.get("q", "").strip(), limit=MAX_ROWS + 1)
    rows = list_files(ledger(), query, _config().gateway.zone)
    return render_template("files.html", rows=rows[:MAX_ROWS], more=len(rows) > MAX_ROWS,
                           filt=query, statuses=FILE_STATUSES, problems=problems)


def render_file(file_id: str, error: str | None = None, reason: str = "",
                code: int = 200) -> tuple[str, int]:
    story = file_story(ledger(), _config(), file_id, limit=MAX_ROWS,
                       today=local_today(_config()))
    if story is None:
        abort(404, f"No file {file_id!r} in the ledger.")
    return render_template("file.html", s=story, f=story.shown,
                           groups=finding_groups(ledger(), file_id), error=error,
                           reason=reason, max_rows=MAX_ROWS), code


@pages.get("/files/<file_id>")
def file_page(file_id: str) -> tuple[str, int]:
    return render_file(file_id)


@pages.post("/files/<file_id>/reprocess")
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
        new_id = actions.reprocess(_config(), file_id, reason,
                                   actor=f"web:{request.remote_addr}")
    except actions.ReprocessFailed as err:  # received as a new file, which failed
        return render_file(file_id, f"Reprocess failed: {err}", reason, 500)
    except GatewayError as err:
        return render_file(file_id, f"Not reprocessed: {err}", reason, 409)
    return redirect(url_for("pages.file_page", file_id=new_id), 303)


@pages.get("/licenses")
def licenses() -> str:
    problems: list[str] = []
    state = request.args.get("state", "").strip().upper()
    if state and state not in LICENSE_STATES:
        problems.append(f"'state' is not a license state ({', '.join(LICENSE_STATES)}); "
                        "ignored.")
        state = ""
    search = LicenseQuery(
        text=request.args.get("q", "").strip(),
        importer=request.args.get("importer", "").strip(),
        partner=request.args.get("partner", ""),
        issued_from=_date_arg("from", problems), issued_to=_date_arg("to", problems),
        state=state, expiring_within=_days_arg("expiring", problems),
        on=_date_arg("as_of", problems) or local_today(_config()), limit=MAX_ROWS + 1)
    rows = [] if search.empty else list_licenses(ledger(), search)
    apps = applications_for_ref(ledger(), search.text, MAX_ROWS + 1) if search.text else []
    return render_template("licenses.html", search=search, rows=rows[:MAX_ROWS],
                           more=len(rows) > MAX_ROWS, apps=apps[:MAX_ROWS],
                           problems=problems, states=LICENSE_STATES)


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


# --- a partner's state in words ---------------------------------------------------------------


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _state_words(h: PartnerHealth, now: datetime) -> str:
    failed = f"{h.failures} failed poll(s) in a row: {h.last_error}"
    retry = parse_time(h.retry_at)
    next_try = f"; next try in {_age(retry - now)}" if retry is not None else ""
    if h.state == "failing":
        return f"{failed} (alert raised){next_try}"
    if h.state == "backing off":
        return f"{failed}{next_try}"
    if h.state == "error":
        return failed
    if h.state == "silent":
        return (f"no file for {h.silent_hours:g} h; one is expected every "
                f"{h.partner.expected_cadence_hours:g} h")
    if h.state == "disabled":
        return "enabled = false in the configuration"
    if h.state == "never polled":
        return "no poll recorded yet (is `aim-gateway serve` running?)"
    waiting = f"; {h.backlog} file(s) waiting in the inbox" if h.backlog else ""
    last_poll = parse_time(h.last_poll)
    if last_poll is None:
        return waiting.lstrip("; ")
    if h.state == "not polled" and h.poll_due is not None:
        # Polls that stopped are no partner's fault and raise no alert: the page is where
        # an admin sees them.
        return (f"no poll for {_age(now - last_poll)} (expected every "
                f"{_age(h.poll_due - last_poll)}): is `aim-gateway serve` running?{waiting}")
    return f"last poll {_age(now - last_poll)} ago{waiting}"


def describe(h: PartnerHealth, now: datetime) -> str:
    """One sentence saying why the partner is in its state, for an admin who has not read
    the code."""
    words = _state_words(h, now)
    if h.in_progress:  # working now: that first, not how long ago the last poll ended
        words = "; ".join([*(f"processing {w.name}: {w.text()}" for w in h.in_progress),
                           *([words] if words else [])])
    if not h.quarantined:
        return words
    return (f"{words}; " if words else "") + (
        f"{h.quarantined} file(s) quarantined after failing 3 times in a row "
        "(aim-gateway release FILE_ID after the fix)")
