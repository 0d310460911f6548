"""Rule codes of the implementation guide (section 6) and the ``Finding`` record.

Validators return findings; only the caller decides what is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "ERROR"
    WARNING = "WARNING"
    INFO = "INFO"


# code -> (severity, one-line rule text). The text is the guide's, for docs and `codes` listings.
CODES: dict[str, tuple[Severity, str]] = {
    "F001": (Severity.ERROR, "XML not well-formed, or CSV not parseable"),
    "F002": (Severity.ERROR, "neither XML nor CSV, by content"),
    "F003": (Severity.ERROR, "file larger than the configured limit"),
    "F004": (Severity.ERROR, "DOCTYPE, entity declaration, external reference or XInclude in XML"),
    "F005": (Severity.ERROR, "envelope invalid: root, namespace, version, header or CSV columns"),
    "F006": (Severity.INFO, "duplicate file: same SHA-256 already processed for this partner"),
    "F007": (Severity.ERROR, "SubmissionId reused by this partner with different content"),
    "F008": (Severity.ERROR, "no application in the file"),
    "F009": (Severity.ERROR, "text not valid in the file's encoding"),
    "A101": (Severity.ERROR, "XSD violation in this application, or a CSV cell of the wrong type"),
    "A102": (Severity.ERROR, "required field missing or blank"),
    "A103": (Severity.ERROR, "CSV rows of one application disagree on an application field"),
    "A104": (Severity.ERROR, "ref already licensed for this partner with different content"),
    "A105": (Severity.ERROR, "the same ref on two or more applications of one file"),
    "A106": (Severity.ERROR, "a correction or cancellation names a license that does not exist, "
             "is another partner's or another ref's; or a registered license number is held "
             "by another application"),
    "A107": (Severity.ERROR, "a correction or cancellation names a license that is SUPERSEDED "
             "or EXPIRED (or a correction names a CANCELLED one)"),
    "A108": (Severity.ERROR, "low-value license asked for, but the covered value is $5,000 or "
             "more"),
    "A109": (Severity.ERROR, "the partner's daily license quota is reached: send the "
             "application again the next day"),
    "A110": (Severity.ERROR, "unknown entry type"),
    "A111": (Severity.INFO, "entry type 06 (FTZ consumption entry): no license here, CBP "
             "rejects code 28 on type 06 (CSMS #48923327); license the FTZ admission (FZ)"),
    "A120": (Severity.ERROR, "not an ISO 3166-1 alpha-2 country"),
    "A121": (Severity.ERROR, "smelt country UNKNOWN on an application processed after 2022-06-28"),
    "A122": (Severity.ERROR, "largest smelt NOT_APPLICABLE but second-largest is not"),
    "A123": (Severity.ERROR, "second-largest smelt equals largest"),
    "A124": (Severity.ERROR, "cast country missing, UNKNOWN or NOT_APPLICABLE"),
    "A125": (Severity.ERROR, "largest smelt UNKNOWN but second-largest is a country"),
    "A126": (Severity.WARNING, "a smelt or cast country is RU (from 2023-03-10: 200% Section "
             "232 duty, Proclamation 10522)"),
    "A127": (Severity.WARNING, "country of origin MX and a smelt or cast country in CN, RU, BY, "
             "IR (from 2024-07-10: Section 232 duty, Proclamation 10782)"),
    "A128": (Severity.WARNING, "smelt/cast detail has no grounded form in the ACE 54 record: "
             "none written for the line, the filer completes it by hand"),
    "A130": (Severity.ERROR, "HTS number not 10 digits"),
    "A131": (Severity.INFO, "HTS not covered by AIM on the processing date"),
    "A132": (Severity.WARNING, "HTS in an AIM heading but not on the covered list"),
    "A133": (Severity.WARNING, "HTS not on the covered list in force, but its 8-digit "
             "subheading is: covered and licensed (contract 1.1)"),
    "A140": (Severity.ERROR, "quantity not > 0, or more than 3 decimals"),
    "A141": (Severity.ERROR, "value not > 0, or more than 2 decimals"),
    "A150": (Severity.ERROR, "expected export date after expected import date"),
    "A151": (Severity.ERROR, "expected import date more than 60 days after the processing date"),
    "A152": (Severity.WARNING, "expected import date more than 15 days before the processing date"),
    "A153": (Severity.INFO, "expected import date before 2021-06-28 (program start)"),
    "A160": (Severity.ERROR, "port of entry not a 4-digit code"),
    "A170": (Severity.INFO, "exempt entry type: no license needed"),
    "A171": (Severity.INFO, "covered value under $5,000: a low-value license could be used"),
    "A180": (Severity.WARNING, "unit value outside the plausible range"),
    "A190": (Severity.ERROR, "line number repeated, or more than 999 lines"),
    "A191": (Severity.ERROR, "entry number not 11 characters of the right shape"),
    "I201": (Severity.INFO, "identical request licensed before: the existing license is returned"),
    "I202": (Severity.INFO, "correction: a new license replaces the named one, which is now "
             "SUPERSEDED"),
    "I203": (Severity.INFO, "the named license is CANCELLED"),
    "I204": (Severity.INFO, "registered license: the number was issued by Commerce's AIM system "
             "and is recorded as sent"),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule outcome, with where it applies and how to fix it.

    ``line`` is the product line number inside the application; ``source_line`` is the
    provenance in the file (XML line or CSV row number).
    """

    code: str
    severity: Severity
    message: str
    ref: str | None = None
    line: int | None = None
    field: str | None = None
    value: str | None = None
    source_line: int | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown rule code {self.code!r}")

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def finding(
    code: str,
    message: str,
    *,
    ref: str | None = None,
    line: int | None = None,
    field: str | None = None,
    value: str | None = None,
    source_line: int | None = None,
) -> Finding:
    """Build a finding with the severity the guide fixes for ``code``."""
    return Finding(code, CODES[code][0], message, ref, line, field, value, source_line)


