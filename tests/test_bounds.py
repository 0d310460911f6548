"""Bounds per application and per re-send (issue 10, item 3): at most 100 findings and one that
counts the rest; attribute floods cut before libxml2 holds them; a DUPLICATE ack streamed from
the stored one, byte for byte what the whole-tree rewrite gave."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import date, datetime
from pathlib import Path

import pytest
from conftest import OnePartner
from lxml import etree

from gateway import findings as findings_module
from gateway.admin.check import check_file
from gateway.findings import MAX_FINDINGS, FileBound, Finding, Severity, bounded, finding
from gateway.licensing.pipeline import rule_context
from gateway.outputs.ack_csv import _message, duplicate_csv_ack, duplicate_csv_ack_chunks
from gateway.outputs.ack_xml import ACK_NS, duplicate_ack, duplicate_ack_chunks, render_finding
from gateway.parse.xml_guard import KEEP, MARK, AttributeGuard
from gateway.schemas import ack_schema
from gateway.validate.staging import stage_file

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOLDEN = Path(__file__).parent / "golden"
GOOD = (CASES_INBOX / "sample" / "acme-20261201-good.xml").read_bytes()
ACK = "{" + ACK_NS + "}"
NOTICE = finding("F006", "These bytes were processed before as a.xml (file 20261201-000001, "
                 "received 2026-12-01T10:00:00+00:00): the original acknowledgment is sent "
                 "again; nothing was issued.", value="20261201-000001")
WHEN = datetime.fromisoformat("2026-12-02T11:12:13+00:00")


# -- the bound --------------------------------------------------------------------------------


def _many(codes: list[str]) -> list[Finding]:
    return [finding(code, f"finding {n}", ref="R-1") for n, code in enumerate(codes)]


@pytest.mark.parametrize(("codes", "unlisted", "code", "more"), [
    (["A130"] * 250, 0, "A130", 150),  # they share a code: that code
    (["A130"] * 100 + ["A120", "A131"], 0, "A101", 2),  # mixed, one an error: A101
    (["A131"] * 100 + ["A131", "A132"], 0, "A132", 2),  # mixed, no error: the most severe
    (["A101"] * 101, 899_899, "A101", 899_900),  # counted but never built (cut attributes)
    (["A131"] * 10, 5, "A101", 5),  # an INFO list, cut attributes: the count is an error
])
def test_the_first_100_findings_are_kept_and_one_counts_the_rest(
        codes: list[str], unlisted: int, code: str, more: int) -> None:
    found = _many(codes)
    out = bounded(found, ref="R-1", unlisted=unlisted, source_line=7)
    kept = min(len(found), MAX_FINDINGS)
    assert out[:kept] == found[:kept] and len(out) == kept + 1
    count = out[-1]
    assert (count.code, count.value, count.ref, count.source_line) == (code, str(more), "R-1", 7)
    assert f"and {more:,} more findings of this application were not listed" in count.message
    if any(f.is_error for f in found[kept:]) or unlisted:
        assert count.is_error  # the bound never turns a rejected application into a licensed one


def test_100_findings_or_fewer_are_kept_as_they_are() -> None:
    found = _many(["A130"] * MAX_FINDINGS)
    assert bounded(found) is found


_APP = GOOD.index(b'  <Application ref="PO-4411">')
_PRODUCT = GOOD.index(b"    <Product", _APP)
_PRODUCT_END = GOOD.index(b"</Product>", _PRODUCT) + len(b"</Product>\n")


def _xml_with_bad_lines(count: int) -> bytes:
    bad = GOOD[_PRODUCT:_PRODUCT_END].replace(b"<HTS>7606123045</HTS>", b"<HTS>12</HTS>") \
        .replace(b"<CastCountry>CA</CastCountry>", b"<CastCountry>ZZ</CastCountry>")
    lines = b"".join(bad.replace(b'line="1"', b'line="%d"' % n) for n in range(1, count + 1))
    end = GOOD.index(b"  </Application>", _APP)
    return GOOD[:_PRODUCT] + lines + GOOD[end:]


def _csv_with_disagreeing_rows(count: int) -> bytes:
    header = ("submission_id,application_ref,entry_type,entry_number,importer,exporter,"
              "manufacturer,country_of_origin,country_of_export,expected_export_date,"
              "expected_import_date,port_of_entry,line_no,hts,description,"
              "smelt_country_largest,smelt_country_second,cast_country,quantity_kg,value_usd\r\n")
    rows = [f"S-1,R-1,01,,ACME {n},NORTH {n},NORTH,CA,CA,2026-12-08,2026-12-14,3004,{n},"
            f"7606.12.3091,Plate,CA,US,CA,12000.5,38401.60\r\n" for n in range(1, count + 1)]
    return (header + "".join(rows)).encode()


@pytest.mark.parametrize(("name", "data"), [
    ("bad-lines.xml", _xml_with_bad_lines(120)),  # A130 + A124 on every line: 240 findings
    ("disagreeing-rows.csv", _csv_with_disagreeing_rows(120)),  # A103 twice a row: 238
])
def test_findings_of_one_application_are_bounded_in_xml_and_csv(
        tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    result = check_file(OnePartner(tmp_path).config, path, "acme")
    if name.endswith(".csv"):
        rows = list(csv.reader(io.StringIO(result.ack.decode(), newline="")))
        codes = [c for row in rows[2:] for c in row[7].split()]
        messages = " | ".join(row[8] for row in rows[2:])
    else:
        ack = etree.fromstring(result.ack)
        app = ack.find(ACK + "Application")
        assert app is not None
        codes = [f.get("code") or "" for f in app.iter(ACK + "Finding")]
        messages = " | ".join(f.text or "" for f in app.iter(ACK + "Finding"))
    assert len(codes) == MAX_FINDINGS + 1, codes
    assert "more findings of this application were not listed" in messages


# -- the byte guard ---------------------------------------------------------------------------


def _guarded(data: bytes, size: int) -> bytes:
    guard = AttributeGuard()
    out = [guard.feed(data[i:i + size]) for i in range(0, len(data), size)]
    return b"".join(out) + guard.close()


@pytest.mark.parametrize("size", [1, 3, 7, 64, 1000, 65536])
def test_the_guard_passes_ordinary_xml_unchanged(size: int) -> None:
    for path in (CASES_INBOX / "sample").glob("*.xml"):
        data = path.read_bytes()
        assert _guarded(data, size) == data, path


@pytest.mark.parametrize("size", [1, 5, 13, 100, 65536])
def test_the_guard_cuts_an_attribute_flood_and_keeps_line_numbers(size: int) -> None:
    attributes = b"".join(b' a%d=""' % n + (b"\n" if n % 100 == 0 else b"") for n in range(1000))
    flood = b'<r><e x="1"' + attributes + b' z="2"/>\n<f c="d"/></r>'
    out = _guarded(flood, size)
    assert out.count(b"\n") == flood.count(b"\n")
    root = etree.fromstring(out)
    first = root[0]
    assert len(first.attrib) == KEEP + 1
    assert first.get(MARK) == str(1002 - KEEP)  # x, a0..a999, z: all but KEEP cut, counted
    assert root[1].sourceline == flood[:flood.index(b"<f")].count(b"\n") + 1


# -- DUPLICATE: streamed, the same bytes as the whole-tree rewrite ------------------------------


def _whole_tree_duplicate(original: Path, file_name: str, received_at: str) -> bytes:
    """The DUPLICATE ack as it was made before it was streamed (lxml on the whole ack)."""
    tree = etree.parse(str(original), etree.XMLParser(resolve_entities=False, huge_tree=True))
    root = tree.getroot()
    for tag, text in (("FileName", file_name), ("ReceivedAt", received_at),
                      ("ProcessedAt", WHEN.isoformat(timespec="seconds")),
                      ("Status", "DUPLICATE")):
        el = root.find(ACK + tag)
        if el is not None:
            el.text = text
    note = etree.fromstring(
        render_finding(NOTICE, "").replace("<Finding ", f'<Finding xmlns="{ACK_NS}" ', 1))
    note.tail = "\n  "
    counts = root.find(ACK + "Counts")
    assert counts is not None
    counts.addnext(note)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8") + b"\n"


def _whole_csv_duplicate(original: Path, file_name: str) -> bytes:
    """The CSV DUPLICATE ack as it was made before it was streamed (the whole file read)."""
    with open(original, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    rows[1][3] = "DUPLICATE"
    rows[1][7] = " ".join(filter(None, [NOTICE.code, rows[1][7]]))
    before, _, last = rows[1][8].rpartition(" | ")
    kept = before if before and last.startswith("file ") else rows[1][8]
    rows[1][8] = " | ".join(filter(None, [_message(NOTICE), kept, f"file {file_name}"]))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


@pytest.mark.parametrize("golden", ["pipeline-good.ack.xml", "pipeline-partial.ack.xml"])
@pytest.mark.parametrize("name", ["b.xml", "x & <y>.xml", "quote\".xml"])
def test_a_streamed_duplicate_ack_is_the_whole_tree_rewrite(golden: str, name: str) -> None:
    original = GOLDEN / golden
    got = duplicate_ack(original, name, "2026-12-02T10:00:00+00:00", WHEN, NOTICE)
    assert got == _whole_tree_duplicate(original, name, "2026-12-02T10:00:00+00:00")


@pytest.mark.parametrize("golden", ["csv-sample.ack.csv", "mapped-hanse.ack.csv"])
def test_a_streamed_duplicate_csv_ack_is_the_whole_rewrite(golden: str) -> None:
    original = GOLDEN / golden
    got = duplicate_csv_ack(original, "b.csv", "2026-12-02T10:00:00+00:00", WHEN, NOTICE)
    assert got == _whole_csv_duplicate(original, "b.csv")


@pytest.mark.parametrize("kind", ["xml", "csv"])
def test_a_duplicate_of_a_big_ack_is_streamed(tmp_path: Path, kind: str) -> None:
    """50 MB of stored ack: the DUPLICATE costs a chunk of memory, not the ack."""
    original = tmp_path / f"big.ack.{kind}"
    small = (GOLDEN / ("pipeline-partial.ack.xml" if kind == "xml" else "csv-sample.ack.csv"))
    data = small.read_bytes()
    if kind == "xml":
        start = data.index(b"  <Application ")
        end = data.rindex(b"</LicenseAck>")
        body = data[start:end]
        data = data[:start] + body * (50_000_000 // len(body)) + data[end:]
        rewrite = duplicate_ack_chunks
    else:
        head_end = data.index(b"\r\n", data.index(b"\r\n") + 2) + 2
        body = data[head_end:]
        data = data[:head_end] + body * (50_000_000 // len(body))
        rewrite = duplicate_csv_ack_chunks
    original.write_bytes(data)
    tracemalloc.start()
    try:
        size = sum(len(chunk) for chunk in rewrite(original, "b", "2026-12-02T10:00:00+00:00",
                                                   WHEN, NOTICE))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > len(data)
    assert peak < 5_000_000, peak


# -- the bound per file (red-team finding 6) ----------------------------------------------------


def test_the_file_bound_lists_in_full_then_what_decides_each_status(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(findings_module, "MAX_FILE_FINDINGS", 5)
    bound = FileBound()
    apps = [
        (_many(["A152"] * 3), ["A152"] * 3),  # in full
        (_many(["A152", "A130", "A120"]), ["A152", "A130"]),  # what is left of the room
        (_many(["A180", "A120", "A130"]), ["A120"]),  # its first error
        (_many(["A152", "I201"]), ["I201"]),  # a license returned
        (_many(["A170", "A152"]), ["A170"]),  # its first finding
        ([], []),
        (bounded(_many(["A130"] * 151)), ["A130"]),  # 100 listed + one that counts 51
    ]
    for found, kept in apps:
        assert [f.code for f in bound.limit(found)] == kept
    count = bound.finding()
    assert count is not None and count.ref is None
    unlisted = 1 + 2 + 1 + 1 + 150
    assert (count.code, count.severity, count.value) == ("A101", Severity.ERROR, str(unlisted))
    assert count.message.startswith(f"... and {unlisted:,} more findings of this file's")
    assert FileBound().finding() is None


def _bad_refs_csv(refs: int, rows: int) -> bytes:
    """``refs`` applications of ``rows`` rows whose application fields disagree (A103)."""
    data = _csv_with_disagreeing_rows(rows).decode()
    header, body = data.split("\r\n", 1)
    return (header + "\r\n" + "".join(body.replace("S-1,R-1,", f"S-1,R-{n},")
                                     for n in range(1, refs + 1))).encode()


@pytest.mark.parametrize("name", ["bad-lines.xml", "disagreeing-rows.csv"])
def test_the_file_bound_in_xml_and_csv_acks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            name: str) -> None:
    """Past the file's bound each application keeps its first error; one file-level finding
    counts the rest; the ack stays valid (XSD; the CSV ack's file row carries it)."""
    monkeypatch.setattr(findings_module, "MAX_FILE_FINDINGS", 10)
    path = tmp_path / name
    path.write_bytes(_xml_with_bad_lines(20) if name.endswith(".xml") else _bad_refs_csv(3, 20))
    result = check_file(OnePartner(tmp_path).config, path, "acme")
    if name.endswith(".xml"):
        ack = etree.fromstring(result.ack)
        assert ack_schema().validate(ack), ack_schema().error_log
        listed = {a.get("ref"): [f.get("code") for f in a.findall(ACK + "Finding")]
                  for a in ack.iter(ACK + "Application")}  # the bad one, then the sample's
        assert listed == {"PO-4411": ["A130", "A120"] * 5, "PO-4412": [], "PO-4413": ["A131"],
                          "WH-0077": ["A170"]}
        (count,) = ack.findall(ACK + "Finding")
        assert (count.get("code"), count.get("value")) == ("A101", "31")
        return
    rows = list(csv.reader(io.StringIO(result.ack.decode(), newline="")))
    by_ref = {ref: [c for r in rows[2:] if r[1] == ref for c in r[7].split()]
              for ref in ("R-1", "R-2", "R-3")}
    assert by_ref == {"R-1": ["A103"] * 10, "R-2": ["A103"], "R-3": ["A103"]}
    assert rows[1][7] == "A103" and rows[1][8].startswith("A103 ... and 102 more findings")


# -- CSV refs that come back (red-team finding 7) ---------------------------------------------


def _two_refs(order: str, count: int = 1050) -> bytes:
    """Rows of R-1 and R-2, ``count`` each (line numbers 1..count), in the given order."""
    header = _csv_with_disagreeing_rows(1).decode().split("\r\n", 1)[0] + "\r\n"

    def row(ref: str, n: int) -> str:
        return (f"S-1,{ref},01,,ACME,NORTH,NORTH,CA,CA,2026-12-08,2026-12-14,3004,{n},"
                "7606.12.3091,Plate,CA,US,CA,12000.5,38401.60\r\n")

    if order == "consecutive":
        rows = [row(ref, n) for ref in ("R-1", "R-2") for n in range(1, count + 1)]
    elif order == "alternating":
        rows = [row(ref, n) for n in range(1, count + 1) for ref in ("R-1", "R-2")]
    else:  # runs of 300 rows
        rows = [row(ref, n) for start in range(1, count + 1, 300) for ref in ("R-1", "R-2")
                for n in range(start, min(count, start + 299) + 1)]
    return (header + "".join(rows)).encode()


@pytest.mark.parametrize("order", ["consecutive", "alternating", "runs"])
def test_a_ref_that_comes_back_is_capped_like_consecutive_rows(tmp_path: Path,
                                                               order: str) -> None:
    path = tmp_path / f"{order}.csv"
    path.write_bytes(_two_refs(order))
    result = check_file(OnePartner(tmp_path).config, path, "acme")
    rows = list(csv.reader(io.StringIO(result.ack.decode(), newline="")))
    for ref in ("R-1", "R-2"):
        mine = [r for r in rows[2:] if r[1] == ref]
        assert [r[2] for r in mine] == [str(n) for n in range(1, 1000)]
        codes = [c for r in mine for c in r[7].split()]
        assert codes == ["A190"]
        assert "this one has 1,050: split it" in mine[0][8]


def test_refs_that_come_back_keep_memory_flat(tmp_path: Path) -> None:
    """500 refs, one row each, 40 times over (20,000 rows): joined from disk one application
    at a time, never all held (they took 20 MB before)."""
    ctx = rule_context(OnePartner(tmp_path).config, date(2026, 12, 1))
    path = tmp_path / "back.csv"
    rows = [f"S-1,B-{n},01,,ACME,NORTH,NORTH,CA,CA,2026-12-08,2026-12-14,3004,{r},"
            "7606.12.3091,Plate,CA,US,CA,12000.5,38401.60\r\n"
            for r in range(1, 41) for n in range(500)]
    path.write_bytes(_two_refs("consecutive", 0) + "".join(rows).encode())
    tracemalloc.start()
    try:
        staged = stage_file(path, "csv", ctx, tmp_path / "spool")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [len(a.app.lines) for a in staged.applications()] == [40] * 500
    staged.discard()
    assert peak < 2_000_000, peak
    assert list(tmp_path.glob("spool*")) == []
