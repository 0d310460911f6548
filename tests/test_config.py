"""config.toml: defaults, path resolution, and every problem reported at once."""

from __future__ import annotations

import dataclasses
import shutil
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import (
    CONFIG_ENV_VAR,
    AceSettings,
    Config,
    FilerSettings,
    GatewaySettings,
    LocalSource,
    LogSettings,
    PartnerConfig,
    RuleSettings,
    SftpSource,
    describe,
    find_config,
    load_config,
)
from gateway.errors import ConfigError, FatalError
from gateway.model import Filer

ACME = '[partners.acme]\nname = "Acme Aluminum"\ninbox = "inbox/acme"\n'

WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write a config file (by default tmp_path/etc/config.toml) and return its path."""

    def write(text: str, name: str = "etc/config.toml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


# --- What loads ---------------------------------------------------------------------------


def test_empty_file_loads_with_every_default(write_config: WriteConfig) -> None:
    config = load_config(write_config(""))
    assert config.gateway.timezone == "America/New_York"
    assert config.gateway.license_validity_days == 75
    assert config.gateway.max_file_bytes == 200 * 1024 * 1024
    assert config.gateway.poll_interval_seconds == 60
    assert config.gateway.ledger is None
    assert config.rules == RuleSettings(500.0, 60000.0, 5000.0, 60, 15)
    assert config.ace == AceSettings("AIMG", "AGW", "ZZZ")
    assert (config.log.max_bytes, config.log.backups, config.log.level) == (10485760, 5, "INFO")
    assert config.partners == ()


def test_partner_defaults_and_derived_values(write_config: WriteConfig) -> None:
    path = write_config(ACME)
    partner = load_config(path).partner("acme")
    inbox = path.parent / "inbox/acme"
    assert partner.id == "acme"
    assert partner.name == "Acme Aluminum"
    assert partner.kind == "local"
    assert isinstance(partner.source, LocalSource)
    assert partner.source.inbox == inbox
    assert partner.patterns == ("*.xml", "*.csv")
    assert partner.source.disposition == "move"
    assert partner.source.processed_dir is None
    assert partner.source.effective_processed_dir == inbox / "processed"
    assert (partner.effective_min_age, partner.max_files, partner.max_bytes) == (0, 100, 1 << 30)
    assert partner.min_age_seconds is None  # unset: 0 for a local partner, 10 for sftp
    assert partner.mapping is None
    assert partner.enabled is True
    assert partner.filer == FilerSettings()


def test_full_config_values_are_typed(write_config: WriteConfig) -> None:
    path = write_config(
        """
