"""`check` and `run --once` decide with one core (issue 11, item 4): the proof.

Every sample case, every hostile file, and a history of files (DUPLICATE, F007, I201, A104,
A105 on the two-pass path, A109) goes through BOTH commands, in-process through the CLI:
``check`` first (it writes nothing), then ``run --once`` on the same file in the partner's
inbox. The two acknowledgments must be the same, status, codes and messages: only what a
check cannot know differs (the times, and each license the run issued reads ``PENDING``,
guide section 8). A change to one path only fails here.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from lifecycle_files import (
    application,
    cancellation,
    csv_application,
    csv_submission,
    submission,
)
from lxml import etree
from project_config import ProjectConfig

from gateway.cli import main
from gateway.config import load_config
from gateway.errors import RejectedSubmission
from gateway.ledger.store import open_ledger
from gateway.licensing.pipeline import rule_context
from gateway.outputs.ack_xml import ACK_NS
from gateway.parse.mapping import load_mapping, preview
from gateway.validate.staging import prepare

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CASES = TESTS / "cases" / "inbox"
HOSTILE = TESTS / "hostile"
AS_OF = "2026-12-01"
GOOD = (CASES / "sample" / "acme-20261201-good.xml").read_bytes()
ERP = (CASES / "sample" / "acme-20261202-erp.csv").read_bytes()

# The sample partners of config.toml, with the shipped mappings, and one with a daily quota.
PARTNERS: dict[str, dict[str, object]] = {
    "sample": {},
    "hanse": {"mapping": ROOT / "mappings" / "hanse-metall.toml"},
    "nordic": {"mapping": ROOT / "mappings" / "nordic-orders.xsl"},
    "quota": {"max_licenses_per_day": 2},
}
# What a check cannot know: when the run received and processed the file.
TIMES = re.compile(rb"\s*<(ReceivedAt|ProcessedAt)>[^<]*</\1>")


@dataclass(frozen=True)
class Answer:
    """One command's answer for one file: its exit code (check) or file status (run), and
    its acknowledgment."""

    accepted: bool  # exit 0 / ACCEPTED or DUPLICATE
    ack: bytes

    def outline(self) -> list[tuple[str, ...]]:
        """Per application (and the file): ref, status and codes, for a readable diff."""
        if self.ack.startswith(b"<?xml"):
            root = etree.fromstring(self.ack)
            q = "{" + ACK_NS + "}"
            rows = [("file", root.findtext(q + "Status") or "",
                     *(f.get("code") or "" for f in root.findall(q + "Finding")))]
            return rows + [(a.get("ref") or "", a.get("status") or "",
                            *(f.get("code") or "" for f in a.findall(q + "Finding")))
                           for a in root.findall(q + "Application")]
        rows = list(csv.reader(io.StringIO(self.ack.decode("utf-8"), newline="")))[1:]
        return [(r[0] or "file", r[1], r[3], r[7]) for r in rows]

    def lines(self) -> list[bytes]:
        return TIMES.sub(b"", self.ack).splitlines()


class Project:
    """A gateway project on ``tmp_path``; ``both`` sends one file through both commands."""

    def __init__(self, base: Path, capsys: pytest.CaptureFixture[bytes]) -> None:
        self.base = base
        self.capsys = capsys
        config = ProjectConfig(base)
        for pid, extra in PARTNERS.items():
            config.partner(pid, name=pid, patterns=["*"], disposition="keep",
                           filer_code="SMP", filer=True, **extra).inbox(pid)
        self.cfg = config.write()

    def cli(self, *args: str) -> tuple[int, bytes]:
        code = main(["--config", str(self.cfg), *args])
        return code, self.capsys.readouterr().out

    def both(self, partner: str, name: str, data: bytes) -> tuple[Answer, Answer]:
        path = self.base / "inbox" / partner / name
        path.write_bytes(data)
        code, out = self.cli("check", str(path), "--partner", partner, "--as-of", AS_OF)
        assert code in (0, 1), out
        checked = Answer(code == 0, out)
        assert self.cli("run", "--once", "--as-of", AS_OF)[0] == 0
        return checked, self.ran(partner, name)

    def ran(self, partner: str, name: str) -> Answer:
        """The run's acknowledgment, each license it issued written ``PENDING``."""
        ledger = open_ledger(load_config(self.cfg), readonly=True)
        try:
            [row] = ledger.files("partner = ? AND remote_name = ?", (partner, name))
            assert row.state == "DONE" and row.ack_name, row
            issued = [n for (n,) in ledger.db.execute(
                "SELECT license_number FROM licenses WHERE file_id = ?", (row.file_id,))]
        finally:
            ledger.close()
        ack = (self.base / "outbox" / partner / row.ack_name).read_bytes()
        for number in issued:
            ack = ack.replace(number.encode(), b"PENDING")
        return Answer(row.status in ("ACCEPTED", "DUPLICATE"), ack)


