"""The edges of the admin page an attacker reaches first (issue 14, web review): where the
browser goes after signing in, who the sign-in throttle locks out behind loopback, and which
Host headers are answered (DNS rebinding). Flask's client, and real HTTP through waitress."""

from __future__ import annotations

import http.client
import re
import secrets
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from browser import http_serving
from flask.testing import FlaskClient
from project_config import ProjectConfig

from gateway.admin import access
from gateway.admin.hosts import server_url
from gateway.admin.web.app import create_app
from gateway.admin.web.auth import Guard
from gateway.admin.web.server import make_server
from gateway.config import Config, load_config

PASSWORD = "alice pass 4 signing"
TOKEN = secrets.token_urlsafe(32)
# What a browser makes of each: a tab or newline dropped, "\" read as "/", so all lead off-site.
EVIL = ["/%09/evil.com", "/\t/evil.com", "/\n/evil.com", "/%5C/evil.com", "/\\/evil.com",
        "https://evil.com", "//evil.com", "/\\\\evil.com", "\\\\evil.com", " //evil.com",
        "/%0D%0A/evil.com", "javascript:alert(1)", "/\x00/evil.com"]


@pytest.fixture
def config(project: ProjectConfig) -> Config:
    loaded = load_config(project.write())
    access.add_user(loaded, "alice", "operator", PASSWORD, "cli:test", "test user")
    return loaded


def login_csrf(client: FlaskClient) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/login").get_data(
        as_text=True))
    assert found is not None
    return found[1]


def sign_in(client: FlaskClient, name: str, password: str, target: str = "/files") -> \
        tuple[int, str]:
    response = client.post("/login", data={"name": name, "password": password,
                                           "csrf": login_csrf(client), "next": target})
    return response.status_code, response.headers.get("Location", "")


def stays_here(location: str) -> bool:
    """Whether a browser following ``location`` stays on this site (as it reads it)."""
    seen = "".join(c for c in location if c.isprintable() and not c.isspace())
    seen = seen.replace("\\", "/")
    parts = urlsplit(seen)
    return seen.startswith("/") and not seen.startswith("//") and not (
        parts.scheme or parts.netloc)


# -- 1. the redirect after signing in -----------------------------------------------------------


@pytest.mark.parametrize("target", EVIL)
def test_sign_in_never_sends_the_browser_elsewhere(config: Config, target: str) -> None:
    code, location = sign_in(create_app(config).test_client(), "alice", PASSWORD, target)
    assert code == 303 and location == "/", repr(location)


@pytest.mark.parametrize("path", ["/\t/evil.com", "/\n/evil.com", "/\\/evil.com",
                                  "//evil.com", "/\\\\evil.com", "/\r\n/evil.com"])
def test_the_token_redirect_never_sends_the_browser_elsewhere(config: Config,
                                                              path: str) -> None:
    client = create_app(config, Guard(TOKEN)).test_client()
    response = client.get("/", query_string={"token": TOKEN, "a": "1"},
                          environ_overrides={"PATH_INFO": path})
    assert response.status_code == 303
    location = response.headers["Location"]
    assert stays_here(location) and location.endswith("?a=1"), location


@pytest.mark.parametrize("target", ["/files?partner=acme&page=2", "/files/20261201-000001",
                                    "/partners/acme"])
def test_sign_in_still_goes_back_to_the_page_asked_for(config: Config, target: str) -> None:
    assert sign_in(create_app(config).test_client(), "alice", PASSWORD, target) == (303, target)


def test_the_sign_in_form_keeps_only_a_local_page(config: Config) -> None:
    client = create_app(config).test_client()
    page = client.get("/", environ_overrides={"PATH_INFO": "/\t/evil.com"})
    assert page.status_code == 401 and 'name="next" value="/"' in page.get_data(as_text=True)