[gateway]
timezone = "UTC"
ledger = "postgresql://gw@db/aim"
[rules]
unit_value_min_usd_per_mt = 400     # an integer is a fine number
[log]
level = "DEBUG"
[partners.b-2_x]
name = "B"
inbox = "/srv/in/b"
patterns = ["*.XML"]
disposition = "keep"
processed_dir = "done"
filer_code = "AB1"
mapping = "mappings/b.toml"
enabled = false
[partners.b-2_x.filer]
name = "B Metals Inc."
state = "NY"
postal_code = "10001-1234"
email = "ops@b.example"
"""
    )
    (path.parent / "mappings").mkdir()
    (path.parent / "mappings" / "b.toml").write_text("# the canonical CSV\n")
    config = load_config(path)
    assert config.gateway.zone.key == "UTC"
    assert config.gateway.ledger == "postgresql://gw@db/aim"
    assert config.rules.unit_value_min_usd_per_mt == 400.0
    assert isinstance(config.rules.unit_value_min_usd_per_mt, float)
    assert config.log.level == "DEBUG"
    partner = config.partners[0]
    assert partner.id == "b-2_x"
    assert isinstance(partner.source, LocalSource)
    assert partner.source.inbox == Path("/srv/in/b")
    assert partner.patterns == ("*.XML",)
    assert partner.source.effective_processed_dir == path.parent / "done"
    assert partner.effective_filer_code(config.ace) == "AB1"
    assert partner.mapping == path.parent / "mappings/b.toml"
    assert partner.enabled is False
    assert partner.filer.to_filer() == Filer(
        name="B Metals Inc.", state="NY", postal_code="10001-1234", email="ops@b.example"
    )


@pytest.mark.parametrize(("filer_code", "expected"), [('""', "ZZZ"), ('"Q7Z"', "Q7Z")])
def test_empty_filer_code_falls_back_to_ace(
    write_config: WriteConfig, filer_code: str, expected: str
) -> None:
    text = f'[ace]\nfiler_code = "ZZZ"\n{ACME}filer_code = {filer_code}'
    config = load_config(write_config(text))
    assert config.partner("acme").effective_filer_code(config.ace) == expected


def test_partners_keep_file_order(write_config: WriteConfig) -> None:
    text = "".join(f'[partners.{p}]\nname = "{p}"\ninbox = "in/{p}"\n' for p in ("zeta", "alpha"))
    assert [p.id for p in load_config(write_config(text)).partners] == ["zeta", "alpha"]


def test_the_shipped_config_toml_loads(tmp_path: Path) -> None:
    # A copy with its mappings: loaded in the working tree, its partners' inboxes would be the
    # working tree's inbox/, which a user may be trying the gateway with.
    shipped = Path(__file__).resolve().parents[1]
    shutil.copy(shipped / "config.toml", tmp_path / "config.toml")
    shutil.copytree(shipped / "mappings", tmp_path / "mappings")
    config = load_config(tmp_path / "config.toml")
    assert config.partner("sample").filer.to_filer().name
    assert config.partner("sample").source.inbox == tmp_path / "inbox" / "sample"


# --- Paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "get", "relative"),
    [
        ("", lambda c: c.gateway.data_dir, "data"),
        ("", lambda c: c.gateway.outbox_dir, "outbox"),
        ("", lambda c: c.events_path, "data/events.jsonl"),
        ('[gateway]\ndata_dir = "../var/gw"', lambda c: c.gateway.data_dir, "../var/gw"),
        ('[log]\nevents_file = "logs/e.jsonl"', lambda c: c.events_path, "logs/e.jsonl"),
        ('[gateway]\ndata_dir = "../var/gw"', lambda c: c.events_path, "../var/gw/events.jsonl"),
        (ACME, lambda c: c.partners[0].source.inbox, "inbox/acme"),
        (ACME + 'mapping = "m/acme.toml"', lambda c: c.partners[0].mapping, "m/acme.toml"),
    ],
)
def test_relative_paths_follow_the_config_folder_not_the_cwd(
    write_config: WriteConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    get: Callable[[Config], Path],
    relative: str,
) -> None:
    path = write_config(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (path.parent / "m").mkdir()
    (path.parent / "m" / "acme.toml").write_text("")  # a mapping must exist to load
    monkeypatch.chdir(elsewhere)
    assert get(load_config(path)) == tmp_path / "etc" / relative


def test_relative_config_path_is_made_absolute(
    write_config: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config("")
    monkeypatch.chdir(tmp_path)
    config = load_config("etc/config.toml")
    assert config.path == tmp_path / "etc/config.toml"
    assert config.gateway.data_dir == tmp_path / "etc/data"


def test_absolute_path_is_kept(write_config: WriteConfig, tmp_path: Path) -> None:
    target = tmp_path / "abs" / "data"
    config = load_config(write_config(f'[gateway]\ndata_dir = "{target}"'))
    assert config.gateway.data_dir == target


# --- Problems -----------------------------------------------------------------------------

CODE3 = "must be exactly 3 characters A-Z or 0-9"
CODE4 = "must be exactly 4 characters A-Z or 0-9"
PARTNER_ID = "id must be 1-32 characters a-z, 0-9, '_' or '-'"
LEVELS = "one of 'DEBUG', 'INFO', 'WARNING', 'ERROR'"


def one_key(key: str, value: str) -> str:
    """TOML that sets one dotted key; keys under partners.acme sit on a valid partner."""
    table, _, name = key.rpartition(".")
    if table == "partners.acme":
        return f"{ACME}{name} = {value}\n"
    base = ACME if table.startswith("partners.acme.") else ""
    return f"{base}[{table}]\n{name} = {value}\n"


def test_every_problem_is_reported_at_once(write_config: WriteConfig) -> None:
    path = write_config(
        """