# Findings kept per application (issue 10, item 3): a flood of errors in one application (a
# million stray attributes, a thousand bad lines) must not become a flood of ack entries and
# ledger rows. The first ``MAX_FINDINGS`` are listed; the rest become one finding that counts
# them. One place for the bound: the XML and CSV readers apply it to each application.
MAX_FINDINGS = 100
_SEVERITY_RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def bounded(findings: list[Finding], *, ref: str | None = None, unlisted: int = 0,
            unlisted_code: str = "A101", source_line: int | None = None) -> list[Finding]:
    """``findings`` cut to the first ``MAX_FINDINGS``, plus one finding that counts the rest.

    ``unlisted`` counts findings never built (``unlisted_code``: attributes cut by the XML
    reader). The counting finding carries the code the suppressed findings share; if they do
    not share one, A101 when one of them is an error, else the most severe of their codes, so
    that the bound never changes an application's status.
    """
    rest = findings[MAX_FINDINGS:]
    more = len(rest) + unlisted
    if more <= 0:
        return findings
    codes = {f.code for f in rest} | ({unlisted_code} if unlisted else set())
    count = finding(
        _count_code(codes), f"{_MORE}{more:,} more findings of this application were not "
        f"listed (at most {MAX_FINDINGS} are): fix those above and send it again.", ref=ref,
        value=str(more), source_line=source_line)
    return [*findings[:MAX_FINDINGS], count]


_MORE = "... and "  # how a finding that counts unlisted ones begins (never a partner's text)


def _count_code(codes: set[str]) -> str:
    """The code of a finding that counts findings of ``codes``: the one they share; if they
    do not share one, A101 when one of them is an error, else the most severe of them, so
    that a bound never changes a status."""
    if len(codes) == 1:
        return next(iter(codes))
    if any(CODES[c][0] is Severity.ERROR for c in codes):
        return "A101"
    return min(sorted(codes), key=lambda c: _SEVERITY_RANK[CODES[c][0]])


def _counted(f: Finding) -> int:
    """How many findings ``f`` stands for: a counting finding of ``bounded`` its count."""
    if f.message.startswith(_MORE) and f.value is not None and f.value.isdigit():
        return int(f.value)
    return 1


# Findings listed per FILE (red-team finding 6 of issue 10): 4,000 applications at the bound
# of 100 each made an 81 MB ack and 69 MB of ledger rows from 19 MB of input. A file's first
# ``MAX_FILE_FINDINGS`` findings are listed in full: 100 applications at the bound of 100, more
# than a partner fixes in one go, about 2.5 MB of ack and of ledger. After that each
# application keeps the one finding that decides its status (``deciding``), so every partner
# still learns what to fix in each application, and the rest are counted in one file-level
# finding (``FileBound.finding``). The ack then grows with the applications and their lines,
# as the input does, never with the findings.
MAX_FILE_FINDINGS = 10_000


def deciding(findings: list[Finding]) -> Finding | None:
    """The finding that explains an application's status: its first error (REJECTED), else
    its I201 (a license returned), else its first finding."""
    return next((f for f in findings if f.is_error), None) or next(
        (f for f in findings if f.code == "I201"), None) or (findings[0] if findings else None)


@dataclass(slots=True)
class FileBound:
    """Applies ``MAX_FILE_FINDINGS`` to the applications of one file, in file order."""

    listed: int = 0
    unlisted: int = 0
    codes: set[str] = field(default_factory=set)

    def limit(self, findings: list[Finding]) -> list[Finding]:
        """``findings`` of the next application as the ack and the ledger list them."""
        room = MAX_FILE_FINDINGS - self.listed
        if len(findings) <= room:
            self.listed += len(findings)
            return findings
        kept = findings[:room] if room > 0 else []
        main = deciding(findings)
        if main is not None and all(f is not main for f in kept):
            kept.append(main)
        ids = {id(f) for f in kept}
        for f in findings:
            if id(f) not in ids:
                self.unlisted += _counted(f)
                self.codes.add(f.code)
        self.listed += len(kept)
        return kept

    def finding(self) -> Finding | None:
        """The file-level finding that counts what was not listed; None when all were."""
        if not self.unlisted:
            return None
        return finding(
            _count_code(self.codes), f"{_MORE}{self.unlisted:,} more findings of this file's "
            f"applications were not listed: an acknowledgment lists the first "
            f"{MAX_FILE_FINDINGS:,} findings of a file, then the finding that decides each "
            "further application's status. Fix those and send the applications again.",
            value=str(self.unlisted))
