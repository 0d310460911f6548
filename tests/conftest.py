"""Shared pytest fixtures."""

import os

import pytest
from pg_server import pg_cluster as pg_cluster
from pg_server import pg_dsn as pg_dsn
from sftp_server import cut_proxy as cut_proxy
from sftp_server import sshd as sshd


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
