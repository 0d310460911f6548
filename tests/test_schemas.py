"""The published XSDs (schemas/): they load, accept the guide's example, and draw the line the
guide's section 6 asks for: structure and basic types are XSD errors, values that have their own
rule code pass the XSD so that the rule can report the precise code.

Every document is checked with both lxml (what the gateway runs) and xmlschema (what a partner
may run), and the two must agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import xmlschema
from _pytest.mark import ParameterSet
from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
CASES = Path(__file__).resolve().parent / "cases" / "schemas"

# The gateway validates with 1.1 (gateway/schemas.py); 1.0 stays published as it was.
SUBMISSION_XSD = SCHEMAS / "license-submission-1.1.xsd"
SUBMISSION_XSD_10 = SCHEMAS / "license-submission-1.0.xsd"
ACK_XSD = SCHEMAS / "license-ack-1.0.xsd"
SUB_NS = "urn:aimgw:license-submission:1"
ACK_NS = "urn:aimgw:license-ack:1"
XS = "{http://www.w3.org/2001/XMLSchema}"

# The 1.0 file as published (before contract 1.1): never edited again.
PUBLISHED_1_0_SHA256 = "2ab578c429d6219b8e44c302652bee6be58278526abc1bc11f22d2c32ab93491"

GUIDE_EXAMPLE = (CASES / "guide-example.xml").read_text(encoding="utf-8")
ACK_EXAMPLE = (CASES / "ack-example.xml").read_text(encoding="utf-8")
ACK_EXAMPLE_11 = (CASES / "ack-example-1.1.xml").read_text(encoding="utf-8")

# Untrusted-input settings, as the gateway parses: no entities, no network.
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def parse(text: str) -> etree._Element:
    return etree.fromstring(text.encode("utf-8"), PARSER)


@pytest.fixture(scope="module")
def lxml_schemas() -> dict[Path, etree.XMLSchema]:
    return {xsd: etree.XMLSchema(etree.parse(str(xsd)))
            for xsd in (SUBMISSION_XSD, SUBMISSION_XSD_10, ACK_XSD)}


@pytest.fixture(scope="module")
def xmlschema_schemas() -> dict[Path, xmlschema.XMLSchema10]:
    return {xsd: xmlschema.XMLSchema10(str(xsd))
            for xsd in (SUBMISSION_XSD, SUBMISSION_XSD_10, ACK_XSD)}


def verdicts(lxml_schemas, xmlschema_schemas, xsd: Path, element: etree._Element):
    """(lxml verdict, xmlschema verdict, lxml's messages) for one element."""
    lxml_schema = lxml_schemas[xsd]
    ok = lxml_schema.validate(element)
    messages = [error.message for error in lxml_schema.error_log]
    return ok, xmlschema_schemas[xsd].is_valid(element), messages


def mutate(document: str, old: str, new: str) -> str:
    assert document.count(old) == 1, f"mutation target {old!r} must occur exactly once"
    return document.replace(old, new)


def invalid(document: str, old: str, new: str, name: str) -> ParameterSet:
    """A case: ``document`` with ``old`` made ``new``, which the schema must refuse."""
    return pytest.param(mutate(document, old, new), False, id=name)


# ------------------------------------------------------------------------------ loading


@pytest.mark.parametrize("xsd", [SUBMISSION_XSD, SUBMISSION_XSD_10, ACK_XSD],
                         ids=lambda p: p.name)
def test_xsd_loads_in_lxml(xsd: Path) -> None:
    schema = etree.XMLSchema(etree.parse(str(xsd)))
    assert schema.error_log.last_error is None


@pytest.mark.parametrize(
    ("xsd", "namespace"), [(SUBMISSION_XSD, SUB_NS), (SUBMISSION_XSD_10, SUB_NS),
                           (ACK_XSD, ACK_NS)], ids=["submission", "submission-1.0", "ack"]
)
def test_xsd_loads_in_xmlschema_as_xsd_1_0(xsd: Path, namespace: str) -> None:
    schema = xmlschema.XMLSchema10(str(xsd))
    assert schema.target_namespace == namespace
    assert schema.XSD_VERSION == "1.0"


def test_submission_global_elements_are_the_streaming_units(xmlschema_schemas) -> None:
    # The gateway validates Header and each Application (and Cancellation) on their own, so
    # they (and the root) must be global; Product and the leaves must not be, or they could
    # pass as documents.
    names = {name.split("}")[-1] for name in xmlschema_schemas[SUBMISSION_XSD].elements}
    assert names == {"LicenseSubmission", "Header", "Application", "Cancellation"}
    names_10 = {name.split("}")[-1] for name in xmlschema_schemas[SUBMISSION_XSD_10].elements}
    assert names_10 == {"LicenseSubmission", "Header", "Application"}


# ------------------------------------------------------------------------------ submissions


def test_guide_example_is_valid(lxml_schemas, xmlschema_schemas) -> None:
    ok_lxml, ok_xs, messages = verdicts(
        lxml_schemas, xmlschema_schemas, SUBMISSION_XSD, parse(GUIDE_EXAMPLE)
    )
    assert ok_lxml, messages
    assert ok_xs


HEADER_WITH_FILER = f"""\
<Header xmlns="{SUB_NS}">
  <SubmissionId>ACME/2021.07_01-001</SubmissionId>
  <Filer>
    <Name>ACME ALUMINUM IMPORTS LLC</Name>
    <Street>100 Harbor Street</Street>
    <City>Buffalo</City>
    <State>NY</State>
    <PostalCode>14202-1234</PostalCode>
    <ContactName>Jane Roe</ContactName>
    <Phone>+1 716 555 0100</Phone>
    <Email>jane.roe@acme.example</Email>
  </Filer>
</Header>"""

STANDALONE_APPLICATION = f"""\
<Application xmlns="{SUB_NS}" ref="PO-4411">
  <EntryType>FZ</EntryType>
  <EntryNumber>ABC12345675</EntryNumber>
  <Importer>ACME ALUMINUM IMPORTS LLC</Importer>
  <Exporter>NORTHERN ROLLING MILLS INC</Exporter>
  <Manufacturer>UNKNOWN</Manufacturer>
  <CountryOfOrigin>CA</CountryOfOrigin>
  <CountryOfExport>CA</CountryOfExport>
  <ExpectedExportDate>2021-07-10</ExpectedExportDate>
  <ExpectedImportDate>2021-07-15</ExpectedImportDate>
  <PortOfEntry>3004</PortOfEntry>
  <Product line="1">
    <HTS>7606123045</HTS>
    <Description>Aluminium plate, rectangular</Description>
    <SmeltCountryLargest>NOT_APPLICABLE</SmeltCountryLargest>
    <SmeltCountrySecond>NOT_APPLICABLE</SmeltCountrySecond>
    <CastCountry>CA</CastCountry>
    <QuantityKg>24000.125</QuantityKg>
    <ValueUSD>61200.00</ValueUSD>
  </Product>
  <Product line="999">
    <HTS>7604101000</HTS>
    <SmeltCountryLargest>AE</SmeltCountryLargest>
    <SmeltCountrySecond>IN</SmeltCountrySecond>
    <CastCountry>CA</CastCountry>
    <QuantityKg>10</QuantityKg>
    <ValueUSD>25</ValueUSD>
  </Product>
</Application>"""


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        pytest.param(HEADER_WITH_FILER, True, id="header-with-filer"),
        invalid(HEADER_WITH_FILER, "<State>NY</State>", "<State>New York</State>",
                "header-filer-state-not-2-letters"),
        invalid(HEADER_WITH_FILER, "    <Phone>+1 716 555 0100</Phone>\n", "",
                "header-partial-filer"),
        invalid(HEADER_WITH_FILER, "ACME/2021.07_01-001", "X" * 36,
                "header-submission-id-36-chars"),
        pytest.param(STANDALONE_APPLICATION, True, id="application"),
        invalid(STANDALONE_APPLICATION, 'line="999"', 'line="1000"', "application-line-1000"),
    ],
)
def test_header_and_application_validate_standalone(
    lxml_schemas, xmlschema_schemas, fragment: str, expected: bool
) -> None:
    ok_lxml, ok_xs, messages = verdicts(
        lxml_schemas, xmlschema_schemas, SUBMISSION_XSD, parse(fragment)
    )
    assert ok_lxml is expected, messages
    assert ok_xs is expected


