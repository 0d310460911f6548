"""The XML ack's application entry and the CSV ack's rows, made from precomputed pieces
(issue 15), are what the plain renderers they replaced made, over generated outcomes: odd refs,
line numbers and HTS numbers (escaped or not, formula-like or not), covered or not, with or
without a unit value, every status, license and validity dates or none, findings on rows of the
application or elsewhere."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from conftest import examples
from hypothesis import given
from hypothesis import strategies as st

from gateway.findings import CODES, Finding, Severity
from gateway.licensing.results import AppOutcome
from gateway.model import AppStatus, ProductLine
from gateway.outputs.ack_csv import _message, _reason, application_rows, neutralise
from gateway.outputs.ack_xml import esc, render_application, render_finding
from gateway.validate.hts import CoveredHts
from gateway.validate.rules import LineResult


def plain_render_application(o: AppOutcome) -> str:
    """``render_application`` as it was before issue 15 (less its shortcut for digits, which
    need no escaping): the reference."""
    parts = [f'  <Application ref="{esc(o.ref or "")}" status="{o.status.value}">\n']
    if o.license_number:
        parts.append(f"    <LicenseNumber>{o.license_number}</LicenseNumber>\n")
        if o.valid_from and o.valid_through and o.status is AppStatus.LICENSED:
            parts.append(f"    <ValidFrom>{o.valid_from.isoformat()}</ValidFrom>\n"
                         f"    <ValidThrough>{o.valid_through.isoformat()}</ValidThrough>\n")
    for r in o.lines:
        line = r.line
        line_no, hts = line.line_no or "", line.hts or ""
        attrs = f'line="{esc(line_no)}" hts="{esc(hts)}"'
        if r.covered is not None:
            attrs += f' productGroup="{esc(r.covered.product_group)}"'
        if r.unit_value is not None:
            attrs += f' unitValueUsdPerMt="{r.unit_value}"'
        attrs += ' covered="true"' if r.covered is not None else ' covered="false"'
        parts.append(f"    <Product {attrs}/>\n")
    parts.extend(render_finding(f, "    ") for f in o.findings)
    parts.append("  </Application>\n")
    return "".join(parts)


def plain_application_rows(o: AppOutcome, source_line: int | None = None) -> list[list[str]]:
    """``ack_csv.application_rows`` as it was before issue 15: the reference."""
    by_row: dict[int | None, list[Finding]] = {}
    lines = [(r.line.source_line, r.line.line_no or "") for r in o.lines] or \
        [(source_line, "")]
    rows = [row for row, _ in lines]
    for f in o.findings:
        key = f.source_line if f.source_line in rows else rows[0]
        by_row.setdefault(key, []).append(f)
    out = []
    number = o.license_number or ""
    dated = o.status is AppStatus.LICENSED
    valid_from = o.valid_from.isoformat() if o.valid_from and dated else ""
    valid_through = o.valid_through.isoformat() if o.valid_through and dated else ""
    reason = _reason(o, by_row)
    for row, line_no in lines:
        found = by_row.get(row, [])
        messages = [_message(f) for f in found]
        if reason and not any(f.severity is Severity.ERROR for f in found):
            messages.append(reason)
        out.append([neutralise(v) for v in (
            "" if row is None else row, o.ref or "", line_no, o.status.value, number,
            valid_from, valid_through, " ".join(f.code for f in found), " | ".join(messages))])
    return out


# Text that needs escaping, text that XML cannot hold, digits, and nothing.
odd_text = st.one_of(st.none(), st.from_regex(r"[0-9]{1,4}", fullmatch=True),
                     st.text(alphabet='0123456789.AZaz &<>"\'\x01\x1f\ufffeé–=+-@\t|',
                             max_size=8))
# Few values, so that findings often fall on a line's row.
source_lines = st.one_of(st.none(), st.integers(1, 4))
dates = st.one_of(st.none(), st.dates(date(2024, 1, 1), date(2028, 12, 31)))
groups = st.sampled_from(["Unwrought Aluminum – non-alloy", "Non-Seamless Pipe & Tube",
                          'Bars "and" <rods>'])


@st.composite
def line_results(draw: st.DrawFn) -> LineResult:
    line = ProductLine(line_no=draw(odd_text), hts=draw(odd_text),
                       source_line=draw(source_lines))
    covered = draw(st.one_of(st.none(), groups.map(
        lambda g: CoveredHts(hts10="7601106090", description="d", product_group=g))))
    unit = draw(st.one_of(st.none(), st.decimals(min_value=0, max_value=10**7, places=2)
                          .map(Decimal)))
    return LineResult(line, None, covered, unit)


@st.composite
def findings(draw: st.DrawFn) -> Finding:
    code = draw(st.sampled_from(sorted(CODES)))
    return Finding(code, CODES[code][0], draw(odd_text) or "m", draw(odd_text),
                   draw(st.one_of(st.none(), st.integers(1, 999))), draw(odd_text),
                   draw(odd_text), draw(source_lines))


@st.composite
def outcomes(draw: st.DrawFn) -> AppOutcome:
    return AppOutcome(
        seq=1, ref=draw(odd_text), status=draw(st.sampled_from(list(AppStatus))),
        findings=draw(st.lists(findings(), max_size=3)),
        lines=draw(st.lists(line_results(), max_size=4)),
        license_number=draw(st.one_of(st.none(), st.just(""), st.just("A26000001"))),
        valid_from=draw(dates), valid_through=draw(dates))


@examples(400)
@given(outcome=outcomes())
def test_application_entry_is_what_the_plain_renderer_wrote(outcome: AppOutcome) -> None:
    assert render_application(outcome) == plain_render_application(outcome)


@examples(400)
@given(outcome=outcomes(), source_line=source_lines)
def test_csv_rows_are_what_the_plain_renderer_made(outcome: AppOutcome,
                                                   source_line: int | None) -> None:
    assert application_rows(outcome, source_line) == plain_application_rows(outcome, source_line)
