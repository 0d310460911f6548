"""Licensed quantity per month by product group, country of smelt and country of cast.

What AIM exists to monitor. Only licenses in force or run their course count (stored state
ACTIVE, EXPIRED included): a corrected license counts once, as its correction in the
correction's issue month (the SUPERSEDED original is left out), and a CANCELLED license is left
out (nothing is imported under it); ``left_out`` says how many were, for the page to state.

The sums come from the licenses table (issue date and the products JSON, unnested by the
database, SQLite's json_each or PostgreSQL's jsonb_array_elements, so no row per product line
is ever loaded); the bars are laid out here as plain numbers and drawn by the template as
inline SVG, so the page needs no script and no build step.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import pycountry

from gateway.ledger.db import Database
from gateway.model import LicenseState

# dimension -> (index in a licenses.products entry (licensing.PRODUCT_FIELDS), title)
DIMENSIONS: dict[str, tuple[int, str]] = {
    "product_group": (1, "Product group"),
    "smelt_country_largest": (2, "Country of smelt (largest)"),
    "cast_country": (4, "Country of cast"),
}
TOP = 8            # categories drawn; the rest are summed as "Other"
MAX_MONTHS = 60
OTHER = "Other"
# Okabe-Ito, told apart by most colour-blind readers; grey is kept for "Other".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")
OTHER_COLOR = "#999999"
WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP_MARGIN, BOTTOM = 64, 12, 16, 40
# The y axis: its rotated title in a band of its own at the left edge, then the tick labels
# (11 px text: a digit or comma is at most ~7 px wide), then a gap before the axis, so that
# the title never runs into a wide label such as "5,000,000".
TITLE_BAND, CHAR_PX, TICK_GAP = 20, 7, 6
# The licenses a chart counts (EXPIRED is stored ACTIVE): one per ref and request, the current.
COUNTED = f"l.state = '{LicenseState.ACTIVE}'"


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    color: str
    tons: float


@dataclass(frozen=True)
class Bar:
    month: str
    key: str
    label: str
    tons: float
    x: float
    y: float
    width: float
    height: float
    color: str


@dataclass(frozen=True)
class Chart:
    dimension: str
    title: str
    months: list[str]
    series: list[Series]
    bars: list[Bar]
    y_ticks: list[tuple[float, str]]
    x_labels: list[tuple[float, str]]
    table: list[tuple[str, list[float], float]]  # month, tons per series, month total
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom_y: int = HEIGHT - BOTTOM

    @property
    def total(self) -> float:
        return round(sum(row[2] for row in self.table), 3)  # rounded once, not per series


# The months a chart may show: four-digit years (the labels sort as text), none before
# licensing existed.
FIRST_MONTH, LAST_MONTH = "2000-01", "2999-12"
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


def valid_month(text: str) -> bool:
    """``YYYY-MM``, a real month, within FIRST_MONTH..LAST_MONTH."""
    return bool(_MONTH.fullmatch(text)) and FIRST_MONTH <= text <= LAST_MONTH


def month_range(first: str, last: str) -> list[str]:
    """Every month ``YYYY-MM`` from ``first`` to ``last`` inclusive, at most MAX_MONTHS."""
    year, month = int(first[:4]), int(first[5:7])
    out: list[str] = []
    while len(out) < MAX_MONTHS:
        label = f"{year:04d}-{month:02d}"
        if label > last:
            break
        out.append(label)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def default_months(db: Database, today: date) -> tuple[str, str]:
    """The 12 months up to the latest issue month (or this month when nothing is licensed)."""
    latest = db.execute("SELECT MAX(issue_date) FROM licenses").fetchone()[0]
    end = latest[:7] if latest else today.strftime("%Y-%m")
    year, month = int(end[:4]), int(end[5:7]) - 11
    while month < 1:
        year, month = year - 1, month + 12
    return f"{year:04d}-{month:02d}", end


def label_for(dimension: str, key: str) -> str:
    if dimension not in ("smelt_country_largest", "cast_country") or key == OTHER:
        return key  # a product group, a partner id
    if key == "NOT_APPLICABLE":
        return "not applicable (secondary only)"
    if key == "UNKNOWN":
        return "unknown"
    country = pycountry.countries.get(alpha_2=key)
    return f"{key} {country.name}" if country else key


def monthly_tons(db: Database, dimension: str, first: str, last: str,
                 partner: str = "") -> dict[tuple[str, str], float]:
    """(month, category) → licensed metric tons, for licenses issued in [first, last]."""
    index = DIMENSIONS[dimension][0]  # a constant from the table above, never user text
    # One row per entry of each license's products (JSON arrays of PRODUCT_FIELDS, where
    # quantity_kg is item 6).
    source = db.json_elements("l.products", "p")
    key, kg = db.json_text("p.value", index), db.json_real("p.value", 6)
    sql = (f"SELECT substr(l.issue_date, 1, 7), {key}, SUM({kg}) / 1000.0 "
           f"FROM licenses l, {source} WHERE {COUNTED} AND "
           "substr(l.issue_date, 1, 7) BETWEEN ? AND ?")
    params: list[object] = [first, last]
    if partner:
        sql += " AND l.partner = ?"
        params.append(partner)
    sql += " GROUP BY 1, 2"
    return {(month, k or "UNKNOWN"): float(tons) for month, k, tons in db.execute(sql, params)}


def left_out(db: Database, first: str, last: str, partner: str = "") -> dict[str, int]:
    """The licenses issued in [first, last] that the charts do not count, by state:
    SUPERSEDED (their correction counts) and CANCELLED."""
    sql = ("SELECT l.state, COUNT(*) FROM licenses l WHERE NOT " + COUNTED +
           " AND substr(l.issue_date, 1, 7) BETWEEN ? AND ?")
    params: list[object] = [first, last]
    if partner:
        sql += " AND l.partner = ?"
        params.append(partner)
    found = dict(db.execute(sql + " GROUP BY l.state", params).fetchall())
    return {state: int(found.get(state, 0))
            for state in (LicenseState.SUPERSEDED, LicenseState.CANCELLED)}


def nice_step(top: float, ticks: int = 5) -> float:
    """A round axis step (1, 2, 2.5 or 5 × 10^k) giving about ``ticks`` ticks up to ``top``."""
    if top <= 0:
        return 1.0
    raw = top / ticks
    power: float = 10 ** math.floor(math.log10(raw))  # int ** int is typed Any
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _tons_label(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:,.1f}"


def build_chart(dimension: str, months: list[str], data: dict[tuple[str, str], float],
                title: str = "", least_step: float = 0.0) -> Chart:
    """Stacked bars, one per month, the TOP categories by total and the rest as Other. (The
    daily charts pass days as ``months``, partners as categories and counts as ``tons``.)"""
    totals: dict[str, float] = {}
    for (_, key), tons in data.items():
        totals[key] = totals.get(key, 0.0) + tons
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    shown = ranked[:TOP] if len(ranked) <= TOP + 1 else ranked[:TOP - 1]
    rest = [k for k in ranked if k not in shown]
    keys = shown + ([OTHER] if rest else [])
    colors = {k: PALETTE[i] for i, k in enumerate(shown)} | {OTHER: OTHER_COLOR}

    def grouped(month: str, key: str) -> float:
        if key == OTHER:
            return sum(data.get((month, k), 0.0) for k in rest)
        return data.get((month, key), 0.0)

    table = []
    for month in months:
        values = [grouped(month, k) for k in keys]
        table.append((month, values, sum(values)))
    highest = max((row[2] for row in table), default=0.0)
    step = max(nice_step(highest), least_step)  # counts: no tick at 0.2 of a file
    top = step * max(1, math.ceil(highest / step)) if highest else step * 5
    plot_h = HEIGHT - TOP_MARGIN - BOTTOM
    y_ticks = [(round(HEIGHT - BOTTOM - v / top * plot_h, 2), _tons_label(v))
               for v in (step * n for n in range(round(top / step) + 1))]
    left = max(LEFT, TITLE_BAND + TICK_GAP + CHAR_PX * max(len(t[1]) for t in y_ticks))
    slot = (WIDTH - left - RIGHT) / max(1, len(months))
    bar_w = max(2.0, slot * 0.7)
    bars, x_labels = [], []
    every = max(1, math.ceil(len(months) / 12))  # at most ~12 month labels fit under the axis
    for i, (month, values, _) in enumerate(table):
        x = left + i * slot + (slot - bar_w) / 2
        y = float(HEIGHT - BOTTOM)
        for key, tons in zip(keys, values, strict=True):
            if tons <= 0:
                continue
            h = tons / top * plot_h
            y -= h
            bars.append(Bar(month, key, label_for(dimension, key), round(tons, 3), round(x, 2),
                            round(y, 2), round(bar_w, 2), round(h, 2), colors[key]))
        if i % every == 0:
            x_labels.append((round(x + bar_w / 2, 2), month))

    series = [Series(k, label_for(dimension, k), colors[k],
                     round(sum(grouped(m, k) for m in months), 3)) for k in keys]
    return Chart(dimension, title or DIMENSIONS[dimension][1], months, series, bars, y_ticks,
                 x_labels, table, left=left)


# -- files, rejections and latency per partner per day (issue 14 item 11) ----------------------

DEFAULT_DAYS, MAX_DAYS = 30, 92


@dataclass(frozen=True)
class Line:
    """One partner's median latency per day: points where it had files, None where not."""

    key: str
    color: str
    values: list[float | None]  # seconds, one per day
    points: list[tuple[float, float, str, float]]  # x, y, day, seconds

    @property
    def path(self) -> str:
        """The SVG polyline through the points (days without a file are skipped over)."""
        return " ".join(f"{x},{y}" for x, y, _, _ in self.points)