def test_application_validates_in_place_inside_its_document(lxml_schemas) -> None:
    # While streaming, the gateway validates the element where it sits, with its parent.
    root = parse(GUIDE_EXAMPLE)
    application = root.find(f"{{{SUB_NS}}}Application")
    good = lxml_schemas[SUBMISSION_XSD].validate(application)
    assert good, list(lxml_schemas[SUBMISSION_XSD].error_log)
    application.find(f"{{{SUB_NS}}}Product/{{{SUB_NS}}}QuantityKg").text = "abc"
    assert not lxml_schemas[SUBMISSION_XSD].validate(application)


# (old, new) edits of the guide example whose value a rule with its own code must judge:
# the XSD lets them through.
LENIENT = [
    pytest.param("<HTS>7606123045</HTS>", "<HTS>76061230</HTS>", id="hts-8-digits-A130"),
    pytest.param("<HTS>7606123045</HTS>", "<HTS>7606.12.3045</HTS>", id="hts-dotted-A130"),
    pytest.param("<EntryType>01</EntryType>", "<EntryType>99</EntryType>", id="entry-type-99-A110"),
    pytest.param(
        "<EntryType>01</EntryType>", "<EntryType></EntryType>", id="entry-type-blank-A102"
    ),
    pytest.param("<CastCountry>CA</CastCountry>", "<CastCountry>UNKNOWN</CastCountry>",
                 id="cast-country-unknown-A124"),
    pytest.param("<CountryOfOrigin>CA</CountryOfOrigin>",
                 "<CountryOfOrigin>Canada</CountryOfOrigin>", id="country-name-A120"),
    pytest.param("<SmeltCountrySecond>US</SmeltCountrySecond>",
                 "<SmeltCountrySecond>NOT_APPLICABLE</SmeltCountrySecond>",
                 id="smelt-second-not-applicable"),
    pytest.param(
        "<QuantityKg>24000</QuantityKg>", "<QuantityKg>-5</QuantityKg>", id="quantity-negative-A140"
    ),
    pytest.param("<QuantityKg>24000</QuantityKg>", "<QuantityKg>24000.12345</QuantityKg>",
                 id="quantity-5-decimals-A140"),
    pytest.param("<ValueUSD>61200.00</ValueUSD>", "<ValueUSD>0</ValueUSD>", id="value-zero-A141"),
    pytest.param(
        "<PortOfEntry>3004</PortOfEntry>", "<PortOfEntry>300</PortOfEntry>", id="port-3-digits-A160"
    ),
    pytest.param("<EntryType>01</EntryType>",
                 "<EntryType>01</EntryType><EntryNumber>ABC12</EntryNumber>",
                 id="entry-number-5-chars-A191"),
    pytest.param(
        "<HTS>7606123045</HTS>", "<HTS>7606123045</HTS><Description/>", id="description-empty"
    ),
    pytest.param(
        '<Application ref="PO-4411">', '<Application ref=" PO-4411 ">', id="ref-surrounding-spaces"
    ),
    pytest.param("    <Created>2021-07-01T09:30:00-04:00</Created>\n", "", id="no-created"),
    pytest.param(
        GUIDE_EXAMPLE[GUIDE_EXAMPLE.index("  <Application") : GUIDE_EXAMPLE.index("</LicenseSub")],
        "",
        id="no-application-F008",
    ),
]

