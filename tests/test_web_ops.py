"""The web page's operations (issue 14 item 11) through the real Flask app behind its real
guard (Flask's test client): downloads of a file's original, ack and ACE files (only what
the ledger names: hostile ids and traversal get 404), re-send, release, reprocess of several
files, pause and resume, the daily charts and the dashboard's refresh. Each action is a POST
with a reason and the CSRF token, and records ONE ``admin.<verb>`` event with actor and reason.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import ProjectConfig
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from gateway.admin import reasons
from gateway.admin.web import charts
from gateway.admin.web.app import create_app
from gateway.admin.web.auth import Guard
from gateway.config import Config, load_config
from gateway.ledger.store import utc_stamp
from gateway.service.runner import run_once

CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
TOKEN = secrets.token_urlsafe(32)
GUARD = Guard(TOKEN)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Site:
    base: Path
    config: Config
    client: FlaskClient

    def get(self, path: str) -> TestResponse:
        return self.client.get(path, headers=AUTH)

    def post(self, path: str, **form: str | list[str]) -> TestResponse:
        return self.client.post(path, headers=AUTH, data={"csrf": GUARD.csrf_token, **form})

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.base / "data" / "ledger.sqlite")

    def file_id(self, name: str) -> str:
        with self.db() as db:
            return str(db.execute("SELECT file_id FROM files WHERE remote_name = ? AND "
                                  "reprocess_of IS NULL", (name,)).fetchone()[0])

    def events(self, kind: str) -> list[dict[str, object]]:
        with self.db() as db:
            return [{"partner": p, "file_id": f, **json.loads(d)} for p, f, d in db.execute(
                "SELECT partner, file_id, data FROM events WHERE kind = ? ORDER BY id",
                (kind,))]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    project = ProjectConfig(tmp_path)
    cfg = project.partner("acme").partner("bolt").set("web", refresh_seconds=7).write()
    for name in ("acme-20261201-good.xml", "acme-20261201-hostile.xml",
                 "acme-20261201-partial.xml"):
        shutil.copy(CASES_INBOX / "sample" / name, project.inbox("acme") / name)
    project.inbox("bolt")
    config = load_config(cfg)
    run_once(config, date(2026, 12, 1))
    yield Site(tmp_path, config, create_app(config, GUARD).test_client())


# -- downloads ----------------------------------------------------------------------------------


def test_the_original_downloads_as_an_attachment_with_its_own_bytes(site: Site) -> None:
    file_id = site.file_id("acme-20261201-good.xml")
    page = site.get(f"/files/{file_id}").get_data(as_text=True)
    assert f'href="/files/{file_id}/original"' in page and f'/files/{file_id}/ack"' in page
    response = site.get(f"/files/{file_id}/original")
    assert response.status_code == 200
    assert response.data == (CASES_INBOX / "sample" / "acme-20261201-good.xml").read_bytes()
    assert response.mimetype == "application/xml"
    assert response.headers["Content-Disposition"] == \
        "attachment; filename=acme-20261201-good.xml"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_ack_and_each_ace_file_download(site: Site) -> None:
    file_id = site.file_id("acme-20261201-good.xml")
    with site.db() as db:
        ack_name, ace_names = db.execute("SELECT ack_name, ace_names FROM files WHERE "
                                         "file_id = ?", (file_id,)).fetchone()
    response = site.get(f"/files/{file_id}/ack")
    assert response.status_code == 200
    assert response.data == (site.config.gateway.outbox_dir / "acme" / ack_name).read_bytes()
    assert response.headers["Content-Disposition"] == f"attachment; filename={ack_name}"
    page = site.get(f"/files/{file_id}").get_data(as_text=True)
    for name in ace_names.split(","):
        assert f'/files/{file_id}/ace/{name}"' in page
        response = site.get(f"/files/{file_id}/ace/{name}")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.data == (site.config.gateway.outbox_dir / "ace" / name).read_bytes()
        assert response.mimetype == "text/plain"


@pytest.mark.parametrize("path", [
    "/files/{id}/ace/..%2F..%2Fconfig.toml", "/files/{id}/ace/../../config.toml",
    "/files/{id}/ace/%2Fetc%2Fpasswd", "/files/{id}/ace/config.toml",
    "/files/..%2F..%2Fconfig.toml/original", "/files/%00/original",
    "/files/20261201-999999/ack", "/files/{id}/ace/", "/files/{id}/nothing",
    "/files/{id}%2F..%2F..%2Fconfig.toml/ack", "/partners/nobody",
    "/partners/..%2Fetc/pause"])
def test_hostile_ids_and_traversal_get_404(site: Site, path: str) -> None:
    file_id = site.file_id("acme-20261201-good.xml")
    response = site.get(path.format(id=file_id))
    assert response.status_code in (404, 405), response.status_code
    assert b"[gateway]" not in response.data and b"root:" not in response.data


def test_a_hostile_name_downloads_under_a_safe_one(site: Site) -> None:
    """Quotes, semicolons, slashes and CR/LF of a partner's file name never reach the
    Content-Disposition header: the download is named by ``safe_name``."""
    hostile = 'x"; filename=evil.sh;\r\n<b>.xml'
    shutil.copy(CASES_INBOX / "sample" / "acme-20261201-good.xml",
                site.base / "inbox" / "acme" / hostile)
    run_once(site.config, date(2026, 12, 1))
    file_id = site.file_id(hostile)
    response = site.get(f"/files/{file_id}/original")
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r"attachment; filename=x_+filename_evil\.sh_+b_\.xml~[0-9a-f]{8}",
                        disposition), disposition
    response = site.get(f"/files/{file_id}/ack")
    assert '"' not in response.headers["Content-Disposition"].split("filename=", 1)[1]


def test_downloads_need_the_token(site: Site) -> None:
    file_id = site.file_id("acme-20261201-good.xml")
    assert site.client.get(f"/files/{file_id}/original").status_code == 401


# -- actions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/files/{id}/resend", "/files/{id}/release",
                                  "/files/reprocess-selected", "/partners/acme/pause",
                                  "/partners/acme/resume"])
def test_actions_are_post_only_and_need_the_csrf_token(site: Site, path: str) -> None:
    path = path.format(id=site.file_id("acme-20261201-good.xml"))
    # A GET changes nothing: 405, or for /files/reprocess-selected the page of a file of that
    # id, which there is not.
    assert site.get(path).status_code == (404 if path.endswith("selected") else 405)
    response = site.client.post(path, headers=AUTH, data={"reason": "x"})
    assert response.status_code == 403
    assert all(not site.events(f"admin.{verb}") for verb in
               ("resend", "release", "pause", "resume", "reprocess"))


def test_resend_from_the_page_sends_the_same_bytes_and_records_who_and_why(site: Site) -> None:
    file_id = site.file_id("acme-20261201-good.xml")
    with site.db() as db:
        (ack_name,) = db.execute("SELECT ack_name FROM files WHERE file_id = ?",
                                 (file_id,)).fetchone()
    sent = site.config.gateway.outbox_dir / "acme" / ack_name
    before = sent.read_bytes()
    sent.unlink()
    assert site.post(f"/files/{file_id}/resend", reason="  ").status_code == 400
    response = site.post(f"/files/{file_id}/resend", reason="partner lost it")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/files/{file_id}?done=resend")
    assert sent.read_bytes() == before
    (event,) = site.events("admin.resend")
    assert event["actor"] == "web:token@127.0.0.1" and event["reason"] == "partner lost it"
    page = site.get(f"/files/{file_id}?done=resend").get_data(as_text=True)
    assert 'id="done"' in page and "sent again" in page
    assert site.post("/files/20261201-999999/resend", reason="x").status_code == 404
    assert site.post("/files/..%2F..%2Fetc%2Fpasswd/resend", reason="x").status_code == 404
    assert site.post("/files/20261201-999999/release", reason="x").status_code == 404


def test_release_from_the_page_reuses_the_cli_s_release(site: Site) -> None:
    file_id = site.file_id("acme-20261201-partial.xml")
    response = site.post(f"/files/{file_id}/release", reason="fixed")
    assert response.status_code == 409
    assert "is not quarantined" in response.get_data(as_text=True)
    with site.db() as db:  # as a quarantine leaves a file that failed 3 times in a row
        db.execute("INSERT INTO file_failures (file_id, partner, failures, last_error, "
                   "quarantined_at) VALUES (?, 'acme', 3, 'boom', ?)", (file_id, utc_stamp()))
    page = site.get(f"/files/{file_id}").get_data(as_text=True)
    assert 'id="release"' in page and "boom" in page
    assert site.post(f"/files/{file_id}/release", reason="").status_code == 400
    response = site.post(f"/files/{file_id}/release", reason="disk replaced")
    assert response.status_code == 303
    (event,) = site.events("admin.release")
    assert (event["file_id"], event["reason"], event["actor"]) == (
        file_id, "disk replaced", "web:token@127.0.0.1")
    with site.db() as db:
        assert db.execute("SELECT COUNT(*) FROM file_failures").fetchone() == (0,)


def test_reprocess_of_several_files_goes_on_after_a_failure(site: Site) -> None:
    good = site.file_id("acme-20261201-good.xml")
    partial = site.file_id("acme-20261201-partial.xml")
    listing = site.get("/files").get_data(as_text=True)
    assert f'value="{good}" form="reprocess-selected"' in listing
    assert 'id="reprocess-selected"' in listing
    hostile = "<script>alert(1)</script>"
    response = site.post("/files/reprocess-selected", file_id=[good, hostile, partial],
                         reason="mapping fixed")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Reprocessed 2 of 3 file(s)" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    events = site.events("admin.reprocess")
    assert len(events) == 2
    assert {e["original"] for e in events} == {good, partial}
    assert all(e["reason"] == "mapping fixed" and e["actor"] == "web:token@127.0.0.1"
               for e in events)
    assert site.post("/files/reprocess-selected", reason="x").status_code == 400
    assert site.post("/files/reprocess-selected", file_id=[good], reason="").status_code == 400
    assert len(site.events("admin.reprocess")) == 2


def test_pause_and_resume_from_the_partner_page(site: Site) -> None:
    dashboard = site.get("/").get_data(as_text=True)
    assert 'href="/partners/acme"' in dashboard
    assert site.post("/partners/acme/pause", reason="").status_code == 400
    assert site.post("/partners/nobody/pause", reason="x").status_code == 404
    response = site.post("/partners/acme/pause", reason="partner moves servers")
    assert response.status_code == 303 and response.headers["Location"].endswith(
        "/partners/acme")
    page = site.get("/partners/acme").get_data(as_text=True)
    assert "paused by web:token@127.0.0.1: partner moves servers" in page
    dashboard = site.get("/").get_data(as_text=True)
    assert "paused by web:token@127.0.0.1: partner moves servers" in dashboard
    assert "health-paused" in dashboard
    again = site.post("/partners/acme/pause", reason="again")
    assert again.status_code == 409 and "already paused" in again.get_data(as_text=True)
    assert site.post("/partners/acme/resume", reason="moved").status_code == 303
    assert site.post("/partners/acme/resume", reason="moved").status_code == 409
    assert [e["reason"] for e in site.events("admin.pause")] == ["partner moves servers"]
    assert [e["reason"] for e in site.events("admin.resume")] == ["moved"]
    assert "paused by" not in site.get("/partners/acme").get_data(as_text=True)


# -- charts and refresh -------------------------------------------------------------------------


def test_daily_charts_count_files_rejections_and_latency_per_partner(site: Site) -> None:
    response = site.get("/charts/daily?days=400")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "&#39;days&#39; is a number from 1 to 92" in page
    with site.db() as db:
        total, rejected = db.execute("SELECT COUNT(*), SUM(status = 'REJECTED') FROM "
                                     "files").fetchone()
    counts = [int(n) for n in re.findall(r'class="bar" data-day="[^"]+" data-key="acme" '
                                         r'data-count="(\d+)"', page)]
    # Received on the test's real day: the files chart and the rejections chart.
    assert sum(counts) == total + rejected and rejected >= 1
    assert re.search(r'class="point" data-day="[^"]+" data-key="acme" data-seconds="[\d.]+"',
                     page)
    assert 'id="daily-link"' in site.get("/charts").get_data(as_text=True)


def test_the_dashboard_refreshes_itself_by_our_own_script(site: Site) -> None:
    response = site.get("/")
    page = response.get_data(as_text=True)
    assert '<meta name="aimgw-refresh" content="7">' in page
    assert '<script src="/static/refresh.js" defer></script>' in page
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert site.get("/static/refresh.js").status_code == 200
    assert "aimgw-refresh" not in site.get("/files").get_data(as_text=True)


def test_count_charts_tick_whole_files() -> None:
    chart = charts.build_chart("partner", ["2026-12-01"], {("2026-12-01", "acme"): 1.0},
                               "Files rejected", least_step=1)
    assert [label for _, label in chart.y_ticks] == ["0", "1"]  # not 0.2, 0.4, ...: files


RECEIVED = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(("mtime", "dropped"), [
    (RECEIVED - timedelta(minutes=7), RECEIVED - timedelta(minutes=7)),  # waited 7 min
    (RECEIVED, RECEIVED),
    (RECEIVED + timedelta(minutes=5), RECEIVED),  # the partner's clock is ahead
    (RECEIVED - timedelta(days=3), RECEIVED),  # kept by its copy tool (scp -p)
])
def test_latency_counts_from_the_drop_when_the_file_tells_it(mtime: datetime,
                                                             dropped: datetime) -> None:
    assert charts.dropped_at(mtime.timestamp(), RECEIVED) == dropped


def test_a_refusal_that_quotes_a_reason_is_409_not_400(site: Site) -> None:
    """400 means the form's reason is missing (a typed error), not "the word reason appears":
    the refusal of a second pause quotes the first pause's reason."""
    assert site.post("/partners/acme/pause", reason="no reason given by the partner"
                     ).status_code == 303
    again = site.post("/partners/acme/pause", reason="again")
    assert again.status_code == 409 and "already paused" in again.get_data(as_text=True)
    assert site.post("/partners/acme/pause", reason=" ").status_code == 400
    with pytest.raises(reasons.ReasonRequired):
        reasons.clean_reason("  ", "pause")
    with pytest.raises(reasons.ReasonRequired):
        reasons.clean_reason("x" * (reasons.MAX_REASON + 1), "pause")