[gateway]
max_file_byte = 10
timezone = "Mars/Olympus"
[ace]
site_code = "aim"
[log]
level = "VERBOSE"
[partners.acme]
name = "Acme"
inbox = "in/acme"
max_files = "ten"
[partners.Bad]
inbox = "in/bad"
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    expected = [
        "gateway.max_file_byte: unknown key; did you mean 'max_file_bytes'?",
        "gateway.timezone: must be an IANA time zone name such as 'America/New_York', "
        "got 'Mars/Olympus'",
        f"ace.site_code: {CODE4}, got 'aim'",
        f"log.level: expected {LEVELS}, got 'VERBOSE'",
        "partners.acme.max_files: expected an integer, got 'ten'",
        f"partners.Bad: {PARTNER_ID}, got 'Bad'",
        "partners.Bad.name: required key is missing",
    ]
    assert sorted(caught.value.problems) == sorted(expected)
    assert str(path) in str(caught.value)
    assert all(problem in str(caught.value) for problem in expected)
    assert isinstance(caught.value, FatalError)


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("gateway.max_file_byte", "did you mean 'max_file_bytes'?"),
        ("rules.max_days_befor_import", "did you mean 'max_days_before_import'?"),
        ("partners.acme.inbx", "did you mean 'inbox'?"),
        ("partners.acme.filer.phon", "did you mean 'phone'?"),
        ("ace.xyzzy", "expected one of ['site_code', 'sender_id', 'filer_code']"),
    ],
)
def test_unknown_key_is_rejected_with_a_suggestion(
    write_config: WriteConfig, key: str, suggestion: str
) -> None:
    problems = problems_of(write_config(one_key(key, "1")))
    assert problems == [f"{key}: unknown key; {suggestion}"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[gatway]\ntimezone = 'UTC'", "gatway: unknown section; did you mean 'gateway'?"),
        ("[logs]\nlevel = 'INFO'", "logs: unknown section; did you mean 'log'?"),
        ("[sftp]\nhost = 'x'", "sftp: unknown section; expected one of"),
        (
            ACME + "[partners.acme.filr]\nname = 'x'",
            "partners.acme.filr: unknown section; did you mean 'filer'?",
        ),
    ],
)
def test_unknown_section_is_rejected(write_config: WriteConfig, text: str, problem: str) -> None:
    (reported,) = problems_of(write_config(text))
    assert reported.startswith(problem)


WRONG_TYPES = [
    ("gateway.max_file_bytes", "true", "expected an integer, got true"),
    ("gateway.max_file_bytes", "'200MB'", "expected an integer, got '200MB'"),
    ("gateway.max_file_bytes", "2.5", "expected an integer, got 2.5"),
    ("gateway.max_file_bytes", "{mb = 3}", "expected an integer, got a table"),
    ("gateway.data_dir", "5", "expected a path, got 5"),
    ("gateway.data_dir", "''", "expected a path, got ''"),
    ("gateway.timezone", "1", "expected a string, got 1"),
    ("gateway.ledger", "false", 'expected a string or "", got false'),
    ("rules.low_value_usd", "'cheap'", "expected a number, got 'cheap'"),
    ("rules.low_value_usd", "nan", "expected a number, got nan"),
    ("rules.low_value_usd", "-inf", "expected a number, got -inf"),
    ("rules.low_value_usd", "1" + "0" * 400, f"expected a number, got 1{'0' * 400}"),
    (
        "partners.acme.max_bytes",
        "9223372036854775808",
        "expected an integer, got 9223372036854775808",
    ),
    ("partners.acme.enabled", "'yes'", "expected true or false, got 'yes'"),
    ("partners.acme.patterns", "'*.xml'", "expected an array of strings, got '*.xml'"),
    ("partners.acme.mapping", "7", 'expected a path or "", got 7'),
    ("partners.acme.filer", "'Acme'", "expected a table, got 'Acme'"),
    ("partners.acme.filer.name", "['A']", "expected a string, got ['A']"),
]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("gateway = 3", "gateway: expected a table, got 3"),
        ("partners = []", "partners: expected a table of tables, got []"),
        ("[partners]\nacme = 'x'", "partners.acme: expected a table, got 'x'"),
        (ACME + "patterns = ['*.xml', 3]", "partners.acme.patterns[1]: expected a string, got 3"),
    ],
)
def test_wrong_shapes_are_named(write_config: WriteConfig, text: str, problem: str) -> None:
    assert problems_of(write_config(text)) == [problem]