# Structure and basic types: XSD violations.
STRICT = [
    pytest.param(
        "<QuantityKg>24000</QuantityKg>", "<QuantityKg>abc</QuantityKg>", id="quantity-not-decimal"
    ),
    pytest.param(
        "<ValueUSD>61200.00</ValueUSD>", "<ValueUSD>6.12e4</ValueUSD>", id="value-exponent"
    ),
    pytest.param("<ExpectedImportDate>2021-07-15</ExpectedImportDate>",
                 "<ExpectedImportDate>2021-02-30</ExpectedImportDate>", id="import-date-feb-30"),
    pytest.param("<ExpectedImportDate>2021-07-15</ExpectedImportDate>",
                 "<ExpectedImportDate>07/15/2021</ExpectedImportDate>", id="import-date-us-form"),
    pytest.param("<ExpectedExportDate>2021-07-10</ExpectedExportDate>",
                 "<ExpectedExportDate>2021-07-10Z</ExpectedExportDate>",
                 id="export-date-with-zone"),
    pytest.param("<PortOfEntry>3004</PortOfEntry>",
                 "<PortOfEntry>3004</PortOfEntry><Color>red</Color>", id="unknown-element"),
    pytest.param("<EntryType>01</EntryType>\n    <Importer>ACME ALUMINUM IMPORTS LLC</Importer>",
                 "<Importer>ACME ALUMINUM IMPORTS LLC</Importer>\n    <EntryType>01</EntryType>",
                 id="wrong-order"),
    pytest.param('<Product line="1">', '<Product line="0">', id="line-0"),
    pytest.param('<Product line="1">', '<Product line="1a">', id="line-not-integer"),
    pytest.param('<Application ref="PO-4411">', '<Application ref="PO 4411">', id="ref-with-space"),
    pytest.param(
        '<Application ref="PO-4411">', '<Application ref="PO#4411">', id="ref-bad-character"
    ),
    pytest.param("<Importer>ACME ALUMINUM IMPORTS LLC</Importer>",
                 f"<Importer>{'A' * 101}</Importer>", id="importer-101-chars"),
    pytest.param(
        GUIDE_EXAMPLE[GUIDE_EXAMPLE.index("    <Product") : GUIDE_EXAMPLE.index("  </Application")],
        "",
        id="no-product",
    ),
    pytest.param('schemaVersion="1.0"', 'schemaVersion="1.2"', id="schema-version-1.2"),
    pytest.param('schemaVersion="1.0"', 'schemaVersion="2.0"', id="schema-version-2.0"),
    pytest.param(
        f'xmlns="{SUB_NS}"', 'xmlns="urn:aimgw:license-submission:2"', id="wrong-namespace"
    ),
]


