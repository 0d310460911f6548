"""Contract 1.1 in XML submissions (guide 3, 5.1a, 5.1b, 6): schemaVersion 1.1, the
``Cancellation`` element, ``kind``, ``corrects`` and ``LicenseNumber``, and the value rules for
them (A101, A102, A108, no A171 for a low-value application).

Each case is checked end to end with ``check`` (no ledger history needed: these codes come from
the XSD and the rules); what needs the ledger (A106, A107, I202, I203, I204) is decide's and
tested with it. The parser's own output (cancellations in file order, hostile input) is read
with ``XmlSubmission`` directly.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import OnePartner, examples
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree
from test_rules import AS_OF, NS, Ack, Gateway, application, parse_ack, submission

from gateway.errors import RejectedSubmission
from gateway.findings import MAX_FINDINGS
from gateway.parse.xml_file import XmlSubmission
from gateway.schemas import ack_schema

V11 = f'<LicenseSubmission xmlns="{NS}" schemaVersion="1.1">'
OK, NO, REJ = "LICENSED", "NOT_REQUIRED", "REJECTED"


def cancellation(ref: str | None = "PO-9", number: str | None = "A26000001",
                 reason: str | None = "order cancelled", extra: str = "") -> str:
    attrs = "".join(f' {name}="{value}"' for name, value in
                    (("ref", ref), ("licenseNumber", number)) if value is not None)
    body = "" if reason is None else f"<Reason>{reason}</Reason>"
    return f"  <Cancellation{attrs}{extra}>{body}</Cancellation>\n"


def with_attrs(app: str, **attrs: str) -> str:
    """``app`` (from ``application``) with more attributes on its start tag."""
    more = "".join(f' {name}="{value}"' for name, value in attrs.items())
    return app.replace("<Application", "<Application" + more, 1)


def with_number(app: str, number: str) -> str:
    """``app`` with a LicenseNumber element after PortOfEntry."""
    end = "</PortOfEntry>\n"
    return app.replace(end, f"{end}    <LicenseNumber>{number}</LicenseNumber>\n", 1)


class Registered(Gateway):
    """Partner ``acme`` whose licenses come from Commerce (``license_source = "commerce"``)."""

    def __init__(self, base: Path) -> None:
        OnePartner.__init__(self, base, gateway={}, filer=True, license_source="commerce")


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    return Gateway(tmp_path)


@pytest.fixture
def registered(tmp_path: Path) -> Registered:
    return Registered(tmp_path / "registered")


def codes(ack: Ack, ref: str = "PO-1") -> set[str]:
    return ack.app(ref).codes


# --- schemaVersion ---------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "accepted"), [
    ("1.0", True), ("1.1", True), ("1.2", False), ("2.0", False), ("1", False), ("", False)])
def test_schema_version_1_0_and_1_1_are_read(gw: Gateway, version: str, accepted: bool) -> None:
    root = f'<LicenseSubmission xmlns="{NS}" schemaVersion="{version}">'
    ack = gw.check(submission(application(), root=root))
    if accepted:
        assert (ack.status, ack.file_codes, codes(ack)) == ("ACCEPTED", set(), set())
    else:
        assert (ack.status, ack.file_codes) == ("REJECTED", {"F005"})


# --- kind (guide 5.1a): A101, A108, no A171 ---------------------------------------------------

UNDER = {"QuantityKg": "1000", "ValueUSD": "4999.99"}  # $4,999.99, 5,000 USD/t: no A180
AT = {"QuantityKg": "1000", "ValueUSD": "5000.00"}
NOT_COVERED = {"HTS": "7606129999"}


@pytest.mark.parametrize(("kind", "lines", "expected", "status"), [
    pytest.param("LOW_VALUE", [UNDER], set(), OK, id="low-value-under-5000"),
    pytest.param("LOW_VALUE", [AT], {"A108"}, REJ, id="A108-exactly-5000"),
    pytest.param("LOW_VALUE", [{}], {"A108"}, REJ, id="A108-61200"),
    pytest.param("LOW_VALUE", [{"ValueUSD": "2500", "QuantityKg": "1000"},
                               {"ValueUSD": "2500", "QuantityKg": "1000"}], {"A108"}, REJ,
                 id="A108-two-lines-add-up"),
    pytest.param("LOW_VALUE", [UNDER, {**NOT_COVERED, "ValueUSD": "90000"}], {"A131", "A132"}, OK,
                 id="A108-near-miss-uncovered-line-not-counted"),
    pytest.param(None, [UNDER], {"A171"}, OK, id="regular-under-5000-A171"),
    pytest.param("", [UNDER], {"A171"}, OK, id="empty-kind-is-regular"),
    pytest.param("low_value", [UNDER], {"A101", "A171"}, REJ, id="A101-lowercase"),
    pytest.param("REGULAR", [{}], {"A101"}, REJ, id="A101-regular-spelled-out"),
    pytest.param("SMALL", [{}], {"A101"}, REJ, id="A101-other"),
])
def test_kind(gw: Gateway, kind: str | None, lines: list[dict], expected: set[str],
              status: str) -> None:
    app = application(lines=lines)
    if kind is not None:
        app = with_attrs(app, kind=kind)
    ack = gw.check(submission(app, root=V11))
    assert (codes(ack), ack.app().status) == (expected, status)
    for found in ack.app().findings:
        if found.code == "A108":
            assert (found.field, found.value) == ("value_usd", "5000.00" if lines == [AT]
                                                  else found.value)
        if found.code == "A101":
            assert (found.field, found.value) == ("kind", kind)


def test_a108_names_the_covered_total(gw: Gateway) -> None:
    app = with_attrs(application(lines=[{"ValueUSD": "3000", "QuantityKg": "1000"},
                                        {"ValueUSD": "2000.50", "QuantityKg": "1000"}]),
                     kind="LOW_VALUE")
    (found,) = gw.check(submission(app, root=V11)).app().findings
    assert (found.code, found.field, found.value) == ("A108", "value_usd", "5000.50")


# --- LicenseNumber (guide 5.1a): registered partners -------------------------------------------


@pytest.mark.parametrize(("number", "expected"), [
    # A passing one is LICENSED with its own number and I204 (guide 5.1a).
    pytest.param("C123456789", {"I204"}, id="near-miss-10-chars"),
    pytest.param("7", {"I204"}, id="near-miss-1-char"),
    pytest.param("PENDING", {"A101"}, id="A101-check-placeholder"),
    pytest.param(None, {"A102"}, id="A102-absent"),
    pytest.param("", {"A102"}, id="A102-empty"),
    pytest.param("  ", {"A102"}, id="A102-blank"),
    pytest.param("C1234567890", {"A101"}, id="A101-11-chars"),
    pytest.param("c12345", {"A101"}, id="A101-lowercase"),
    pytest.param("C-1234", {"A101"}, id="A101-dash"),
    pytest.param("C１２３", {"A101"}, id="A101-fullwidth-digits"),
])
def test_registered_license_number(registered: Registered, number: str | None,
                                   expected: set[str]) -> None:
    app = application() if number is None else with_number(application(), number)
    ack = registered.check(submission(app, root=V11))
    assert codes(ack) == expected
    for found in ack.app().findings:
        assert found.field == "license_number"
        # The XSD's finding names the offending value too.
        if found.code == "A101" and number and number.strip():
            assert found.value == number
    if expected == {"I204"}:
        assert ack.app().status == OK


@pytest.mark.parametrize("number", ["C123456789", ""])
def test_a_gateway_partner_sending_a_license_number_is_a101(gw: Gateway, number: str) -> None:
    ack = gw.check(submission(with_number(application(), number), root=V11))
    if number:
        (found,) = ack.app().findings
        assert (found.code, found.field, found.value) == ("A101", "license_number", number)
    else:  # an empty element is no number: nothing to refuse
        assert codes(ack) == set()


def test_registered_cancellation_needs_no_license_number_element(registered: Registered) -> None:
    ack = registered.check(submission(cancellation("PO-9", "C12345"), root=V11))
    assert "A102" not in codes(ack, "PO-9")


# --- corrects (guide 5.1b): a whole application, any token of 1-35 reaches decide ---------------


@pytest.mark.parametrize(("corrects", "expected"), [
    pytest.param("A26000001", set(), id="a-number"),
    pytest.param("not a number", set(), id="malformed-reaches-decide-A106"),
    pytest.param("A" * 35, set(), id="35-chars"),
    pytest.param("A" * 36, {"A101"}, id="A101-36-chars"),
])
def test_corrects_passes_to_decide(gw: Gateway, corrects: str, expected: set[str]) -> None:
    ack = gw.check(submission(with_attrs(application(), corrects=corrects), root=V11))
    assert codes(ack) & {"A101", "A102"} == expected


def test_a_correction_is_checked_by_every_rule(gw: Gateway) -> None:
    app = with_attrs(application(CountryOfOrigin="ZZ", lines=[{"HTS": "76061230"}]),
                     corrects="A26000001")
    ack = gw.check(submission(app, root=V11))
    assert {"A120", "A130"} <= codes(ack)
    assert ack.app().status == REJ


# --- Cancellation: parsed in file order, no value rule, A102 for ref/licenseNumber ---------------


@pytest.mark.parametrize(("cancel", "expected"), [
    pytest.param(cancellation(), set(), id="valid"),
    pytest.param(cancellation(reason=None), set(), id="valid-no-reason"),
    pytest.param(cancellation(number=""), {"A102"}, id="A102-empty-number"),
    pytest.param(cancellation(number="   "), {"A102"}, id="A102-blank-number"),
    pytest.param(cancellation(number=None), {"A102"}, id="A102-no-number"),
    pytest.param(cancellation(ref=None), {"A102"}, id="A102-no-ref"),
    pytest.param(cancellation(ref=""), {"A102"}, id="A102-empty-ref"),
    pytest.param(cancellation(ref="PO 9"), {"A101"}, id="A101-ref-shape"),
    pytest.param(cancellation(number="A" * 36), {"A101"}, id="A101-number-36-chars"),
    pytest.param(cancellation(reason="x" * 201), {"A101"}, id="A101-reason-201"),
    pytest.param(cancellation(reason="x" * 200), set(), id="near-miss-reason-200"),
    pytest.param(cancellation(extra=' kind="LOW_VALUE"'), {"A101"}, id="A101-attribute"),
    pytest.param(cancellation(reason="why</Reason><Product line=\"1\"/><Reason>"), {"A101"},
                 id="A101-product-in-cancellation"),
])
def test_cancellation_rules(gw: Gateway, cancel: str, expected: set[str]) -> None:
    ack = gw.check(submission(cancel, root=V11))
    assert ack.file_codes == set()  # a file of only a cancellation is no F008
    (app,) = ack.apps
    assert app.codes & {"A101", "A102"} == expected
    # No application rule reaches a cancellation: no A102 for its missing fields, no A171.
    assert not app.codes - {"A101", "A102", "A106", "A107", "I203"}


@pytest.mark.parametrize("number", ["A" * 35, "a26000001", "A-26000001"])
def test_a_check_without_history_refuses_to_cancel_a_number_no_license_can_have(
        gw: Gateway, number: str) -> None:
    """Without a ledger a check takes a named license as valid, but a token no license can
    have (a license is 1-10 characters A-Z 0-9) is A106, as a run says: it never becomes the
    ack's LicenseNumber of a CANCELLED request (the ack XSD refused it)."""
    _, raw = gw.check_raw(submission(cancellation("PO-9", number), root=V11), "sub.xml", AS_OF)
    assert ack_schema().validate(etree.fromstring(raw)), ack_schema().error_log
    assert [(a.status, a.codes, a.license) for a in parse_ack(raw).apps] == [
        (REJ, {"A106"}, None)]
    ok = gw.check(submission(cancellation("PO-9", "C1"), root=V11))  # near miss
    assert [(a.status, a.codes, a.license) for a in ok.apps] == [("CANCELLED", {"I203"}, "C1")]


