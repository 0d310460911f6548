"""A cancellation counts as an application of its file (guide 5.1b) everywhere the file's
counts are told, not only in its acknowledgment: ``show`` (text and JSON), the ``files``
listing (text and JSON), the ``file.processed`` event, the partner's status files, the web
page's file page and listing, the reprocess summary and ``replay``'s counts. One source: the
``files.cancelled`` column, written with the others."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import lifecycle_files as lf
import pytest
from test_lifecycle_done import DAYS, Project

from gateway.admin.web.app import create_app
from gateway.admin.web.auth import Guard
from gateway.config import load_config

TOKEN = "lifecycle-counts-" + "x" * 24


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Project, str]:
    """A license, then a file of one cancellation (of it) and one new application."""
    p = Project.local(tmp_path, capsys)
    p.send("first.xml", lf.submission("C-1", lf.application("PO-1")), DAYS[0])
    file_id = p.send("second.xml", lf.submission(
        "C-2", lf.cancellation("PO-1", "A26000001", "no longer needed"),
        lf.application("PO-2")), DAYS[1])
    return p, file_id


def test_show_counts_the_cancellation(project: tuple[Project, str]) -> None:
    p, file_id = project
    code, text = p.cli("show", file_id)
    assert code == 0
    assert "applications 2: licensed 1 (new 1), not required 0, rejected 0, cancelled 1" in text
    code, out = p.cli("show", file_id, "--json")
    assert code == 0 and json.loads(out)["file"]["cancelled"] == 1


def test_the_files_listing_counts_the_cancellation(project: tuple[Project, str]) -> None:
    p, file_id = project
    code, text = p.cli("files")
    header, _, *rows = text.splitlines()
    assert code == 0 and "cancelled" in header.split()
    column = header.index("cancelled")  # aligned: a cell starts under its header
    [row] = [r for r in rows if r.startswith(file_id)]
    assert row[column:].split()[0] == "1"
    code, out = p.cli("files", "--json")
    counts = {f["file_id"]: f["cancelled"] for f in json.loads(out)}
    assert counts[file_id] == 1 and sorted(counts.values()) == [0, 1]


def test_the_event_counts_the_cancellation(project: tuple[Project, str]) -> None:
    p, _ = project
    events = [json.loads(str(data)) for (data,) in p.query(
        "SELECT data FROM events WHERE kind = 'file.processed' ORDER BY id")]
    assert [e.get("cancelled") for e in events] == [None, 1]  # only files that have one


def test_the_status_files_count_the_cancellation(project: tuple[Project, str]) -> None:
    p, file_id = project
    status = json.loads((p.acks / "status.json").read_text())
    counts = {f["file_id"]: f["cancelled"] for f in status["files"]}
    assert counts[file_id] == 1
    rows = list(csv.DictReader(io.StringIO((p.acks / "status.csv").read_text())))
    # after the earlier columns, which stay where they were (then replaces, issue 14 item 7)
    assert list(rows[0])[-2:] == ["cancelled", "replaces"]
    assert {r["file_id"]: r["cancelled"] for r in rows}[file_id] == "1"


def test_the_web_page_counts_the_cancellation(project: tuple[Project, str]) -> None:
    p, file_id = project
    client = create_app(load_config(p.cfg), Guard(TOKEN)).test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    page = client.get(f"/files/{file_id}", headers=headers)
    assert page.status_code == 200
    assert '<dd id="count-cancelled">1</dd>' in page.get_data(as_text=True)
    listing = client.get("/files", headers=headers).get_data(as_text=True)
    assert "<th class=\"num\">cancelled</th>" in listing


def test_the_reprocess_summary_counts_the_cancellation(project: tuple[Project, str]) -> None:
    p, file_id = project
    code, text = p.cli("reprocess", file_id, "--reason", "count check", "--as-of", DAYS[1])
    assert code == 0, text
    # Decided again: PO-2's license returned (I201), the license cancelled before (I203).
    assert "2 application(s): 1 licensed, 0 new, 0 rejected, 1 cancelled" in text