INVALID_CHOICES = [
    ("log.level", "'VERBOSE'", f"expected {LEVELS}, got 'VERBOSE'"),
    ("log.level", "'info'", f"expected {LEVELS}, got 'info'; did you mean 'INFO'?"),
    ("log.level", "3", f"expected {LEVELS}, got 3"),
    (
        "partners.acme.disposition",
        "'archive'",
        "expected one of 'keep', 'move', 'delete', got 'archive'",
    ),
    ("partners.acme.kind", "'ftp'", "expected one of 'local', 'sftp', got 'ftp'"),
]


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "America", "America/New York", "/etc/localtime", "../UTC", ""]
)
def test_bad_time_zone(write_config: WriteConfig, zone: str) -> None:
    (problem,) = problems_of(write_config(one_key("gateway.timezone", repr(zone))))
    assert problem == (
        f"gateway.timezone: must be an IANA time zone name such as 'America/New_York', got {zone!r}"
    )


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("ace.site_code", "AIMGW", CODE4),
        ("ace.site_code", "AI-G", CODE4),
        ("ace.site_code", "aimg", CODE4),
        ("ace.sender_id", "agw", CODE3),
        ("ace.sender_id", "AGWX", CODE3),
        ("ace.filer_code", "ZZ", CODE3),
        ("partners.acme.filer_code", "ZZZZ", CODE3),
        (
            "partners.acme.filer.state",
            "New York",
            "must be a two-letter state code such as 'NY', or empty",
        ),
        (
            "partners.acme.filer.postal_code",
            "1000",
            "must be a ZIP code such as '10001' or '10001-1234', or empty",
        ),
        ("partners.acme.filer.email", "ops", "must be an e-mail address, or empty"),
    ],
)
def test_codes_are_checked(write_config: WriteConfig, key: str, value: str, rule: str) -> None:
    problems = problems_of(write_config(one_key(key, repr(value))))
    assert problems == [f"{key}: {rule}, got {value!r}"]


@pytest.mark.parametrize("partner_id", ["Acme", "_acme", "-a", "a" * 33, "a/b", "a.b", "acmé", ""])
def test_bad_partner_id(write_config: WriteConfig, partner_id: str) -> None:
    text = f'[partners."{partner_id}"]\nname = "A"\ninbox = "a"\n'
    problems = problems_of(write_config(text))
    assert problems == [f"partners.{partner_id}: {PARTNER_ID}, got {partner_id!r}"]


@pytest.mark.parametrize("partner_id", ["a", "acme", "acme-2", "acme_eu", "9", "a" * 32])
def test_good_partner_id(write_config: WriteConfig, partner_id: str) -> None:
    text = f'[partners."{partner_id}"]\nname = "A"\ninbox = "a"\n'
    assert load_config(write_config(text)).partners[0].id == partner_id


OUT_OF_RANGE = [
    ("gateway.license_validity_days", "0", "must be greater than 0, got 0"),
    ("gateway.poll_interval_seconds", "-5", "must be greater than 0, got -5"),
    ("log.backups", "-1", "must be 0 or more, got -1"),
    ("rules.unit_value_min_usd_per_mt", "0", "must be greater than 0, got 0"),
    ("partners.acme.max_files", "0", "must be greater than 0, got 0"),
    ("partners.acme.min_age_seconds", "-1", "must be 0 or more, got -1"),
    ("partners.acme.patterns", "[]", "must be non-empty, got []"),
]


@pytest.mark.parametrize(("key", "value", "message"),
                         [*WRONG_TYPES, *INVALID_CHOICES, *OUT_OF_RANGE])
