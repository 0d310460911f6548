"""Staging (gateway/validate/staging.py), imported directly: the application digest (what
makes two requests the same, I201/A104), phase 1 to a spool (XML and CSV, a CSV ref that comes
back joined where it first stood, nothing left behind on an F-code), and ``prepare`` (the
format, a partner's XSLT applied). Real files on tmp_path."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from test_csv import csv_file
from test_rules import application, submission

from gateway.errors import RejectedSubmission
from gateway.model import Application, ProductLine
from gateway.parse.mapping import load_mapping
from gateway.validate.hts import covered_list
from gateway.validate.rules import RuleContext
from gateway.validate.staging import (
    Staged,
    application_digest,
    legacy_application_digest,
    prepare,
    spool_path,
    stage_file,
)

ROOT = Path(__file__).resolve().parent.parent
NORDIC = ROOT / "tests" / "cases" / "inbox" / "nordic" / "nordic-orders-NA-2026-77.xml"
CTX = RuleContext(processing_date=date(2026, 12, 1), covered=covered_list())

LINE_1 = ProductLine("1", hts="7606123045", description="Plate", smelt_country_largest="CA",
                     cast_country="CA", quantity_kg="24000", value_usd="61200.00")
LINE_2 = replace(LINE_1, line_no="2", hts="7606.12.3091", quantity_kg="12000.5")
APP = Application("PO-1", entry_type="01", importer="ACME", country_of_origin="CA",
                  lines=[LINE_1, LINE_2])


# -- the digest: one request, however it is written ---------------------------------------------


@pytest.mark.parametrize("same", [
    pytest.param(replace(APP, lines=[LINE_2, LINE_1]), id="lines-in-another-order"),
    pytest.param(replace(APP, lines=[replace(LINE_1, quantity_kg="24000.000"), LINE_2]),
                 id="trailing-zeros"),
    pytest.param(replace(APP, lines=[replace(LINE_1, line_no="01"), LINE_2]),
                 id="line-number-with-a-zero"),
    pytest.param(replace(APP, lines=[LINE_1, replace(LINE_2, hts="7606123091")]),
                 id="hts-without-dots"),
    pytest.param(replace(APP, source_line=99), id="another-place-in-the-file"),
])
def test_the_same_request_written_otherwise_has_one_digest(same: Application) -> None:
    assert application_digest(same) == application_digest(APP)


@pytest.mark.parametrize("other", [
    pytest.param(replace(APP, ref="PO-2"), id="ref"),
    pytest.param(replace(APP, importer="OTHER"), id="importer"),
    pytest.param(replace(APP, entry_type=None, entry_number="01"), id="value-in-another-field"),
    pytest.param(replace(APP, lines=[replace(LINE_1, value_usd="61200.01"), LINE_2]),
                 id="amount"),
    pytest.param(replace(APP, lines=[LINE_1]), id="a-line-less"),
    pytest.param(replace(APP, lines=[replace(LINE_1, description="Plate", cast_country=""),
                                     LINE_2]), id="a-country-less"),
])
def test_another_request_has_another_digest(other: Application) -> None:
    assert application_digest(other) != application_digest(APP)


def test_the_legacy_digest_is_another_version_and_keeps_the_file_order() -> None:
    swapped = replace(APP, lines=[LINE_2, LINE_1])
    assert legacy_application_digest(APP) != application_digest(APP)
    assert legacy_application_digest(swapped) != legacy_application_digest(APP)
    assert legacy_application_digest(replace(APP)) == legacy_application_digest(APP)


# -- phase 1 to a spool --------------------------------------------------------------------------


def staged(tmp_path: Path, data: bytes, fmt: str) -> Staged:
    path = tmp_path / f"in.{fmt}"
    path.write_bytes(data)
    return stage_file(path, fmt, CTX, spool_path(tmp_path / "work", "F1"))  # type: ignore[arg-type]


def test_xml_is_staged_in_file_order_with_its_findings(tmp_path: Path) -> None:
    data = submission(application("PO-1"), application("PO-2", Importer=None),
                      application("PO-1"), sid="SUB-9")
    result = staged(tmp_path, data, "xml")
    apps = list(result.applications())
    assert result.header is not None and result.header.submission_id == "SUB-9"
    assert (result.count, result.ref_counts) == (3, {"PO-1": 2, "PO-2": 1})
    assert [(a.seq, a.app.ref) for a in apps] == [(1, "PO-1"), (2, "PO-2"), (3, "PO-1")]
    assert [f.code for f in apps[0].findings] == []
    assert {f.code for f in apps[1].findings} == {"A102"}, apps[1].findings  # importer missing
    assert apps[0].digest == apps[2].digest != apps[1].digest
    result.discard()
    assert not result.spool.exists()


def test_a_csv_ref_that_comes_back_is_joined_where_it_first_stood(tmp_path: Path) -> None:
    data = csv_file({"application_ref": "PO-1"}, {"application_ref": "PO-2"},
                    {"application_ref": "PO-1"}, {"application_ref": "PO-3"})
    result = staged(tmp_path, data, "csv")
    apps = list(result.applications())
    assert [(a.seq, a.app.ref) for a in apps] == [(1, "PO-1"), (2, "PO-2"), (3, "PO-3")]
    assert [line.source_line for line in apps[0].app.lines] == [2, 4]
    assert [line.line_no for line in apps[0].app.lines] == ["1", "2"]
    assert result.ref_counts == {"PO-1": 1, "PO-2": 1, "PO-3": 1}
    # The scratch store of the runs is gone; only the spool stays, until discarded.
    assert os.listdir(result.spool.parent) == [result.spool.name]


@pytest.mark.parametrize(("data", "fmt", "code"), [
    pytest.param(submission(application())[:300], "xml", "F001", id="xml-cut-short"),
    pytest.param(csv_file({}) + b"S-1,PO-2,\x00\r\n", "csv", "F001", id="csv-nul"),
    pytest.param(csv_file({}, {"submission_id": "SUB-2"}), "csv", "F005",
                 id="csv-two-submission-ids"),
])
def test_an_f_code_leaves_no_spool_behind(tmp_path: Path, data: bytes, fmt: str,
                                          code: str) -> None:
    with pytest.raises(RejectedSubmission) as err:
        staged(tmp_path, data, fmt)
    assert err.value.finding.code == code
    assert os.listdir(tmp_path / "work") == []


def test_a_spool_path_is_hidden_and_this_processs_own(tmp_path: Path) -> None:
    assert spool_path(tmp_path, "F1") == tmp_path / f".F1.{os.getpid()}.staged"


# -- prepare: the format, and a partner's stylesheet ----------------------------------------------


@pytest.mark.parametrize(("data", "fmt"), [(submission(application()), "xml"),
                                           (csv_file({}), "csv")])
def test_prepare_reads_the_file_itself_without_a_mapping(tmp_path: Path, data: bytes,
                                                        fmt: str) -> None:
    path = tmp_path / "orders.dat"
    path.write_bytes(data)
    prepared = prepare(path, CTX, None, tmp_path / "work", "orders.dat")
    assert (prepared.path, prepared.fmt, prepared.temporary) == (path, fmt, None)
    assert [a.app.ref for a in prepared.reader().applications()] == ["PO-1"]


def test_prepare_applies_a_stylesheet_then_cleans_up(tmp_path: Path) -> None:
    mapping = load_mapping(ROOT / "mappings" / "nordic-orders.xsl")
    prepared = prepare(NORDIC, CTX, mapping, tmp_path / "work", NORDIC.name)
    assert prepared.fmt == "xml" and prepared.temporary == prepared.path
    assert prepared.path.parent == tmp_path / "work" and prepared.path.name.startswith(".")
    result = prepared.stage(tmp_path / "work" / "spool")
    assert result.count > 0 and result.header is not None
    prepared.cleanup()
    result.discard()
    assert os.listdir(tmp_path / "work") == []


def test_a_stylesheet_that_fails_is_f005_and_leaves_nothing(tmp_path: Path) -> None:
    xsl = tmp_path / "broken.xsl"
    xsl.write_text('<xsl:stylesheet version="1.0" '
                   'xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
                   '<xsl:template match="/"><xsl:message terminate="yes">no</xsl:message>'
                   "</xsl:template></xsl:stylesheet>")
    with pytest.raises(RejectedSubmission) as err:
        prepare(NORDIC, CTX, load_mapping(xsl), tmp_path / "work", NORDIC.name)
    assert err.value.finding.code == "F005"
    assert os.listdir(tmp_path / "work") == []
