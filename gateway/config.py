"""Load ``config.toml`` into frozen, typed dataclasses, checked once at start (STYLE 9).

Each section is a dataclass; each field holds its default (the only place it lives), a one-line
doc and an optional check, so a new setting is one line. One generic reader walks the TOML
against the dataclasses and raises one ``ConfigError`` with every problem, "did you mean" included.
Relative paths are relative to the config file's folder (guide section 8), never to the cwd.

Secrets (key passphrases, passwords) are never read from here, as config.toml may sit in a
repository: they will come from the environment (next issue). No field below holds one.
"""

# ruff: noqa: RUF009 -- setting()/section()/derived() return dataclasses.field(), which RUF009
# cannot see; they exist so that each key stays one declarative line.
from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
import types
import typing
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from gateway.errors import ConfigError, FatalError
from gateway.model import Filer
from gateway.validate import rules

DEFAULT_CONFIG_NAME = "config.toml"
CONFIG_ENV_VAR = "AIMGW_CONFIG"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
PartnerKind = Literal["local", "sftp"]
Disposition = Literal["keep", "move", "delete"]
RemoteDisposition = Literal["move", "delete"]
Completion = Literal["stable", "done_file", "rename"]


# --- Checks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """A constraint on a field's value; ``rule`` completes "must be ..." in errors and docs."""

    rule: str
    test: Callable[[Any], bool]


def matches(pattern: str, rule: str) -> Check:
    compiled = re.compile(pattern)
    return Check(rule, lambda value: compiled.fullmatch(value) is not None)


def _is_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a dir
        return False
    return True


POSITIVE = Check("greater than 0", lambda value: value > 0)
NON_NEGATIVE = Check("0 or more", lambda value: value >= 0)
NON_EMPTY = Check("non-empty", lambda value: len(value) > 0)
TIME_ZONE = Check("an IANA time zone name such as 'America/New_York'", _is_time_zone)
SITE_CODE = matches(r"[A-Z0-9]{4}", "exactly 4 characters A-Z or 0-9")
SENDER_ID = matches(r"[A-Z0-9]{3}", "exactly 3 characters A-Z or 0-9")
FILER_CODE = matches(r"[A-Z0-9]{3}", "exactly 3 characters A-Z or 0-9")
# The id names folders (outbox/<id>/) and ledger rows, so it is kept to a safe file name.
PARTNER_ID = matches(r"[a-z0-9][a-z0-9_-]{0,31}", "1-32 characters a-z, 0-9, '_' or '-'")
US_STATE = matches(r"([A-Z]{2})?", "a two-letter state code such as 'NY', or empty")
ZIP_CODE = matches(r"([0-9]{5}(-[0-9]{4})?)?",
                   "a ZIP code such as '10001' or '10001-1234', or empty")
EMAIL = matches(r"([^@\s]+@[^@\s]+\.[^@\s]+)?", "an e-mail address, or empty")


def setting(default: Any = MISSING, doc: str = "", check: Check | None = None) -> Any:
    """A config key: its default (omit for a required key), a one-line doc and a check."""
    return field(default=default, metadata={"doc": doc, "check": check})


def section(cls: type, *, doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc})