def test_a_wrong_value_is_named_with_its_key(write_config: WriteConfig, key: str, value: str,
                                             message: str) -> None:
    assert problems_of(write_config(one_key(key, value))) == [f"{key}: {message}"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[partners.acme]\nname = 'Acme'", "partners.acme.inbox: required when kind = 'local'"),
        (
            "[partners.acme]\nname = 'A'\ninbox = ''",
            "partners.acme.inbox: required when kind = 'local'",
        ),
        ("[partners.acme]\ninbox = 'in'", "partners.acme.name: required key is missing"),
        (
            ACME + "processed_dir = 'inbox/acme'",
            "partners.acme.processed_dir: must differ from inbox",
        ),
        (
            "[rules]\nunit_value_min_usd_per_mt = 9e4",
            "rules.unit_value_min_usd_per_mt: must be less than unit_value_max_usd_per_mt",
        ),
        (
            ACME + "[partners.copy]\nname = 'C'\ninbox = 'inbox/acme'",
            "partners.copy.inbox: same folder as partners.acme.inbox",
        ),
    ],
)
def test_settings_that_must_agree(write_config: WriteConfig, text: str, problem: str) -> None:
    assert problems_of(write_config(text)) == [problem]


def test_sftp_partner_needs_server_user_key_and_known_hosts(write_config: WriteConfig) -> None:
    assert problems_of(write_config(ACME + "kind = 'sftp'")) == [
        "partners.acme.host: required when kind = 'sftp'",
        "partners.acme.user: required when kind = 'sftp'",
        "partners.acme.known_hosts: required when kind = 'sftp'",
        "partners.acme.key_file: required when kind = 'sftp' (or password_env)",
    ]


@pytest.mark.parametrize(("schedule", "ok"), [("*/5 * * * *", True), ("61 * * * *", False),
                                              ("0 6 * * mon-fri", True), ("often", False)])
def test_schedule_is_a_cron_expression(write_config: WriteConfig, schedule: str,
                                       ok: bool) -> None:
    path = write_config(ACME + f"schedule = '{schedule}'")
    if ok:
        assert load_config(path).partner("acme").schedule == schedule
    else:
        problems = problems_of(path)
        assert len(problems) == 1
        assert problems[0].startswith("partners.acme.schedule: not a cron expression")


def test_processed_dir_may_equal_inbox_when_files_are_kept(write_config: WriteConfig) -> None:
    path = write_config(ACME + "disposition = 'keep'\nprocessed_dir = 'inbox/acme'")
    inbox = path.parent / "inbox/acme"
    assert load_config(path).partner("acme").source == LocalSource(inbox, "keep", inbox)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[gateway]\ntimezone = 'UTC'\n[gateway\n", "line 3"),
        ("[gateway]\nmax_file_bytes = \n", "line 2"),
        ("[ace]\nsite_code = 'A'\nsite_code = 'B'\n", "line 3"),
    ],
)
def test_toml_syntax_error_names_the_line(write_config: WriteConfig, text: str, where: str) -> None:
    (problem,) = problems_of(write_config(text))
    assert problem.startswith("not valid TOML")
    assert where in problem


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[gateway]\ntimezone = "\xff"\n')
    assert problems_of(path)[0].startswith("not valid TOML")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml")
    assert caught.value.problems == ["file not found"]
    assert caught.value.path == str(tmp_path / "nope.toml")


# --- Objects ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("get", "attribute", "value"),
    [
        (lambda c: c, "partners", ()),
        (lambda c: c.gateway, "timezone", "UTC"),
        (lambda c: c.rules, "low_value_usd", 1.0),
        (lambda c: c.ace, "site_code", "XXXX"),
        (lambda c: c.log, "level", "DEBUG"),
        (lambda c: c.partners[0], "max_files", 1),
        (lambda c: c.partners[0].filer, "name", "x"),
    ],
)
def test_settings_are_frozen(
    write_config: WriteConfig, get: Callable[[Config], Any], attribute: str, value: Any
) -> None:
    config = load_config(write_config(ACME))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(get(config), attribute, value)


@pytest.mark.parametrize(("asked", "hint"), [("acmee", "did you mean 'acme'?"), ("zz", "acme")])
def test_unknown_partner_id(write_config: WriteConfig, asked: str, hint: str) -> None:
    config = load_config(write_config(ACME))
    with pytest.raises(FatalError, match=hint):
        config.partner(asked)


def test_effective_processed_dir_needs_an_inbox() -> None:
    partner = PartnerConfig(id="x", name="X")
    assert isinstance(partner.source, LocalSource)
    with pytest.raises(FatalError, match="no inbox"):
        _ = partner.source.effective_processed_dir


