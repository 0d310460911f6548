"""Load ``config.toml`` into frozen, typed dataclasses, checked once at start (STYLE 9).

Each section is a dataclass; each field holds its default (the only place it lives), a one-line
doc and an optional check, so a new setting is one line. The generic reader of
``gateway.settings`` walks the TOML against the dataclasses and raises one ``ConfigError`` with
every problem, "did you mean" included. A partner's source keys (a local folder or an SFTP
server) are written in its own table and read into ``LocalSource`` or ``SftpSource`` by ``kind``.
Relative paths are relative to the config file's folder (guide section 8), never to the cwd.

Secrets (key passphrases, passwords) are never read from here, as config.toml may sit in a
repository: they will come from the environment (next issue). No field below holds one.
"""

# ruff: noqa: RUF009 -- setting()/section()/derived()/variants() return dataclasses.field(),
# which RUF009 cannot see; they exist so that each key stays one declarative line.
from __future__ import annotations

import dataclasses
import fnmatch
import os
import typing
import zoneinfo
from collections.abc import Iterator
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import ClassVar, Literal

from gateway.config_service import (
    EMAIL,
    AlertSettings,
    MailSettings,
    MetricsSettings,
    RetentionSettings,
    WebSettings,
)
from gateway.errors import FatalError, UsageError
from gateway.model import Filer
from gateway.settings import (
    NON_EMPTY,
    NON_NEGATIVE,
    POSITIVE,
    Check,
    derived,
    describe_file,
    matches,
    read_file,
    section,
    setting,
    variants,
)
from gateway.textsafe import suggest
from gateway.validate import rules

DEFAULT_CONFIG_NAME = "config.toml"
CONFIG_ENV_VAR = "AIMGW_CONFIG"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
PartnerKind = Literal["local", "sftp"]
Disposition = Literal["keep", "move", "delete"]
RemoteDisposition = Literal["move", "delete"]
Completion = Literal["stable", "done_file", "rename"]
# Who issues a partner's license numbers (guide 5.1a; model.LicenseSource names the values).
LicenseSourceName = Literal["gateway", "commerce"]


# --- Checks ----------------------------------------------------------------------------------


def _is_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a dir
        return False
    return True


TIME_ZONE = Check("an IANA time zone name such as 'America/New_York'", _is_time_zone)
SITE_CODE = matches(r"[A-Z0-9]{4}", "exactly 4 characters A-Z or 0-9")
SENDER_ID = matches(r"[A-Z0-9]{3}", "exactly 3 characters A-Z or 0-9")
FILER_CODE = matches(r"[A-Z0-9]{3}", "exactly 3 characters A-Z or 0-9")
# The id names folders (outbox/<id>/) and ledger rows, so it is kept to a safe file name.
PARTNER_ID = matches(r"[a-z0-9][a-z0-9_-]{0,31}", "1-32 characters a-z, 0-9, '_' or '-'")
US_STATE = matches(r"([A-Z]{2})?", "a two-letter state code such as 'NY', or empty")
ZIP_CODE = matches(r"([0-9]{5}(-[0-9]{4})?)?",
                   "a ZIP code such as '10001' or '10001-1234', or empty")


# --- Sections --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewaySettings:
    """Folders, time zone and limits of the whole gateway."""

    data_dir: Path = setting(Path("data"), "holds ledger.sqlite, work/, archive/ and failed/")
    outbox_dir: Path = setting(Path("outbox"), "acknowledgments per partner, and ace/ for CBP")
    timezone: str = setting("America/New_York", "processing dates are in this zone", TIME_ZONE)
    license_validity_days: int = setting(75, "valid from issue date to issue + this", POSITIVE)
    max_file_bytes: int = setting(209_715_200, "larger files are rejected (F003)", POSITIVE)
    poll_interval_seconds: int = setting(60, "serve: seconds between polls of a partner", POSITIVE)
    ledger: str | None = setting(
        None, 'database: "" = SQLite file data_dir/ledger.sqlite; "postgresql://..." = shared '
        'by several workers')
    lease_seconds: int = setting(
        300, "a worker's hold on a partner; renewed while it works, taken over after", POSITIVE)
    read_process_min_bytes: int = setting(
        4_194_304, "files this large are read in a second process beside the decisions "
        "(a second CPU); 0 = never", NON_NEGATIVE)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