@dataclass(frozen=True)
class LatencyChart:
    days: list[str]
    lines: list[Line]
    y_ticks: list[tuple[float, str]]
    x_labels: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom_y: int = HEIGHT - BOTTOM


@dataclass(frozen=True)
class DailyCharts:
    files: Chart
    rejected: Chart
    latency: LatencyChart


# A file's modification time is taken as its drop when it lies within this much before its
# receipt: an older one was kept by the partner's copy tool (scp -p, rsync -t), not dropped.
DROP_WINDOW = timedelta(hours=24)


def dropped_at(mtime: float, received: datetime) -> datetime:
    """When the partner dropped the file, as far as the gateway can tell: its modification
    time when that is plausible (not after its receipt, not a day before it), else its
    receipt."""
    moment = datetime.fromtimestamp(mtime, UTC)
    return moment if received - DROP_WINDOW <= moment <= received else received


def _day_rows(db: Database, zone: tzinfo, first: date, last: date) -> Iterator[
        tuple[str, str, str | None, float | None]]:
    """(local day, partner, status, seconds from the drop to the ack written) of each file a
    partner sent in [first, last] (reprocesses are an admin's, not the partner's)."""
    start = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    for partner, received, mtime, processed, status in db.execute(
            "SELECT partner, received_at, mtime, processed_at, status FROM files WHERE "
            "reprocess_of IS NULL AND received_at >= ? AND received_at < ?",
            (start.isoformat(timespec="seconds"), end.isoformat(timespec="seconds"))):
        got = datetime.fromisoformat(received)
        done = datetime.fromisoformat(processed) if processed else None
        seconds = ((done - dropped_at(float(mtime), got)).total_seconds()
                   if done is not None else None)
        yield got.astimezone(zone).date().isoformat(), partner, status, seconds