def test_cancellations_are_yielded_in_file_order_with_the_applications(tmp_path: Path) -> None:
    path = tmp_path / "mixed.xml"
    path.write_bytes(submission(cancellation("PO-7", "A26000007", "lost"),
                                with_attrs(application("PO-1"), kind="LOW_VALUE",
                                           corrects="A26000003"),
                                cancellation("PO-8", "A26000008", None),
                                with_number(application("PO-2"), "C1"), root=V11))
    reader = XmlSubmission(path)
    apps = [parsed.app for parsed in reader.applications()]
    assert [(a.ref, a.cancel, a.license_number, a.reason) for a in apps] == [
        ("PO-7", True, "A26000007", "lost"), ("PO-1", False, None, None),
        ("PO-8", True, "A26000008", None), ("PO-2", False, "C1", None)]
    assert [(a.kind, a.corrects) for a in apps] == [
        (None, None), ("LOW_VALUE", "A26000003"), (None, None), (None, None)]
    assert [a.source_line for a in apps] == [6, 7, 26, 27]
    assert all(not a.lines for a in apps if a.cancel)
    assert reader.application_count == 4


def test_a_cancellation_and_an_application_with_one_ref_are_both_a105(gw: Gateway) -> None:
    ack = gw.check(submission(application("PO-1"), cancellation("PO-1"), root=V11))
    assert [(a.ref, "A105" in a.codes, a.status) for a in ack.apps] == [
        ("PO-1", True, REJ), ("PO-1", True, REJ)]


