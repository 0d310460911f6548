"""Bounds per application and per re-send (issue 10, item 3): at most 100 findings and one that
counts the rest; attribute floods cut before libxml2 holds them; a DUPLICATE ack streamed from
the stored one, byte for byte what the whole-tree rewrite gave."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import datetime
from pathlib import Path

import pytest
from lxml import etree

from gateway.admin.check import check_file
from gateway.config import load_config
from gateway.findings import MAX_FINDINGS, Finding, bounded, finding
from gateway.outputs.ack_csv import _message, duplicate_csv_ack, duplicate_csv_ack_chunks
from gateway.outputs.ack_xml import ACK_NS, duplicate_ack, duplicate_ack_chunks, render_finding
from gateway.parse.xml_guard import KEEP, MARK, AttributeGuard

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
GOOD = (ROOT / "inbox" / "sample" / "acme-20261201-good.xml").read_bytes()
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


def _config(base: Path) -> Path:
    path = base / "config.toml"
    path.write_text('[gateway]\ndata_dir = "data"\noutbox_dir = "outbox"\n'
                    '[partners.acme]\nname = "Acme"\ninbox = "inbox/acme"\nfiler_code = "ACM"\n')
    return path


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
    result = check_file(load_config(_config(tmp_path)), path, "acme")
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
    for path in (ROOT / "inbox" / "sample").glob("*.xml"):
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
