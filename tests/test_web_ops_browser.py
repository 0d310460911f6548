"""The web page's operations in a real browser (Debian's Chromium driven by Playwright):
downloads give the very bytes the gateway holds, a pause from the page stops `run --once`
from polling the partner until the resume, and the dashboard reloads itself but not while a
form on it is being filled."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import Site, follow, login, serving
from browser import browser as browser
from browser import page as page
from conftest import ProjectConfig
from playwright.sync_api import Page

from gateway.cli import main

CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOOD = CASES_INBOX / "sample" / "acme-20261201-good.xml"
DAY = "2026-12-01"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    project = ProjectConfig(tmp_path)
    cfg = project.partner("acme").partner("bolt").set("web", refresh_seconds=1).write()
    shutil.copy(GOOD, project.inbox("acme") / GOOD.name)
    project.inbox("bolt")
    assert main(["--config", str(cfg), "run", "--once", "--as-of", DAY]) == 0
    with serving(cfg) as served:
        yield served


def _downloaded(page: Page, selector: str) -> tuple[str, bytes]:
    with page.expect_download() as info:
        page.click(selector)
    download = info.value
    return download.suggested_filename, Path(download.path()).read_bytes()


def test_downloads_are_the_bytes_the_gateway_holds(site: Site, page: Page) -> None:
    file_id = site.file_id(GOOD.name)
    login(page, site, f"/files/{file_id}")
    assert _downloaded(page, "#download-original") == (GOOD.name, GOOD.read_bytes())
    with site.db() as db:
        ack_name, ace_names = db.execute("SELECT ack_name, ace_names FROM files WHERE "
                                         "file_id = ?", (file_id,)).fetchone()
    outbox = site.cfg.parent / "outbox"
    assert _downloaded(page, "#download-ack") == (ack_name,
                                                   (outbox / "acme" / ack_name).read_bytes())
    first = ace_names.split(",")[0]
    assert _downloaded(page, ".download-ace") == (first, (outbox / "ace" / first).read_bytes())


def test_a_partner_paused_on_the_page_is_skipped_by_run_once_until_resumed(
        site: Site, page: Page, capsys: pytest.CaptureFixture[str]) -> None:
    login(page, site, "/partners/acme")
    page.fill("#pause-reason", "partner is moving its server")
    follow(page, "#pause button[type=submit]")
    assert page.inner_text("#state") == "paused"
    paused = page.inner_text("#paused")
    assert "paused by web:token@127.0.0.1: partner is moving its server" in paused
    page.goto(site.url)
    row = page.locator("tr[data-partner=acme]")
    assert "paused by web:token@127.0.0.1: partner is moving its server" in row.inner_text()
    assert "unhealthy" in (row.get_attribute("class") or "")

    inbox = site.cfg.parent / "inbox" / "acme"
    shutil.copy(GOOD, inbox / "second.xml")
    capsys.readouterr()
    assert main(["--config", str(site.cfg), "run", "--once", "--as-of", DAY]) == 0
    assert "acme: not polled, paused by web:token@127.0.0.1" in capsys.readouterr().out
    assert _count(site, "second.xml") == 0

    page.goto(f"{site.url}partners/acme")
    page.fill("#pause-reason", "moved")
    follow(page, "#pause button[type=submit]")
    assert page.inner_text("#state") != "paused"
    assert main(["--config", str(site.cfg), "run", "--once", "--as-of", DAY]) == 0
    assert "acme: 1 file(s) taken" in capsys.readouterr().out
    assert _count(site, "second.xml") == 1


def _count(site: Site, name: str) -> int:
    with site.db() as db:
        return int(db.execute("SELECT COUNT(*) FROM files WHERE remote_name = ?",
                              (name,)).fetchone()[0])


def test_the_dashboard_reloads_itself_unless_a_form_is_being_filled(site: Site,
                                                                    page: Page) -> None:
    login(page, site)
    page.evaluate("window.aimgwMarker = 1")
    # Reloaded: the page's window is a new one, without the marker (refresh_seconds = 1).
    page.wait_for_function("() => window.aimgwMarker === undefined", timeout=15000)
    page.evaluate("window.aimgwMarker = 2")
    page.evaluate("""() => document.querySelector('main').insertAdjacentHTML('beforeend',
        '<form id="typing"><input id="typed" name="x"></form>')""")
    page.fill("#typed", "half a reason")
    page.locator("#typed").blur()  # changed, no longer focused: still not to be thrown away
    page.wait_for_function(
        "() => Number(document.documentElement.dataset.refreshSkipped || 0) >= 2",
        timeout=15000)
    assert page.evaluate("window.aimgwMarker") == 2
    assert page.input_value("#typed") == "half a reason"