@dataclass(frozen=True)
class RuleSettings:
    """Limits of the AIM rules (guide section 6)."""

    unit_value_min_usd_per_mt: float = setting(
        float(rules.DEFAULT_UNIT_VALUE_MIN), "A180: lowest plausible unit value", POSITIVE)
    unit_value_max_usd_per_mt: float = setting(
        float(rules.DEFAULT_UNIT_VALUE_MAX), "A180: highest plausible", POSITIVE)
    low_value_usd: float = setting(
        float(rules.DEFAULT_LOW_VALUE_USD), "A171: covered value below this is low", NON_NEGATIVE)
    max_days_before_import: int = setting(
        rules.DEFAULT_MAX_DAYS_BEFORE_IMPORT, "A151: import at most this far ahead", NON_NEGATIVE)
    max_days_after_import: int = setting(
        rules.DEFAULT_MAX_DAYS_AFTER_IMPORT, "A152: import at most this long ago", NON_NEGATIVE)

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.unit_value_min_usd_per_mt >= self.unit_value_max_usd_per_mt:
            yield "unit_value_min_usd_per_mt", "must be less than unit_value_max_usd_per_mt"


@dataclass(frozen=True)
class AceSettings:
    """Identifiers written into the ACE file (ACE-RECORDS.md)."""

    site_code: str = setting("AIMG", "A record positions 2-5", SITE_CODE)
    sender_id: str = setting("AGW", "A record positions 6-8", SENDER_ID)
    filer_code: str = setting("ZZZ", "filer code for partners without one", FILER_CODE)


@dataclass(frozen=True)
class LogSettings:
    """The processing log: JSON lines, rotated by size."""

    # None follows data_dir (issue 14): a data_dir moved elsewhere takes its log with it.
    events_file: Path | None = setting(
        None, 'one JSON event a line; "" = events.jsonl in gateway.data_dir')
    max_bytes: int = setting(10_485_760, "rotate the events file at this size", POSITIVE)
    backups: int = setting(5, "rotated files kept", NON_NEGATIVE)
    level: LogLevel = setting("INFO", "least severe level written")


@dataclass(frozen=True)
class MappingRule:
    """One of a partner's mappings, for the files whose name matches its pattern."""

    pattern: str = setting(MISSING, 'file names it reads (fnmatch, e.g. "*.txt")', NON_EMPTY)
    file: Path = setting(MISSING, "its CSV (.toml) or XSLT (.xsl) mapping file")


@dataclass(frozen=True)
class FilerSettings:
    """The applicant, 19 CFR 361.103(c)(1)(i)-(ii): an XML header's Filer replaces it; the one
    in force is recorded with each file (`aim-gateway show`)."""

    name: str = setting("", "company name")
    street: str = setting("", "U.S. street address")
    city: str = setting("", "city")
    state: str = setting("", "state", US_STATE)
    postal_code: str = setting("", "ZIP code", ZIP_CODE)
    contact_name: str = setting("", "contact person")
    phone: str = setting("", "contact phone")
    email: str = setting("", "contact e-mail", EMAIL)

    def to_filer(self) -> Filer:
        return Filer(**dataclasses.asdict(self))


@dataclass(frozen=True)
class LocalSource:
    """A partner whose files arrive in a folder on this machine."""

    kind: ClassVar[str] = "local"
    inbox: Path | None = setting(None, "folder the partner's files arrive in; required for local")
    disposition: Disposition = setting("move", "what becomes of a taken file in the inbox")
    processed_dir: Path | None = setting(None, 'where "move" puts files; "" = <inbox>/processed')

    default_min_age: ClassVar[int] = 0

    @property
    def effective_processed_dir(self) -> Path:
        if self.processed_dir is not None:
            return self.processed_dir
        if self.inbox is None:
            raise FatalError("a local partner with no inbox and no processed_dir")
        return self.inbox / "processed"

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.inbox is None:
            yield "inbox", "required when kind = 'local'"
        elif self.disposition == "move" and self.effective_processed_dir == self.inbox:
            # Files moved into the inbox itself would be taken again at the next poll.
            yield "processed_dir", "must differ from inbox"