def test_a_cancellation_before_the_header_is_f005(gw: Gateway) -> None:
    head = cancellation() + "  <Header>\n    <SubmissionId>S</SubmissionId>\n  </Header>\n"
    ack = gw.check(submission(application(), head=head, root=V11))
    assert (ack.status, ack.file_codes) == ("REJECTED", {"F005"})


def test_a_file_of_neither_is_still_f008(gw: Gateway) -> None:
    ack = gw.check(submission(root=V11))
    assert (ack.status, ack.file_codes) == ("REJECTED", {"F008"})


# --- hostile cancellations ---------------------------------------------------------------------


def _read(path: Path) -> list:
    return list(XmlSubmission(path).applications())


def test_a_cancellation_with_100k_attributes_is_bounded(gw: Gateway) -> None:
    flood = "".join(f' a{i}="x"' for i in range(100_000))
    ack = gw.check(submission(cancellation(extra=flood), root=V11))
    (app,) = ack.apps
    assert app.status == REJ
    assert len(app.findings) <= MAX_FINDINGS + 1
    assert app.findings[-1].value == str(100_000 - MAX_FINDINGS)


def test_a_huge_reason_is_a101_and_not_kept(tmp_path: Path, gw: Gateway) -> None:
    data = submission(cancellation(reason="why " * 1_000_000), root=V11)  # 4 MB of text
    ack = gw.check(data)
    (app,) = ack.apps
    assert (app.status, app.codes) == (REJ, {"A101"})
    (found,) = app.findings
    assert found.field == "reason"
    path = tmp_path / "huge.xml"
    path.write_bytes(data)
    (parsed,) = _read(path)
    assert len(parsed.app.reason) <= 200


