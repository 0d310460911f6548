"""What the command line reads: the read model (``gateway.ledger.reads``) on a read-only
ledger opened for the command, and each local partner's backlog, which the read model cannot
count (it lists an inbox). ``report`` renders the results for a terminal or as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, TypeVar

from gateway.config import Config, PartnerConfig
from gateway.inbox.local import LocalInbox
from gateway.ledger.reads.files import FileQuery, count_files, list_files, mark_quarantined
from gateway.ledger.reads.health import PartnerHealth, partner_health, service_view, unseen
from gateway.ledger.reads.licenses import (
    LicenseQuery,
    LicenseRow,
    LicenseStory,
    count_licenses,
    license_story,
    list_licenses,
)
from gateway.ledger.store import FileRow, Ledger, ledger_exists, open_ledger

# A file's story is read where it is asked for: ``run --once`` imports this module for the
# files it took and never shows a story (part of about 4 ms of CPU at its start, measured).
if TYPE_CHECKING:
    from gateway.ledger.reads.story import FileStory, FindingGroup

T = TypeVar("T")


@contextmanager
def reading(config: Config) -> Iterator[Ledger | None]:
    """A read-only ledger, or None when the gateway has not run yet (nothing to show)."""
    if not ledger_exists(config):
        yield None
        return
    ledger = open_ledger(config, readonly=True)
    try:
        yield ledger
    finally:
        ledger.close()


def _read(config: Config, nothing: T, read: Callable[[Ledger], T]) -> T:
    with reading(config) as ledger:
        return nothing if ledger is None else read(ledger)


def backlog(ledger: Ledger, partner: PartnerConfig) -> int | None:
    """Complete files in a local inbox not yet taken; an SFTP listing is not cheap: None."""
    if partner.kind != "local":
        return None
    try:
        waiting = LocalInbox(partner).list()
    except OSError:
        return None
    return sum(not ledger.already_taken(partner.id, f.name, f.size, f.mtime) for f in waiting)


def health(ledger: Ledger, config: Config, now: datetime) -> list[PartnerHealth]:
    """Every partner's health (CLI and web page), with its backlog."""
    service = service_view(ledger, config, now)
    return [partner_health(ledger, config, p, now, backlog(ledger, p), service=service)
            for p in config.partners]


def service_note(ledger: Ledger, config: Config, now: datetime) -> str | None:
    """What the views say above the partners when the running service needs a reload."""
    return service_view(ledger, config, now).note()


def partners(config: Config, now: datetime | None = None) -> list[PartnerHealth]:
    moment = now or datetime.now(UTC)
    with reading(config) as ledger:
        if ledger is None:
            return [unseen(p) for p in config.partners]
        return health(ledger, config, moment)


def running_note(config: Config, now: datetime | None = None) -> str | None:
    """``service_note`` on a ledger opened for it (None before the first run)."""
    return _read(config, None, lambda ledger: service_note(ledger, config,
                                                           now or datetime.now(UTC)))


def files(config: Config, query: FileQuery) -> list[FileRow]:
    return _read(config, [], lambda ledger: list_files(ledger, query, config.gateway.zone))


def counted_files(config: Config, query: FileQuery) -> tuple[list[FileRow], int]:
    """The files of ``query`` and how many match, its limit aside (counted when it bites)."""
    def read(ledger: Ledger) -> tuple[list[FileRow], int]:
        rows = list_files(ledger, query, config.gateway.zone)
        return rows, (count_files(ledger, query, config.gateway.zone)
                      if len(rows) == query.limit else len(rows))

    return _read(config, ([], 0), read)  # type: ignore[arg-type]


def taken(config: Config, file_ids: list[str]) -> list[FileRow]:
    """The files a run took, in the order taken (each line of ``run --once``)."""
    if not file_ids:
        return []

    def read(ledger: Ledger) -> list[FileRow]:
        marks = ", ".join("?" for _ in file_ids)
        rows = {r.file_id: r for r in mark_quarantined(ledger.db, ledger.files(
            f"file_id IN ({marks})", tuple(file_ids), limit=len(file_ids)))}
        return [rows[i] for i in file_ids if i in rows]

    return _read(config, [], read)


def licenses(config: Config, query: LicenseQuery) -> list[LicenseRow]:
    return _read(config, [], lambda ledger: list_licenses(ledger, query))


def counted_licenses(config: Config, query: LicenseQuery) -> tuple[list[LicenseRow], int]:
    """The licenses of ``query`` and how many match, its limit aside."""
    def read(ledger: Ledger) -> tuple[list[LicenseRow], int]:
        rows = list_licenses(ledger, query)
        return rows, count_licenses(ledger, query) if len(rows) == query.limit else len(rows)

    return _read(config, ([], 0), read)  # type: ignore[arg-type]


def story(config: Config, file_id: str, today: date | None = None,
          limit: int | None = None) -> FileStory | None:
    """A file's story, its applications and findings cut at ``limit`` (None: all)."""
    from gateway.ledger.reads.story import file_story

    return _read(config, None, lambda ledger: file_story(ledger, config, file_id, limit,
                                                         today=today))


def groups(config: Config, file_id: str) -> list[FindingGroup]:
    """A file's findings by code (``show``, as the web page groups them)."""
    from gateway.ledger.reads.story import finding_groups

    return _read(config, [], lambda ledger: finding_groups(ledger, file_id))


def license_of(config: Config, number: str, today: date) -> LicenseStory | None:
    return _read(config, None, lambda ledger: license_story(ledger, number, today))