@dataclass(frozen=True)
class SftpSource:
    """A partner whose files come from its SFTP server (secrets: from the environment)."""

    kind: ClassVar[str] = "sftp"
    host: str | None = setting(None, "SFTP server host name or address")
    port: int = setting(22, "SFTP server port", POSITIVE)
    user: str | None = setting(None, "SFTP user name")
    key_file: Path | None = setting(None, "private key file (Ed25519, ECDSA or RSA)")
    key_passphrase_env: str | None = setting(
        None, "environment variable that holds the key file's passphrase")
    password_env: str | None = setting(
        None, "environment variable that holds the password, for partners that need one")
    known_hosts: Path | None = setting(
        None, "known_hosts file holding the server's host key (required: keys are verified)")
    remote_inbox: str = setting("/inbox", "remote folder the partner's files arrive in")
    remote_ack_dir: str | None = setting(
        None, 'remote folder acknowledgments are put in; "" = none (outbox only)')
    remote_status_dir: str | None = setting(
        None, 'remote folder of the status files; "" = <remote_ack_dir>/status (created)')
    remote_disposition: RemoteDisposition = setting(
        "move", "what becomes of a taken remote file, once held durably")
    remote_processed_dir: str | None = setting(
        None, 'where "move" puts taken remote files; "" = <remote_inbox>/processed')
    completion: Completion = setting(
        "stable", "when a remote file is complete: size and mtime unchanged for "
        "min_age_seconds, a done-file beside it (x.xml.done), or renamed from *.tmp/*.part")
    connect_timeout: float = setting(15.0, "seconds to open the TCP connection", POSITIVE)
    auth_timeout: float = setting(15.0, "seconds for the banner and authentication", POSITIVE)
    operation_timeout: float = setting(60.0, "seconds any SFTP operation may hang", POSITIVE)
    keepalive_seconds: int = setting(15, "SSH keepalive interval", POSITIVE)
    prefetch: bool = setting(True, "prefetch on download (off for servers that hang on it)")

    default_min_age: ClassVar[int] = 10

    @property
    def effective_remote_status_dir(self) -> str | None:  # not the acks' (`get *.csv`)
        if self.remote_status_dir or not self.remote_ack_dir:
            return self.remote_status_dir
        return self.remote_ack_dir.rstrip("/") + "/status"

    @property
    def effective_remote_processed_dir(self) -> str:
        return self.remote_processed_dir or self.remote_inbox.rstrip("/") + "/processed"

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        for key in ("host", "user", "known_hosts"):
            if getattr(self, key) is None:
                yield key, "required when kind = 'sftp'"
        if self.key_file is None and self.password_env is None:
            yield "key_file", "required when kind = 'sftp' (or password_env)"
        for key in ("key_file", "known_hosts"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                yield key, f"no such file: {path}"
        if not self.remote_inbox.startswith("/"):
            yield "remote_inbox", "an absolute remote path, e.g. '/inbox'"


Source = LocalSource | SftpSource


@dataclass(frozen=True)
class PartnerConfig:
    """One trading partner: where its files come from and how they are handled."""

    id: str = derived(source="key", doc="the partner id", check=PARTNER_ID)
    name: str = setting(MISSING, "the partner's name, shown in acknowledgments and logs")
    source: Source = variants(
        by="kind", choices={cls.kind: cls for cls in (LocalSource, SftpSource)},
        doc="where files come from: a local folder or SFTP")
    patterns: tuple[str, ...] = setting(("*.xml", "*.csv"), "file names taken", NON_EMPTY)
    filer_code: str | None = setting(None, 'B record filer code; "" = ace.filer_code', FILER_CODE)
    min_age_seconds: int | None = setting(
        None, 'a file is taken only once this old (sftp "stable": unchanged this long); '
        '"" = 0 for local, 10 for sftp', NON_NEGATIVE)
    max_files: int = setting(100, "most files taken in one poll", POSITIVE)
    max_bytes: int = setting(1_073_741_824, "most bytes taken in one poll", POSITIVE)
    max_licenses_per_day: int = setting(
        20_000, "new licenses issued to it per processing date; past it A109", POSITIVE)
    license_source: LicenseSourceName = setting(
        "gateway", '"gateway" mints license numbers; "commerce": the partner sends the numbers '
        "Commerce's AIM system issued (LicenseNumber, I204) and none is ever minted")
    mapping: Path | None = setting(
        None, 'CSV/XSLT mapping file for the names no [[mappings]] pattern matches; "" = none')
    mappings: tuple[MappingRule, ...] = setting(
        (), "mappings by file name; the first whose pattern matches is used")
    enabled: bool = setting(True, "false = never polled")
    filer: FilerSettings = section(FilerSettings, doc="the applicant block")
    # -- polling (both kinds) --
    interval_seconds: int | None = setting(
        None, 'seconds between polls; "" = gateway.poll_interval_seconds', POSITIVE)
    schedule: str | None = setting(None, 'cron expression (5 fields) instead of the interval')
    schedule_timezone: str | None = setting(
        None, 'time zone of the schedule; "" = gateway.timezone', TIME_ZONE)
    failure_alert_after: int = setting(
        3, "consecutive failed polls before one alert is raised", POSITIVE)
    max_backoff_seconds: int = setting(
        3600, "longest wait between polls of a failing partner (doubling)", POSITIVE)
    expected_cadence_hours: float | None = setting(
        None, 'one partner.silent alert when no file came for this long; "" = not watched',
        POSITIVE)
    contact: str | None = setting(
        None, 'e-mail of its contact: a notice for each rejected or partly rejected file; '
        '"" = none', EMAIL)
    status_files: bool = setting(
        True, "write status.json and status.csv to its outbox (and remote_status_dir) each poll")

    @property
    def kind(self) -> PartnerKind:
        return "sftp" if isinstance(self.source, SftpSource) else "local"

    @property
    def registered(self) -> bool:
        """Its licenses come from Commerce's AIM system (guide 5.1a): sent, never minted."""
        return self.license_source == "commerce"

    def effective_filer_code(self, ace: AceSettings) -> str:
        return self.filer_code or ace.filer_code

    def applicant(self, header: Filer | None) -> Filer:
        """The filer of a file's licenses (guide 2.3): its header's ``Filer``, which replaces
        the profile as a whole, else the ``[partners.<id>.filer]`` profile."""
        return header if header is not None else self.filer.to_filer()

    @property
    def effective_min_age(self) -> int:
        if self.min_age_seconds is not None:
            return self.min_age_seconds
        return self.source.default_min_age

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.schedule is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.schedule)
            except ValueError as err:
                yield "schedule", f"not a cron expression ({err})"
        yield from self.source.cross_checks()
        # Loaded now, so that a broken mapping stops the start, not a run half-way.
        from gateway.parse.mapping import MappingError, load_mapping

        named = [(f"mappings[{i}].file", rule.file) for i, rule in enumerate(self.mappings)]
        for key, path in ([("mapping", self.mapping)] if self.mapping else []) + named:
            try:
                load_mapping(path)
            except MappingError as err:
                for problem in err.problems:
                    yield key, f"{path}: {problem}"  # the path it looked at

    def mapping_for(self, file_name: str) -> Path | None:
        """The mapping of a file so named: the first pattern that matches, else ``mapping``."""
        rule = next((r for r in self.mappings if fnmatch.fnmatch(file_name, r.pattern)), None)
        return self.mapping if rule is None else rule.file


