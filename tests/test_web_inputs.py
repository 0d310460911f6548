"""Admin inputs that must be taken literally or refused: LIKE wildcards in searches (CLI and
web, SQLite and PostgreSQL), months out of range on /charts, weak web tokens.

The web app is the real Flask app behind its real guard, driven by Flask's test client; the
ledger is filled by a real run of a partner file whose importer holds ``_``, ``%`` and ``\\``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from conftest import ProjectConfig
from flask.testing import FlaskClient

from gateway.admin.web.app import create_app
from gateway.admin.web.auth import Guard, guard_from_env
from gateway.cli import main
from gateway.config import Config, load_config
from gateway.errors import FatalError
from gateway.service.runner import run_once

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOOD = (CASES_INBOX / "sample" / "acme-20261201-good.xml").read_text()
ODD_IMPORTER = "METAL_WORKS 100% \\ LTD"  # the first application's; the others: ACME ALUMINUM
TOKEN = secrets.token_urlsafe(32)


@dataclass
class Served:
    cfg: Path
    config: Config
    client: FlaskClient

    def get(self, path: str) -> tuple[int, str]:
        response = self.client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        return response.status_code, response.get_data(as_text=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    config = ProjectConfig(tmp_path).backend(request, request.param)
    cfg = config.partner("acme", inbox="in").write()
    config.inbox("acme").joinpath("a.xml").write_text(
        GOOD.replace("ACME ALUMINUM IMPORTS LLC", ODD_IMPORTER, 1))
    config = load_config(cfg)
    run_once(config, date(2026, 12, 1))
    app = create_app(config, Guard(TOKEN))
    yield Served(cfg, config, app.test_client())


# Search text -> importers found. Unescaped, "%" and "_" matched every importer and "a_u"
# matched "ALUMINUM".
IMPORTER_SEARCHES = [
    pytest.param("%", {ODD_IMPORTER}, id="percent"),
    pytest.param("_", {ODD_IMPORTER}, id="underscore"),
    pytest.param("\\", {ODD_IMPORTER}, id="backslash"),
    pytest.param("0%", {ODD_IMPORTER}, id="digit-percent"),
    pytest.param("a_u", set(), id="underscore-is-no-wildcard"),
    pytest.param("100_", set(), id="underscore-after-text"),
    pytest.param("l_w", {ODD_IMPORTER}, id="underscore-in-name"),
    pytest.param("acme", {"ACME ALUMINUM IMPORTS LLC"}, id="plain-text"),
]


@pytest.mark.parametrize(("text", "found"), IMPORTER_SEARCHES)
def test_cli_licenses_importer_takes_wildcards_literally(
        served: Served, capsys: pytest.CaptureFixture[str], text: str, found: set[str]) -> None:
    assert main(["licenses", "--importer", text, "--json", "--config", str(served.cfg)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["importer"] for row in rows} == found


@pytest.mark.parametrize(("text", "found"), IMPORTER_SEARCHES)
def test_web_licenses_importer_takes_wildcards_literally(
        served: Served, text: str, found: set[str]) -> None:
    status, body = served.get(f"/licenses?importer={_quote(text)}")
    assert status == 200
    shown = {name for name in (ODD_IMPORTER, "ACME ALUMINUM IMPORTS LLC")
             if _html(name) in body.split("<tbody", 1)[-1]}
    assert shown == found


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _html(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


# -- /charts months ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["from", "to"])
@pytest.mark.parametrize("month", [
    "0001-01", "0999-12", "1999-12", "3000-01", "9999-12", "99999-01", "2026-13", "2026-00",
    "2026-1", "2026-011", "abcd", "2026-11-15", "-001-01", "２０２６-１１", "2026-11 x",
])
def test_charts_refuse_a_bad_month_with_400_and_a_message(
        served: Served, name: str, month: str) -> None:
    status, body = served.get(f"/charts?{name}={_quote(month)}")
    assert status == 400, body
    assert f"&#39;{name}&#39; must be a month YYYY-MM from 2000-01 to 2999-12" in body


@pytest.mark.parametrize(("first", "last"), [("2000-01", "2000-03"), ("2026-11", "2026-12"),
                                              ("2999-10", "2999-12"), ("2026-12", "2026-01")])
def test_charts_accept_months_in_range(served: Served, first: str, last: str) -> None:
    status, _ = served.get(f"/charts?from={first}&to={last}")
    assert status == 200


# -- the web token ----------------------------------------------------------------------------


@pytest.mark.parametrize(("token", "why"), [
    pytest.param("x" * 16, "16 characters; at least 32", id="16-identical"),
    pytest.param("x" * 64, "only 1 distinct", id="64-identical"),
    pytest.param("ab" * 32, "only 2 distinct", id="two-characters"),
    pytest.param("password" * 4, "only 7 distinct", id="word-repeated"),
    pytest.param("0123456789abcdef" * 2, "repeats a shorter pattern", id="hex-run-twice"),
    pytest.param("abcdefghijklmnopqrstuvwxyzABCDEF", "run of neighbouring", id="alphabet"),
    pytest.param("aaaaaaaaaaaaaaaaaaaaaaaabcdefghi", "vary too little", id="mostly-one"),
    pytest.param(secrets.token_urlsafe(12), "characters; at least 32", id="random-but-short"),
    pytest.param(" " + secrets.token_urlsafe(32), "spaces around it", id="leading-space"),
])
def test_a_weak_token_is_refused_saying_how_to_make_one(token: str, why: str) -> None:
    with pytest.raises(FatalError) as refused:
        guard_from_env("AIMGW_WEB_TOKEN", {"AIMGW_WEB_TOKEN": token})
    message = str(refused.value)
    assert "AIMGW_WEB_TOKEN" in message and why in message
    assert 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"' in message
    assert token.strip() not in message  # the token itself is never echoed


# Named cases: the tokens are new each run, and a test's name must not be (pytest-xdist
# workers collect the suite separately and must find the same names).
@pytest.mark.parametrize("token", [secrets.token_urlsafe(32), secrets.token_urlsafe(24),
                                   secrets.token_hex(32), "web-test-" + secrets.token_urlsafe(24)],
                         ids=["urlsafe-32", "urlsafe-24", "hex-32", "prefixed-urlsafe-24"])
def test_a_random_token_is_accepted(token: str) -> None:
    assert guard_from_env("AIMGW_WEB_TOKEN", {"AIMGW_WEB_TOKEN": token}).token == token
