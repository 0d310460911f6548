"""Listings at scale and exit codes (issue 14, items 4, 8 and 9b): ``show`` of a file with
10,000 findings grouped by code, ``--limit``, "N of M" when a listing stops at its limit, the
id format for an unknown id, CSV of every listing (one writer, the web page's columns), tables
cut to the terminal, FAILED meaning one thing, exit 2 for a missing config or partner, "did
you mean" for a CSV column, ``events_file`` beside ``data_dir``, ``run --once`` per file."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import ProjectConfig
from test_admin import Project

from gateway.cli import main
from gateway.config import load_config
from gateway.errors import ConfigError

MANY = 10_000


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project(tmp_path)
    p.run()
    return p


def add_findings(project: Project, file_id: str, count: int) -> None:
    """``count`` findings more on ``file_id``: A160 on every other line, A170 on the rest."""
    with project.db() as db:
        db.executemany(
            "INSERT INTO findings (file_id, code, severity, ref, line, source_line, field, "
            "value, message) VALUES (?, ?, 'ERROR', ?, 1, ?, 'hts', ?, ?)",
            [(file_id, "A160" if n % 2 else "A170", f"PO-{n}", 1000 + n, f"v{n}",
              f"message number {n}") for n in range(count)])


# -- show --------------------------------------------------------------------------------------


def test_show_groups_ten_thousand_findings_by_code(project: Project, capsys) -> None:
    file_id = project.file_id("sample", "partial")
    add_findings(project, file_id, MANY)
    code, text = project.cli(capsys, "show", file_id)
    assert code == 0
    assert len(text.splitlines()) < 200  # was 10,226 lines
    group = next(line for line in text.splitlines() if line.lstrip().startswith("A160"))
    a160 = project.one("SELECT COUNT(*) FROM findings WHERE file_id = ? AND code = 'A160'",
                       file_id)
    assert a160 > MANY // 2 and f"{a160:,}" in group  # its count
    assert "PO-1 " in group and "message" not in group  # a first example (the least)
    code, limited = project.cli(capsys, "show", file_id, "--limit", "3")
    assert code == 0 and "--limit" in limited
    assert len(project.cli_json(capsys, "show", file_id)["findings"]) > MANY  # type: ignore[index]


def test_show_of_a_malformed_id_explains_the_id_format(project: Project, capsys) -> None:
    code, _ = project.cli(capsys, "show", "1")
    assert code == 1
    assert "YYYYMMDD-NNNNNN" in project.stderr and "license number" in project.stderr


# -- N of M --------------------------------------------------------------------------------------


def test_a_listing_at_its_limit_says_how_many_there_are(project: Project, capsys) -> None:
    total = project.one("SELECT COUNT(*) FROM licenses")
    code, text = project.cli(capsys, "licenses", "--limit", "2")
    assert code == 0 and f"2 of {total} licenses" in text
    files = project.one("SELECT COUNT(*) FROM files")
    code, text = project.cli(capsys, "files", "--limit", "3")
    assert f"3 of {files} files" in text
    code, text = project.cli(capsys, "files")
    assert " of " not in text.splitlines()[-1]  # all shown: nothing to say
    code, out = project.cli(capsys, "licenses", "--limit", "2", "--json")
    assert len(json.loads(out)) == 2 and f"2 of {total}" in project.stderr


# -- CSV -----------------------------------------------------------------------------------------


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_every_listing_exports_csv(project: Project, capsys) -> None:
    code, out = project.cli(capsys, "files", "--csv")
    rows = read_csv(out)
    assert code == 0 and len(rows) == project.one("SELECT COUNT(*) FROM files")
    assert {"file_id", "partner", "remote_name", "status", "applications"} <= set(rows[0])
    code, out = project.cli(capsys, "licenses", "--csv")
    rows = read_csv(out)
    assert len(rows) == project.one("SELECT COUNT(*) FROM licenses")
    assert {"license_number", "state", "ref", "importer"} <= set(rows[0])
    file_id = project.file_id("sample", "partial")
    code, out = project.cli(capsys, "show", file_id, "--csv")
    rows = read_csv(out)
    assert len(rows) == project.one("SELECT COUNT(*) FROM findings WHERE file_id = ?", file_id)
    assert {"code", "severity", "ref", "line", "message"} <= set(rows[0])


def test_csv_neutralises_formulas(project: Project, capsys) -> None:
    with project.db() as db:
        db.execute("UPDATE files SET remote_name = '=HYPERLINK(1)' WHERE partner = 'hanse'")
    code, out = project.cli(capsys, "files", "--csv", "--partner", "hanse")
    assert code == 0
    assert read_csv(out)[0]["remote_name"] == "'=HYPERLINK(1)"


# -- terminal width ----------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 120])
def test_tables_fit_the_terminal(project: Project, capsys, monkeypatch, columns: int) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    for args in (["files"], ["licenses"], ["status"]):
        code, text = project.cli(capsys, *args)
        assert code == 0
        lines = text.splitlines()
        table = lines[: next((i for i, line in enumerate(lines) if not line), len(lines))]
        assert max(len(line) for line in table) <= columns, (args, table)
        assert "…" in text


# -- FAILED --------------------------------------------------------------------------------------


def test_failed_means_an_f_code_everywhere(project: Project, capsys) -> None:
    """A file whose every application was rejected is REJECTED, not FAILED: FAILED is an
    F-code (the file went to failed/), in the CLI, the web filter, the dashboard's count and
    the partner's status file alike."""
    from gateway.admin import queries
    from gateway.ledger.reads.files import FileQuery, is_failed

    with project.db() as db:  # the partial file, as if every application had been rejected
        db.execute("UPDATE files SET status = 'REJECTED' WHERE remote_name LIKE '%partial%'")
    failed = project.cli_json(capsys, "files", "--status", "FAILED")
    assert sorted(f["error"][:4] for f in failed) == ["F002", "F004"]  # type: ignore[union-attr]
    rows = queries.files(project.config, FileQuery())
    assert sorted(r.file_id for r in rows if is_failed(r)) == sorted(
        f["file_id"] for f in failed)  # type: ignore[union-attr]
    status = project.cli_json(capsys, "status")
    assert {p["partner"]: p["failed_today"] for p in status} == {  # type: ignore[union-attr]
        "sample": 1, "hanse": 0, "nordic": 0, "plain": 1}


