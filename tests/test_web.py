"""The admin web page, in a real browser (Debian's Chromium driven by Playwright) and over
plain HTTP, against a ledger filled by real runs of the sample partners' files."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from browser import TOKEN, TOKEN_ENV, Site, follow, login, serving
from browser import browser as browser
from browser import page as page
from conftest import ProjectConfig
from playwright.sync_api import Page
from ports import free_port

from gateway.admin.web import charts
from gateway.admin.web.server import make_server
from gateway.config import PartnerConfig, load_config
from gateway.errors import ConfigError, FatalError
from gateway.ledger.reads.health import partner_health
from gateway.ledger.reads.health_words import describe
from gateway.ledger.reads.story import compress
from gateway.ledger.store import Ledger
from gateway.service.runner import run_once

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
# A file name that would run script if the page did not escape it.
HOSTILE_NAME = 'x"><img src=x onerror=alert(1)><b>bold.xml'
SCREENSHOT = Path("/tmp/aimgw-web-dashboard.png")


def write_config(base: Path, ledger: str = "") -> Path:
    """The three sample partners, and one SFTP partner whose server is down."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption())
    (base / "down.key").write_bytes(key)
    (base / "known_hosts").write_text("")
    for partner in ("sample", "hanse", "nordic"):
        (base / "inbox" / partner).mkdir(parents=True)
    config = ProjectConfig(base)
    if ledger:
        config.ledger(ledger)
    config.partner("sample", name="Sample Aluminum Importer", disposition="keep",
                   filer_code="SMP")
    config.partner("hanse", name="Hanse Metall Handel GmbH", patterns=["*.csv"],
                   disposition="keep", filer_code="HMH",
                   mapping=ROOT / "mappings" / "hanse-metall.toml")
    config.partner("nordic", name="Nordic Aluminium Trading AS", patterns=["*.xml"],
                   disposition="keep", filer_code="NAT",
                   mapping=ROOT / "mappings" / "nordic-orders.xsl")
    config.partner("downhill", name="Downhill Metals", inbox=None, kind="sftp",
                   host="127.0.0.1", port=free_port(), user="aim", key_file="down.key",
                   known_hosts="known_hosts", connect_timeout=2)
    return config.write()


def run(cfg: Path, as_of: date) -> None:
    run_once(load_config(cfg), as_of)


def fill_ledger(base: Path, ledger: str = "") -> Path:
    """November: the good file under other refs; December: every sample file, the hostile
    one (F004) included, and the hostile one again under a name full of markup."""
    cfg = write_config(base, ledger)
    good = (CASES_INBOX / "sample" / "acme-20261201-good.xml").read_text()
    november = good.replace("ACME-20261201-001", "ACME-20261120-001").replace('ref="PO-44',
                                                                             'ref="PO-34')
    (base / "inbox" / "sample" / "acme-20261120-good.xml").write_text(november)
    run(cfg, date(2026, 11, 20))
    for partner in ("sample", "hanse", "nordic"):
        for source in (CASES_INBOX / partner).iterdir():
            if source.is_file():
                shutil.copy(source, base / "inbox" / partner / source.name)
    run(cfg, date(2026, 12, 1))
    # Taken after the original, so that it is the DUPLICATE and the original the failure.
    shutil.copy(CASES_INBOX / "sample" / "acme-20261201-hostile.xml",
                base / "inbox" / "sample" / HOSTILE_NAME)
    run(cfg, date(2026, 12, 1))
    return cfg


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serving(fill_ledger(tmp_path_factory.mktemp("web"))) as served:
        yield served


# --- the token -------------------------------------------------------------------------------


def test_without_a_token_the_browser_gets_401_and_the_sign_in_form(site: Site, page: Page) -> None:
    response = page.goto(site.url)
    assert response is not None and response.status == 401
    assert "Sign in" in page.inner_text("h1") and page.is_visible("#login #password")
    assert "downhill" not in page.content()  # nothing of the ledger leaks