@dataclass(frozen=True)
class Config:
    """The whole configuration, as loaded from one file."""

    path: Path = derived(source="file", doc="the config file")
    gateway: GatewaySettings = section(GatewaySettings, doc="folders, time zone, limits")
    rules: RuleSettings = section(RuleSettings, doc="AIM rule limits")
    ace: AceSettings = section(AceSettings, doc="ACE file identifiers")
    log: LogSettings = section(LogSettings, doc="processing log")
    web: WebSettings = section(WebSettings, doc="admin web page")
    alerts: AlertSettings = section(AlertSettings, doc="alert webhook")
    mail: MailSettings = section(MailSettings, doc="e-mail notifications")
    metrics: MetricsSettings = section(MetricsSettings, doc="serve's metrics and health")
    retention: RetentionSettings = section(RetentionSettings, doc="purge periods")
    partners: tuple[PartnerConfig, ...] = setting((), "one table per partner, by id")

    def partner(self, partner_id: str) -> PartnerConfig:
        """The partner with this id; UsageError (with a suggestion) when there is none."""
        for partner in self.partners:
            if partner.id == partner_id:
                return partner
        ids = [p.id for p in self.partners]
        hint = suggest(partner_id, ids)
        known = ", ".join(ids) or "none"
        raise UsageError(f"{self.path}: no partner {partner_id!r}{hint} (configured: {known})")

    @property
    def events_path(self) -> Path:
        """The JSON-lines event log: ``log.events_file``, else ``events.jsonl`` in data_dir."""
        return self.log.events_file or self.gateway.data_dir / "events.jsonl"

    def own_folders(self) -> dict[str, Path]:
        """The names under outbox_dir that the gateway itself writes, each with its folder: a
        partner with such an id would get its acknowledgments in there (outbox/<id>/)."""
        outbox = Path(os.path.normpath(self.gateway.outbox_dir))
        data = Path(os.path.normpath(self.gateway.data_dir))
        own = {name: outbox / name for name in OUTBOX_FOLDERS}
        if data == outbox:
            own.update({name: data / name for name in DATA_FOLDERS})
        for path in (data, Path(os.path.normpath(self.events_path))):
            if path != outbox and path.is_relative_to(outbox):
                first = path.relative_to(outbox).parts[0]
                own.setdefault(first, outbox / first)
        return own

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        own = self.own_folders()
        for partner in self.partners:
            if partner.id in own:
                shown = os.path.relpath(own[partner.id], self.path.parent)
                folder = own[partner.id] if shown.startswith("..") else shown
                yield (f"partners.{partner.id}", f"the id {partner.id!r} names the gateway's own "
                       f"folder {folder}, which its acknowledgments would share: choose another id")
        # Two partners polling one folder would take each other's files.
        owner: dict[Path, str] = {}
        for partner in self.partners:
            inbox = partner.source.inbox if isinstance(partner.source, LocalSource) else None
            if inbox is None:
                continue
            if inbox in owner:
                other = owner[inbox]
                yield f"partners.{partner.id}.inbox", f"same folder as partners.{other}.inbox"
            owner.setdefault(inbox, partner.id)


