"""Property tests (hypothesis) for the value rules (issue 6 point 4).

Whatever the field values of an application (absent, blank, random text, digits, ISO codes,
UNKNOWN / NOT_APPLICABLE, dates around every boundary, amounts of any size and spelling),
``check_application`` returns findings and never raises; every code is a guide code with the
guide's severity; the findings are the same on every run, in any order of applications and in
another process (another hash seed); an application is rejected exactly when a finding is an
ERROR.
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from dataclasses import fields
from datetime import date, timedelta
from decimal import Decimal, localcontext
from pathlib import Path

from conftest import examples
from hypothesis import given
from hypothesis import strategies as st

from gateway.countries import ISO_COUNTRIES, NOT_APPLICABLE, UNKNOWN
from gateway.findings import CODES, Severity
from gateway.model import (
    APPLICATION_FIELDS,
    LINE_FIELDS,
    REQUIRED_APPLICATION_FIELDS,
    Application,
    ProductLine,
)
from gateway.validate.entry_types import ENTRY_TYPES
from gateway.validate.hts import AIM_HEADING_PREFIXES, PROGRAM_START, covered_list
from gateway.validate.rules import (
    ApplicationCheck,
    RuleContext,
    check_application,
)

PURE = examples(200)
PROCESSES = examples(4)

COVERED = covered_list()
A121_FROM = date(2022, 6, 29)
DATES = [PROGRAM_START, A121_FROM, date(2026, 12, 1), date(2024, 2, 29),
         date(2023, 3, 10), date(2024, 7, 10)]  # A126, A127 from

# --- strategies -------------------------------------------------------------------------------

odd_text = st.one_of(
    st.none(), st.just(""), st.text(max_size=15),
    st.text(alphabet="0123456789", min_size=1, max_size=12),
    st.sampled_from([" ", "\x00", "ÄÖ", "١٢٣", "0", "-1", "NaN", "null", "9" * 20, "1" * 4301]),
)
country = st.one_of(st.sampled_from(sorted(ISO_COUNTRIES)),
                    st.sampled_from([UNKNOWN, NOT_APPLICABLE, "XX", "ca", "CAN", "U.S.", "EU"]),
                    odd_text)
amount = st.one_of(
    st.decimals(min_value=0, max_value=10**12, places=3).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"[+-]?[0-9]{0,30}(\.[0-9]{0,6})?([eE][+-]?[0-9]{1,20})?", fullmatch=True),
    st.sampled_from(["24000", "61200.00", "0", "-5", "0.001", "0.0001", "1e-29", "1E+3",
                     "9" * 26, "1e999999", "1e999999999999999999", "9" * 29 + "e999971",
                     "1" + "0" * 30 + "1e-29", "Infinity", "sNaN", "1_000", "١٢٣", "1,5"]),
    odd_text,
)
hts = st.one_of(
    st.sampled_from(sorted(COVERED.items)),
    st.sampled_from(sorted(COVERED.items)).map(lambda h: f"{h[:4]}.{h[4:6]}.{h[6:]}"),
    st.sampled_from(AIM_HEADING_PREFIXES).map(lambda p: (p + "9999999999")[:10]),
    st.text(alphabet="0123456789.", max_size=14),
    odd_text,
)


def days_from(on: date) -> st.SearchStrategy[str | None]:
    """ISO dates at and around every date boundary of the rules, and odd date text."""
    offsets = [-16, -15, -14, -1, 0, 1, 59, 60, 61]
    anchors = st.one_of(
        st.sampled_from(offsets).map(lambda n: on + timedelta(days=n)),
        st.sampled_from([-1, 0, 1]).map(lambda n: PROGRAM_START + timedelta(days=n)),
        st.dates(date(1, 1, 1), date(9999, 12, 31)),
    )
    return st.one_of(anchors.map(date.isoformat),
                     st.sampled_from(["2026-02-30", "2026-13-01", "20261201", "2026-1-1",
                                      "2026-12-01T00:00", "0000-01-01"]),
                     odd_text)


@st.composite
def lines(draw: st.DrawFn) -> ProductLine:
    return ProductLine(
        line_no=draw(st.one_of(st.integers(0, 1001).map(str), odd_text)),
        hts=draw(hts), description=draw(odd_text),
        smelt_country_largest=draw(country), smelt_country_second=draw(country),
        cast_country=draw(country), quantity_kg=draw(amount), value_usd=draw(amount),
        source_line=draw(st.one_of(st.none(), st.integers(1, 10**6))))


@st.composite
def contexts(draw: st.DrawFn) -> RuleContext:
    on = draw(st.one_of(st.sampled_from(DATES),
                        st.dates(date(2021, 1, 1), date(2030, 12, 31))))
    low = draw(st.sampled_from(["500", "0.01", "60000"]))
    high = draw(st.sampled_from(["60000", "60000.01", "1e30"]))
    return RuleContext(processing_date=on, covered=COVERED, unit_value_min=Decimal(low),
                       unit_value_max=Decimal(high),
                       source_format=draw(st.sampled_from(["xml", "csv"])))


@st.composite
def applications(draw: st.DrawFn, on: date) -> Application:
    return Application(
        ref=draw(st.one_of(st.sampled_from(["PO-1", "PO-2"]), odd_text)),
        entry_type=draw(st.one_of(st.sampled_from(sorted(ENTRY_TYPES)), odd_text)),
        entry_number=draw(st.one_of(st.sampled_from(["ABC12345678", "abc12345678",
                                                     "AB12345678"]), odd_text)),
        importer=draw(odd_text), exporter=draw(odd_text),
        manufacturer=draw(st.one_of(st.just(UNKNOWN), odd_text)),
        country_of_origin=draw(country), country_of_export=draw(country),
        expected_export_date=draw(days_from(on)), expected_import_date=draw(days_from(on)),
        port_of_entry=draw(st.one_of(st.sampled_from(["3004", "300", "30044"]), odd_text)),
        lines=draw(st.lists(lines(), max_size=4)),
        source_line=draw(st.one_of(st.none(), st.integers(1, 10**6))))


@st.composite
def cases(draw: st.DrawFn) -> tuple[Application, RuleContext]:
    ctx = draw(contexts())
    return draw(applications(ctx.processing_date)), ctx


# --- the properties ----------------------------------------------------------------------------

FIELD_NAMES = {"ref", "line_no"} | {a for a, _ in APPLICATION_FIELDS} | {a for a, _ in LINE_FIELDS}


def outcome(check: ApplicationCheck) -> tuple:
    """Everything a check decides, comparable across runs and processes."""
    return (check.findings, check.exempt,
            [(r.hts10, r.covered, r.unit_value, r.quantity, r.value) for r in check.lines])


def check_invariants(app: Application, ctx: RuleContext, check: ApplicationCheck) -> None:
    sources = {app.source_line} | {line.source_line for line in app.lines}
    for f in check.findings:
        assert f.code in CODES and f.code.startswith("A"), f
        assert f.severity is CODES[f.code][0], f
        assert f.ref == app.ref
        assert f.field is None or f.field in FIELD_NAMES, f
        assert f.source_line in sources, f
    assert check.rejected == any(f.severity is Severity.ERROR for f in check.findings)
    codes = {f.code for f in check.findings}
    if check.exempt:
        assert codes & {"A170", "A153", "A111"}
    assert len(check.lines) == len(app.lines)
    for result, line in zip(check.lines, app.lines, strict=True):
        assert result.line is line
        if result.covered is not None:
            assert result.hts10 == result.covered.hts10
    for name in REQUIRED_APPLICATION_FIELDS:
        if not getattr(app, name):
            assert any(f.code == "A102" and f.field == name for f in check.findings)
    if "A121" in codes:
        assert ctx.processing_date >= A121_FROM
    for f in check.findings:
        # A line number as the ledger stores it (SQLite INTEGER), and the line's own number.
        assert f.line is None or 0 <= f.line < 2**63, f
    for result in check.lines:
        # An accepted amount is exactly what the rule says: > 0, at most 3 (2) decimals.
        for amount, text, places in ((result.quantity, result.line.quantity_kg, 3),
                                     (result.value, result.line.value_usd, 2)):
            if amount is not None:
                with localcontext(prec=len(text) + 10):
                    exact = Decimal(text)
                    assert exact > 0 and exact == exact.quantize(Decimal(1).scaleb(-places)), text


@PURE
@given(case=cases())
def test_rules_never_raise_and_give_guide_codes(case: tuple[Application, RuleContext]) -> None:
    app, ctx = case
    before = copy.deepcopy(app)
    check = check_application(app, ctx)
    assert app == before, "the rules changed the application"
    check_invariants(app, ctx, check)


@PURE
@given(case=cases())
def test_rules_are_deterministic(case: tuple[Application, RuleContext]) -> None:
    app, ctx = case
    first = outcome(check_application(app, ctx))
    assert outcome(check_application(copy.deepcopy(app), ctx)) == first
    assert outcome(check_application(app, ctx)) == first


WORKER = """
import pickle, sys
from gateway.validate.rules import check_application
apps, ctx = pickle.load(sys.stdin.buffer)
results = [check_application(app, ctx) for app in reversed(apps)][::-1]
out = [(r.findings, r.exempt, [(x.hts10, x.covered, x.unit_value, x.quantity, x.value)
                               for x in r.lines]) for r in results]
