"""Named users on the admin page (issue 14 item 12): viewers read, operators act, every web
action is audited with the user's name; passwords only ever as argon2 hashes. Flask's client
on SQLite and PostgreSQL, the CLI as a subprocess, and a real Chromium signing in."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from browser import follow, http_serving
from flask.testing import FlaskClient
from playwright.sync_api import Page
from project_config import ProjectConfig

from gateway.admin import access
from gateway.admin.hosts import server_url
from gateway.admin.web.app import create_app
from gateway.admin.web.server import make_server
from gateway.config import Config, load_config
from gateway.errors import FatalError
from gateway.ledger import audit
from gateway.ledger.store import open_ledger
from gateway.service.runner import run_once

CASES = Path(__file__).resolve().parent / "cases" / "inbox" / "sample"
VIEWER_PW, OPERATOR_PW = "viewer pass 4 reading", "operator pass 7 acting"


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, project: ProjectConfig) -> Config:
    """One processed file, a viewer ``vera`` and an operator ``otto``."""
    project.backend(request, request.param).partner("sample", disposition="keep")
    shutil.copy(CASES / "acme-20261201-good.xml", project.inbox("sample"))
    loaded = load_config(project.write())
    run_once(loaded, date(2026, 12, 1))
    access.add_user(loaded, "vera", "viewer", VIEWER_PW, "cli:test", "test user")
    access.add_user(loaded, "otto", "operator", OPERATOR_PW, "cli:test", "test user")
    return loaded


def rows(config: Config, sql: str) -> list[tuple[object, ...]]:
    ledger = open_ledger(config, readonly=True)
    try:
        return [tuple(r) for r in ledger.db.execute(sql).fetchall()]
    finally:
        ledger.close()


def sign_in(client: FlaskClient, name: str, password: str) -> int:
    form = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form)
    assert csrf is not None
    return client.post("/login", data={"name": name, "password": password, "csrf": csrf[1],
                                       "next": "/files"}).status_code


def page_csrf(client: FlaskClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get(path).get_data(
        as_text=True))
    assert found is not None
    return found[1]


def the_file(config: Config) -> str:
    return str(rows(config, "SELECT file_id FROM files")[0][0])


def test_a_viewer_reads_but_its_post_is_403_and_nothing_changes(config: Config) -> None:
    client, file_id = create_app(config).test_client(), the_file(config)
    assert client.get("/").status_code == 401
    assert sign_in(client, "vera", VIEWER_PW) == 303
    page = client.get(f"/files/{file_id}").get_data(as_text=True)
    assert "vera (viewer)" in page and 'id="viewer-note"' in page and "Reprocess " not in page
    before = rows(config, "SELECT COUNT(*) FROM files") + rows(config, "SELECT COUNT(*) FROM "
                                                               "audit_log")
    response = client.post(f"/files/{file_id}/reprocess", data={
        "reason": "try", "csrf": page_csrf(client, f"/files/{file_id}")})
    assert response.status_code == 403 and "only an operator" in response.get_data(
        as_text=True)
    assert rows(config, "SELECT COUNT(*) FROM files") + rows(
        config, "SELECT COUNT(*) FROM audit_log") == before


def test_an_operators_web_reprocess_is_audited_with_its_name(config: Config) -> None:
    client, file_id = create_app(config).test_client(), the_file(config)
    assert sign_in(client, "otto", OPERATOR_PW) == 303
    assert client.post(f"/files/{file_id}/reprocess", data={
        "reason": "x"}).status_code == 403  # no CSRF token: refused before anything
    response = client.post(f"/files/{file_id}/reprocess", data={
        "reason": "mapping fixed", "csrf": page_csrf(client, f"/files/{file_id}")})
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    ledger = open_ledger(config, readonly=True)
    try:
        newest = audit.entries(ledger.db, 1)[0]
        assert audit.verify(ledger.db).intact
    finally:
        ledger.close()
    assert (newest.action, newest.actor, newest.reason) == (
        "reprocess", "web:otto@127.0.0.1", "mapping fixed")
    assert json.loads(newest.details)["original"] == file_id


def test_failed_sign_ins_are_throttled_and_never_logged(
        config: Config, caplog: pytest.LogCaptureFixture) -> None:
    client = create_app(config).test_client()
    client.environ_base["REMOTE_ADDR"] = "192.0.2.9"  # remote: throttled per address too
    caplog.set_level(logging.INFO)
    for n in range(5):
        assert sign_in(client, "otto", f"guess number {n}") == 401
    assert sign_in(client, "otto", OPERATOR_PW) == 429  # even the right one, for a while
    assert sign_in(client, "nobody", "whatever it is") == 429  # and from this address
    assert "guess number" not in caplog.text
    assert "failed sign-in as otto from 192.0.2.9" in caplog.text
    assert client.get("/").status_code == 401


def test_user_names_are_one_whatever_their_case(config: Config) -> None:
    """``Otto`` is ``otto``: no second user of the same name in another case (the throttle
    and the audit trail could not tell them apart), and either signs in."""
    with pytest.raises(FatalError, match="exists already"):
        access.add_user(config, "Otto", "viewer", VIEWER_PW, "cli:test", "test user")
    client = create_app(config).test_client()
    assert sign_in(client, "OTTO", OPERATOR_PW) == 303
    assert "otto (operator)" in client.get("/").get_data(as_text=True)
    access.set_role(config, "OTTO", "viewer", "cli:test", "case")
    assert rows(config, "SELECT name, role FROM users ORDER BY name") == [
        ("otto", "viewer"), ("vera", "viewer")]
    ledger = open_ledger(config)
    try:  # the ledger itself refuses a second case of a name (not only the code above)
        with pytest.raises(Exception, match=r"(?i)unique"), ledger.transaction():
            ledger.db.execute("INSERT INTO users (name, role, password_hash, created_at, "
                              "changed_at) VALUES ('VERA', 'viewer', 'x', 'y', 'y')")
    finally:
        ledger.close()


def test_a_new_password_a_new_role_or_removal_applies_at_once(config: Config) -> None:
    client = create_app(config).test_client()
    assert sign_in(client, "vera", VIEWER_PW) == 303
    access.set_role(config, "vera", "operator", "cli:test", "on call")
    assert "vera (operator)" in client.get("/").get_data(as_text=True)
    access.set_password(config, "vera", "a brand new pass 12", "cli:test", "forgot")
    assert client.get("/").status_code == 401  # the old password's session ended
    assert sign_in(client, "vera", "a brand new pass 12") == 303
    access.remove_user(config, "vera", "cli:test", "left")
    assert client.get("/").status_code == 401
    actions = [r[0] for r in rows(config, "SELECT action FROM audit_log ORDER BY seq")]
    assert actions[-3:] == ["user_role", "user_passwd", "user_remove"]


def test_the_session_cookie_is_strict_and_signed_out_ends_it(config: Config) -> None:
    client = create_app(config).test_client()
    form = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form)
    assert csrf is not None
    response = client.post("/login", data={"name": "vera", "password": VIEWER_PW,
                                           "csrf": csrf[1], "next": "//evil.example/x"})
    assert response.headers["Location"] == "/"  # never to another site: home instead
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "argon2" not in cookie
    assert client.post("/login", data={"name": "vera", "password": VIEWER_PW,
                                       "csrf": "0" * 64}).status_code == 403
    assert client.post("/logout", data={"csrf": page_csrf(client, "/")}).status_code == 303
    assert client.get("/").status_code == 401


def cli(cfg: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(cfg), *args],
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_user_commands_read_the_password_from_stdin_and_store_only_a_hash(
        project: ProjectConfig) -> None:
    cfg = project.set("log", events_file="events.jsonl").write()
    password = "s3cret enough for sure"
    added = cli(cfg, "user", "add", "ann", "--role", "operator", "--reason", "new",
                stdin=password + "\n")
    assert added.returncode == 0, added.stderr
    weak = cli(cfg, "user", "add", "bob", "--role", "viewer", "--reason", "new",
                stdin="short\n")
    assert weak.returncode == 1 and "at least 12" in weak.stderr
    again = cli(cfg, "user", "add", "ann", "--role", "viewer", "--reason", "new",
                stdin=password + "\n")
    assert again.returncode == 1 and "exists already" in again.stderr
    assert cli(cfg, "user", "role", "nobody", "viewer", "--reason", "x").returncode == 1
    listed = json.loads(cli(cfg, "user", "list", "--json").stdout)
    assert [(u["name"], u["role"]) for u in listed] == [("ann", "operator")]
    (stored,) = rows(load_config(cfg), "SELECT password_hash FROM users")
    assert str(stored[0]).startswith("$argon2id$") and password not in str(stored[0])
    for text in ((cfg.parent / "events.jsonl").read_text(),
                 json.dumps(rows(load_config(cfg), "SELECT * FROM events")),
                 json.dumps(rows(load_config(cfg), "SELECT * FROM audit_log"))):
        assert password not in text and "$argon2" not in text and "user_add" in text


def test_the_page_starts_with_users_and_no_token(project: ProjectConfig) -> None:
    config = load_config(project.write())
    with pytest.raises(FatalError, match="user add"):
        make_server(config, port=0, environ={})
    access.add_user(config, "ann", "viewer", VIEWER_PW, "cli:test", "test user")
    make_server(config, port=0, environ={}).close()


@pytest.fixture
def site(project: ProjectConfig) -> Iterator[tuple[str, Config]]:
    project.partner("sample", disposition="keep")
    shutil.copy(CASES / "acme-20261201-good.xml", project.inbox("sample"))
    config = load_config(project.write())
    run_once(config, date(2026, 12, 1))
    access.add_user(config, "vera", "viewer", VIEWER_PW, "cli:test", "test user")
    access.add_user(config, "otto", "operator", OPERATOR_PW, "cli:test", "test user")
    server = make_server(config, port=0, environ={})
    with http_serving(server):
        yield server_url(server), config


def browser_sign_in(page: Page, url: str, name: str, password: str) -> None:
    response = page.goto(f"{url}files")
    assert response is not None and response.status == 401
    page.fill("#name", name)
    page.fill("#password", password)
    follow(page, "#login button[type=submit]")
    assert page.url.endswith("/files") and name in page.inner_text("#signed-in")


def test_a_viewer_and_an_operator_sign_in_with_a_browser(site: tuple[str, Config],
                                                          page: Page) -> None:
    url, config = site
    file_id = the_file(config)
    browser_sign_in(page, url, "vera", VIEWER_PW)
    page.goto(f"{url}files/{file_id}")
    assert page.is_visible("#viewer-note") and page.locator("#reason").count() == 0
    follow(page, "#signed-in button[type=submit]")
    assert page.url.endswith("/login")
    browser_sign_in(page, url, "otto", OPERATOR_PW)
    page.goto(f"{url}files/{file_id}")
    page.fill("#reason", "partner asked")
    follow(page, "#reprocess button[type=submit]")
    assert re.search(r"/files/\d{8}-\d{6}$", page.url) and not page.url.endswith(file_id)
    (last,) = rows(config, "SELECT actor, action, reason FROM audit_log ORDER BY seq DESC "
                           "LIMIT 1")
    assert last == ("web:otto@127.0.0.1", "reprocess", "partner asked")
