"""Shared pytest fixtures."""

import os
import time
from collections.abc import Callable
from pathlib import Path

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


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass: tests wait on a condition,
    never a fixed sleep. The one copy for every test file (import it from conftest)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# The filer details every test partner files under (OPERATIONS.md, [partners.<id>.filer]);
# defined once so a change to the block reaches every test that writes one.
FILER_BLOCK = """
[partners.{pid}.filer]
name = "ACME ALUMINUM IMPORTS LLC"
street = "100 HARBOR WAY"
city = "NEWARK"
state = "NJ"
postal_code = "07114"
contact_name = "JANE DOE"
phone = "+1 973 555 0100"
email = "licensing@acme-aluminum.example"
"""


def filer_block(pid: str) -> str:
    """The ``[partners.<pid>.filer]`` block, starting and ending with a newline."""
    return FILER_BLOCK.format(pid=pid)


GATEWAY_BLOCK = '\n[gateway]\ndata_dir = "data"\noutbox_dir = "outbox"\n'
ACE_BLOCK = '\n[ace]\nsite_code = "AIMG"\nsender_id = "AGW"\n'


def write_project_config(base: Path, partners: str, *, ace: bool = False) -> Path:
    """Write ``base/config.toml``: data/ and outbox/ relative to ``base``, every other gateway
    setting left at its default (so a changed default is tested), then the ``partners`` text."""
    cfg = base / "config.toml"
    cfg.write_text(GATEWAY_BLOCK + (ACE_BLOCK if ace else "") + "\n" + partners)
    return cfg


def acme_project(base: Path, disposition: str, *, ace: bool = False, extra: str = "") -> Path:
    """One local partner ``acme`` reading ``base/inbox`` (created), filer code SMP."""
    (base / "inbox").mkdir(parents=True, exist_ok=True)
    return write_project_config(base, f"""[partners.acme]
name = "Acme"
inbox = "inbox"
disposition = "{disposition}"
filer_code = "SMP"
{extra}""", ace=ace)