sys.stdout.buffer.write(pickle.dumps(out))
"""


@PROCESSES
@given(ctx=contexts(), st_data=st.data())
def test_rules_give_the_same_findings_in_another_process(ctx: RuleContext,
                                                         st_data: st.DataObject) -> None:
    """Another hash seed (set and frozenset order) and the applications in reverse order."""
    apps = st_data.draw(st.lists(applications(ctx.processing_date), min_size=20, max_size=40))
    here = [outcome(check_application(app, ctx)) for app in apps]
    env = {**os.environ, "PYTHONHASHSEED": str(st_data.draw(st.integers(1, 2**32 - 1)))}
    done = subprocess.run([sys.executable, "-c", WORKER], input=pickle.dumps((apps, ctx)),
                          capture_output=True, env=env, check=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert pickle.loads(done.stdout) == here


def test_the_strategies_reach_the_licensing_path() -> None:
    """A valid application is not rejected (the properties above are not all about errors)."""
    on = date(2026, 12, 1)
    ctx = RuleContext(processing_date=on, covered=COVERED)
    app = Application(
        ref="PO-1", entry_type="01", importer="I", exporter="E", manufacturer="M",
        country_of_origin="CA", country_of_export="CA", expected_export_date="2026-12-05",
        expected_import_date="2026-12-10", port_of_entry="3004",
        lines=[ProductLine("1", hts="7606123045", smelt_country_largest="CA",
                           smelt_country_second="US", cast_country="CA", quantity_kg="24000",
                           value_usd="61200.00")])
    check = check_application(app, ctx)
    assert (check.findings, check.exempt, len(check.covered_lines)) == ([], False, 1)
    assert {f.name for f in fields(ProductLine)} - {"source_line"} <= FIELD_NAMES