BOTH_VERSIONS = pytest.mark.parametrize("xsd", [SUBMISSION_XSD, SUBMISSION_XSD_10],
                                        ids=["xsd-1.1", "xsd-1.0"])


@BOTH_VERSIONS
@pytest.mark.parametrize(("old", "new"), LENIENT)
def test_values_with_their_own_rule_code_pass_the_xsd(
    lxml_schemas, xmlschema_schemas, old: str, new: str, xsd: Path
) -> None:
    # Every 1.0 document the 1.0 schema accepts, the 1.1 schema accepts too (compatibility).
    document = parse(mutate(GUIDE_EXAMPLE, old, new))
    ok_lxml, ok_xs, messages = verdicts(lxml_schemas, xmlschema_schemas, xsd, document)
    assert ok_lxml, messages
    assert ok_xs


@BOTH_VERSIONS
@pytest.mark.parametrize(("old", "new"), STRICT)
def test_structure_and_basic_types_fail_the_xsd(
    lxml_schemas, xmlschema_schemas, old: str, new: str, xsd: Path
) -> None:
    document = parse(mutate(GUIDE_EXAMPLE, old, new))
    ok_lxml, ok_xs, _ = verdicts(lxml_schemas, xmlschema_schemas, xsd, document)
    assert not ok_lxml
    assert not ok_xs


# Contract 1.1 (guide 3, 5.1a, 5.1b): what the 1.1 schema adds. (old, new, valid under 1.1);
# none of the additions is valid under the published 1.0 schema, except where noted.
CANCELLATION = ('  <Cancellation ref="PO-4411" licenseNumber="A21000001">'
                "<Reason>order cancelled</Reason></Cancellation>\n")