def test_a_wrong_token_gets_401_and_no_cookie(site: Site, page: Page) -> None:
    response = page.goto(f"{site.url}?token=not-the-token-at-all-{secrets.token_hex(4)}")
    assert response is not None and response.status == 401
    assert page.context.cookies() == []
    response = page.goto(f"{site.url}files")
    assert response is not None and response.status == 401


def test_the_right_token_sets_a_strict_cookie_and_leaves_the_url(site: Site,
                                                                  page: Page) -> None:
    login(page, site, "/files")
    assert "token" not in page.url and page.url.endswith("/files")
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]  # the browser keeps a derived value, not the token
    response = page.goto(site.url)  # the cookie alone lets the admin in from now on
    assert response is not None and response.status == 200


# --- what a new admin asks ------------------------------------------------------------------


def test_dashboard_shows_what_failed_today_and_why_and_each_partner(site: Site,
                                                                    page: Page) -> None:
    login(page, site)
    failed = page.locator("#failed-today tbody tr")
    assert failed.count() == 1
    row = failed.first.inner_text()
    assert "acme-20261201-hostile.xml" in row and "F004" in row and "DOCTYPE" in row
    partners = {r.get_attribute("data-partner"): r
                for r in page.locator("#partners tr.partner").all()}
    assert set(partners) == {"sample", "hanse", "nordic", "downhill"}
    for ok in ("sample", "hanse", "nordic"):
        assert partners[ok].locator(".badge").first.inner_text() == "ok"
    # Three runs: two failed polls, and the third skipped while the partner backs off.
    assert partners["downhill"].locator(".badge").first.inner_text() == "backing off"
    assert "connection refused by 127.0.0.1" in partners["downhill"].inner_text()
    # A partner whose polls fail is an alarm: its whole row red, not an amber badge.
    downhill = partners["downhill"]
    assert "alarm" in (downhill.get_attribute("class") or "").split()
    assert downhill.locator("td").first.evaluate(
        "td => getComputedStyle(td).backgroundColor") == "rgb(253, 226, 223)"
    assert downhill.locator(".badge").first.evaluate(
        "b => getComputedStyle(b).backgroundColor") == "rgb(192, 57, 43)"
    assert "alarm" not in (partners["sample"].get_attribute("class") or "").split()
    # The name full of markup is shown as text, never as markup.
    assert HOSTILE_NAME in page.inner_text("#files-today")
    assert page.locator("main img, main b").count() == 0
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_file_page_groups_findings_by_code_with_line_ranges(site: Site, page: Page) -> None:
    login(page, site)
    follow(page, "#files-today a:text('{}')".format(site.file_id("acme-20261201-partial.xml")))
    assert page.inner_text("h1").startswith("File ") and "PARTIAL" in page.inner_text("h1")
    shown = {li.get_attribute("data-code"): li.locator(".summary").inner_text()
             for li in page.locator("#findings li.group").all()}
    expected = {}
    with site.db() as db:
        file_id = site.file_id("acme-20261201-partial.xml")
        for (code,) in db.execute("SELECT DISTINCT code FROM findings WHERE file_id = ?",
                                  (file_id,)):
            lines = [n for (n,) in db.execute(
                "SELECT DISTINCT source_line FROM findings WHERE file_id = ? AND code = ? "
                "AND source_line IS NOT NULL ORDER BY 1", (file_id, code))]
            expected[code] = (f"{code} on {len(lines)} line{'s' if len(lines) != 1 else ''}: "
                              + ", ".join(_ranges(lines)))
    assert shown == expected
    assert shown["A105"] == "A105 on 2 lines: 186, 205"  # one ref on two applications
    apps = page.locator("#applications tbody tr")
    assert apps.count() == int(page.inner_text("#count-applications")) == 14


