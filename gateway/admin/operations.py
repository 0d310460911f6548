"""What admins do to a partner or a file besides reprocess and purge (``actions``): pause and
resume a partner, send an acknowledgment again, release a quarantined file, and find the
files of a file (original, ack, ACE files) that the web page offers for download.

The command line and the web page call these. Each action is recorded as ONE ``admin.<verb>``
event, with who did it and why, inside the ledger transaction that makes it true (the audit
trail hooks that one point).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.admin.actions import leased, reprocess
from gateway.admin.reasons import clean_reason
from gateway.config import Config
from gateway.errors import FatalError, GatewayError
from gateway.inbox.kinds import open_inbox
from gateway.ledger.events import EventLog
from gateway.ledger.pauses import Pause, clear_pause, pause_of, set_pause
from gateway.ledger.store import FileRow, Ledger, open_ledger, utc_stamp
from gateway.service.acks import stored_ack
from gateway.service.quarantine import release
from gateway.service.runner import Runner, event_log
from gateway.storage import Layout, safe_name


@contextmanager
def _writing(config: Config) -> Iterator[tuple[Ledger, EventLog]]:
    ledger = open_ledger(config)
    events = event_log(config)
    try:
        yield ledger, events
    finally:
        events.close()
        ledger.close()


# -- pause and resume a partner -----------------------------------------------------------------


def pause(config: Config, partner_id: str, reason: str, actor: str) -> Pause:
    """Stop polling ``partner_id`` (serve and run --once skip it) until it is resumed. A poll
    under way finishes. FatalError: unknown partner, no reason, already paused."""
    partner = config.partner(partner_id)
    text = clean_reason(reason, "pause")
    with _writing(config) as (ledger, events), ledger.transaction():
        if (earlier := pause_of(ledger.db, partner.id)) is not None:
            raise FatalError(f"partner {partner.id} is already {earlier.words}")
        paused = Pause(partner.id, utc_stamp(), actor, text)
        set_pause(ledger.db, paused)
        events.emit(ledger, "admin.pause", partner=partner.id, actor=actor, reason=text)
    return paused


def resume(config: Config, partner_id: str, reason: str, actor: str) -> Pause:
    """Poll ``partner_id`` again from its next scheduled poll; the pause that ended.
    FatalError: unknown partner, no reason, not paused."""
    partner = config.partner(partner_id)
    text = clean_reason(reason, "resume")
    with _writing(config) as (ledger, events), ledger.transaction():
        paused = pause_of(ledger.db, partner.id)
        if paused is None:
            raise FatalError(f"partner {partner.id} is not paused")
        clear_pause(ledger.db, partner.id)
        events.emit(ledger, "admin.resume", partner=partner.id, actor=actor, reason=text,
                    paused_by=paused.paused_by, paused_at=paused.paused_at,
                    paused_for=paused.reason)
    return paused


# -- release a quarantined file -----------------------------------------------------------------


def release_file(config: Config, file_id: str, reason: str, actor: str) -> FileRow:
    """``quarantine.release`` on a ledger opened for it (command line and web page)."""
    with _writing(config) as (ledger, events):
        return release(config, ledger, events, file_id, clean_reason(reason, "release"),
                       actor)


# -- send an acknowledgment again ---------------------------------------------------------------


def resend(config: Config, file_id: str, reason: str, actor: str,
           wait_seconds: float = 60.0) -> FileRow:
    """Put a finished file's acknowledgment where its partner reads it again, the same bytes
    (the gateway's stored copy): the outbox copy, and the partner's remote ack folder for an
    SFTP partner. Runs under the partner's lease, so a poll never races the upload.

    What is sent is decided under the lease (a reprocess that held it may have replaced the
    ack meanwhile), and ``admin.resend`` is recorded in that same transaction BEFORE the
    upload: the audit trail never misses an ack that went out. An upload that fails leaves
    the entry, which says what was attempted; the error is raised to the admin.

    FatalError: unknown file, no ack (yet), the stored copy gone, its name now holding a later
    file's ack (a reprocess replaced it: re-send that one), no reason. TransientError: the
    partner stays busy, or its server fails."""
    text = clean_reason(reason, "re-send")
    runner = Runner(config)
    try:
        row = runner.ledger.file(file_id)
        if row is None:
            raise FatalError(f"no file {file_id!r} in the ledger")
        partner = config.partner(row.partner)
        _resendable(runner, row)  # refused at once, without waiting for the lease
        with leased(runner, partner.id, wait_seconds):
            row, stored = _record_resend(runner, file_id, text, actor)
            inbox = open_inbox(partner, runner.ledger)
            try:
                runner.processor.publish_ack(row, stored, stored.name.rsplit(".", 1)[-1])
                inbox.deliver(stored, row.ack_name or stored.name)
            finally:
                inbox.close()
    finally:
        runner.close()
    return row


def _record_resend(runner: Runner, file_id: str, reason: str,
                   actor: str) -> tuple[FileRow, Path]:
    """Under the lease: the file read again, checked again, and ``admin.resend`` recorded."""
    with runner.ledger.transaction():
        row = runner.ledger.file(file_id)
        assert row is not None  # file rows are never deleted
        stored = _resendable(runner, row)
        runner.events.emit(runner.ledger, "admin.resend", partner=row.partner,
                           file_id=row.file_id, actor=actor, reason=reason,
                           ack=row.ack_name, bytes=stored.stat().st_size)
    return row, stored


def _resendable(runner: Runner, row: FileRow) -> Path:
    """The stored ack of ``row``, or FatalError saying why it cannot be sent again."""
    if row.state != "DONE" or not row.ack_name:
        raise FatalError(f"file {row.file_id} has no acknowledgment delivered yet (state "
                         f"{row.state}); the next poll delivers it")
    kind = row.ack_name.rsplit(".", 1)[-1]
    if runner.processor.ack_name_of(row, kind) != row.ack_name:
        raise FatalError(f"the acknowledgment name {row.ack_name} now holds a later file's "
                         "acknowledgment (a reprocess replaced it); re-send that file's")
    later = runner.ledger.files("partner = ? AND ack_name = ? AND file_id > ?",
                                (row.partner, row.ack_name, row.file_id), limit=1)
    if later:
        raise FatalError(f"the acknowledgment name {row.ack_name} now holds the ack of file "
                         f"{later[0].file_id}, which replaced this one; re-send that file's")
    stored = stored_ack(runner.layout, row, kind)
    if not stored.is_file():
        raise FatalError(f"the stored acknowledgment of file {row.file_id} is not at {stored}")
    return stored


# -- the files of a file, for download ----------------------------------------------------------

# What each kind of download is sent as; ACE records are 80 ASCII characters a line.
MEDIA = {"xml": "application/xml", "csv": "text/csv", "txt": "text/plain; charset=us-ascii"}


@dataclass(frozen=True)
class Artifact:
    path: Path  # on disk, always one the ledger names, inside the gateway's own folders
    name: str  # the download's file name: safe_name, never a path
    media_type: str


def artifact(config: Config, ledger: Ledger, file_id: str, kind: str,
             name: str = "") -> Artifact:
    """The original, the ack or one ACE file (``name``) of ``file_id``, as the ledger records
    them: nothing from the request is ever joined to a path but a name the ledger lists.
    FatalError when the file or that part of it is unknown or no longer on disk."""
    row = ledger.file(file_id)
    if row is None:
        raise FatalError(f"no file {file_id!r} in the ledger")
    layout = Layout.of(config)
    if kind == "original":
        found = _original(layout, row)
        suffix = (row.format or row.remote_name.rsplit(".", 1)[-1]).lower()
        return _checked(layout, found, safe_name(row.remote_name),
                        MEDIA.get(suffix, "application/octet-stream"))
    if kind == "ack":
        if not row.ack_name:
            raise FatalError(f"file {row.file_id} has no acknowledgment yet")
        ack_kind = row.ack_name.rsplit(".", 1)[-1]
        return _checked(layout, stored_ack(layout, row, ack_kind), safe_name(row.ack_name),
                        MEDIA.get(ack_kind, "application/octet-stream"))
    if kind == "ace":
        listed = row.ace_names.split(",") if row.ace_names else []
        if name not in listed:
            raise FatalError(f"file {row.file_id} made no ACE file {name[:80]!r}")
        return _checked(layout, layout.ace_outbox / name, safe_name(name), MEDIA["txt"])
    raise FatalError(f"no download {kind[:40]!r}: original, ack or ace")


def _original(layout: Layout, row: FileRow) -> Path:
    if row.archive_purged_at:
        raise FatalError(f"the original of file {row.file_id} was purged "
                         f"({row.archive_purged_at})")
    if row.archive_path:
        return Path(row.archive_path)
    return layout.received / row.local_name  # received, not finished yet


def _checked(layout: Layout, path: Path, name: str, media_type: str) -> Artifact:
    """Only a regular file inside the data or outbox folder is ever sent: a ledger row that
    an attacker with write access to the ledger edited cannot name /etc/passwd."""
    roots = [layout.data_dir.resolve(), layout.outbox_dir.resolve()]
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise FatalError(f"{name} is not in the gateway's folders; not sent")
    if not resolved.is_file():
        raise FatalError(f"{name} is no longer at {path} (moved or removed)")
    return Artifact(resolved, name, media_type)


def reprocess_many(config: Config, file_ids: list[str], reason: str,
                   actor: str) -> list[tuple[str, str | None, str | None]]:
    """Reprocess each file with the same reason, one after the other; a failure of one does
    not stop the others. Per file: (file id, the new file's id or None, the error or None)."""
    text = clean_reason(reason, "reprocess")
    done: list[tuple[str, str | None, str | None]] = []
    for file_id in dict.fromkeys(file_ids):  # each once, in the order given
        try:
            done.append((file_id, reprocess(config, file_id, text, actor=actor), None))
        except GatewayError as err:
            new_id = getattr(err, "file_id", None)  # ReprocessFailed: received, then failed
            done.append((file_id, new_id, str(err)))
    return done