def test_the_redirects_hold_over_real_http(config: Config) -> None:
    """Through waitress, as a browser sends it: the tab percent-encoded in the path."""
    server = make_server(config, port=0, environ={"AIMGW_WEB_TOKEN": TOKEN})
    with http_serving(server):
        url = urlsplit(server_url(server))
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        connection.request("GET", f"/%09/evil.com?token={TOKEN}")
        response = connection.getresponse()
        response.read()
        assert response.status == 303 and response.getheader("Location") == "/"


# -- 2. the throttle behind loopback ------------------------------------------------------------


def test_guessed_names_from_loopback_do_not_lock_out_the_real_user(config: Config) -> None:
    """Everyone behind an SSH tunnel or ``serve`` comes from 127.0.0.1: a guesser trying
    names must not lock alice out."""
    client = create_app(config).test_client()
    for n in range(8):
        assert sign_in(client, f"guess{n}", "not the password")[0] == 401
    assert sign_in(client, "alice", PASSWORD)[0] == 303


def test_a_name_is_still_throttled_from_loopback(config: Config) -> None:
    client = create_app(config).test_client()
    for n in range(5):
        assert sign_in(client, "alice", f"guess number {n}")[0] == 401
    assert sign_in(client, "ALICE", PASSWORD)[0] == 429  # the name, whatever its case


def test_a_remote_address_is_still_throttled_across_names(config: Config) -> None:
    client = create_app(config).test_client()
    client.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    for n in range(5):
        assert sign_in(client, f"guess{n}", "not the password")[0] == 401
    assert sign_in(client, "alice", PASSWORD)[0] == 429
    here = create_app(config).test_client()  # another page: its own throttle
    assert sign_in(here, "alice", PASSWORD)[0] == 303


# -- 3. the Host header (DNS rebinding) ---------------------------------------------------------

LOCAL_HOSTS = ["localhost", "127.0.0.1", "127.0.0.1:8765", "localhost:1", "[::1]",
               "[::1]:8765", "LOCALHOST"]
FOREIGN_HOSTS = ["evil.com", "evil.com:8765", "127.0.0.1.evil.com", "localhost.evil.com",
                 "[::1].evil.com", "127.0.0.1:80:80", "127.0.0.1:x", "[::2]", "",
                 "127.0.0.1@evil.com"]


@pytest.mark.parametrize("host", LOCAL_HOSTS)
def test_a_loopback_host_is_answered(config: Config, host: str) -> None:
    client = create_app(config).test_client()
    assert client.get("/login", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_another_host_is_refused_before_anything(config: Config, host: str) -> None:
    """A page of evil.com rebound to 127.0.0.1 sends ``Host: evil.com``: refused, even the
    sign-in form and the token."""
    client = create_app(config, Guard(TOKEN)).test_client()
    for response in (client.get("/login", headers={"Host": host}),
                     client.get("/", headers={"Host": host,
                                              "Authorization": f"Bearer {TOKEN}"}),
                     client.post("/login", headers={"Host": host},
                                 data={"name": "alice", "password": PASSWORD})):
        assert response.status_code == 421, (host, response.status_code)
        assert "Set-Cookie" not in response.headers


def test_the_configured_host_is_answered(config: Config) -> None:
    served = replace(config, web=replace(config.web, host="127.0.0.2"))
    client = create_app(served).test_client()
    assert client.get("/login", headers={"Host": "127.0.0.2:8765"}).status_code == 200
    assert client.get("/login", headers={"Host": "127.0.0.3:8765"}).status_code == 421


def test_allow_remote_answers_any_host(config: Config) -> None:
    served = replace(config, web=replace(config.web, host="0.0.0.0", allow_remote=True))
    client = create_app(served).test_client()
    assert client.get("/login", headers={"Host": "gateway.example.com"}).status_code == 200


def test_the_host_check_holds_over_real_http(config: Config) -> None:
    server = make_server(config, port=0, environ={})
    with http_serving(server):
        url = urlsplit(server_url(server))
        for host, code in (("evil.com", 421), (f"localhost:{url.port}", 200)):
            connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
            connection.request("GET", "/login", headers={"Host": host})
            response = connection.getresponse()
            response.read()
            assert response.status == code, host