# What the gateway writes directly under outbox_dir beside the partners' outbox/<id>/: the ACE
# files for CBP and the changes report (guide 5.1b); and the folders of data_dir
# (storage.Layout), which are there too when data_dir is outbox_dir itself.
OUTBOX_FOLDERS = ("ace", "changes")
DATA_FOLDERS = ("work", "archive", "failed", "acks")


# --- Public entry points ---------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Read and check a config file; ConfigError lists every problem in it at once."""
    return typing.cast(Config, read_file(path, Config, "path"))


def find_config(explicit: str | Path | None = None) -> Path:
    """The config file to use: ``explicit``, else $AIMGW_CONFIG, else ./config.toml."""
    if explicit:
        candidate, source = Path(explicit), "given explicitly"
    elif os.environ.get(CONFIG_ENV_VAR):
        candidate, source = Path(os.environ[CONFIG_ENV_VAR]), f"from ${CONFIG_ENV_VAR}"
    else:
        candidate, source = Path(DEFAULT_CONFIG_NAME), "the default, in the current folder"
    if not candidate.is_file():
        raise UsageError(f"no configuration file at {candidate} ({source})")
    return candidate


def describe() -> str:
    """A Markdown reference of every key: type, default and meaning (for docs/configuration.md)."""
    return describe_file(Config, DEFAULT_CONFIG_NAME)