# -- exit codes (item 8) -------------------------------------------------------------------------


def test_a_missing_config_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), "files"]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_an_unknown_partner_is_a_usage_error(project: Project, capsys) -> None:
    code, _ = project.cli(capsys, "partner", "test", "hansa")
    assert code == 2 and "did you mean 'hanse'" in project.stderr


def test_a_missing_mapping_names_its_resolved_path(tmp_path: Path) -> None:
    project = ProjectConfig(tmp_path)
    project.partner("acme", mapping="mappings/nowhere.toml")
    project.inbox("acme")
    with pytest.raises(ConfigError) as err:
        load_config(project.write())
    assert str(project.base.resolve() / "mappings" / "nowhere.toml") in str(err.value)


def test_mapping_test_names_the_resolved_path(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("a\n")
    assert main(["mapping", "test", "gone.toml", "in.csv"]) == 2
    assert str(tmp_path.resolve() / "gone.toml") in capsys.readouterr().err


def test_an_unknown_csv_column_gets_did_you_mean(tmp_path: Path, capsys) -> None:
    project = ProjectConfig(tmp_path)
    sample = Path(__file__).parent / "cases" / "inbox" / "sample" / "acme-20261202-erp.csv"
    text = sample.read_text("utf-8")
    bad = project.base / "typo.csv"
    bad.write_text(text.replace("importer", "improter", 1), "utf-8")
    project.partner("acme")
    project.inbox("acme")
    code = main(["--config", str(project.write()), "check", str(bad)])
    out = capsys.readouterr().out
    assert code == 1 and "F005" in out
    assert "improter (did you mean 'importer'?)" in out


# -- events_file ---------------------------------------------------------------------------------


def test_events_file_follows_data_dir(tmp_path: Path) -> None:
    project = ProjectConfig(tmp_path)
    project.set("gateway", data_dir="var/gw").partner("acme")
    config = load_config(project.write())
    assert config.events_path == project.base.resolve() / "var" / "gw" / "events.jsonl"
    project.set("log", events_file="logs/e.jsonl")
    config = load_config(project.write())
    assert config.events_path == project.base.resolve() / "logs" / "e.jsonl"


# -- run --once ------------------------------------------------------------------------------------


def test_run_once_prints_each_file_with_its_status_and_counts(tmp_path: Path, capsys) -> None:
    p = Project(tmp_path)
    code = main(["--config", str(p.cfg), "run", "--once", "--as-of", "2026-12-01"])
    out = capsys.readouterr().out
    assert code == 0
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as db:
        files = db.execute("SELECT file_id, remote_name, status, applications, licensed, "
                           "rejected FROM files").fetchall()
    assert files
    for file_id, name, status, apps, licensed, rejected in files:
        line = next(x for x in out.splitlines() if file_id in x)
        assert name in line and status in line
        assert f"{apps} application" in line and f"{licensed} licensed" in line
        assert f"{rejected} rejected" in line
