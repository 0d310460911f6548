"""License numbers are a shared resource (guide 5.1a, issue 10): the daily quota per partner
(A109, one alert per partner and day) and the alarm when a year's numbers run low (80 %).

Real runs on a local inbox, on SQLite and on PostgreSQL (tests/pg_server.py); `check` reads the
same history. The alerts are read back from the ledger's events, where every alert is recorded.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import lifecycle_files
import pytest
from conftest import ProjectConfig
from test_csv import csv_file, parse_csv_ack
from test_rules import AS_OF, Ack, application, parse_ack, submission

from gateway.admin.check import check_file
from gateway.config import Config, load_config
from gateway.ledger.store import Ledger, open_ledger
from gateway.service.runner import run_once

PARTNER = "acme"
OK, REJ = "LICENSED", "REJECTED"
A109_MESSAGE = ("The partner's daily license quota of 3 is reached: send the application again "
                "the next day.")


class Gateway:
    """One partner with a quota of ``quota`` new licenses a day, on SQLite or PostgreSQL."""

    def __init__(self, base: Path, ledger: str = "", quota: int = 3) -> None:
        self.base = base
        toml = ProjectConfig(base)
        if ledger:
            toml.ledger(ledger)
        toml.partner(PARTNER, inbox="inbox", filer_code="ACM", max_licenses_per_day=quota)
        path = toml.partner("other", inbox="inbox-other").write()
        self.config: Config = load_config(path)
        self.n = 0

    def drop(self, name: str, data: bytes, partner: str = PARTNER) -> Path:
        inbox = self.base / ("inbox" if partner == PARTNER else f"inbox-{partner}")
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_bytes(data)
        return self.base / "outbox" / partner / f"{name}.ack.xml"

    def run(self, name: str, data: bytes, as_of: date = AS_OF, partner: str = PARTNER) -> Ack:
        ack = self.drop(name, data, partner)
        run_once(self.config, as_of)
        return parse_ack(ack.read_bytes())

    def check(self, data: bytes, as_of: date = AS_OF) -> Ack:
        self.n += 1
        path = self.base / "check" / f"{self.n}.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return parse_ack(check_file(self.config, path, PARTNER, as_of).ack)

    def ledger(self) -> Ledger:
        return open_ledger(self.config)

    def alerts(self, kind: str) -> list[tuple[str | None, dict]]:
        ledger = self.ledger()
        try:
            rows = ledger.db.execute("SELECT partner, data FROM events WHERE kind = ? "
                                     "ORDER BY id", (kind,)).fetchall()
        finally:
            ledger.close()
        return [(partner, json.loads(data)) for partner, data in rows]


@pytest.fixture(params=["sqlite", "postgresql"])
def gw(request: pytest.FixtureRequest, tmp_path: Path) -> Gateway:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else ""
    return Gateway(tmp_path, dsn)


def apps(*refs: str, sid: str) -> bytes:
    return submission(*(application(ref) for ref in refs), sid=sid)


def statuses(ack: Ack) -> dict[str, tuple[str, str | None, set[str]]]:
    return {a.ref: (a.status, a.license, a.codes) for a in ack.apps}


def test_past_the_daily_quota_applications_get_a109_and_one_alert(gw: Gateway) -> None:
    ack = gw.run("a.xml", apps("P1", "P2", "P3", "P4", "P5", sid="S1"))
    assert ack.status == "PARTIAL"
    assert statuses(ack) == {
        "P1": (OK, "A26000001", set()), "P2": (OK, "A26000002", set()),
        "P3": (OK, "A26000003", set()),
        "P4": (REJ, None, {"A109"}), "P5": (REJ, None, {"A109"})}
    (a109,) = ack.app("P4").findings
    assert (a109.severity, a109.ref) == ("ERROR", "P4")
    assert gw.alerts("partner.quota_reached") == [
        (PARTNER, {"day": AS_OF.isoformat(), "quota": 3, "refused": 2})]
    # Later files of the day (a new run, as after a restart): refused, and no second alert.
    again = gw.run("b.xml", apps("P4", "P5", sid="S2"))
    assert (again.status, statuses(again)) == ("REJECTED", {
        "P4": (REJ, None, {"A109"}), "P5": (REJ, None, {"A109"})})
    assert len(gw.alerts("partner.quota_reached")) == 1
    # Another partner's numbers are not this partner's quota.
    other = gw.run("o.xml", apps("P1", "P2", "P3", "P4", sid="S1"), partner="other")
    assert [a.status for a in other.apps] == [OK] * 4
    # The next day the refused applications are licensed.
    next_day = gw.run("c.xml", apps("P4", "P5", sid="S3"), AS_OF + timedelta(days=1))
    assert statuses(next_day) == {"P4": (OK, "A26000008", set()), "P5": (OK, "A26000009", set())}
    assert len(gw.alerts("partner.quota_reached")) == 1


def test_the_next_day_refusals_raise_their_own_alert(gw: Gateway) -> None:
    gw.run("a.xml", apps("P1", "P2", "P3", "P4", sid="S1"))
    gw.run("b.xml", apps("Q1", "Q2", "Q3", "Q4", sid="S2"), AS_OF + timedelta(days=1))
    assert [(p, d["day"]) for p, d in gw.alerts("partner.quota_reached")] == [
        (PARTNER, AS_OF.isoformat()), (PARTNER, (AS_OF + timedelta(days=1)).isoformat())]


def test_identical_requests_sent_again_do_not_spend_the_quota(gw: Gateway) -> None:
    gw.run("a.xml", apps("P1", "P2", sid="S1"))
    # The same two again (I201, no new number) and two new ones: one new license is left.
    ack = gw.run("b.xml", apps("P1", "P2", "P3", "P4", sid="S2"))
    assert statuses(ack) == {
        "P1": (OK, "A26000001", {"I201"}), "P2": (OK, "A26000002", {"I201"}),
        "P3": (OK, "A26000003", set()), "P4": (REJ, None, {"A109"})}
    # With the quota spent, an identical request still gets its license back.
    resent = gw.run("c.xml", apps("P3", sid="S3"))
    assert statuses(resent) == {"P3": (OK, "A26000003", {"I201"})}
    # Licenses of earlier days are not today's: the next day has three new ones.
    next_day = gw.run("d.xml", apps("P1", "P4", "P5", "P6", "P7", sid="S4"),
                      AS_OF + timedelta(days=1))
    assert [a.status for a in next_day.apps] == [OK, OK, OK, OK, REJ]
    assert next_day.app("P1").codes == {"I201"}


def test_check_shows_a109_when_the_quota_would_be_reached(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    # No history: the file itself spends the quota.
    dry = gw.check(apps("P1", "P2", "P3", "P4", sid="S1"))
    assert [(a.status, a.license, a.codes) for a in dry.apps] == [
        (OK, "PENDING", set())] * 3 + [(REJ, None, {"A109"})]
    gw.run("a.xml", apps("P1", "P2", sid="S1"))
    # Two licenses issued today: one left.
    dry = gw.check(apps("P3", "P4", sid="S2"))
    assert statuses(dry) == {"P3": (OK, "PENDING", set()), "P4": (REJ, None, {"A109"})}
    assert gw.check(apps("P3", "P4", sid="S2"), AS_OF + timedelta(days=1)).status == "ACCEPTED"
    assert gw.alerts("partner.quota_reached") == []  # check changes nothing


def test_a109_in_the_csv_ack(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    data = csv_file(*({"application_ref": f"P{n}"} for n in range(1, 5)))
    gw.drop("a.csv", data)
    run_once(gw.config, AS_OF)
    ack = parse_csv_ack((tmp_path / "outbox" / PARTNER / "a.csv.ack.csv").read_bytes())
    assert [(r.ref, r.status, r.codes) for r in ack.rows] == [
        ("P1", OK, []), ("P2", OK, []), ("P3", OK, []), ("P4", REJ, ["A109"])]
    assert ack.row(5).messages == f"A109 {A109_MESSAGE} [value: 3]"


def test_the_quota_is_a_partner_setting_with_a_default_of_20000(tmp_path: Path) -> None:
    assert Gateway(tmp_path, quota=1).config.partner("other").max_licenses_per_day == 20_000


# --- the year's numbers running out ---------------------------------------------------------


def test_one_alarm_when_the_years_numbers_pass_80_percent(gw: Gateway) -> None:
    ledger = gw.ledger()
    with ledger.transaction():
        ledger.set_license_sequence(AS_OF.year, 799_998)
    ledger.close()
    # 799,999 is 80 % of 999,999 (rounded down): the first number past it raises the alarm.
    ack = gw.run("a.xml", apps("P1", sid="S1"))
    assert ack.app("P1").license == "A26799999"
    assert gw.alerts("licenses.running_low") == []
    ack = gw.run("b.xml", apps("P2", "P3", sid="S2"))
    assert [a.license for a in ack.apps] == ["A26800000", "A26800001"]
    expected = [(None, {"year": AS_OF.year, "series": "A", "last": 800_001,
                        "capacity": 999_999})]
    assert gw.alerts("licenses.running_low") == expected
    # Once, not per file: later numbers of the year (any partner's) raise no second alarm.
    gw.run("c.xml", apps("P1", sid="S1"), partner="other")
    assert gw.alerts("licenses.running_low") == expected


def test_the_low_value_series_has_an_alarm_of_its_own(gw: Gateway) -> None:
    """L numbers are a sequence of their own (guide 5.1a): past 80 % it alarms once, apart
    from the A series'."""
    ledger = gw.ledger()
    with ledger.transaction():
        ledger.set_license_sequence(AS_OF.year, 799_999, "L")
    ledger.close()
    low = lifecycle_files.application("LV-1", kind="LOW_VALUE", quantity="1000",
                                      value="2500.00")
    ack = gw.run("lv.xml", lifecycle_files.submission("LV-S1", low))
    assert ack.app("LV-1").license == "L26800000"
    expected = [(None, {"year": AS_OF.year, "series": "L", "last": 800_000,
                        "capacity": 999_999})]
    assert gw.alerts("licenses.running_low") == expected
    gw.run("a.xml", apps("P1", sid="S1"))  # the A series is far from its 80 %
    assert gw.alerts("licenses.running_low") == expected