def daily_charts(db: Database, zone: tzinfo, first: date, last: date) -> DailyCharts:
    """Files and rejected files (stacked by partner) and the median latency (one line per
    partner) for each day from ``first`` to ``last`` in the gateway's zone."""
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    files: dict[tuple[str, str], float] = {}
    rejected: dict[tuple[str, str], float] = {}
    waits: dict[tuple[str, str], list[float]] = {}
    for day, partner, status, seconds in _day_rows(db, zone, first, last):
        files[day, partner] = files.get((day, partner), 0) + 1
        if status == "REJECTED":
            rejected[day, partner] = rejected.get((day, partner), 0) + 1
        if seconds is not None:
            waits.setdefault((day, partner), []).append(max(0.0, seconds))
    return DailyCharts(
        build_chart("partner", days, files, "Files received", least_step=1),
        build_chart("partner", days, rejected, "Files rejected", least_step=1),
        latency_chart(days, {k: statistics.median(v) for k, v in waits.items()}))


def latency_chart(days: list[str], medians: dict[tuple[str, str], float]) -> LatencyChart:
    partners = sorted({partner for _, partner in medians})
    highest = max(medians.values(), default=0.0)
    step = nice_step(highest)
    top = step * max(1, math.ceil(highest / step)) if highest else step * 5
    plot_h = HEIGHT - TOP_MARGIN - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(days))
    xs = [round(LEFT + i * slot + slot / 2, 2) for i in range(len(days))]
    lines = []
    for n, partner in enumerate(partners):
        values = [medians.get((day, partner)) for day in days]
        points = [(x, round(HEIGHT - BOTTOM - v / top * plot_h, 2), day, round(v, 1))
                  for x, day, v in zip(xs, days, values, strict=True) if v is not None]
        lines.append(Line(partner, PALETTE[n % len(PALETTE)], values, points))
    every = max(1, math.ceil(len(days) / 12))
    return LatencyChart(
        days, lines,
        [(round(HEIGHT - BOTTOM - v / top * plot_h, 2), _tons_label(v))
         for v in (step * n for n in range(round(top / step) + 1))],
        [(x, day) for i, (x, day) in enumerate(zip(xs, days, strict=True)) if i % every == 0])
