"""The web page's listings at scale (issue 14, items 4 and 9b): the newest licenses before
any search, a CSV link on every listing (the CLI's columns), a file's applications with their
codes, filtered to the rejected ones and paged through 10,000, every page at 1024 px wide, and
a chart's axis title clear of its ticks. Real Chromium (tests/test_web.py's fixtures) and
plain HTTP against a ledger filled by real runs."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterator

import pytest
from browser import follow
from playwright.sync_api import Browser, Page
from test_web import TOKEN, Site, browser, fill_ledger, login, request, serving

from gateway.admin.listing import APPLICATION_COLUMNS, FINDING_COLUMNS, csv_text
from gateway.ledger.reads.licenses import LICENSE_COLUMNS
from gateway.ledger.store import FILE_COLUMNS

__all__ = ["browser"]  # the fixture, shared with tests/test_web.py

MANY = 10_000
WIDTH = 1024
BIG_KG = 5_000_000_000  # 5 million metric tons: tick labels as wide as they get


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The sample ledger, one file of it with 10,000 applications more (every third
    rejected, with an A160 finding) and one license of 5 million tons."""
    cfg = fill_ledger(tmp_path_factory.mktemp("web-listings"))
    with sqlite3.connect(cfg.parent / "data" / "ledger.sqlite") as db:
        file_id = db.execute("SELECT file_id FROM files WHERE remote_name LIKE "
                             "'%partial%' ORDER BY file_id LIMIT 1").fetchone()[0]
        first = db.execute("SELECT MAX(seq) FROM applications WHERE file_id = ?",
                           (file_id,)).fetchone()[0]
        apps = [(file_id, first + n, f"BULK-{n:05d}", "REJECTED" if n % 3 == 0 else
                 "NOT_REQUIRED", 1) for n in range(1, MANY + 1)]
        db.executemany("INSERT INTO applications (file_id, seq, ref, status, lines) "
                       "VALUES (?, ?, ?, ?, ?)", apps)
        db.executemany("INSERT INTO findings (file_id, code, severity, ref, line, "
                       "source_line, field, value, message) VALUES (?, 'A160', 'ERROR', ?, 1, "
                       "NULL, 'port_of_entry', '99', 'Port of entry ...')",
                       [(file_id, ref) for _, _, ref, status, _ in apps if status == "REJECTED"])
        number, products = db.execute("SELECT license_number, products FROM licenses "
                                      "ORDER BY issue_date DESC LIMIT 1").fetchone()
        lines = json.loads(products)
        lines[0][6] = BIG_KG
        db.execute("UPDATE licenses SET products = ? WHERE license_number = ?",
                   (json.dumps(lines), number))
    with serving(cfg) as served:
        yield served


@pytest.fixture
def narrow(browser: Browser) -> Iterator[Page]:
    """A 1024 px wide window, the width of a laptop beside another window."""
    context = browser.new_context(viewport={"width": WIDTH, "height": 768})
    opened = context.new_page()
    yield opened
    context.close()


def bulk_file(site: Site) -> str:
    with site.db() as db:
        return str(db.execute("SELECT file_id FROM applications WHERE ref = 'BULK-00001'")
                   .fetchone()[0])


def get(site: Site, path: str) -> tuple[int, dict[str, str], str]:
    return request(site.url.rstrip("/") + path, headers={"Authorization": f"Bearer {TOKEN}"})


# -- licenses before any search ------------------------------------------------------------------


def test_the_licenses_page_shows_the_newest_before_any_search(site: Site) -> None:
    status, _, body = get(site, "/licenses")
    assert status == 200
    with site.db() as db:
        newest = db.execute("SELECT license_number FROM licenses ORDER BY issue_date DESC, "
                            "license_number DESC LIMIT 1").fetchone()[0]
        total = db.execute("SELECT COUNT(*) FROM licenses").fetchone()[0]
    assert newest in body and "Newest licenses" in body and f"of {total}" in body


# -- CSV -------------------------------------------------------------------------------------------


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize(("page_path", "columns", "sql"), [
    ("/files", FILE_COLUMNS, "SELECT COUNT(*) FROM files"),
    ("/files?partner=sample", FILE_COLUMNS, "SELECT COUNT(*) FROM files WHERE partner = "
                                            "'sample'"),
    ("/licenses", LICENSE_COLUMNS, "SELECT COUNT(*) FROM licenses"),
    ("/licenses?partner=hanse", LICENSE_COLUMNS, "SELECT COUNT(*) FROM licenses WHERE "
                                                 "partner = 'hanse'"),
])
def test_every_web_listing_has_a_csv_link_with_the_cli_columns(
        site: Site, page_path: str, columns: tuple[str, ...], sql: str) -> None:
    status, _, body = get(site, page_path)
    assert status == 200
    link = body.split('class="csv" href="')[1].split('"')[0].replace("&amp;", "&")
    status, headers, text = get(site, link)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert "attachment" in headers["content-disposition"]
    rows = rows_of(text)
    assert tuple(rows[0]) == columns
    with site.db() as db:
        assert len(rows) == db.execute(sql).fetchone()[0]


