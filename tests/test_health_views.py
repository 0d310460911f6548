"""A partner's health that cannot go stale, the same in every view (issue 14 items 2 and 9a):
``status``, ``status --json``, the partner's status file and the web dashboard's words read one
``partner_health``: polls that stopped say "not polled" two periods after the last poll, a
partner the running ``serve`` does not poll says "not yet served", and a running service with
an older configuration is said above the partners.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from project_config import ProjectConfig

from gateway.admin import queries, report
from gateway.config import Config, load_config
from gateway.ledger.reads.health import STALE_GRACE, partner_health
from gateway.ledger.reads.health_words import describe, label
from gateway.ledger.services import beat, config_fingerprint, record_load, record_stop
from gateway.ledger.store import Ledger
from gateway.outputs.status_files import partner_status
from gateway.service.runner import run_once

INTERVAL = 60


@dataclass
class Views:
    """A project with one polled local partner ``sample`` (every 60 s) and a ledger handle."""

    cfg: Path
    ledger: Ledger

    @property
    def config(self) -> Config:
        return load_config(self.cfg)

    def polled(self, ago: timedelta, **state: object) -> None:
        with self.ledger.transaction():
            self.ledger.set_partner_state("sample", last_poll_at=(
                datetime.now(UTC) - ago).isoformat(timespec="seconds"), **state)

    def states(self, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
        """The state each view says now: status --json, status text, status.json, words."""
        config, now = self.config, datetime.now(UTC)
        rows = {r["partner"]: r for r in json.loads(report.status(config, True, _Tty(False)))}
        text = report.status(config, False, _Tty(False))
        sample = config.partner("sample")
        health = partner_health(self.ledger, config, sample, now)
        return {"json": rows["sample"]["state"], "text": text,
                "file": partner_status(self.ledger, config, sample, now)["state"],
                "health": health.state, "words": describe(health, now)}


class _Tty:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def views(tmp_path: Path) -> Iterator[Views]:
    project = ProjectConfig(tmp_path).set("gateway", poll_interval_seconds=INTERVAL)
    cfg = project.partner("sample", inbox="in", disposition="keep").write()
    (tmp_path / "in").mkdir(exist_ok=True)
    run_once(load_config(cfg))
    ledger = Ledger(tmp_path / "data" / "ledger.sqlite")
    yield Views(cfg, ledger)
    ledger.close()


# -- polls that stopped --------------------------------------------------------------------------

STALE_CASES = [
    # Before: "ok" until three intervals had passed (the issue: `status` said ok four minutes
    # after serve died).
    pytest.param(timedelta(seconds=2 * INTERVAL) + STALE_GRACE + timedelta(seconds=5),
                 "not polled", id="two-periods-and-grace-ago"),
    pytest.param(timedelta(seconds=2 * INTERVAL - 5), "ok", id="within-two-periods"),
    pytest.param(timedelta(seconds=10), "ok", id="just-polled"),
]


@pytest.mark.parametrize(("ago", "expected"), STALE_CASES)
def test_every_view_says_not_polled_two_periods_after_the_last_poll(
        views: Views, capsys: pytest.CaptureFixture[str], ago: timedelta,
        expected: str) -> None:
    views.polled(ago)
    said = views.states(capsys)
    assert said["json"] == said["file"] == said["health"] == expected
    if expected == "not polled":
        assert "NOT POLLED (2 min)" in said["text"]
        assert "not polled for 2 min (expected every 60 s): is `aim-gateway serve` running?" \
            in said["words"]
        assert said["words"] in said["text"]  # the why, under the table
    else:
        assert "NOT POLLED" not in said["text"]


def test_a_cron_partner_is_stale_two_of_its_ticks_after_its_last_poll(
        views: Views, capsys: pytest.CaptureFixture[str]) -> None:
    ProjectConfig(views.cfg.parent).set("gateway", poll_interval_seconds=INTERVAL).partner(
        "sample", inbox="in", disposition="keep", schedule="*/10 * * * *").write()
    # Ticks every ten minutes: 9 min after the last poll the second tick is still ahead;
    # 31 min after it, two ticks (and the grace) have passed.
    views.polled(timedelta(minutes=9))
    assert views.states(capsys)["health"] == "ok"
    views.polled(timedelta(minutes=31))
    said = views.states(capsys)
    assert said["health"] == "not polled" and "expected every 10 min" in said["words"]


def test_a_poll_under_way_is_never_not_polled(views: Views,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A long file holds the partner's lease, its last poll getting old meanwhile."""
    views.polled(timedelta(minutes=30))
    with views.ledger.transaction():
        assert views.ledger.acquire_lease("sample", "host:1:abc", 300, views.ledger.now())
    assert views.states(capsys)["health"] == "ok"
    with views.ledger.transaction():
        views.ledger.release_lease("sample", "host:1:abc")
    assert views.states(capsys)["health"] == "not polled"


