"""Names with control characters (issue 10 item 2): escaped the same way (gateway.textsafe.
printable) wherever a partner's file name is shown or written: the XML and CSV acks (first
and DUPLICATE re-send), the .error.txt of a rejected file, and the CLI's files, status and
show. A name must not break the ack's XML, recolour or retitle a terminal, or hide a row."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import pytest
from lxml import etree
from test_poison import Project

from gateway.cli import main
from gateway.config import load_config
from gateway.outputs.ack_xml import ACK_NS
from gateway.service.runner import run_once
from gateway.textsafe import printable

ROOT = Path(__file__).resolve().parents[1]
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOOD_XML = (CASES_INBOX / "sample" / "acme-20261201-good.xml").read_bytes()
GOOD_CSV = (CASES_INBOX / "sample" / "acme-20261202-erp.csv").read_bytes()

HOSTILE = {
    "SOH": "\x01",
    "colour": "\x1b[31m",
    "title": "\x1b]0;title\x07",
    "carriage return": "\r",
    "newline": "\n",
    "bidi override": "\u202e",
    "DEL": "\x7f",
}


def test_printable_escapes_only_what_cannot_be_shown() -> None:
    assert printable("acme-20261201 ü.xml") == "acme-20261201 ü.xml"
    assert printable("a\x01\x1b[31m\r\n\u202e\x7fz") == "a\\x01\\x1b[31m\\r\\n\\u202e\\x7fz"


def _no_raw(text: str, chars: str) -> None:
    """None of the name's unprintable characters reached ``text`` (lines aside)."""
    for c in chars:
        if not c.isprintable() and c != "\n":
            assert c not in text, repr(c)


@pytest.mark.parametrize("bad", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_name_is_escaped_everywhere(bad: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    p = Project(tmp_path)
    names = {"xml": f"x{bad}1.xml", "xml dup": f"x{bad}2.xml", "csv": f"c{bad}1.csv",
             "csv dup": f"c{bad}2.csv", "rejected": f"r{bad}.xml"}
    for key, data in (("xml", GOOD_XML), ("xml dup", GOOD_XML), ("csv", GOOD_CSV),
                      ("csv dup", GOOD_CSV), ("rejected", b"<not xml")):
        p.drop("a", names[key], data)
    reports = run_once(load_config(p.cfg), date(2026, 12, 1))
    assert reports[0].error is None
    rows = {name: (fid, status, ack) for fid, name, status, ack in p.rows(
        "SELECT file_id, remote_name, status, ack_name FROM files")}
    assert [rows[names[k]][1] for k in names] == ["ACCEPTED", "DUPLICATE", "PARTIAL",
                                                   "DUPLICATE", "REJECTED"]
    outbox = tmp_path / "outbox" / "a"
    for key in ("xml", "xml dup", "rejected"):  # valid XML, the name in its escaped form
        raw = (outbox / rows[names[key]][2]).read_bytes()
        root = etree.fromstring(raw)
        assert root.findtext(f"{{{ACK_NS}}}FileName") == printable(names[key])
        _no_raw(raw.decode(), bad)
    dup_xml = (outbox / rows[names["xml dup"]][2]).read_text()
    assert printable(names["xml"]) in dup_xml  # F006 names the original, escaped
    for key in ("csv", "csv dup"):
        cells = [c for row in csv.reader(io.StringIO(
            (outbox / rows[names[key]][2]).read_text(), newline="")) for c in row]
        for c in cells:
            _no_raw(c, bad)
            assert "\n" not in c
    dup_csv = (outbox / rows[names["csv dup"]][2]).read_text()
    assert printable(names["csv"]) in dup_csv
    rejected_id = rows[names["rejected"]][0]
    error_txt = next((tmp_path / "data" / "failed" / "a").glob(f"{rejected_id}__*.error.txt"))
    text = error_txt.read_text()
    assert f"file:        {printable(names['rejected'])}\n" in text
    _no_raw(text, bad)
    assert len(text.splitlines()) == 7

    def cli(*args: str) -> str:
        assert main(["--config", str(p.cfg), *args]) == 0
        return capsys.readouterr().out

    listing = cli("files")
    _no_raw(listing, bad)
    assert len(listing.splitlines()) == 2 + len(names)  # header, rule, one line per file
    for name in names.values():
        assert printable(name)[:20] in listing
    status = cli("status")
    _no_raw(status, bad)
    assert len(status.splitlines()) == 4  # header, rule, partners a and b
    for key in names:
        story = cli("show", rows[names[key]][0])
        _no_raw(story, bad)
        assert story.splitlines()[0].startswith(f"file {rows[names[key]][0]}  "
                                                f"{printable(names[key])}  partner a")
    assert json.loads(cli("files", "--json"))[0]["remote_name"] in names.values()
