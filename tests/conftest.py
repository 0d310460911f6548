"""Shared pytest fixtures."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from browser import browser as browser
from browser import page as page
from hypothesis import settings
from pg_server import pg_cluster as pg_cluster
from pg_server import pg_dsn as pg_dsn
from project_config import ProjectConfig
from sftp_server import cut_proxy as cut_proxy
from sftp_server import sshd as sshd

from gateway.admin.check import check_file
from gateway.config import Config, load_config
from gateway.service.runner import run_once

# pytest-xdist sets COLUMNS=80 in its workers; the tests expect what a run without a terminal
# gets (gateway/admin/listing.py: no width limit), as in a plain `pytest` run. A test that
# wants a width sets COLUMNS itself.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the long suites marked slow (or set AIMGW_SLOW=1)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow") or os.environ.get("AIMGW_SLOW", "") not in ("", "0"):
        return
    skip = pytest.mark.skip(reason="long suite: run with --slow or AIMGW_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass: tests wait on a condition,
    never a fixed sleep. The one copy for every test file (import it from conftest)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def project(tmp_path: Path) -> ProjectConfig:
    """The config of a project in tmp_path, to fill in and ``write()``."""
    return ProjectConfig(tmp_path)


# -- one partner, checked or run -----------------------------------------------------------------

PARTNER = "acme"


class OnePartner:
    """Partner ``acme`` (filer code ACM) in ``base``: a file checked (``check_raw``, the
    ``check`` command's path) or dropped in its inbox and run through one real cycle
    (``run_raw``). Each test file reads the acknowledgment in its own format."""

    def __init__(self, base: Path, *, gateway: dict[str, object] | None = None,
                 **partner: object) -> None:
        self.base = base
        toml = ProjectConfig(base).set("gateway", **(gateway or {}))
        self.config_path = toml.partner(PARTNER, filer_code="ACM", **partner).write()
        self.config: Config = load_config(self.config_path)
        self.n = 0

    def check_raw(self, data: bytes, name: str, as_of: date,
                  ack_format: str | None = None) -> tuple[str, bytes]:
        """The file's status and acknowledgment, as ``check`` gives them."""
        self.n += 1
        path = self.base / "check" / str(self.n) / name
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        result = check_file(self.config, path, PARTNER, as_of, ack_format)
        return result.status.value, result.ack

    def checked(self, read: Callable[[bytes], Any], data: bytes, name: str, as_of: date,
                ack_format: str | None = None) -> Any:
        """The acknowledgment ``check`` gives, as ``read`` reads it; its status is the one
        ``check`` reports."""
        status, raw = self.check_raw(data, name, as_of, ack_format)
        ack = read(raw)
        assert ack.status == status
        return ack

    def run_raw(self, name: str, data: bytes, as_of: date) -> Path:
        """Drop the file in the inbox, run one real cycle: the partner's outbox folder."""
        inbox = self.base / "inbox" / PARTNER
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_bytes(data)
        run_once(self.config, as_of)
        return self.base / "outbox" / PARTNER


def acme_project(base: Path, disposition: str, **settings: object) -> Path:
    """One local partner ``acme`` reading ``base/inbox`` (created), filer code SMP."""
    config = ProjectConfig(base).partner("acme", inbox="inbox", disposition=disposition,
                                         filer_code="SMP", **settings)
    config.inbox("acme")
    return config.write()


def examples(count: int, **more: Any) -> settings:
    """Hypothesis settings of a property test: ``count`` examples, the same ones every run (no
    random seed, no example database) and no deadline (the machine may be busy)."""
    return settings(max_examples=count, derandomize=True, database=None, deadline=None, **more)