def assert_same(checked: Answer, ran: Answer) -> None:
    assert checked.outline() == ran.outline()
    assert checked.lines() == ran.lines()  # messages, values, lines: every byte but the times
    assert checked.accepted == ran.accepted


# -- every case alone ------------------------------------------------------------------------


def _partner_of(path: Path) -> str:
    if path.parent.parent == CASES:
        return path.parent.name
    return "nordic" if path.name.startswith("xslt-") else "sample"  # as tests/test_hostile.py


SINGLE = sorted([*CASES.glob("*/*"), *(p for p in HOSTILE.iterdir() if p.suffix != ".md")])


@pytest.mark.parametrize("case", SINGLE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_check_answers_what_the_run_does(case: Path, tmp_path: Path,
                                         capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    checked, ran = Project(tmp_path, capsysbinary).both(_partner_of(case), case.name,
                                                        case.read_bytes())
    assert_same(checked, ran)


# -- a history: what the ledger makes of a file ----------------------------------------------


def _edit(*pairs: tuple[bytes, bytes]) -> Callable[[bytes], bytes]:
    def edited(data: bytes) -> bytes:
        for old, new in pairs:
            assert old in data, old
            data = data.replace(old, new)
        return data
    return edited


def _sid(n: int) -> tuple[bytes, bytes]:
    return b"ACME-20261201-001", f"ACME-20261201-9{n:02d}".encode()


# (partner, file name, bytes, the codes it must show in both): one file after the other.
HISTORY: list[tuple[str, str, bytes, set[str]]] = [
    ("sample", "first.xml", GOOD, set()),
    ("sample", "again.xml", GOOD, {"F006"}),  # DUPLICATE
    ("sample", "reused-id.xml", _edit((b'"PO-4411"', b'"PO-9411"'))(GOOD), {"F007"}),
    ("sample", "resend.xml", _edit(_sid(1))(GOOD), {"I201"}),
    ("sample", "changed.xml", _edit(_sid(2), (b"<QuantityKg>24000<", b"<QuantityKg>24001<"))(
        GOOD), {"A104", "I201"}),
    # A ref twice: the one-pass path stops, the two-pass path decides (A105).
    ("sample", "twice.xml", _edit(_sid(3), (b'ref="PO-44', b'ref="PO-55'),
                                  (b'"PO-5512"', b'"PO-5511"'))(GOOD), {"A105"}),
    ("sample", "first.csv", ERP, set()),
    ("sample", "again.csv", ERP, {"F006"}),  # the CSV acknowledgment again
    ("quota", "many.xml", GOOD, {"A109"}),  # 2 licenses a day for this partner
]


def test_check_answers_what_the_run_does_with_history(
        tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    project = Project(tmp_path, capsysbinary)
    for partner, name, data, codes in HISTORY:
        checked, ran = project.both(partner, name, data)
        assert_same(checked, ran)
        shown = {code for row in ran.outline() for part in row[2:] for code in part.split()}
        assert codes <= shown, (name, ran.outline())


# A license's lifecycle (contract 1.1, guide 5.1b): a check shows a would-be correction as
# LICENSED PENDING with I202, a cancellation as CANCELLED with I203, and records no change.
LIFECYCLE: list[tuple[str, bytes, set[str]]] = [
    ("life-1.xml", submission("LIFE-1", application("PO-1"), application("PO-2")), set()),
    ("life-2.xml", submission("LIFE-2", application("PO-1", corrects="A26000001",
                                                    quantity="25000"),
                              cancellation("PO-2", "A26000002", "order cancelled")),
     {"I202", "I203"}),
    ("life-3.xml", submission("LIFE-3", cancellation("PO-1", "A26000003", "not needed")),
     {"I203"}),
    ("life-4.xml", submission("LIFE-4", cancellation("PO-1", "A26000003", "not needed")),
     {"I203"}),  # cancelled before: I203 again, no change
    ("life-5.xml", submission("LIFE-5", application("PO-2", corrects="A26000002")),
     {"A107"}),  # a cancelled license cannot be corrected
    ("life-6.xml", submission("LIFE-6", cancellation("PO-9", "A26000001", "x")),
     {"A106"}),  # another ref's license
    ("life-7.csv", csv_submission("LIFE-7", csv_application("PO-7"), csv_application(
        "PO-1", corrects="A26000001", quantity="1")), {"A107"}),
]


def test_check_answers_what_the_run_does_over_a_lifecycle(
        tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    project = Project(tmp_path, capsysbinary)
    for name, data, codes in LIFECYCLE:
        changes = _changes(project)
        (tmp_path / name).write_bytes(data)
        assert project.cli("check", str(tmp_path / name), "--partner", "sample", "--as-of",
                           AS_OF)[0] in (0, 1)
        assert _changes(project) == changes  # a check records no change
        checked, ran = project.both("sample", name, data)
        assert_same(checked, ran)
        shown = {code for row in ran.outline() for part in row[2:] for code in part.split()}
        assert codes <= shown, (name, ran.outline())
        if name == "life-2.xml":  # what check printed, before the run
            assert checked.outline()[1:] == [("PO-1", "LICENSED", "I202"),
                                             ("PO-2", "CANCELLED", "I203")]
            assert b"<LicenseNumber>PENDING</LicenseNumber>" in checked.ack
            assert b"<LicenseNumber>A26000002</LicenseNumber>" in checked.ack
            assert b"<Cancelled>1</Cancelled>" in checked.ack
    assert changes == 3  # before the last file: A26000001, A26000002 and A26000003 changed
    assert _changes(project) == 3


def _changes(project: Project) -> int:
    if not (project.base / "data" / "ledger.sqlite").exists():
        return 0
    ledger = open_ledger(load_config(project.cfg), readonly=True)
    try:
        return int(ledger.db.execute("SELECT COUNT(*) FROM license_changes").fetchone()[0])
    finally:
        ledger.close()


# -- the XSLT mapping's failures: one place for processing and `mapping test` -----------------

NORDIC = (CASES / "nordic" / "nordic-orders-NA-2026-77.xml").read_bytes()
STOPS = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:template match="/"><xsl:message terminate="yes">stopped</xsl:message></xsl:template>
</xsl:stylesheet>"""
XSLT_FAILURES = {
    "F004": (None, NORDIC.replace(b"<Orders ", b'<!DOCTYPE Orders [<!ENTITY x SYSTEM '
                                  b'"file:///etc/passwd">]>\n<Orders ', 1)),
    "F001": (None, NORDIC[:len(NORDIC) // 2]),  # cut in the middle: the parser stops
    "F005": (STOPS, NORDIC),  # the stylesheet cannot make a submission of it
}


@pytest.mark.parametrize("code", list(XSLT_FAILURES))
def test_an_xslt_failure_reads_the_same_in_processing_and_mapping_test(
        code: str, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    stylesheet_text, data = XSLT_FAILURES[code]
    stylesheet = ROOT / "mappings" / "nordic-orders.xsl"
    if stylesheet_text is not None:
        stylesheet = tmp_path / "stops.xsl"
        stylesheet.write_text(stylesheet_text)
    mapping = load_mapping(stylesheet)
    source = tmp_path / "orders.xml"
    source.write_bytes(data)
    config = load_config(Project(tmp_path, capsysbinary).cfg)
    work = tmp_path / "work"
    with pytest.raises(RejectedSubmission) as processing:
        prepare(source, rule_context(config, date.fromisoformat(AS_OF)), mapping, work,
                source.name)
    with pytest.raises(RejectedSubmission) as mapping_test:
        preview(mapping, source)
    assert processing.value.finding.code == code
    assert processing.value.finding == mapping_test.value.finding
    assert list(work.glob("*")) == []  # the half-mapped document is not left behind
