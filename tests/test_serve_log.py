"""What a real ``aim-gateway serve`` writes to stderr (issue 14, item 5): a start banner and one
line per file at INFO without -v; each event with -v; APScheduler's own loggers only with -vv."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ProjectConfig, wait_until

from gateway import __version__
from gateway.config import load_config
from gateway.service.scheduler import banner, ledger_text

SAMPLES = Path(__file__).resolve().parent / "cases" / "inbox" / "sample"


def serve_log(tmp_path: Path, *flags: str) -> str:
    """Serve partner ``acme`` (polled every second) and ``hanse`` (cron), drop one file, wait
    for its line, stop: the process's stderr."""
    config = ProjectConfig(tmp_path).set("gateway", poll_interval_seconds=1)
    config.partner("acme", inbox="inbox/acme").partner("hanse", schedule="0 6 * * 1-5")
    config.inbox("acme"), config.inbox("hanse")
    path = config.write()
    err = tmp_path / "serve.err"
    with open(err, "wb") as sink:  # a file, not a pipe nobody reads while it runs
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", *flags, "serve",
                                 "--config", str(path)], stdout=subprocess.DEVNULL,
                                stderr=sink)
        try:
            shutil.copy(SAMPLES / "acme-20261201-good.xml", tmp_path / "inbox" / "acme" / "a.xml")
            assert wait_until(lambda: " acme a.xml " in err.read_text(errors="replace")), \
                err.read_text(errors="replace")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    return err.read_text()


@pytest.mark.parametrize(("flags", "events", "scheduler"), [
    pytest.param((), False, False, id="default"),
    pytest.param(("-v",), True, False, id="-v"),
    pytest.param(("-vv",), True, True, id="-vv"),
])
def test_serve_logs_a_banner_and_one_line_per_file(tmp_path: Path, flags: tuple[str, ...],
                                                   events: bool, scheduler: bool) -> None:
    log = serve_log(tmp_path, *flags)
    config = tmp_path / "config.toml"
    assert f"INFO gateway.service: aim-gateway {__version__} serve: config {config}, ledger " \
           f"sqlite {tmp_path / 'data' / 'ledger.sqlite'}, time zone America/New_York" in log
    assert "INFO gateway.service: partner acme (local): every 1 s" in log
    assert 'INFO gateway.service: partner hanse (local): cron "0 6 * * 1-5" ' \
           "America/New_York" in log
    lines = [line for line in log.splitlines() if " acme a.xml " in line]
    assert len(lines) == 1, log  # one line per file
    assert re.search(r"INFO gateway\.runner: acme a\.xml \d{8}-\d{6} (ACCEPTED|PARTIAL): "
                     r"\d+ applications, \d+ licensed, \d+ not required, \d+ rejected, "
                     r"\d+ cancelled$", lines[0]), lines[0]
    assert ("file.received acme" in log) is events
    assert ("apscheduler" in log) is scheduler


def test_the_banner_names_a_postgresql_ledger_without_its_password(tmp_path: Path) -> None:
    path = (ProjectConfig(tmp_path).ledger("postgresql://aim:s3cret@db.example:5433/aim")
            .partner("acme", inbox="in", enabled=False).write())
    config = load_config(path)
    assert ledger_text(config) == "postgresql db.example:5433/aim"
    text = "\n".join(banner(config, ["web http://127.0.0.1:8080/"]))
    assert "s3cret" not in text and "partner acme (local): disabled" in text
    assert text.endswith("web http://127.0.0.1:8080/")