def derived(*, source: Literal["key", "file"], doc: str, check: Check | None = None) -> Any:
    """A field not read from a key: filled from the table's own key or the file's path."""
    return field(metadata={"doc": doc, "check": check, "source": source})


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

    events_file: Path = setting(Path("data/events.jsonl"), "one JSON event a line")
    max_bytes: int = setting(10_485_760, "rotate the events file at this size", POSITIVE)
    backups: int = setting(5, "rotated files kept", NON_NEGATIVE)
    level: LogLevel = setting("INFO", "least severe level written")


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (the web page's default exposure)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere, so it is not loopback
        return False


PORT = Check("a TCP port 0-65535 (0 = any free port)", lambda value: 0 <= value <= 65535)
ENV_NAME = matches(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name")


@dataclass(frozen=True)
class WebSettings:
    """The admin web page (`aim-gateway web`): read-only but for reprocess, token required."""

    host: str = setting("127.0.0.1", "address served on; others need allow_remote", NON_EMPTY)
    port: int = setting(8765, "TCP port served on", PORT)
    token_env: str = setting("AIMGW_WEB_TOKEN", "environment variable holding the access token",
                             ENV_NAME)
    allow_remote: bool = setting(False, "true = may serve on an address other machines reach")

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        if not self.allow_remote and not is_loopback(self.host):
            yield "host", "not a loopback address; set allow_remote = true to serve other machines"


@dataclass(frozen=True)
class AlertSettings:
    """Alert events (a partner failing, recovered, silent, active) sent on to a webhook."""

    webhook_url: str | None = setting(
        None, 'POST each alert event as JSON here; "" = none (the URL is never logged)')
    webhook_url_env: str | None = setting(
        None, 'environment variable holding the webhook URL instead (when it holds a token)',
        ENV_NAME)
    webhook_timeout_seconds: float = setting(5.0, "seconds one POST may take", POSITIVE)

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        # The value is never echoed: the URL may carry a token.
        if self.webhook_url is not None and not self.webhook_url.startswith(
                ("http://", "https://")):
            yield "webhook_url", "must start with http:// or https:// (value not shown)"
        if self.webhook_url is not None and self.webhook_url_env is not None:
            yield "webhook_url_env", "set webhook_url or webhook_url_env, not both"


@dataclass(frozen=True)
class RetentionSettings:
    """What `aim-gateway purge` removes, by age in days; licenses are never purged."""

    events_days: int | None = setting(90, 'events older than this; "" = kept', POSITIVE)
    files_days: int | None = setting(
        365, 'findings, applications and events of files received before; "" = kept', POSITIVE)
    archive_days: int | None = setting(
        365, 'archived originals and failed files on disk; "" = kept', POSITIVE)


@dataclass(frozen=True)
class FilerSettings:
    """The applicant, 19 CFR 361.103(c)(1)(i)-(ii); an XML header may override it."""

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
class PartnerConfig:
    """One trading partner: where its files come from and how they are handled."""

    id: str = derived(source="key", doc="the partner id", check=PARTNER_ID)
    name: str = setting(MISSING, "the partner's name, shown in acknowledgments and logs")
    kind: PartnerKind = setting("local", "where files come from: a local folder or SFTP")
    inbox: Path | None = setting(None, "folder the partner's files arrive in; required for local")
    patterns: tuple[str, ...] = setting(("*.xml", "*.csv"), "file names taken", NON_EMPTY)
    disposition: Disposition = setting("move", "what becomes of a taken file in the inbox")
    processed_dir: Path | None = setting(None, 'where "move" puts files; "" = <inbox>/processed')
    filer_code: str | None = setting(None, 'B record filer code; "" = ace.filer_code', FILER_CODE)
    min_age_seconds: int | None = setting(
        None, 'a file is taken only once this old (sftp "stable": unchanged this long); '
        '"" = 0 for local, 10 for sftp', NON_NEGATIVE)
    max_files: int = setting(100, "most files taken in one poll", POSITIVE)
    max_bytes: int = setting(1_073_741_824, "most bytes taken in one poll", POSITIVE)
    max_licenses_per_day: int = setting(
        20_000, "new licenses issued to it per processing date; past it A109", POSITIVE)
    mapping: Path | None = setting(None, 'CSV/XSLT mapping file; "" = none')
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
    status_files: bool = setting(
        True, "write status.json and status.csv to its outbox (and remote_ack_dir) each poll")
    # -- SFTP (kind = "sftp"); secrets come from the environment, never from this file --
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

    @property
    def effective_processed_dir(self) -> Path:
        if self.processed_dir is not None:
            return self.processed_dir
        if self.inbox is None:
            raise FatalError(f"partner {self.id!r} has no inbox and no processed_dir")
        return self.inbox / "processed"

    def effective_filer_code(self, ace: AceSettings) -> str:
        return self.filer_code or ace.filer_code

    @property
    def effective_min_age(self) -> int:
        if self.min_age_seconds is not None:
            return self.min_age_seconds
        return 10 if self.kind == "sftp" else 0

    @property
    def effective_remote_processed_dir(self) -> str:
        return self.remote_processed_dir or self.remote_inbox.rstrip("/") + "/processed"

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.schedule is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.schedule)
            except ValueError as err:
                yield "schedule", f"not a cron expression ({err})"
        if self.kind == "sftp":
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
        elif self.inbox is None:
            yield "inbox", "required when kind = 'local'"
        elif self.disposition == "move" and self.effective_processed_dir == self.inbox:
            # Files moved into the inbox itself would be taken again at the next poll.
            yield "processed_dir", "must differ from inbox"
        if self.mapping is not None:
            # Loaded now, so that a broken mapping stops the start, not a run half-way.
            from gateway.parse.mapping import MappingError, load_mapping

            try:
                load_mapping(self.mapping)
            except MappingError as err:
                for problem in err.problems:
                    yield "mapping", f"{self.mapping.name}: {problem}"


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
    retention: RetentionSettings = section(RetentionSettings, doc="purge periods")
    partners: tuple[PartnerConfig, ...] = setting((), "one table per partner, by id")

    def partner(self, partner_id: str) -> PartnerConfig:
        """The partner with this id; FatalError (with a suggestion) when there is none."""
        for partner in self.partners:
            if partner.id == partner_id:
                return partner
        ids = [p.id for p in self.partners]
        close = difflib.get_close_matches(partner_id, ids, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(ids) or "none"
        raise FatalError(f"{self.path}: no partner {partner_id!r}{hint} (configured: {known})")

    def own_folders(self) -> dict[str, Path]:
        """The names under outbox_dir that the gateway itself writes, each with its folder: a
        partner with such an id would get its acknowledgments in there (outbox/<id>/)."""
        outbox = Path(os.path.normpath(self.gateway.outbox_dir))
        data = Path(os.path.normpath(self.gateway.data_dir))
        own = {name: outbox / name for name in OUTBOX_FOLDERS}
        if data == outbox:
            own.update({name: data / name for name in DATA_FOLDERS})
        for path in (data, Path(os.path.normpath(self.log.events_file))):
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
            if partner.inbox is None:
                continue
            if partner.inbox in owner:
                other = owner[partner.inbox]
                yield f"partners.{partner.id}.inbox", f"same folder as partners.{other}.inbox"
            owner.setdefault(partner.inbox, partner.id)


# What the gateway writes directly under outbox_dir beside the partners' outbox/<id>/: the ACE
# files for CBP and the changes report (guide 5.1b); and the folders of data_dir
# (storage.Layout), which are there too when data_dir is outbox_dir itself.
OUTBOX_FOLDERS = ("ace", "changes")
DATA_FOLDERS = ("work", "archive", "failed", "acks")


# --- The reader ------------------------------------------------------------------------------

_INVALID: Final = object()  # a value that failed; its problem is already recorded
_UNIONS = (typing.Union, types.UnionType)


def _is_number(raw: Any) -> bool:
    if isinstance(raw, bool):  # True is an int in Python, never a number in a config
        return False
    if isinstance(raw, int):  # TOML's 64-bit range; tomllib reads more, and float() overflows
        return -(2**63) <= raw < 2**63
    return isinstance(raw, float) and math.isfinite(raw)


# Each scalar field type: its name in messages, and which TOML values it accepts.
_SCALARS: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    bool: ("true or false", lambda raw: isinstance(raw, bool)),
    int: ("an integer", lambda raw: _is_number(raw) and isinstance(raw, int)),
    float: ("a number", _is_number),
    str: ("a string", lambda raw: isinstance(raw, str)),
    Path: ("a path", lambda raw: isinstance(raw, str) and raw != ""),  # "" would mean the folder
    tuple[str, ...]: ("an array of strings", lambda raw: isinstance(raw, list)),
}


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _show(raw: Any) -> str:
    """A TOML value as the user wrote it, for error messages."""
    if isinstance(raw, dict):
        return "a table"
    return json.dumps(raw) if isinstance(raw, bool) else repr(raw)


def _optional_inner(tp: Any) -> Any:
    return next(arg for arg in typing.get_args(tp) if arg is not type(None))


def _item_table(tp: Any) -> Any:
    """The dataclass of ``tuple[SomeDataclass, ...]`` (a table of tables by key), else None."""
    item = (*typing.get_args(tp), None)[0]
    return item if typing.get_origin(tp) is tuple and dataclasses.is_dataclass(item) else None


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(tp))
    if origin in _UNIONS:
        return f'{_type_name(_optional_inner(tp))} or ""'
    if _item_table(tp) is not None:
        return "a table of tables"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return _SCALARS[tp][0]


