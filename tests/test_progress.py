"""Progress of a file being processed (issue 14, item 1): the terminal bar, the progress records
of a running pass, and every view of them (``status`` text and JSON, the partner's status file,
the web dashboard and file page in a real browser) while a large file is held half read."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from browser import TOKEN, login, serving
from conftest import ProjectConfig, wait_until
from lifecycle_files import application, submission
from playwright.sync_api import Page, expect
from test_crash_suite import nordic_xml

from gateway import crash
from gateway.admin import queries
from gateway.admin.progress import ReadProgress, render
from gateway.admin.report import status_json, status_text
from gateway.cli import main
from gateway.config import Config, load_config
from gateway.ledger.progress import (
    STALE_SECONDS,
    OffsetSampler,
    Progress,
    ProgressRecorder,
    in_progress,
    progress_dir,
)
from gateway.ledger.reads.clock import duration_text
from gateway.service import runner
from gateway.service.runner import run_once
from gateway.validate import read_process

AS_OF = date(2026, 12, 1)
ROOT = Path(__file__).resolve().parent.parent

# -- the bar and the records, alone -------------------------------------------------------------


def test_the_bar_shows_percent_megabytes_and_the_time_left() -> None:
    line = render("check big.xml", 50_000_000, 200_000_000, 10.0, 1, eta=30.0)
    assert line.startswith("check big.xml [######------------------]  25%")
    assert "50.0/200.0 MB" in line and "10 s" in line and "~30 s left" in line
    assert "pass 2" in render("x", 1, 9, 1.0, 2)
    assert render("x", None, 0, 3.0, 1) == "x  3 s"  # nothing known but the time
    assert [duration_text(s) for s in (4.4, 185, 3720)] == ["4 s", "3 min 05 s", "1 h 02 min"]


def test_the_bar_is_drawn_with_an_estimate_on_a_terminal_only(tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    big.write_bytes(b"x" * 4_000_000)
    master, slave = pty.openpty()
    tty = os.fdopen(slave, "w")
    drawn = bytearray()

    def shown(text: bytes) -> bool:
        while select.select([master], [], [], 0)[0]:
            drawn.extend(os.read(master, 65536))
        return text in drawn

    try:
        with ReadProgress(big, "reprocess 1", tty, interval=0.01), open(big, "rb") as fh:
            fh.read(1_000_000)  # a quarter read, then held: the bar says how long the rest takes
            assert wait_until(lambda: shown(b"left"), 10)
    finally:
        tty.close()
        os.close(master)
    # The last frame with an estimate (on a loaded machine the first one drawn may have it).
    line = [frame for frame in drawn.decode().split("\r") if "left" in frame][-1]
    assert line.startswith("reprocess 1 [######------------------]  25%  1.0/4.0 MB")
    quiet = io.StringIO()
    with ReadProgress(big, "check", quiet):
        big.read_bytes()
    assert quiet.getvalue() == ""


def test_the_sampler_counts_passes_and_an_estimate(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"y" * 1000)
    sampler = OffsetSampler.of(path)
    with open(path, "rb", buffering=0) as fh:
        fh.read(600)
        assert sampler.sample() == 600 and sampler.passes == 1
        assert sampler.eta is not None and sampler.eta >= 0
        fh.seek(100)  # read again from the top: a second pass
        assert sampler.sample() == 100 and sampler.passes == 2
    assert sampler.sample() == 100  # closed: the last offset seen
    assert OffsetSampler.of(tmp_path / "gone").sample() is None


def test_a_record_lives_while_the_pass_runs_and_a_stale_one_is_not_shown(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = tmp_path / "in.xml"
    path.write_bytes(b"z" * 2000)
    with ProgressRecorder(data, "20261201-000001", "acme", "in.xml", path, interval=0.01), \
            open(path, "rb", buffering=0) as fh:
        fh.read(500)
        assert wait_until(lambda: in_progress(data).get("20261201-000001", None) is not None
                          and in_progress(data)["20261201-000001"].done == 500, 10)
        shown = in_progress(data)["20261201-000001"]
        assert (shown.partner, shown.name, shown.size, shown.percent) == ("acme", "in.xml",
                                                                         2000, 25.0)
        assert shown.text().startswith("25% 0.0/0.0 MB")
        later = datetime.now(UTC) + timedelta(seconds=STALE_SECONDS + 5)
        assert in_progress(data, later) == {}  # its writer died: not shown
    assert in_progress(data) == {} and list(progress_dir(data).iterdir()) == []


def test_a_record_that_cannot_be_written_never_ends_the_progress_thread(
        tmp_path: Path) -> None:
    """The process has one progress thread: a pass whose record cannot be written (its data
    folder's ``work`` is a file, so the mkdir fails) must not end it, or no other file of the
    process is shown in progress again (review finding of issue 15)."""
    broken, good = tmp_path / "broken", tmp_path / "good"
    broken.mkdir()
    (broken / "work").write_bytes(b"not a folder")
    path = tmp_path / "in.xml"
    path.write_bytes(b"z" * 2000)
    with ProgressRecorder(broken, "20261201-000001", "acme", "in.xml", path,
                          interval=0.01) as failing:
        tried = threading.Event()
        tick = failing.tick

        def tick_and_tell() -> None:
            tried.set()
            tick()

        failing.tick = tick_and_tell  # type: ignore[method-assign]
        assert tried.wait(10)  # the thread has tried to record it (and could not)
        with ProgressRecorder(good, "20261201-000002", "acme", "in.xml", path, interval=0.01):
            assert wait_until(lambda: "20261201-000002" in in_progress(good), 10)
    assert not (broken / "work").is_dir()


def test_a_killed_workers_record_is_removed_by_the_next_poll_once_stale(
        tmp_path: Path) -> None:
    config = ProjectConfig(tmp_path).partner("acme")
    config.inbox("acme")
    data = tmp_path / "data"
    folder = progress_dir(data)
    folder.mkdir(parents=True)
    dead, live = folder / "20261201-000001.json", folder / "20261201-000002.json"
    for record in (dead, live):
        record.write_text("{}")
    old = time.time() - STALE_SECONDS - 5
    os.utime(dead, (old, old))  # not renewed: its worker was killed mid-file
    loaded = load_config(config.write())
    worker = runner.Runner(loaded)  # a poll of a running service (no start-up clean-up)
    try:
        worker.poll(loaded.partner("acme"))
    finally:
        worker.close()
    assert sorted(folder.iterdir()) == [live]  # a live worker's record stays


def test_the_start_removes_what_a_crash_left_in_progress(tmp_path: Path) -> None:
    config = ProjectConfig(tmp_path).partner("acme")
    config.inbox("acme")
    folder = progress_dir(tmp_path / "data")
    folder.mkdir(parents=True)
    # Fresh, but this process is the data folder's only one: a crash's (a kill mid-rewrite
    # leaves the temp file too).
    for name in ("20261201-000001.json", ".20261201-000001.json.4242.tmp"):
        (folder / name).write_text("{}")
    run_once(load_config(config.write()))
    assert list(folder.iterdir()) == []


def test_progress_text_and_json() -> None:
    p = Progress("20261201-000001", "acme", "a.xml", 200_000_000, 50_000_000, 2, 75.0,
                 "2026-12-01T10:00:00+00:00", "2026-12-01T10:00:30+00:00")
    assert p.text() == "25% 50.0/200.0 MB pass 2, about 1 min 15 s left"
    assert p.to_json()["percent"] == 25.0 and p.to_json()["eta_seconds"] == 75.0


# -- a large file held half read: every view --------------------------------------------------


@dataclass
class HeldFile:
    config: Config
    config_path: Path
    size: int
    go: Path

    @property
    def file_id(self) -> str:
        return next(iter(in_progress(self.config.gateway.data_dir)))


def big_file(apps: int) -> bytes:
    return submission("ACME-BIG-001", *(application(f"PO-{n:05d}") for n in range(apps)))


@contextmanager
def held_mid_file(project: ProjectConfig, monkeypatch: pytest.MonkeyPatch,
                  apps: int = 3000, partner: str = "acme", data: bytes | None = None,
                  **settings: object) -> Iterator[HeldFile]:
    """A run of one large file, held after its first decision (``AIMGW_PAUSE_AT=mid_file``)
    until the test is done looking, then let go and finished."""
    go = project.base / "go"
    path = project.partner(partner, filer_code="ACM", **settings).write()
    data = big_file(apps) if data is None else data
    (project.inbox(partner) / "big.xml").write_bytes(data)
    monkeypatch.setenv("AIMGW_PAUSE_AT", f"mid_file:@{go}")
    monkeypatch.setattr(runner, "LIVE_STATUS_BYTES", 1)  # the status file at start, too
    crash._hooks.cache_clear()
    config = load_config(path)
    thread = threading.Thread(target=run_once, args=(config, AS_OF), daemon=True)
    thread.start()
    try:
        # The record is renewed every second; held, the file is read part way.
        assert wait_until(lambda: any(p.done > 0 for p in
                                      in_progress(config.gateway.data_dir).values()), 30)
        yield HeldFile(config, path, len(data), go)
    finally:
        go.touch()
        thread.join(120)
        crash._hooks.cache_clear()
    assert not thread.is_alive()


def test_a_file_being_processed_is_shown_in_progress_by_every_view(
        project: ProjectConfig, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    with held_mid_file(project, monkeypatch) as held:
        data_dir = held.config.gateway.data_dir
        (record,) = in_progress(data_dir).values()
        assert record.size == held.size and 0 < record.done < held.size
        assert 0 < record.percent < 100 and record.partner == "acme"

        health = queries.partners(held.config)
        assert health[0].in_progress == (record,) or health[0].in_progress[0].file_id == \
            record.file_id
        assert health[0].state != "not polled"
        text = status_text(health)
        assert "in progress now:" in text and f"{record.file_id} big.xml" in text
        assert "%" in text.split("in progress now:")[1]
        shown = json.loads(status_json(health))[0]["in_progress"][0]
        assert shown["file_id"] == record.file_id and shown["size"] == held.size
        assert 0 < shown["percent"] < 100 and "eta_seconds" in shown

        assert main(["--config", str(held.config_path), "status", "--json"]) in (0, 1)
        out = json.loads(capsys.readouterr().out)
        assert out[0]["in_progress"][0]["file_id"] == record.file_id

        # The partner's status file says so as soon as the large file starts.
        status = json.loads((project.base / "outbox" / "acme" / "status.json").read_text())
        (entry,) = status["in_progress"]
        assert entry["file_id"] == record.file_id and entry["file_name"] == "big.xml"
        assert "partner" not in entry and entry["size"] == held.size
        file_id = record.file_id
    # Done: nothing in progress any more, and the status file says it is done.
    assert in_progress(data_dir) == {}
    assert list(progress_dir(data_dir).iterdir()) == []
    status = json.loads((project.base / "outbox" / "acme" / "status.json").read_text())
    assert status["in_progress"] == []
    assert status["files"][0]["file_id"] == file_id and status["files"][0]["state"] == "DONE"


@pytest.mark.parametrize("child", [True, False], ids=["read by a child", "read in process"])
def test_the_progress_of_a_mapped_file_is_the_reading_of_the_mapping_output(
        project: ProjectConfig, monkeypatch: pytest.MonkeyPatch, child: bool) -> None:
    """A partner's own XML goes through its XSLT mapping first; what is read then is the
    mapping's output, another file: the progress follows it (it stayed at nothing read)."""
    # The mapped file (about 2.5 MB) read by a second process, or in this one.
    monkeypatch.setattr(read_process, "_cpus", lambda: 2)
    project.set("gateway", read_process_min_bytes=1 if child else 0)
    data = nordic_xml(1, copies=1500)
    with held_mid_file(project, monkeypatch, partner="nordic", data=data,
                       mapping=ROOT / "mappings" / "nordic-orders.xsl") as held:
        (record,) = in_progress(held.config.gateway.data_dir).values()
        (mapped,) = held.config.gateway.data_dir.glob("work/tmp/*.mapped.xml")
        assert record.passes == 2 and record.size == mapped.stat().st_size != held.size
        assert 0 < record.done < record.size and 0 < record.percent < 100
        assert read_process.reading_pids() if child else not read_process.reading_pids()


def test_the_dashboard_shows_a_file_being_processed(
        project: ProjectConfig, monkeypatch: pytest.MonkeyPatch, page: Page) -> None:
    with held_mid_file(project, monkeypatch) as held, serving(held.config_path) as site:
        file_id = held.file_id
        login(page, site)
        row = page.locator(f"#in-progress tr[data-file='{file_id}']")
        expect(row).to_be_visible()
        expect(row).to_contain_text("big.xml")
        expect(row.locator("progress")).to_have_attribute("max", "100")
        assert 0 < float(row.locator("progress").get_attribute("value") or 0) < 100
        expect(row.locator(".progress-text")).to_contain_text("MB")
        summary = page.locator("#partners").inner_text()
        assert "received but not finished yet" not in summary
        assert "processing big.xml: " in summary  # the partner is at work, not "last poll"
        # Today's files: the bar where the counts of a finished file stand, not 0 0 0 0.
        listed = page.locator(f"#files-today tr:has(a:text-is('{file_id}'))")
        expect(listed.locator("td.in-progress progress")).to_be_visible()
        assert listed.locator("td.num").count() == 0
        page.goto(f"{site.url.rstrip('/')}/files/{file_id}?token={TOKEN}")
        expect(page.locator("#file-progress")).to_contain_text("Being processed now")
        expect(page.locator("#file-progress progress")).to_be_visible()
