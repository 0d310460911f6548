"""The applicant of a file (guide 2.3, 19 CFR 361.103(c)(1)(i)-(ii)): the XML header's
``Filer`` when the file has one, else the partner's ``[partners.<id>.filer]`` profile, recorded
with the file in the ledger (SQLite and PostgreSQL) and shown by ``aim-gateway show``."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date
from pathlib import Path

import pytest
from project_config import ProjectConfig

from gateway.cli import main
from gateway.config import load_config
from gateway.ledger.store import open_ledger
from gateway.model import Filer
from gateway.service.runner import run_once

GOOD = (Path(__file__).resolve().parent / "cases" / "inbox" / "sample"
        / "acme-20261201-good.xml").read_bytes()

PROFILE = Filer(name="ACME ALUMINUM IMPORTS LLC", street="100 HARBOR WAY", city="NEWARK",
                state="NJ", postal_code="07114", contact_name="JANE DOE",
                phone="+1 973 555 0100", email="licensing@acme-aluminum.example")
HEADER = Filer(name="BROKER FOR ACME INC", street="7 CUSTOMS PLAZA", city="BUFFALO",
               state="NY", postal_code="14202", contact_name="SAM ROE",
               phone="+1 716 555 0199", email="filings@broker.example")
HEADER_XML = b"""    <Filer>
      <Name>BROKER FOR ACME INC</Name>
      <Street>7 CUSTOMS PLAZA</Street>
      <City>BUFFALO</City>
      <State>NY</State>
      <PostalCode>14202</PostalCode>
      <ContactName>SAM ROE</ContactName>
      <Phone>+1 716 555 0199</Phone>
      <Email>filings@broker.example</Email>
    </Filer>
  </Header>"""


def with_filer(xml: bytes) -> bytes:
    return xml.replace(b"  </Header>", HEADER_XML, 1)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize(("document", "status", "expected", "shown"), [
    pytest.param(GOOD, "ACCEPTED", PROFILE,
                 "ACME ALUMINUM IMPORTS LLC, 100 HARBOR WAY, NEWARK, NJ 07114; contact JANE DOE, "
                 "+1 973 555 0100, licensing@acme-aluminum.example", id="profile"),
    pytest.param(with_filer(GOOD), "ACCEPTED", HEADER,
                 "BROKER FOR ACME INC, 7 CUSTOMS PLAZA, BUFFALO, NY 14202; contact SAM ROE, "
                 "+1 716 555 0199, filings@broker.example", id="header-override"),
    # Rejected whole: no application was decided, so no license has an applicant.
    pytest.param(b"<not-xml", "REJECTED", None, "-", id="rejected-whole"),
])
def test_the_effective_filer_is_recorded_with_the_file_and_shown(
        tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str],
        backend: str, document: bytes, status: str, expected: Filer | None,
        shown: str) -> None:
    project = ProjectConfig(tmp_path).backend(request, backend).partner(
        "acme", inbox="inbox", disposition="keep", filer_code="SMP", filer=True)
    (project.inbox("acme") / "a.xml").write_bytes(document)
    cfg = project.write()
    config = load_config(cfg)
    run_once(config, date(2026, 12, 1))
    ledger = open_ledger(config, readonly=True)
    try:
        (row,) = ledger.files("partner = ?", ("acme",))
        assert row.status == status
        assert ledger.filer(row.file_id) == expected
    finally:
        ledger.close()

    assert main(["--config", str(cfg), "show", row.file_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["filer"] == (
        asdict(expected) if expected is not None else None)
    assert main(["--config", str(cfg), "show", row.file_id]) == 0
    assert f"\n  filer {shown}\n" in capsys.readouterr().out