# --- find_config --------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["explicit", "env", "cwd"])
def test_find_config_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    for name in ("explicit", "env", "cwd"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.toml").write_text("")
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    if source in ("explicit", "env"):
        monkeypatch.setenv(CONFIG_ENV_VAR, str(tmp_path / "env/config.toml"))
    explicit = str(tmp_path / "explicit/config.toml") if source == "explicit" else None
    assert find_config(explicit).resolve() == (tmp_path / source / "config.toml").resolve()


@pytest.mark.parametrize("source", ["explicit", "env", "cwd"])
def test_find_config_without_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    if source == "env":
        monkeypatch.setenv(CONFIG_ENV_VAR, str(tmp_path / "missing.toml"))
    with pytest.raises(FatalError, match="no configuration file"):
        find_config(str(tmp_path / "missing.toml") if source == "explicit" else None)


# --- describe -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "header"),
    [
        (GatewaySettings, "## [gateway]"),
        (RuleSettings, "## [rules]"),
        (AceSettings, "## [ace]"),
        (LogSettings, "## [log]"),
        (PartnerConfig, "## [partners.<id>]"),
        (LocalSource, '## [partners.<id>] with kind = "local"'),
        (SftpSource, '## [partners.<id>] with kind = "sftp"'),
        (FilerSettings, "## [partners.<id>.filer]"),
    ],
)
def test_describe_lists_every_key(cls: Any, header: str) -> None:
    text = describe()
    assert header in text
    part = text.split(header, 1)[1].split("\n## ", 1)[0]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "id":
            assert "`<id>`" in part
        elif f.name == "source":  # its choices' keys have sections of their own
            assert "| `kind` | one of 'local', 'sftp' |" in part
        elif not dataclasses.is_dataclass(hints[f.name]):
            assert f"| `{f.name}` |" in part, f.name
            assert f.metadata["doc"] in part


def test_describe_shows_defaults_and_checks() -> None:
    text = describe()
    assert '| `timezone` | a string | `"America/New_York"` |' in text
    assert '| `patterns` | an array of strings | `["*.xml", "*.csv"]` |' in text
    assert "| `name` | a string | required |" in text
    assert "| `enabled` | true or false | `true` |" in text
    assert "must be exactly 4 characters A-Z or 0-9" in text


# --- Partner ids that name the gateway's own folders (issue 10) -------------------------------


@pytest.mark.parametrize(("partner_id", "extra", "folder"), [
    ("ace", "", "outbox/ace"),
    ("changes", "", "outbox/changes"),
    # data_dir inside outbox_dir: outbox/<id> would be the gateway's data folder.
    ("data", "[gateway]\noutbox_dir = '.'\ndata_dir = 'data'\n", "data"),
    # one folder for both: outbox/<id> would be data/<id>.
    ("acks", "[gateway]\noutbox_dir = 'var'\ndata_dir = 'var'\n", "var/acks"),
    ("work", "[gateway]\noutbox_dir = 'var'\ndata_dir = 'var'\n", "var/work"),
])
def test_a_partner_id_that_names_a_folder_of_the_gateway_is_refused(
        write_config: WriteConfig, partner_id: str, extra: str, folder: str) -> None:
    text = f"{extra}{ACME}[partners.{partner_id}]\nname = 'P'\ninbox = 'in/{partner_id}'\n"
    assert problems_of(write_config(text)) == [
        f"partners.{partner_id}: the id {partner_id!r} names the gateway's own folder "
        f"{folder}, which its acknowledgments would share: choose another id"]


@pytest.mark.parametrize("partner_id", ["acme", "aces", "work", "acks", "data"])
def test_near_misses_of_the_gateway_folders_are_good_partner_ids(
        write_config: WriteConfig, partner_id: str) -> None:
    # With the default folders (outbox/ and data/ side by side) only ace and changes are taken.
    text = f"[partners.{partner_id}]\nname = 'P'\ninbox = 'in'\n"
    assert load_config(write_config(text)).partners[0].id == partner_id


# --- A partner's keys, whichever kind reads them (issue 11 item 7) ----------------------------

