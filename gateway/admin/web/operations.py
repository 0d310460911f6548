"""The admin page's operations (issue 14 item 11), one Blueprint beside ``pages``: downloads
of a file's original, ack and ACE files; re-send an ack; release a quarantined file;
reprocess several files; pause and resume a partner (its own page); the daily charts.

Every action is a POST with a reason, behind the app's token, CSRF and role checks
(``app._authenticate``), and calls the one implementation the command line calls too
(``gateway.admin.operations`` and ``actions``), which records ONE ``admin.<verb>`` event with
the actor (``auth.web_actor``) and the reason. A download sends only a file the ledger names.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, send_file, url_for
from werkzeug.wrappers import Response as BaseResponse

from gateway.admin import operations, reasons
from gateway.admin.queries import backlog
from gateway.admin.web import charts
from gateway.admin.web.auth import web_actor
from gateway.admin.web.pages import (
    MAX_ROWS,
    _config,
    ledger,
    local_today,
    now_utc,
    render_file,
)
from gateway.errors import FatalError, GatewayError
from gateway.ledger.reads.files import FileQuery, list_files
from gateway.ledger.reads.health import partner_health
from gateway.ledger.reads.health_words import describe

ops = Blueprint("ops", __name__)

# -- downloads ----------------------------------------------------------------------------------


def _download(file_id: str, kind: str, name: str = "") -> BaseResponse:
    try:
        found = operations.artifact(_config(), ledger(), file_id, kind, name)
    except FatalError as err:
        abort(404, str(err))
    # An attachment under a safe name; nosniff (every response) keeps the browser from
    # reading an XML file as a page.
    return send_file(found.path, mimetype=found.media_type, as_attachment=True,
                     download_name=found.name, max_age=0)


@ops.get("/files/<file_id>/original")
def original(file_id: str) -> BaseResponse:
    return _download(file_id, "original")


@ops.get("/files/<file_id>/ack")
def ack(file_id: str) -> BaseResponse:
    return _download(file_id, "ack")


@ops.get("/files/<file_id>/ace/<name>")
def ace(file_id: str, name: str) -> BaseResponse:
    return _download(file_id, "ace", name)


# -- actions on a file --------------------------------------------------------------------------


def _reason() -> str:
    return request.form.get("reason", "")


@ops.post("/files/<file_id>/resend")
def resend(file_id: str) -> Any:
    try:
        operations.resend(_config(), file_id, _reason(), web_actor())
    except GatewayError as err:
        return _refused(file_id, "resend", f"Not sent again: {err}", err)
    return redirect(url_for("pages.file_page", file_id=file_id, done="resend"), 303)


@ops.post("/files/<file_id>/release")
def release(file_id: str) -> Any:
    try:
        operations.release_file(_config(), file_id, _reason(), web_actor())
    except GatewayError as err:
        return _refused(file_id, "release", f"Not released: {err}", err)
    return redirect(url_for("pages.file_page", file_id=file_id, done="release"), 303)


def _refused(file_id: str, action: str, message: str, err: GatewayError) -> Any:
    """The file page again, the reason kept, the error in the action's own section: 404 for
    an unknown file (render_file), 400 for a missing reason, 409 for what the file's state
    refuses."""
    return render_file(file_id, message, _reason()[:reasons.MAX_REASON],
                       _refusal_code(err), action=action)


def _refusal_code(err: GatewayError) -> int:
    """400 when the form's reason is missing or too long, 409 when the state refuses."""
    return 400 if isinstance(err, reasons.ReasonRequired) else 409


@ops.post("/files/reprocess-selected")
def reprocess_selected() -> Any:
    """Reprocess the files ticked on a listing, each with the same reason; one that fails
    does not stop the others; a summary says what became of each."""
    ids = request.form.getlist("file_id")
    if not ids:
        abort(400, "Tick at least one file to reprocess.")
    if len(ids) > MAX_ROWS:
        abort(400, f"At most {MAX_ROWS} files at once.")
    try:
        done = operations.reprocess_many(_config(), ids, _reason(), web_actor())
    except FatalError as err:  # no reason: nothing was tried
        abort(400, str(err))
    return render_template("reprocessed.html", done=done, reason=_reason(),
                           failed=sum(error is not None for _, _, error in done))


# -- a partner: its page, pause and resume ------------------------------------------------------


def _partner_or_404(partner_id: str) -> Any:
    found = next((p for p in _config().partners if p.id == partner_id), None)
    if found is None:
        abort(404, f"No partner {partner_id!r} in the configuration.")
    return found


@ops.get("/partners/<partner_id>")
def partner_page(partner_id: str, error: str | None = None, reason: str = "",
                 code: int = 200) -> tuple[str, int]:
    partner, now = _partner_or_404(partner_id), now_utc()
    led = ledger()
    health = partner_health(led, _config(), partner, now, backlog(led, partner))
    files = list_files(led, FileQuery(partner=partner.id, limit=20), _config().gateway.zone)
    return render_template("partner.html", h=health, detail=describe(health, now),
                           files=files, error=error, reason=reason), code


@ops.post("/partners/<partner_id>/pause")
def pause(partner_id: str) -> Any:
    return _pause_or_resume(partner_id, operations.pause, "Not paused")


@ops.post("/partners/<partner_id>/resume")
def resume(partner_id: str) -> Any:
    return _pause_or_resume(partner_id, operations.resume, "Not resumed")


def _pause_or_resume(partner_id: str, action: Any, refused: str) -> Any:
    _partner_or_404(partner_id)
    try:
        action(_config(), partner_id, _reason(), web_actor())
    except GatewayError as err:
        return partner_page(partner_id, f"{refused}: {err}",
                            _reason()[:reasons.MAX_REASON], _refusal_code(err))
    return redirect(url_for("ops.partner_page", partner_id=partner_id), 303)


# -- files, rejections and latency per partner per day ------------------------------------------


@ops.get("/charts/daily")
def daily_charts() -> str:
    today = local_today(_config())
    problems: list[str] = []
    days = _days_arg(problems)
    first = today - timedelta(days=days - 1)
    built = charts.daily_charts(ledger().db, _config().gateway.zone, first, today)
    return render_template("daily.html", charts=built, first=first, last=today, days=days,
                           problems=problems)


def _days_arg(problems: list[str]) -> int:
    text = request.args.get("days", "").strip()
    if not text:
        return charts.DEFAULT_DAYS
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= charts.MAX_DAYS:
        problems.append(f"'days' is a number from 1 to {charts.MAX_DAYS}; "
                        f"{charts.DEFAULT_DAYS} shown.")
        return charts.DEFAULT_DAYS
    return int(text)
