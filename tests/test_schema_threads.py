"""The XSD's findings stay with the thread that validated: `serve` polls partners in threads,
and an ``lxml.etree.XMLSchema`` keeps the error log of its last validation on itself, so two
threads validating with one object read each other's errors (measured on one shared object:
about 1 in 6 invalid applications got no finding or another thread's, naming that thread's
value; in the gateway, another partner's value in a partner's acknowledgment). The same
holds for a partner mapping's XSLT object."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from gateway.errors import RejectedSubmission
from gateway.parse.mapping import mapping_for
from gateway.parse.xml_model import read_application
from gateway.schemas import ack_schema, submission_schema

NS = "{urn:aimgw:license-submission:1}"
SAMPLE = Path(__file__).parent / "cases" / "inbox" / "sample" / "acme-20261201-good.xml"
THREADS = 4
ROUNDS = 1500


def test_each_thread_reads_its_own_findings() -> None:
    source = SAMPLE.read_bytes()
    start = threading.Barrier(THREADS, timeout=60)  # a thread that fails early breaks it
    wrong: list[tuple[int, str]] = []

    def validate(i: int) -> None:
        # Each thread parses its own file, as each partner's poll does.
        app = etree.fromstring(source).find(NS + "Application")
        assert app is not None
        mine = f"Q{i:03d}"  # a value no other thread uses: not a decimal
        quantity = app.find(f"{NS}Product/{NS}QuantityKg")
        assert quantity is not None
        quantity.text = mine
        start.wait()
        for _ in range(ROUNDS):
            messages = " ".join(m for _, m in read_application(app, submission_schema())
                                .xsd_errors)
            if f"'{mine}'" not in messages or "'Q" in messages.replace(f"'{mine}'", ""):
                wrong.append((i, messages))

    _in_threads(validate)
    assert not wrong, f"{len(wrong)} of {THREADS * ROUNDS} validations: {wrong[:3]}"


@pytest.mark.parametrize("load", [submission_schema, ack_schema])
def test_a_thread_keeps_its_schema_and_another_gets_its_own(
        load: Callable[[], etree.XMLSchema]) -> None:
    here = load()
    assert load() is here  # loaded once per thread, not per file
    there: list[object] = []
    thread = threading.Thread(target=lambda: there.append(load()))
    thread.start()
    thread.join()
    assert there and there[0] is not here


_FAILING_XSLT = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><xsl:message terminate="yes">order <xsl:value-of select="/Order/@no"/>
  cannot be mapped</xsl:message></xsl:template>
</xsl:stylesheet>"""


def test_partners_sharing_a_stylesheet_each_read_their_own_f005(tmp_path: Path) -> None:
    """Two partners configured with one XSLT mapping file, polled in threads: each file's F005
    names that file's order, never the other partner's (an lxml XSLT object keeps its last
    run's error log on itself, like an XMLSchema)."""
    stylesheet = tmp_path / "shared.xsl"
    stylesheet.write_bytes(_FAILING_XSLT)
    start = threading.Barrier(THREADS, timeout=60)  # a thread that fails early breaks it
    wrong: list[tuple[int, str]] = []

    def transform(i: int) -> None:
        source = tmp_path / f"order-{i}.xml"
        source.write_bytes(f'<Order no="N{i:03d}"/>'.encode())
        mapping = mapping_for(stylesheet)
        assert mapping is not None
        start.wait()
        for _ in range(ROUNDS // 3):
            with pytest.raises(RejectedSubmission) as caught:
                mapping.to_submission(source, tmp_path / f"out-{i}.xml")
            message = caught.value.finding.message
            if f"N{i:03d}" not in message or message.count("N0") != 1:
                wrong.append((i, message))

    _in_threads(transform)
    assert not wrong, f"{len(wrong)} of {THREADS * (ROUNDS // 3)} transforms: {wrong[:3]}"


def _in_threads(work: Callable[[int], None]) -> None:
    """``work(i)`` in THREADS threads at once; an exception in any of them fails the test."""
    failed: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as err:  # reported below, not lost in the thread
            failed.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failed, failed