# Every key a partner table took before its source keys moved into LocalSource | SftpSource:
# partners' config.toml files must keep loading unchanged.
EVERY_PARTNER_KEY = {
    "name": "'Acme'", "inbox": "'in/acme'", "patterns": "['*.xml']", "disposition": "'keep'",
    "processed_dir": "'done'", "filer_code": "'AB1'", "min_age_seconds": "5", "max_files": "9",
    "max_bytes": "99", "max_licenses_per_day": "7", "mapping": "'m.toml'", "enabled": "false",
    "interval_seconds": "30", "schedule": "'*/5 * * * *'", "schedule_timezone": "'UTC'",
    "failure_alert_after": "2", "max_backoff_seconds": "60", "expected_cadence_hours": "2.5",
    "status_files": "false", "host": "'sftp.example'", "port": "2222", "user": "'acme'",
    "key_file": "'id_ed25519'", "key_passphrase_env": "'ACME_PASS'", "password_env": "'ACME_PW'",
    "known_hosts": "'known_hosts'", "remote_inbox": "'/in'", "remote_ack_dir": "'/acks'",
    "remote_disposition": "'delete'", "remote_processed_dir": "'/done'",
    "completion": "'done_file'", "connect_timeout": "3.5", "auth_timeout": "4",
    "operation_timeout": "30", "keepalive_seconds": "20", "prefetch": "false",
}


@pytest.mark.parametrize("kind", ["local", "sftp"])
def test_every_partner_key_is_still_read_whichever_the_kind(
        write_config: WriteConfig, kind: str) -> None:
    keys = "".join(f"{key} = {value}\n" for key, value in EVERY_PARTNER_KEY.items())
    path = write_config(f"[partners.acme]\nkind = '{kind}'\n{keys}[partners.acme.filer]\n"
                        "name = 'Acme Inc.'\n")
    for name in ("m.toml", "id_ed25519", "known_hosts"):
        (path.parent / name).write_text("")
    partner = load_config(path).partner("acme")
    assert (partner.kind, partner.max_files, partner.filer.name) == (kind, 9, "Acme Inc.")
    assert len(EVERY_PARTNER_KEY) + 2 == 38  # with kind and the filer table


@pytest.mark.parametrize(("kind", "key", "value", "message"), [
    # The other kind's keys are checked as before (a wrong value is an error), then unused.
    ("local", "port", "'22'", "expected an integer, got '22'"),
    ("local", "host", "5", 'expected a string or "", got 5'),
    ("local", "completion", "'now'", "expected one of 'stable', 'done_file', 'rename', "
                                     "got 'now'"),
    ("local", "connect_timeout", "0", "must be greater than 0, got 0"),
    ("sftp", "disposition", "'archive'", "expected one of 'keep', 'move', 'delete', "
                                         "got 'archive'"),
    ("sftp", "processed_dir", "3", 'expected a path or "", got 3'),
])
def test_a_key_of_the_other_kind_is_checked_as_before(
        write_config: WriteConfig, kind: str, key: str, value: str, message: str) -> None:
    sftp = "host = 'h'\nuser = 'u'\nknown_hosts = 'kh'\npassword_env = 'PW'\n"
    path = write_config(f"{ACME}kind = '{kind}'\n{sftp if kind == 'sftp' else ''}{key} = {value}\n")
    (path.parent / "kh").write_text("")
    assert problems_of(path) == [f"partners.acme.{key}: {message}"]


@pytest.mark.parametrize(("kind", "key", "value"), [
    ("local", "host", "'sftp.example'"), ("local", "remote_inbox", "'relative'"),
    ("sftp", "disposition", "'keep'"), ("sftp", "processed_dir", "'inbox/acme'"),
])
def test_a_valid_key_of_the_other_kind_is_left_unused_as_before(
        write_config: WriteConfig, kind: str, key: str, value: str) -> None:
    sftp = "host = 'h'\nuser = 'u'\nknown_hosts = 'kh'\npassword_env = 'PW'\n"
    path = write_config(f"{ACME}kind = '{kind}'\n{sftp if kind == 'sftp' else ''}{key} = {value}\n")
    (path.parent / "kh").write_text("")
    assert load_config(path).partner("acme").kind == kind