def test_a_files_csv_is_what_the_cli_writes(site: Site) -> None:
    """One writer: the web's CSV of a listing is byte for byte the CLI's."""
    from gateway.admin import queries
    from gateway.admin.listing import files_csv
    from gateway.config import load_config
    from gateway.ledger.reads.files import FileQuery

    _, _, text = get(site, "/files.csv?partner=hanse")
    rows = queries.files(load_config(site.cfg), FileQuery(partner="hanse", limit=1000))
    assert text == files_csv(rows)
    assert csv_text(["a"], [["=1"]]) == "a\r\n'=1\r\n"  # formulas neutralised


def test_a_file_page_has_csv_of_its_findings_and_applications(site: Site) -> None:
    file_id = bulk_file(site)
    _, _, body = get(site, f"/files/{file_id}")
    assert f"/files/{file_id}/findings.csv" in body
    assert f"/files/{file_id}/applications.csv" in body
    _, _, text = get(site, f"/files/{file_id}/findings.csv")
    findings = rows_of(text)
    assert tuple(findings[0]) == FINDING_COLUMNS and len(findings) > MANY // 3
    _, _, text = get(site, f"/files/{file_id}/applications.csv")
    apps = rows_of(text)
    assert tuple(apps[0]) == APPLICATION_COLUMNS and len(apps) > MANY
    bulk = next(a for a in apps if a["ref"] == "BULK-00003")
    assert bulk["status"] == "REJECTED" and bulk["codes"] == "A160"


# -- a file's applications: codes, rejected only, pages ------------------------------------------


def test_the_file_page_pages_through_ten_thousand_applications(site: Site,
                                                               narrow: Page) -> None:
    file_id = bulk_file(site)
    login(narrow, site, f"/files/{file_id}")
    rows = narrow.locator("#applications tbody tr")
    assert rows.count() == 200
    third = narrow.locator("#applications tr[data-ref='BULK-00003']")
    assert third.locator("td.codes").inner_text().startswith("A160")  # its codes, on page 1
    follow(narrow, "#applications a:text('rejected only')")
    assert "apps=rejected" in narrow.url
    statuses = {r.locator("td.status").inner_text() for r in rows.all()}
    assert statuses == {"REJECTED"}
    codes = [r.locator("td.codes").inner_text() for r in rows.all()]
    assert all(c.strip() for c in codes)  # each rejected application says why
    pages = 0
    seen: set[str] = set()
    while True:  # every page, to the last, by the page's own links
        seen |= {r.get_attribute("data-ref") or "" for r in rows.all()}
        pages += 1
        following = narrow.locator("#applications a.next")
        if not following.count():
            break
        with narrow.expect_navigation(wait_until="load"):  # the next page, not this one
            following.first.click()
    with site.db() as db:
        rejected = db.execute("SELECT COUNT(*) FROM applications WHERE file_id = ? AND "
                              "status = 'REJECTED'", (file_id,)).fetchone()[0]
    assert pages == -(-rejected // 200)
    assert {f"BULK-{n:05d}" for n in range(3, MANY + 1, 3)} <= seen  # every one reached


# -- 1024 px ---------------------------------------------------------------------------------------


PAGES = ["/", "/files", "/licenses", "/licenses?q=PO", "/charts"]


@pytest.mark.parametrize("path", [*PAGES, "FILE"])
def test_every_page_works_at_1024_px(site: Site, narrow: Page, path: str) -> None:
    login(narrow, site)
    narrow.goto(site.url.rstrip("/") + (f"/files/{bulk_file(site)}" if path == "FILE"
                                        else path))
    overflow = narrow.evaluate("document.documentElement.scrollWidth")
    assert overflow <= WIDTH, f"{path}: the page is {overflow} px wide"
    # The navigation and the page's first heading are on screen, not pushed off it.
    for selector in ("header nav", "h1"):
        box = narrow.locator(selector).first.bounding_box()
        assert box is not None and box["x"] + box["width"] <= WIDTH


def test_the_axis_title_does_not_overlap_its_ticks(site: Site, narrow: Page) -> None:
    login(narrow, site, "/charts")
    for chart in narrow.locator("section.chart svg[role='img']").all():
        title = chart.locator("text.axis-title").bounding_box()
        assert title is not None
        ticks = [t.bounding_box() for t in chart.locator("text.tick").all()]
        labels = [t.text_content() or "" for t in chart.locator("text.tick").all()]
        assert any(len(label) >= 9 for label in labels), labels  # "5,000,000" and the like
        for tick in ticks:
            assert tick is not None
            assert title["x"] + title["width"] <= tick["x"], (title, tick)
