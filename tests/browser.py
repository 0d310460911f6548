"""What the browser tests share: the admin page served by waitress on a free loopback port
(``serving``), Debian's Chromium driven by Playwright (the ``browser`` and ``page`` fixtures,
which conftest.py offers every test file), the token and ``login``."""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from gateway.admin.hosts import server_url
from gateway.admin.monitor import serve_until
from gateway.admin.web.server import make_server
from gateway.config import load_config

TOKEN = "web-test-" + secrets.token_urlsafe(24)
TOKEN_ENV = "AIMGW_WEB_TOKEN"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]


@dataclass
class Site:
    url: str
    cfg: Path
    ledger: Path

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.ledger)

    def file_id(self, remote_name: str) -> str:
        with self.db() as db:
            return str(db.execute("SELECT file_id FROM files WHERE remote_name = ? AND "
                                  "reprocess_of IS NULL", (remote_name,)).fetchone()[0])


@contextmanager
def http_serving(server: Any) -> Iterator[None]:
    """Serve a waitress ``server`` in a thread while the block runs; the server is closed by
    that thread (``monitor.serve_until``): closed from this one while it waits in select(),
    its thread failed with EBADF (a warning in a full run)."""
    stopping = threading.Event()
    thread = threading.Thread(target=serve_until, args=(server, stopping), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopping.set()
        thread.join(10)


@contextmanager
def serving(cfg: Path) -> Iterator[Site]:
    """The page served by waitress in a thread, on a free loopback port."""
    server = make_server(load_config(cfg), port=0, environ={TOKEN_ENV: TOKEN})
    with http_serving(server):
        yield Site(server_url(server), cfg, cfg.parent / "data" / "ledger.sqlite")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's Chromium with `apt-get update && "
                    "apt-get install -y chromium` (`make test` does it)", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()
    assert dialogs == [], f"a script ran on the page: {dialogs}"


def login(page: Page, site: Site, path: str = "/") -> None:
    response = page.goto(f"{site.url.rstrip('/')}{path}?token={TOKEN}")
    assert response is not None and response.status == 200


def follow(page: Page, selector: str) -> None:
    """Click what leads to another page and wait until that page has loaded: a read right
    after a bare click (or a wait_for_load_state, already true of the page clicked on) may
    see the page before."""
    with page.expect_navigation(wait_until="load"):
        page.click(selector)