MEMORY = textwrap.dedent("""\
    import resource, sys
    from pathlib import Path
    from gateway.parse.xml_file import XmlSubmission
    path = Path(sys.argv[1])
    n = sum(1 for _ in XmlSubmission(path).applications())
    print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
""")


def _cancellations_file(path: Path, count: int) -> Path:
    unit = cancellation("PO-9", "A26000001", "order cancelled").encode()
    head, tail = submission(root=V11).split(b"</LicenseSubmission>")
    with open(path, "wb") as fh:
        fh.write(head)
        for _ in range(count // 1000):
            fh.write(unit * 1000)
        fh.write(b"</LicenseSubmission>" + tail)
    return path


def test_a_stream_of_cancellations_does_not_grow_memory(tmp_path: Path) -> None:
    peaks = {}
    for count in (10_000, 200_000):
        path = _cancellations_file(tmp_path / f"c{count}.xml", count)
        out = subprocess.run([sys.executable, "-c", MEMORY, str(path)], capture_output=True,
                             check=True, text=True).stdout.split()
        assert int(out[0]) == count
        peaks[count] = int(out[1])
    assert peaks[200_000] - peaks[10_000] < 20, peaks  # MB: 20 times the file, not its memory


def test_rejected_xml_keeps_the_f_code(tmp_path: Path) -> None:
    path = tmp_path / "empty.xml"
    path.write_bytes(submission(root=V11))
    with pytest.raises(RejectedSubmission) as err:
        _read(path)
    assert err.value.finding.code == "F008"
    assert "Cancellation" in err.value.finding.message



# --- property: any mix of applications and cancellations comes out in file order ---------------


@examples(60)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["PO-1", "PO-2", "PO-3"])),
                min_size=1, max_size=12))
def test_any_mix_is_read_in_file_order(tmp_path_factory: pytest.TempPathFactory,
                                       units: list[tuple[bool, str]]) -> None:
    parts = [cancellation(ref, f"A2600000{i % 10}") if cancel else application(ref)
             for i, (cancel, ref) in enumerate(units)]
    path = tmp_path_factory.mktemp("mix") / "mix.xml"
    path.write_bytes(submission(*parts, root=V11))
    apps = [parsed.app for parsed in _read(path)]
    assert [(a.cancel, a.ref) for a in apps] == units
    assert all(bool(a.lines) != a.cancel for a in apps)