_APP_OPEN = '<Application ref="PO-4411">'
_APP_END = "  </Application>\n"
_PORT = "<PortOfEntry>3004</PortOfEntry>"
_V11 = 'schemaVersion="1.1"'
CONTRACT_11 = [
    pytest.param('schemaVersion="1.0"', _V11, True, id="schema-version-1.1"),
    pytest.param(_APP_OPEN, '<Application ref="PO-4411" kind="LOW_VALUE">', True,
                 id="kind-low-value"),
    # kind's values are the rule's (A101 with its message), corrects' are decide's (A106).
    pytest.param(_APP_OPEN, '<Application ref="PO-4411" kind="SMALL">', True,
                 id="kind-other-passes-for-the-rule"),
    pytest.param(_APP_OPEN, '<Application ref="PO-4411" corrects="A21000001">', True,
                 id="corrects"),
    pytest.param(_APP_OPEN, '<Application ref="PO-4411" corrects="not a number">', True,
                 id="corrects-malformed-passes-for-A106"),
    pytest.param(_APP_OPEN, f'<Application ref="PO-4411" corrects="{"A" * 36}">', False,
                 id="corrects-36-chars"),
    pytest.param(_PORT, _PORT + "<LicenseNumber>C123456789</LicenseNumber>", True,
                 id="license-number"),
    pytest.param(_PORT, _PORT + "<LicenseNumber/>", True, id="license-number-blank-A102"),
    pytest.param(_PORT, _PORT + "<LicenseNumber>c1234</LicenseNumber>", False,
                 id="license-number-lowercase"),
    pytest.param(_PORT, _PORT + "<LicenseNumber>C1234567890</LicenseNumber>", False,
                 id="license-number-11-chars"),
    pytest.param(_PORT, _PORT + "<LicenseNumber>C-12</LicenseNumber>", False,
                 id="license-number-dash"),
    pytest.param("<EntryType>01</EntryType>", "<EntryType>01</EntryType>"
                 "<LicenseNumber>C1</LicenseNumber>", False, id="license-number-misplaced"),
    pytest.param(_APP_END, _APP_END + CANCELLATION, True, id="cancellation-after"),
    pytest.param("  " + _APP_OPEN, CANCELLATION + "  " + _APP_OPEN, True,
                 id="cancellation-before"),
    pytest.param(_APP_END, _APP_END + CANCELLATION.replace("<Reason>order cancelled</Reason>",
                                                          ""), True, id="cancellation-no-reason"),
    pytest.param(_APP_END, _APP_END + CANCELLATION.replace('licenseNumber="A21000001"',
                                                          'licenseNumber=""'), True,
                 id="cancellation-blank-number-A102"),
    pytest.param(_APP_END, _APP_END + CANCELLATION.replace(' licenseNumber="A21000001"', ""),
                 False, id="cancellation-no-number"),
    pytest.param(_APP_END, _APP_END + CANCELLATION.replace('ref="PO-4411" ', ""), False,
                 id="cancellation-no-ref"),
    pytest.param(_APP_END, _APP_END + CANCELLATION.replace("order cancelled", "x" * 201), False,
                 id="cancellation-reason-201-chars"),
    pytest.param(_APP_END, _APP_END + CANCELLATION.replace("<Reason>", "<Note/><Reason>"), False,
                 id="cancellation-unknown-child"),
    pytest.param(_APP_END, _APP_END + CANCELLATION.replace('ref="PO-4411"',
                                                          'ref="PO-4411" kind="LOW_VALUE"'),
                 False, id="cancellation-unknown-attribute"),
    pytest.param("  <Header>", CANCELLATION + "  <Header>", False, id="cancellation-before-header"),
]


