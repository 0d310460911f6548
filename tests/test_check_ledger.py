"""`check` (issue 10, smaller items): it reads the CONFIGURED ledger (PostgreSQL too) for the
history checks and fails with exit 2 when it cannot, and a file that crashes the pipeline
gets the same F001 acknowledgment from `check` as from a run (exit 1), never a traceback."""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path

import pytest
from lxml import etree
from pg_server import PgServer
from ports import free_port
from test_poison import Project, good_file

from gateway.cli import main
from gateway.config import load_config
from gateway.licensing import pipeline
from gateway.outputs.ack_xml import ACK_NS
from gateway.service.runner import run_once


def closed_port() -> int:
    return free_port()  # nobody listens there


def cli(p: Project, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(p.cfg), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_with_an_unreachable_ledger_fails_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = Project(tmp_path)
    p.toml.ledger(f"postgresql://aimgw@127.0.0.1:{closed_port()}/aimgw").write()
    sample = tmp_path / "good.xml"
    sample.write_bytes(good_file(1))
    code, out, err = cli(p, capsys, "check", str(sample), "--partner", "a")
    assert code == 2 and out == ""
    assert "check cannot read the ledger for the history checks" in err
    assert "Traceback" not in err


_collation_counter = iter(range(1_000_000))


@pytest.mark.parametrize("collation", [
    "",  # the cluster's own (C: byte order)
    # A language-aware order sorts "~" before digits: check's old "~" sentinel for "every
    # file" then found no earlier file, and a resent file was not F006 (found in review).
    "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C' TEMPLATE template0",
], ids=["byte-order", "icu-en-US"])
def test_check_reads_the_postgresql_ledger(tmp_path: Path, pg_cluster: PgServer,
                                          capsys: pytest.CaptureFixture[str],
                                          collation: str) -> None:
    import psycopg

    database = f"aimgw_check_{os.getpid()}_{next(_collation_counter)}"
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}" {collation}')
    p = Project(tmp_path)
    p.toml.ledger(pg_cluster.dsn(database)).write()
    sample = tmp_path / "good.xml"
    sample.write_bytes(good_file(1))
    code, out, _ = cli(p, capsys, "check", str(sample), "--partner", "a")  # empty database
    assert code == 0 and "<Status>ACCEPTED</Status>" in out
    p.drop("a", "sent.xml", good_file(1))
    run_once(load_config(p.cfg), date(2026, 12, 1))
    code, out, _ = cli(p, capsys, "check", str(sample), "--partner", "a")
    assert code == 0 and "<Status>DUPLICATE</Status>" in out and 'code="F006"' in out
    # A new file that repeats a licensed ref with other content: A104 from the history.
    changed = tmp_path / "changed.xml"
    changed.write_bytes(good_file(1).replace(b"ACME-20261201-901", b"ACME-20261201-902")
                        .replace(b"<QuantityKg>", b"<QuantityKg>1", 1))
    code, out, _ = cli(p, capsys, "check", str(changed), "--partner", "a",
                       "--as-of", "2026-12-01")
    assert code == 1 and 'code="A104"' in out


def _f001(ack: bytes) -> str:
    root = etree.fromstring(ack)
    found = root.findall(f"{{{ACK_NS}}}Finding")
    assert [f.get("code") for f in found] == ["F001"]
    return str(found[0].text)


@pytest.mark.parametrize("failure", [MemoryError(), ValueError("no such case"),
                                     RecursionError("maximum recursion depth exceeded")],
                         ids=["MemoryError", "ValueError", "RecursionError"])
def test_a_bug_is_the_gateways_own_in_check_and_in_a_run(
        failure: Exception, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise failure

    # One place: `check` and a run decide with the same core.
    monkeypatch.setattr(pipeline, "prepare", crash)
    p = Project(tmp_path)
    sample = tmp_path / "crash.xml"
    sample.write_bytes(good_file(1))
    code, out, err = cli(p, capsys, "check", str(sample), "--partner", "a")
    assert code == 1 and "Traceback" not in err
    assert "an internal error of the gateway" in _f001(out.encode())
    # A run never blames the sender at once: the file fails, is counted, and at the third
    # failure in a row it is quarantined with an ack that says the same.
    p.drop("a", "crash.xml", good_file(1))
    for _ in range(3):
        assert not (tmp_path / "outbox" / "a" / "crash.xml.ack.xml").exists()
        run_once(load_config(p.cfg), date(2026, 12, 1))
    ran = (tmp_path / "outbox" / "a" / "crash.xml.ack.xml").read_bytes()
    assert "an internal error of the gateway" in _f001(ran)
    assert re.search(r"<Status>REJECTED</Status>", out)