def test_a_failing_partner_whose_polls_stopped_says_both(views: Views,
                                                         capsys: pytest.CaptureFixture[str],
                                                         ) -> None:
    views.polled(timedelta(minutes=30), failures=3, alerting=1,
                 last_error="partner sample: connection refused by 127.0.0.1:1")
    said = views.states(capsys)
    assert said["health"] == "failing"
    assert "connection refused by 127.0.0.1:1" in said["words"]
    assert "not polled for 30 min" in said["words"] and "serve" in said["words"]


# -- failing looks alarming (item 2) -------------------------------------------------------------


def test_status_says_failing_prominently_and_in_red_on_a_terminal(
        views: Views, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    views.polled(timedelta(seconds=5), failures=3, alerting=1,
                 last_error="partner sample: connection refused by 127.0.0.1:1")
    plain = report.status(views.config, False, _Tty(False))
    lines = plain.splitlines()
    assert lines[2].split()[:4] == ["sample", "local", "FAILING", "(3"], plain
    assert "\x1b[" not in plain
    assert "attention:" in plain and "sample: 3 failed poll(s) in a row: partner sample: " \
        "connection refused by 127.0.0.1:1 (alert raised)" in plain
    red = report.status(views.config, False, _Tty(True))
    [row] = [line for line in red.splitlines() if "FAILING (3 polls)" in line]
    assert row.startswith("\x1b[1;31m") and row.endswith("\x1b[0m")
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in report.status(views.config, False, _Tty(True))
    health = queries.partners(views.config)[0]
    assert health.alarm and label(health, datetime.now(UTC)) == "FAILING (3 polls)"


# -- the running service and its configuration (9a) ----------------------------------------------


def test_a_partner_the_running_service_does_not_poll_is_not_yet_served(
        views: Views, capsys: pytest.CaptureFixture[str]) -> None:
    views.polled(timedelta(seconds=5))
    now = datetime.now(UTC)
    record_load(views.ledger, "host:4242:abc", config_fingerprint(views.cfg), ["sample"], now,
                start=True)
    assert queries.running_note(views.config) is None
    assert views.states(capsys)["health"] == "ok"
    # A partner is added to config.toml; the service has not reloaded.
    (views.cfg.parent / "new").mkdir()
    ProjectConfig(views.cfg.parent).set("gateway", poll_interval_seconds=INTERVAL).partner(
        "sample", inbox="in", disposition="keep").partner("newco", inbox="new").write()
    config = load_config(views.cfg)
    rows = {r["partner"]: r for r in json.loads(report.status(config, True, _Tty(False)))}
    assert rows["newco"]["state"] == "not yet served" and rows["newco"]["alarm"] is True
    assert rows["sample"]["state"] == "ok"
    note = rows["sample"]["service_note"]
    assert "the running service has an older configuration" in note
    assert "reload it with SIGHUP (kill -HUP 4242" in note
    text = report.status(config, False, _Tty(False))
    assert text.startswith(f"NOTE: {note}") and "NOT YET SERVED" in text
    assert "newco: not yet served" in text
    # The service reloads: it knows the partner, its configuration is current.
    record_load(views.ledger, "host:4242:abc", config_fingerprint(views.cfg),
                ["sample", "newco"], datetime.now(UTC))
    rows = {r["partner"]: r for r in json.loads(report.status(config, True, _Tty(False)))}
    assert rows["newco"]["state"] == "never polled" and rows["newco"]["service_note"] is None


def test_a_service_that_stopped_or_died_no_longer_speaks(views: Views) -> None:
    views.polled(timedelta(seconds=5))
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    record_load(views.ledger, "host:1:dead", "0" * 16, [], long_ago, start=True)
    assert queries.running_note(views.config) is None  # no heartbeat for 5 min: gone
    beat(views.ledger, "host:1:dead", datetime.now(UTC))
    assert queries.running_note(views.config) is not None
    assert queries.partners(views.config)[0].state == "not yet served"
    record_stop(views.ledger, "host:1:dead")
    assert queries.running_note(views.config) is None
    assert queries.partners(views.config)[0].state == "ok"