@pytest.mark.parametrize(("old", "new", "valid"), CONTRACT_11)
def test_the_1_1_additions(lxml_schemas, xmlschema_schemas, old: str, new: str,
                           valid: bool) -> None:
    document = parse(mutate(GUIDE_EXAMPLE, old, new))
    ok_lxml, ok_xs, messages = verdicts(lxml_schemas, xmlschema_schemas, SUBMISSION_XSD, document)
    assert ok_lxml is valid, messages
    assert ok_xs is valid
    # The published 1.0 schema knows none of them: it stays as it was.
    ok_10, ok_10_xs, _ = verdicts(lxml_schemas, xmlschema_schemas, SUBMISSION_XSD_10, document)
    assert not ok_10 and not ok_10_xs


def test_a_cancellation_validates_standalone(lxml_schemas, xmlschema_schemas) -> None:
    fragment = parse(CANCELLATION.strip().replace("<Cancellation ",
                                                  f'<Cancellation xmlns="{SUB_NS}" '))
    ok_lxml, ok_xs, messages = verdicts(lxml_schemas, xmlschema_schemas, SUBMISSION_XSD, fragment)
    assert ok_lxml, messages
    assert ok_xs


def test_the_published_1_0_schema_is_unchanged() -> None:
    # A partner who validates against the 1.0 file keeps the file it downloaded.
    import hashlib

    digest = hashlib.sha256(SUBMISSION_XSD_10.read_bytes()).hexdigest()
    assert digest == PUBLISHED_1_0_SHA256


# ------------------------------------------------------------------------------ documentation


def declarations(xsd: Path) -> list[tuple[str, etree._Element]]:
    """Every xs:element and xs:attribute of the file, named by its path of declared names."""
    found = []
    for node in etree.parse(str(xsd)).iter(f"{XS}element", f"{XS}attribute"):
        names = [
            ("@" if a.tag == f"{XS}attribute" else "") + (a.get("name") or a.get("ref") or "?")
            for a in (*reversed(list(node.iterancestors())), node)
            if a.tag in (f"{XS}element", f"{XS}attribute", f"{XS}complexType")
            and (a.get("name") or a.get("ref"))
        ]
        found.append(("/".join(names), node))
    return found


@pytest.mark.parametrize(
    ("xsd", "must_include"),
    [
        pytest.param(SUBMISSION_XSD, { "LicenseSubmission/@schemaVersion",
                     "LicenseSubmission/Header", "Header", "Application/@ref", "Filer/Email",
                     "Product/HTS", "Product/@line", "Application/@kind", "Application/@corrects",
                     "Application/LicenseNumber", "Cancellation/@licenseNumber",
                     "Cancellation/Reason", "LicenseSubmission/Cancellation"}, id="submission"),
        pytest.param(SUBMISSION_XSD_10, { "LicenseSubmission/@schemaVersion",
                     "Application/@ref", "Product/@line"}, id="submission-1.0"),
        pytest.param(ACK_XSD, { "LicenseAck/@schemaVersion", "LicenseAck/Counts",
                     "Counts/Rejected", "Application/LicenseNumber", "Product/@covered",
                     "Finding/@sourceLine", }, id="ack"),
    ],
)
def test_every_declaration_is_documented(xsd: Path, must_include: set[str]) -> None:
    found = declarations(xsd)
    assert must_include <= {path for path, _ in found}, "the walk missed declarations"
    undocumented = [
        path
        for path, node in found
        if not node.findtext(f"{XS}annotation/{XS}documentation", "").strip()
    ]
    assert undocumented == []


# ------------------------------------------------------------------------------ acknowledgments