class _Reader:
    """Walks TOML tables against dataclasses, collecting every problem instead of stopping."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}" if where else message)

    def wrong_type(self, where: str, tp: Any, raw: Any) -> object:
        self.problem(where, f"expected {_type_name(tp)}, got {_show(raw)}")
        return _INVALID

    def path(self, raw: str | Path) -> Path:
        path = Path(raw).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def table(self, cls: Any, raw: dict[str, Any], where: str, preset: dict[str, Any]) -> Any:
        hints = typing.get_type_hints(cls)
        readable = [f for f in dataclasses.fields(cls) if "source" not in f.metadata]
        names = [f.name for f in readable]
        for key, value in raw.items():
            if key not in names:
                kind = "section" if isinstance(value, dict) else "key"
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"expected one of {names}"
                self.problem(_join(where, key), f"unknown {kind}; {hint}")
        values = dict(preset)
        valid = True
        for f in readable:
            at, tp = _join(where, f.name), hints[f.name]
            if f.name in raw:
                value = self.value(tp, raw[f.name], at)
                check = f.metadata.get("check")
                if value is not _INVALID and value is not None and check and not check.test(value):
                    self.problem(at, f"must be {check.rule}, got {_show(raw[f.name])}")
                    value = _INVALID
            elif dataclasses.is_dataclass(tp):
                value = self.table(tp, {}, at, {})  # so paths inside a default get resolved
            elif f.default is not MISSING:
                value = self.path(f.default) if isinstance(f.default, Path) else f.default
            else:
                self.problem(at, "required key is missing")
                value = _INVALID
            valid = valid and value is not _INVALID
            values[f.name] = value
        if not valid:
            return _INVALID
        instance = cls(**values)
        for key, message in getattr(instance, "cross_checks", list)():
            self.problem(_join(where, key), message)
        return instance

    def keyed_tables(self, item_cls: Any, raw: dict[str, Any], where: str) -> Any:
        """``[partners.<id>]``: each sub-table becomes one item, its key filling the id field."""
        key_field = next(f for f in dataclasses.fields(item_cls) if f.metadata.get("source"))
        check = key_field.metadata.get("check")
        items, valid = [], True
        for key, sub in raw.items():
            at = _join(where, key)
            if check and not check.test(key):
                self.problem(at, f"{key_field.name} must be {check.rule}, got {key!r}")
                valid = False
            if isinstance(sub, dict):
                items.append(self.table(item_cls, sub, at, {key_field.name: key}))
            else:
                items.append(self.wrong_type(at, item_cls, sub))
        valid = valid and all(item is not _INVALID for item in items)
        return tuple(items) if valid else _INVALID

    def value(self, tp: Any, raw: Any, where: str) -> Any:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in _UNIONS:
            if raw == "":  # TOML has no null: an empty string stands for "not set"
                return None
            inner = _optional_inner(tp)
            if inner in _SCALARS and not _SCALARS[inner][1](raw):
                return self.wrong_type(where, tp, raw)  # so the message offers "" too
            return self.value(inner, raw, where)
        if origin is Literal:
            if isinstance(raw, str) and raw in args:
                return raw
            close = [a for a in args if isinstance(raw, str) and a.lower() == raw.lower()]
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.problem(where, f"expected {_type_name(tp)}, got {_show(raw)}{hint}")
            return _INVALID
        item_cls = _item_table(tp)
        if item_cls is not None or dataclasses.is_dataclass(tp):
            if not isinstance(raw, dict):
                return self.wrong_type(where, tp, raw)
            if item_cls is not None:
                return self.keyed_tables(item_cls, raw, where)
            return self.table(tp, raw, where, {})
        if tp == tuple[str, ...] and isinstance(raw, list):
            bad = [i for i, item in enumerate(raw) if not isinstance(item, str)]
            for i in bad:
                self.wrong_type(f"{where}[{i}]", str, raw[i])
            return _INVALID if bad else tuple(raw)
        if tp in _SCALARS:
            if not _SCALARS[tp][1](raw):
                return self.wrong_type(where, tp, raw)
            return self.path(raw) if tp is Path else tp(raw)  # tp(): an int given for a float
        raise TypeError(f"config.py cannot read a field of type {tp!r}")  # a bug, not a user error


# --- Public entry points ---------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Read and check a config file; ConfigError lists every problem in it at once."""
    # abspath, not resolve(): relative paths follow the folder the admin named, symlink or not.
    config_path = Path(os.path.abspath(Path(path).expanduser()))
    where = str(config_path)
    try:
        with config_path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(where, ["file not found"]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # names the line and column
        raise ConfigError(where, [f"not valid TOML: {exc}"]) from exc
    except OSError as exc:
        raise ConfigError(where, [f"cannot read the file: {exc.strerror}"]) from exc
    reader = _Reader(config_path.parent)
    config = reader.table(Config, data, "", {"path": config_path})
    if reader.problems:
        raise ConfigError(where, reader.problems)
    return typing.cast(Config, config)


def find_config(explicit: str | Path | None = None) -> Path:
    """The config file to use: ``explicit``, else $AIMGW_CONFIG, else ./config.toml."""
    if explicit:
        candidate, source = Path(explicit), "given explicitly"
    elif os.environ.get(CONFIG_ENV_VAR):
        candidate, source = Path(os.environ[CONFIG_ENV_VAR]), f"from ${CONFIG_ENV_VAR}"
    else:
        candidate, source = Path(DEFAULT_CONFIG_NAME), "the default, in the current folder"
    if not candidate.is_file():
        raise FatalError(f"no configuration file at {candidate} ({source})")
    return candidate


def _toml_literal(value: Any) -> str:
    # JSON spells strings, numbers, booleans and arrays as TOML does; None is written "".
    if isinstance(value, Path | None):
        value = str(value or "")
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _describe_table(cls: Any, header: str, out: list[str]) -> None:
    hints = typing.get_type_hints(cls)
    rows: list[str] = []
    nested: list[tuple[str, Any]] = []
    for f in dataclasses.fields(cls):
        tp, doc, check = hints[f.name], f.metadata["doc"], f.metadata.get("check")
        must = f"; must be {check.rule}" if check else ""
        if f.metadata.get("source") == "key":
            out.append(f"The table key `<{f.name}>` is {doc}{must}.")
            out.append("")
        elif f.metadata.get("source"):
            continue
        elif dataclasses.is_dataclass(tp):
            nested.append((_join(header, f.name), tp))
        elif (item_cls := _item_table(tp)) is not None:
            nested.append((_join(header, f"{f.name}.<id>"), item_cls))
        else:
            default = "required" if f.default is MISSING else f"`{_toml_literal(f.default)}`"
            rows.append(f"| `{f.name}` | {_type_name(tp)} | {default} | {doc}{must} |")
    if rows:
        out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for sub_header, sub_cls in nested:
        out += [f"## [{sub_header}]", "", (sub_cls.__doc__ or "").strip(), ""]
        _describe_table(sub_cls, sub_header, out)


def describe() -> str:
    """A Markdown reference of every key: type, default and meaning (for docs/configuration.md)."""
    out = [
        f"# {DEFAULT_CONFIG_NAME} reference",
        "",
        "Generated by `gateway.config.describe()`. Relative paths are relative to the folder "
        "of the config file. Secrets are never kept in this file.",
        "",
    ]
    _describe_table(Config, "", out)
    return "\n".join(out).rstrip() + "\n"
