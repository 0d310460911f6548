"""The tests' config factory (tests/project_config.py): it writes only what a test states, so
every other setting is the gateway's default, and it writes any text as the text it means."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from conftest import ProjectConfig
from project_config import FILER, toml_string
from sftp_server import SshServer

from gateway.config import SftpSource, load_config


def test_a_partner_alone_is_two_lines_and_every_setting_its_default(
        project: ProjectConfig) -> None:
    project.partner("acme")
    assert project.text() == '[partners.acme]\nname = "Acme"\ninbox = "inbox/acme"\n'
    config = load_config(project.write())
    assert config.gateway.data_dir == project.base / "data"
    assert config.gateway.outbox_dir == project.base / "outbox"
    assert (config.gateway.max_file_bytes, config.gateway.timezone) == (209_715_200,
                                                                        "America/New_York")
    assert config.partner("acme").source.disposition == "move"


def test_sections_partners_updates_and_the_filer_block(project: ProjectConfig) -> None:
    project.set("gateway", max_file_bytes=5).ledger("postgresql://x@127.0.0.1:1/y")
    project.partner("a", filer=True, patterns=["*.xml"], max_backoff_seconds=2)
    project.partner("b", inbox=None, kind="sftp").update("a", patterns=None, enabled=False)
    parsed = tomllib.loads(project.text())
    assert parsed["gateway"] == {"max_file_bytes": 5, "ledger": "postgresql://x@127.0.0.1:1/y"}
    assert parsed["partners"]["a"] == {"name": "A", "inbox": "inbox/a", "max_backoff_seconds": 2,
                                       "enabled": False, "filer": FILER}
    assert parsed["partners"]["b"] == {"name": "B", "kind": "sftp"}


def test_an_sftp_partner_names_the_test_server(project: ProjectConfig, sshd: SshServer) -> None:
    account = sshd.account("acme")
    config = load_config(project.sftp_partner("acme", sshd, account, timeout=2.0).write())
    partner = config.partner("acme")
    source = partner.source
    assert isinstance(source, SftpSource)
    assert (partner.kind, source.host, source.port, source.user) == (
        "sftp", sshd.host, sshd.port, sshd.user)
    assert (source.key_file, source.known_hosts) == (sshd.key_file, sshd.known_hosts)
    assert (source.remote_inbox, partner.min_age_seconds) == (account.inbox, 0)
    assert (source.connect_timeout, source.operation_timeout) == (2.0, 4.0)


@pytest.mark.parametrize("text", ["plain", 'q"uote\\back', "tab\tnew\nline", "\x00\x01\x1b",
                                  "del\x7f", "é ß 中", "emoji 😀", "C:\\path"])
def test_any_text_is_written_as_the_text_it_means(text: str) -> None:
    assert tomllib.loads(f"k = {toml_string(text)}")["k"] == text


def test_write_elsewhere_makes_the_folder(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "config.toml"
    assert ProjectConfig(tmp_path).partner("a").write(target) == target
    assert target.is_file() and not (tmp_path / "config.toml").exists()
