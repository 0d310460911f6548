"""A test project's config.toml, written from what a test changes (``ProjectConfig``).

A plain module, not conftest, so that bench/ writes its configs with it too (bench/project.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest
    from sftp_server import SftpAccount, SshServer

# The filer details every test partner files under (OPERATIONS.md, [partners.<id>.filer]);
# defined once so a change to the block reaches every test that writes one.
FILER: dict[str, object] = {
    "name": "ACME ALUMINUM IMPORTS LLC",
    "street": "100 HARBOR WAY",
    "city": "NEWARK",
    "state": "NJ",
    "postal_code": "07114",
    "contact_name": "JANE DOE",
    "phone": "+1 973 555 0100",
    "email": "licensing@acme-aluminum.example",
}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string. JSON's escapes are TOML's (non-ASCII kept as it is:
    JSON's surrogate pairs are no TOML), DEL added: a hostile name or path is written as the
    text it means."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: object) -> str:
    """``value`` as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return toml_string(value.as_posix())
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML value for {value!r}")


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def toml_table(header: str, settings: dict[str, object]) -> str:
    """``[header]`` with its keys, then its sub-tables (the values that are dicts)."""
    lines = [f"[{header}]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in settings.items()
              if not isinstance(value, dict) and not _is_table_array(value)]
    tables = [toml_table(f"{header}.{key}", value) for key, value in settings.items()
              if isinstance(value, dict)]
    # A list of dicts: an array of tables ([[header.key]]), e.g. a partner's mappings.
    tables += ["[" + toml_table(f"{header}.{key}]", item)
               for key, value in settings.items() if _is_table_array(value) for item in value]
    return "\n".join(lines) + "\n" + "".join("\n" + table for table in tables)


class ProjectConfig:
    """A test project's config.toml in ``base``, stating only what a test changes: every other
    setting keeps its default (data/ and outbox/ beside the file), so a changed default is
    tested.

    ``partner``/``sftp_partner`` add a partner (or replace one of that id), ``update`` changes
    some keys of one (``None`` removes a key), ``set`` changes a section, ``ledger`` names a
    PostgreSQL ledger; ``write`` writes ``base/config.toml`` (again after a change)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.path = base / "config.toml"
        self.sections: dict[str, dict[str, object]] = {}
        self.partners: dict[str, dict[str, object]] = {}

    def set(self, section: str, **settings: object) -> ProjectConfig:
        self.sections.setdefault(section, {}).update(settings)
        return self

    def ledger(self, dsn: str) -> ProjectConfig:
        """The ledger in the PostgreSQL database ``dsn`` (the pg_dsn fixture's)."""
        return self.set("gateway", ledger=dsn)

    def backend(self, request: pytest.FixtureRequest, backend: str) -> ProjectConfig:
        """The ledger on ``backend``: "sqlite" (the default) or "postgresql" (the pg_dsn
        fixture's database, started only for the tests that ask for it)."""
        if backend == "postgresql":
            self.ledger(request.getfixturevalue("pg_dsn"))
        return self

    def partner(self, pid: str, *, filer: bool | dict[str, object] = False,
                **settings: object) -> ProjectConfig:
        """A local partner: named ``pid.title()``, reading ``inbox/<pid>`` unless told, with
        the shared filer block when ``filer`` is true (or the given one)."""
        profile = {key: value for key, value in
                   {"name": pid.title(), "inbox": f"inbox/{pid}", **settings}.items()
                   if value is not None}  # inbox=None: a partner with no local inbox
        if filer:
            profile["filer"] = dict(FILER) if filer is True else filer
        self.partners[pid] = profile
        return self

    def sftp_partner(self, pid: str, server: SshServer, account: SftpAccount, *,
                     timeout: float | None = 3.0, **settings: object) -> ProjectConfig:
        """An SFTP partner on the test sshd ``server`` (tests/sftp_server.py): its host, port,
        user, key and known_hosts, the ``account``'s folders, no min age, short timeouts
        (``timeout=None``: the default ones)."""
        self.partners[pid] = {"name": pid, **server.partner_settings(account, timeout),
                              **settings}
        return self

    def update(self, pid: str, **settings: object) -> ProjectConfig:
        profile = self.partners[pid]
        profile.update(settings)
        for key in [key for key, value in profile.items() if value is None]:
            del profile[key]
        return self

    def inbox(self, pid: str) -> Path:
        """Partner ``pid``'s local inbox (relative paths are the config folder's), created."""
        inbox = self.base / str(self.partners[pid]["inbox"])
        inbox.mkdir(parents=True, exist_ok=True)
        return inbox

    def text(self) -> str:
        tables = [toml_table(name, settings) for name, settings in self.sections.items()]
        tables += [toml_table(f"partners.{pid}", profile)
                   for pid, profile in self.partners.items()]
        return "\n".join(tables)

    def write(self, path: Path | None = None) -> Path:
        """Write the config (to ``base/config.toml`` unless told) and return its path."""
        target = path or self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.text(), encoding="utf-8")
        return target