REJECTED_FILE_ACK = f"""\
<LicenseAck xmlns="{ACK_NS}" schemaVersion="1.0">
  <FileName>broken.xml</FileName>
  <FileSha256>{"0" * 64}</FileSha256>
  <ReceivedAt>2021-07-01T09:31:02-04:00</ReceivedAt>
  <ProcessedAt>2021-07-01T09:31:02-04:00</ProcessedAt>
  <RuleSetDate>2021-07-01</RuleSetDate>
  <Status>REJECTED</Status>
  <Counts>
    <Applications>0</Applications>
    <Licensed>0</Licensed>
    <NotRequired>0</NotRequired>
    <Rejected>0</Rejected>
  </Counts>
  <Finding code="F001" severity="ERROR" sourceLine="3">Not well-formed XML.</Finding>
</LicenseAck>"""


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(ACK_EXAMPLE, True, id="sample"),
        pytest.param(REJECTED_FILE_ACK, True, id="file-rejected-before-header"),
        pytest.param(mutate(ACK_EXAMPLE, "A21000001", "PENDING"), True, id="dry-run-pending"),
        # Contract 1.1 widened the number to what the 52 record holds (guide 5.1a).
        pytest.param(mutate(ACK_EXAMPLE, "A21000001", "B123"), True, id="registered-B123"),
        invalid(ACK_EXAMPLE, "A21000001", "b123", "license-number-lower-case"),
        invalid(ACK_EXAMPLE, "A21000001", "A2100000123", "license-number-11-chars"),
        invalid(ACK_EXAMPLE, "A21000001", "A21-00001", "license-number-hyphen"),
        # Contract 1.1 (guide 5.1b): a correction and a cancellation, the Cancelled count.
        pytest.param(ACK_EXAMPLE_11, True, id="lifecycle-1.1"),
        pytest.param(mutate(ACK_EXAMPLE_11, 'schemaVersion="1.1"', 'schemaVersion="1.0"'),
                     True, id="lifecycle-says-1.0"),
        pytest.param(mutate(ACK_EXAMPLE_11, "    <Cancelled>1</Cancelled>\n", ""), True,
                     id="cancelled-count-optional"),
        invalid(ACK_EXAMPLE_11, 'schemaVersion="1.1"', 'schemaVersion="1.2"', "version-1.2"),
        invalid(ACK_EXAMPLE_11, 'status="CANCELLED"', 'status="CANCELED"', "cancelled-spelling"),
        invalid(ACK_EXAMPLE_11, "<Cancelled>1</Cancelled>", "<Cancelled>-1</Cancelled>",
                "negative-cancelled"),
        invalid(ACK_EXAMPLE_11, "    <Rejected>0</Rejected>\n    <Cancelled>1</Cancelled>",
                "    <Cancelled>1</Cancelled>\n    <Rejected>0</Rejected>",
                "cancelled-before-rejected"),
        invalid(ACK_EXAMPLE, "<Status>DUPLICATE", "<Status>OK", "unknown-file-status"),
        invalid(ACK_EXAMPLE, 'status="REJECTED"', 'status="PARTIAL"', "file-status-on-application"),
        invalid(ACK_EXAMPLE, "9f86d081", "9F86D081", "sha256-uppercase"),
        invalid(ACK_EXAMPLE, 'code="A130"', 'code="X130"', "unknown-code-letter"),
        invalid(ACK_EXAMPLE, 'severity="INFO"', 'severity="NOTICE"', "unknown-severity"),
        invalid(ACK_EXAMPLE, 'sourceLine="37"', 'sourceLine="0"', "source-line-0"),
        invalid(ACK_EXAMPLE, 'covered="true"/>\n    <Finding', "/>\n    <Finding",
                "product-without-covered"),
        invalid(ACK_EXAMPLE, "<Rejected>1</Rejected>", "<Rejected>-1</Rejected>", "negative-count"),
    ],
)
def test_ack_documents(lxml_schemas, xmlschema_schemas, document: str, expected: bool) -> None:
    ok_lxml, ok_xs, messages = verdicts(lxml_schemas, xmlschema_schemas, ACK_XSD, parse(document))
    assert ok_lxml is expected, messages
    assert ok_xs is expected


def test_the_submission_schema_has_no_wildcard() -> None:
    """The reader checks an application for XInclude elements and cuts unlisted attributes only
    when the XSD rejects it (parse.xml_file): that holds while the schema lets nothing foreign
    pass, no xs:any and no xs:anyAttribute. Adding one must move those checks back first."""
    tree = etree.parse(str(SUBMISSION_XSD))
    assert tree.find(f".//{XS}any") is None
    assert tree.find(f".//{XS}anyAttribute") is None