def _ranges(lines: list[int]) -> list[str]:
    """The test's own oracle for ranges: runs of consecutive numbers."""
    runs: list[list[int]] = []
    for n in lines:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return [f"{r[0]}–{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs]


def test_compress_makes_ranges_and_the_summary_is_capped() -> None:
    assert list(compress([3, 4, 5, 9, 11, 12, 12, 13])) == ["3–5", "9", "11–13"]
    assert list(compress(range(3, 416))) == ["3–415"]
    assert list(compress([])) == []


def test_license_search_answers_what_a_ref_got(site: Site, page: Page) -> None:
    login(page, site, "/licenses")
    page.fill("input[name=q]", "PO-4412")
    follow(page, "form.filters button")
    with site.db() as db:
        number = db.execute("SELECT license_number FROM licenses WHERE ref = 'PO-4412'"
                            ).fetchone()[0]
    assert page.locator("#license-results .license-number").all_inner_texts() == [number]
    follow(page, f"a.license-number:text('{number}')")
    assert page.inner_text("h1") == f"License {number}"
    assert "Hollow Profiles" in page.inner_text("main")
    # A ref that got no license: the page says what it got instead, and where.
    page.goto(f"{site.url}licenses?q=PO-5005")
    assert "No license matches." in page.inner_text("#license-results")
    row = page.locator("#ref-applications tbody tr").first.inner_text()
    assert "PO-5005" in row and "REJECTED" in row


def test_charts_draw_the_ledger_by_month_group_and_country(site: Site, page: Page) -> None:
    login(page, site, "/charts")
    expected = _tons_from_ledger(site)
    assert {m for m, _ in expected["product_group"]} == {"2026-11", "2026-12"}
    for dimension in charts.DIMENSIONS:
        section = page.locator(f"#chart-{dimension}")
        bars = section.locator("svg rect.bar").evaluate_all(
            "els => els.map(e => [e.dataset.month, e.dataset.key, Number(e.dataset.tons),"
            " Number(e.getAttribute('height'))])")
        want = expected[dimension]
        assert len({key for _, key in want}) <= charts.TOP + 1  # no "Other" in the sample
        assert len(bars) == len(want)
        assert {(m, k): pytest.approx(t, abs=1e-3) for m, k, t, _ in bars} == want
        _, _, top_tons, top_height = max(bars, key=lambda bar: bar[2])
        for _, _, tons, height in bars:  # every height drawn to one scale (to 0.01 px)
            assert height == pytest.approx(tons * top_height / top_tons, abs=0.02)
        box = section.locator("svg").first.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
    legend = page.locator("#chart-smelt_country_largest .legend li").all_inner_texts()
    assert any(text.strip().startswith("CA Canada") for text in legend), legend


def _tons_from_ledger(site: Site) -> dict[str, dict[tuple[str, str], float]]:
    out: dict[str, dict[tuple[str, str], Decimal]] = {d: {} for d in charts.DIMENSIONS}
    with site.db() as db:
        for issue_date, products in db.execute("SELECT issue_date, products FROM licenses"):
            for product in json.loads(products):
                for dimension, (index, _) in charts.DIMENSIONS.items():
                    key = (issue_date[:7], product[index])
                    out[dimension][key] = out[dimension].get(key, Decimal(0)) + Decimal(
                        product[6]) / 1000
    return {d: {k: float(v) for k, v in sums.items()} for d, sums in out.items()}


def test_reprocess_from_the_page_records_the_reason(tmp_path: Path, page: Page) -> None:
    with serving(fill_ledger(tmp_path)) as site:
        old = site.file_id("acme-20261201-hostile.xml")
        login(page, site)
        follow(page, f"#failed-today a:text('{old}')")
        reason = "partner confirmed the DOCTYPE was removed upstream"
        page.fill("#reason", reason)
        follow(page, "#reprocess button[type=submit]")
        assert re.search(r"/files/\d{8}-\d{6}$", page.url), page.inner_text("main")[:2000]
        new = page.url.rsplit("/", 1)[1]
        assert new != old
        assert old in page.inner_text("#reprocess-of")
        with site.db() as db:
            assert db.execute("SELECT reprocess_of FROM files WHERE file_id = ?",
                              (new,)).fetchone() == (old,)
            recorded = [json.loads(data) for (data,) in db.execute(
                "SELECT data FROM events WHERE file_id IN (?, ?)", (old, new))]
        assert any(e.get("reason") == reason and e.get("actor") == "web:token@127.0.0.1"
                   for e in recorded), recorded
        page.goto(f"{site.url}files/{old}")
        assert new in page.inner_text("#reprocessed-as")
        page.goto(site.url)
        assert new in page.inner_text("#files-today")


def test_partner_verdicts_say_what_is_wrong(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    sample = config.partner("sample")
    now = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    ledger = Ledger(tmp_path / "verdicts.sqlite")

    def said(partner: PartnerConfig = sample, **state: object) -> tuple[str, str]:
        ledger.set_partner_state(partner.id, **state)
        health = partner_health(ledger, config, partner, now)
        return health.state, describe(health, now)

    fresh = (now - timedelta(seconds=30)).isoformat()
    try:
        assert said(last_poll_at=fresh) == ("ok", "last poll 30 s ago")
        stale = (now - timedelta(hours=3)).isoformat()
        verdict, why = said(last_poll_at=stale)
        assert verdict == "not polled"
        assert "not polled for 3 h (expected every 60 s)" in why and "serve" in why
        assert said(failures=4, last_error="cannot connect", last_poll_at=fresh,
                    next_attempt_at=(now + timedelta(minutes=8)).timestamp()) == (
            "backing off", "4 failed poll(s) in a row: cannot connect; next try in 8 min")
        watched = dataclasses.replace(sample, expected_cadence_hours=24.0)
        assert said(watched, failures=0, next_attempt_at=0, watched_since=(
            now - timedelta(hours=30.5)).isoformat()) == (
            "silent", "no file for 30.5 h; one is expected every 24 h")
    finally:
        ledger.close()


def test_the_dashboard_says_the_running_service_needs_a_reload(tmp_path: Path) -> None:
    """A running serve that loaded an older config.toml and polls only `sample`: the page
    says so above the tables, and the partners it does not poll are red, not "ok"."""
    from gateway.ledger.services import record_load

    with serving(fill_ledger(tmp_path)) as site:
        ledger = Ledger(site.ledger)
        try:
            record_load(ledger, "host:4242:abc", "0" * 16, ["sample"], datetime.now(UTC),
                        start=True)
        finally:
            ledger.close()
        status, _, body = request(site.url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    note = re.search(r'<p class="alarm-note" id="service-note">([^<]*)</p>', body)
    assert note is not None and "the running service has an older configuration" in note[1]
    assert "kill -HUP 4242" in note[1]
    rows = {partner: classes for classes, partner in re.findall(
        r'<tr class="partner ([^"]*)" data-partner="([^"]*)"', body)}
    assert "alarm" in rows["hanse"].split() and 'data-state="not yet served"' in body
    assert "not yet served: the running service does not poll this partner" in body


def test_pages_read_a_postgresql_ledger(tmp_path: Path, pg_dsn: str) -> None:
    import psycopg

    with serving(fill_ledger(tmp_path, pg_dsn)) as site, psycopg.connect(pg_dsn) as pg:
        def file_id(name: str) -> str:
            return str(pg.execute("SELECT file_id FROM files WHERE remote_name = %s",
                                  (name,)).fetchone()[0])

        bearer = {"Authorization": f"Bearer {TOKEN}"}
        status, _, body = request(site.url, headers=bearer)
        assert status == 200 and "acme-20261201-hostile.xml" in body and "F004" in body
        status, _, body = request(f"{site.url}files/{file_id('acme-20261201-partial.xml')}",
                                  headers=bearer)
        assert status == 200 and "A105 on 2 lines: 186, 205" in body
        number = pg.execute("SELECT license_number FROM licenses WHERE ref = 'PO-4412'"
                            ).fetchone()[0]
        status, _, body = request(f"{site.url}licenses?q=po-4412", headers=bearer)
        assert status == 200 and number in body  # any case, as on SQLite
        status, _, body = request(f"{site.url}licenses?q=PO-5005", headers=bearer)
        assert "A121" in body
        status, _, body = request(f"{site.url}charts", headers=bearer)
        drawn = sum(float(t) for t in re.findall(
            r'<rect class="bar" data-month="[^"]+" data-key="[^"]+" data-tons="([^"]+)"',
            body[body.index('id="chart-cast_country"'):]))
        total = pg.execute("SELECT SUM(CAST(quantity_kg AS NUMERIC)) FROM licenses"
                           ).fetchone()[0]
        assert drawn == pytest.approx(float(total) / 1000, abs=0.01)


# --- plain HTTP ------------------------------------------------------------------------------


def request(url: str, *, data: dict[str, str] | None = None, headers: dict[str, str] | None
            = None) -> tuple[int, dict[str, str], str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=30) as response:
            return response.status, _lower(response.headers), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, _lower(err.headers), err.read().decode()


def _lower(headers: object) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}  # type: ignore[attr-defined]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_http_token_check(site: Site) -> None:
    status, headers, _ = request(site.url)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert request(site.url, headers={"Authorization": "Bearer wrong-token-0123456789"}
                   )[0] == 401
    assert request(site.url, headers={"Authorization": "Basic " + TOKEN})[0] == 401
    status, headers, body = request(site.url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and "acme-20261201-hostile.xml" in body
    # One script, our own file (the dashboard's refresh): nothing inline, nothing elsewhere.
    csp = headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe" not in csp and "default-src 'none'" in csp
    assert headers["cache-control"] == "no-store"
    status, headers, _ = request(f"{site.url}charts?token={TOKEN}&from=2026-11")
    assert status == 303 and headers["location"] == "/charts?from=2026-11"
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    status, headers, _ = request(f"{site.url}/evil.example/?token={TOKEN}")
    assert status == 303 and headers["location"] == "/evil.example/"  # never "//evil…"


def test_http_post_without_the_csrf_token_is_refused(site: Site) -> None:
    status, headers, _ = request(f"{site.url}?token={TOKEN}")
    cookie = headers["set-cookie"].split(";", 1)[0]
    old = site.file_id("acme-20261201-hostile.xml")
    url = f"{site.url}files/{old}/reprocess"
    with site.db() as db:
        before = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    _, _, page = request(f"{site.url}files/{old}", headers={"Cookie": cookie})
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf is not None
    assert request(url, data={"reason": "x"})[0] == 401  # no token at all
    assert request(url, data={"reason": "x"}, headers={"Cookie": cookie})[0] == 403
    assert request(url, data={"reason": "x", "csrf": "0" * 64},
                   headers={"Cookie": cookie})[0] == 403
    assert request(url, data={"reason": "x"},
                   headers={"Authorization": f"Bearer {TOKEN}"})[0] == 403
    assert request(url, data={"reason": "x", "csrf": csrf[1]},
                   headers={"Cookie": cookie, "Origin": "http://evil.example"})[0] == 403
    status, _, body = request(url, data={"reason": "  ", "csrf": csrf[1]},
                              headers={"Cookie": cookie})
    assert status == 400 and "Give a reason" in body
    with site.db() as db:
        assert db.execute("SELECT COUNT(*) FROM files").fetchone()[0] == before


# --- starting -------------------------------------------------------------------------------


def test_start_is_refused_without_a_token_or_on_an_open_address(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    config = load_config(cfg)
    with pytest.raises(FatalError, match=TOKEN_ENV):
        make_server(config, port=0, environ={})
    with pytest.raises(FatalError, match="at least 32"):
        make_server(config, port=0, environ={TOKEN_ENV: "short"})
    with pytest.raises(FatalError, match="allow_remote"):
        make_server(config, host="0.0.0.0", port=0, environ={TOKEN_ENV: TOKEN})
    cfg.write_text(cfg.read_text() + '\n[web]\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match=r"web\.host: not a loopback address"):
        load_config(cfg)


def test_aim_gateway_web_serves_until_sigterm(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    cli = [sys.executable, "-m", "gateway.cli", "--config", str(cfg), "web", "--port", "0"]
    refused = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and TOKEN_ENV in refused.stderr
    proc = subprocess.Popen(cli, env={**env, TOKEN_ENV: TOKEN}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, line + (proc.stderr.read() if proc.stderr else "")
        assert TOKEN not in line
        # No ledger yet: the page says so instead of failing.
        status, _, body = request(found[0], headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 503 and "no ledger yet" in body
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        assert TOKEN not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
