"""One clock for people (issue 14, item 3): every view a person reads shows the ledger's times
in the gateway's zone with its abbreviation (``2026-12-04 18:15 JST``); JSON keeps ISO 8601
with an offset."""

from __future__ import annotations

import contextlib
import io
import json
import re
import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from browser import TOKEN, serving
from conftest import ProjectConfig

from gateway.cli import main
from gateway.config import load_config
from gateway.ledger.reads.clock import person_time
from gateway.service.runner import run_once

SAMPLE = Path(__file__).resolve().parent / "cases" / "inbox" / "sample" / \
    "acme-20261201-good.xml"
ZONE = "Asia/Tokyo"  # far from UTC and from New York: no view gets it right by chance
# A time as a person reads it; the ledger's own form (ISO, T, seconds, offset) never.
SHOWN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d JST")
STORED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A project in Tokyo time that ran one file: (config, file id, received_at as stored)."""
    base = tmp_path_factory.mktemp("clock")
    config = ProjectConfig(base).set("gateway", timezone=ZONE)
    config.partner("acme", filer_code="ACM")
    (config.inbox("acme") / "a.xml").write_bytes(SAMPLE.read_bytes())
    path = config.write()
    run_once(load_config(path), date(2026, 12, 1))
    files = json.loads(cli(path, "files", "--json"))
    return path, files[0]["file_id"], files[0]["received_at"]


def cli(path: Path, *args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["--config", str(path), *args])
    return out.getvalue()


def web(path: Path, page: str) -> str:
    with serving(path) as site:
        request = urllib.request.Request(site.url.rstrip("/") + page,
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return str(answer.read().decode())


def expected(received_at: str) -> str:
    """Written here without the gateway's function: Tokyo's wall clock, to the minute."""
    return datetime.fromisoformat(received_at).astimezone(ZoneInfo(ZONE)).strftime(
        "%Y-%m-%d %H:%M JST")


VIEWS: dict[str, Callable[[Path, str], str]] = {
    "status": lambda path, _: cli(path, "status"),
    "files": lambda path, _: cli(path, "files"),
    "show": lambda path, file_id: cli(path, "show", file_id),
    "web dashboard": lambda path, _: web(path, "/"),
    "web files": lambda path, _: web(path, "/files"),
    "web file page": lambda path, file_id: web(path, f"/files/{file_id}"),
}


@pytest.mark.parametrize("view", list(VIEWS))
def test_people_read_times_in_the_gateway_zone_with_its_abbreviation(
        ran: tuple[Path, str, str], view: str) -> None:
    path, file_id, received_at = ran
    text = VIEWS[view](path, file_id)
    assert expected(received_at) in text, text
    assert SHOWN.search(text)
    assert not STORED.search(text), STORED.search(text)


@pytest.mark.parametrize("command", [("status", "--json"), ("files", "--json"),
                                     ("show", "{file_id}", "--json")])
def test_json_keeps_iso_8601_with_an_offset(ran: tuple[Path, str, str],
                                            command: tuple[str, ...]) -> None:
    path, file_id, received_at = ran
    text = cli(path, *(part.format(file_id=file_id) for part in command))
    assert received_at in text and datetime.fromisoformat(received_at).utcoffset() is not None
    assert not SHOWN.search(text)


def test_person_time() -> None:
    tokyo, new_york = ZoneInfo(ZONE), ZoneInfo("America/New_York")
    assert person_time("2026-12-04T14:15:09+00:00", new_york) == "2026-12-04 09:15 EST"
    assert person_time("2026-07-04T14:15:00+00:00", new_york) == "2026-07-04 10:15 EDT"
    assert person_time(datetime(2026, 12, 4, 14, 15, tzinfo=UTC), tokyo) == \
        "2026-12-04 23:15 JST"
    assert person_time("2026-12-04T14:15:00", tokyo) == "2026-12-04 23:15 JST"  # UTC assumed
    assert person_time(None, tokyo) is None and person_time("", tokyo) is None
    assert person_time("soon", tokyo) == "soon"
