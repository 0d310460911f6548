"""SFTP intake and delivery (paramiko): the ``SftpInbox`` twin of ``LocalInbox``.

- The session (host key verified, authentication, timeouts) is opened by
  ``gateway.inbox.sftp_session``, lazily, at the first operation.
- A file is taken only when complete (stable size and mtime, a done-file, or no temporary
  suffix), downloaded to a local temp name with its byte count and SHA-256 checked; the
  remote file is moved or deleted only after the gateway holds it durably (the caller decides
  when). Acknowledgments are uploaded to a temp name created exclusively (never through a
  link planted there), size-checked, then renamed.
- Remote names are data: never a local path; entries that are not regular files (symlinks,
  folders) are never taken, nor a name swapped for one after the listing (the open handle
  and the name's lstat are checked against it); only the file that was taken is disposed of.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import posixpath
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

import paramiko

from gateway.config import PartnerConfig, SftpSource
from gateway.errors import FatalError, TransientError
from gateway.inbox.base import FileChanged, FileRefused, NotTaken, RemoteFile, read_cap, wanted
from gateway.inbox.sftp_pipeline import (
    SMALL,
    LocalDiskError,
    LocalFile,
    Planned,
    ReadAhead,
)
from gateway.inbox.sftp_requests import DisposeStats, Requests
from gateway.inbox.sftp_session import in_words, open_session
from gateway.ledger.store import FileRow, Ledger
from gateway.storage import DigestWriter

T = TypeVar("T")
DONE_SUFFIX = ".done"
_CHUNK = 256 * 1024  # bench/bench_sftp.py: smaller reads than 1 MiB copy less in paramiko


class _Answered(TransientError):
    """The server answered an operation with an SFTP status (failure, unsupported...): the
    session is fine; whether the name or its folder is to blame is the caller's to find."""


class SftpInbox:
    """A partner's SFTP server as an ``Inbox``. Connects lazily; ``close`` disconnects."""

    def __init__(self, partner: PartnerConfig, ledger: Ledger | None = None) -> None:
        if not isinstance(partner.source, SftpSource):
            raise FatalError(f"partner {partner.id!r}: not an SFTP partner (kind = "
                             f"{partner.kind!r})")
        self.partner = partner
        self.source: SftpSource = partner.source
        self.partner_id = partner.id
        self.ledger = ledger  # remembers listings, for the "stable" completion rule
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self.server_key: paramiko.PKey | None = None
        self._listed: dict[str, paramiko.SFTPAttributes] = {}  # the last listing, by name
        self._order: list[RemoteFile] = []  # the last listing, in the order it is taken
        self._ahead: ReadAhead | None = None  # small files read ahead on this connection
        self._next_dispose: FileRow | None = None  # ``dispose_next``'s
        self._stats: DisposeStats | None = None  # the dispose's stats, maybe sent ahead

    # -- connection --------------------------------------------------------------------------

    def connect(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            session = open_session(self.partner_id, self.source)
            self._client, self._sftp = session.client, session.sftp
            self.server_key = session.server_key
        return self._sftp

    def close(self) -> None:
        # Closing a connection that just died can raise (EOFError, a socket error): that must
        # never hide the error that made us close it, nor fail a poll that went well.
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            if self._sftp is not None:
                self._sftp.close()
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            if self._client is not None:
                self._client.close()
        self._client = self._sftp = None
        self._next_dispose = self._stats = None  # their requests died with the session
        if self._ahead is not None:
            self._ahead.forget_stored()
        self._ahead = None

    def _why(self, err: BaseException) -> str:
        return in_words(err, self.source)

    def _call(self, what: str, fn: Callable[..., T], *args: object) -> T:
        """Run an SFTP operation; network trouble becomes a TransientError (retry later)."""
        try:
            return fn(*args)
        except UnicodeError as err:
            # paramiko decodes remote names as UTF-8: one that is not fails the whole listing.
            # The partner's poll fails (back-off, alert); no other partner is affected.
            raise TransientError(f"partner {self.partner_id}: {what} failed: a file name is "
                                 f"not valid UTF-8 ({err}); rename or remove it") from err
        except (OSError, EOFError, paramiko.SSHException) as err:
            if isinstance(err, FileNotFoundError | PermissionError):
                raise
            if self._answered(err):
                raise _Answered(f"partner {self.partner_id}: {what} failed: "
                                f"{self._why(err)}") from err
            self.close()
            raise TransientError(f"partner {self.partner_id}: {what} failed: "
                                 f"{self._why(err)}") from err

    def _answered(self, err: BaseException) -> bool:
        """Whether ``err`` is the server's SFTP status for the request (paramiko raises those
        as OSError, with ENOENT or EACCES for two of them), the session still up; not a lost
        connection (EOFError, SSHException, a closed channel) or a timeout."""
        if type(err) not in (OSError, FileNotFoundError, PermissionError):
            return False
        channel = self._sftp.get_channel() if self._sftp is not None else None
        transport = self._client.get_transport() if self._client is not None else None
        return bool(channel is not None and not channel.closed and transport is not None
                    and transport.is_active())

    def _on_name(self, folders: tuple[str, ...], what: str, fn: Callable[..., T],
                 *args: object, gone_ok: bool = False) -> T:
        """``_call`` for an operation on one file's name in ``folders`` (its ack uploaded
        and renamed into place, its move or delete). A refusal the server answers while
        those folders take a new file is about this name: FileRefused, the file's failure.
        Else the folder (missing, read-only, full) or the connection is to blame: raised as
        before, the partner's poll. ``gone_ok``: "no such file" is the caller's (disposed)."""
        try:
            return self._call(what, fn, *args)
        except (_Answered, FileNotFoundError, PermissionError) as err:
            if (gone_ok and isinstance(err, FileNotFoundError)) or not (
                    isinstance(err, _Answered) or self._answered(err)) or \
                    not all(self._takes_files(folder) for folder in folders):
                raise
            raise FileRefused(f"partner {self.partner_id}: {what} failed: "
                              f"{self._why(err.__cause__ or err)} (the folder takes other "
                              "files: something in the way of this one name)") from err

    def _takes_files(self, folder: str) -> bool:
        """Whether ``folder`` takes a new file: a dot-named probe (never listed, never
        written through a link) is written, then removed."""
        assert self._sftp is not None
        probe = posixpath.join(folder, f".aim-gateway-probe.{os.getpid()}.tmp")
        try:
            self._upload(self._sftp, io.BytesIO(b"probe\n"), probe)
            self._sftp.remove(probe)
        except (OSError, EOFError, paramiko.SSHException):
            return False
        return True

    # -- Inbox -------------------------------------------------------------------------------

    def list(self) -> list[RemoteFile]:
        sftp = self.connect()
        p, src = self.partner, self.source
        try:
            entries = self._call("listing " + src.remote_inbox, sftp.listdir_attr,
                                 src.remote_inbox)
        except FileNotFoundError as err:
            raise TransientError(f"partner {p.id}: the remote inbox {src.remote_inbox} does not "
                                 "exist (or is not a folder): "
                                 f"{missing_folder_fix(p, 'remote_inbox')}") from err
        except PermissionError as err:
            raise TransientError(f"partner {p.id}: cannot list the remote inbox "
                                 f"{src.remote_inbox}: permission denied") from err
        names = {e.filename for e in entries}
        now = time.time()
        found: list[RemoteFile] = []
        seen: set[str] = set()
        for entry in entries:
            name = entry.filename
            mode = entry.st_mode or 0
            if not stat.S_ISREG(mode):  # symlinks and folders are never followed or taken
                continue
            if name.endswith(DONE_SUFFIX) or not wanted(name, p.patterns):
                continue
            remote = RemoteFile(name, entry.st_size or 0, float(entry.st_mtime or 0))
            self._listed[name] = entry  # its owner, for fetch's identity checks
            if src.completion == "done_file" and name + DONE_SUFFIX not in names:
                continue
            if src.completion == "stable" and self.ledger is not None:
                seen.add(name)
                since = self.ledger.stable_since(p.id, name, remote.size, remote.mtime, now)
                if now - since < p.effective_min_age:
                    continue  # still being written, or not yet seen long enough
            found.append(remote)
        if self.ledger is not None and src.completion == "stable":
            gone = self.ledger.remote_seen_names(p.id) - seen
            if gone:
                self.ledger.forget_remote(p.id, gone)
        found.sort(key=lambda f: (f.mtime, f.name))
        self._order = found
        if self._ahead is not None:
            self._ahead.plan(self._small_files())
        return found

    def _path(self, folder: str, name: str) -> str:
        if "/" in name or name in (".", ".."):
            raise TransientError(f"partner {self.partner_id}: refusing remote name {name!r}")
        return posixpath.join(folder, name)

    def fetch(self, remote: RemoteFile, dest: Path, limit: int | None = None,
              ) -> tuple[int, str]:
        """Download to ``dest`` (fsynced); check the byte count and that the file did not
        change meanwhile; return (bytes, SHA-256). At most ``inbox.base.read_cap`` bytes are
        read: one more than listed, and one more than ``limit`` (then F003)."""
        sftp = self.connect()
        path = self._path(self.source.remote_inbox, remote.name)
        digest = hashlib.sha256()
        total = 0
        got = bytearray()  # the small path's bytes: in a failure's count before it returns
        cap = read_cap(remote.size, limit)
        assert cap is not None
        try:
            if self.source.prefetch and cap == remote.size + 1 and cap <= SMALL:
                after = self._fetch_small(sftp, path, remote, cap, dest, digest, got)
                total = len(got)
            else:
                with sftp.open(path, "rb") as src, LocalFile(dest) as out, \
                        DigestWriter(out.write, remote.size) as sink:
                    self._same_file(sftp, path, remote, src)
                    if self.source.prefetch:
                        src.prefetch(min(remote.size, cap))  # never past what is read
                    while total < cap and (chunk := src.read(min(_CHUNK, cap - total))):
                        sink.put(chunk)
                        total += len(chunk)
                    sink.close()
                    digest = sink.digest
                    out.sync()
                    self._same_file(sftp, path, remote, src)
                after = sftp.stat(path)
        except NotTaken:
            dest.unlink(missing_ok=True)
            raise
        except LocalDiskError as local:
            dest.unlink(missing_ok=True)
            raise TransientError(
                f"partner {self.partner_id}: cannot store {remote.name} on the local disk "
                f"({dest.parent}) after {local.written} of {remote.size} bytes: {local.err}; "
                "the file stays on the server and is taken at a later poll") from local.err
        except FileNotFoundError as err:
            dest.unlink(missing_ok=True)
            raise TransientError(f"partner {self.partner_id}: {remote.name} disappeared "
                                 "from the server before it was downloaded whole; nothing "
                                 "was taken") from err
        except (TimeoutError, OSError, EOFError, paramiko.SSHException) as err:
            dest.unlink(missing_ok=True)
            self.close()
            raise TransientError(f"partner {self.partner_id}: download of {remote.name} "
                                 f"failed after {total or len(got)} of {remote.size} bytes: "
                                 f"{self._why(err)}; it is taken again at a later poll"
                                 ) from err
        if limit is not None and total > limit:
            return total, digest.hexdigest()  # F003: the rest is never downloaded
        if total != remote.size or after.st_size != remote.size or \
                float(after.st_mtime or 0) != remote.mtime:
            dest.unlink(missing_ok=True)
            raise FileChanged(
                f"partner {self.partner_id}: {remote.name} changed while it was downloaded "
                f"({remote.size} bytes listed, {total} read, {after.st_size} now); it will be "
                "taken at a later poll")
        return total, digest.hexdigest()

    def _fetch_small(self, sftp: paramiko.SFTPClient, path: str, remote: RemoteFile, cap: int,
                     dest: Path, digest: hashlib._Hash, got: bytearray,
                     ) -> paramiko.SFTPAttributes:
        """``fetch`` of a small file into ``got``: ``ReadAhead.fetch``, its requests written
        to the channel together (``Requests.batch``)."""
        ahead = self._read_ahead(sftp)
        with ahead.requests.batch():
            after = ahead.fetch(remote.name, path, cap, dest, got, self._check_same)
        digest.update(got)
        return after

    def _read_ahead(self, sftp: paramiko.SFTPClient) -> ReadAhead:
        """The read-ahead of this connection, planned on the last listing."""
        if self._ahead is None:
            self._ahead = ReadAhead(Requests(sftp))
            self._ahead.plan(self._small_files())
        return self._ahead

    def _small_files(self) -> Planned:
        if not self.source.prefetch:
            return []
        return [(f.name, posixpath.join(self.source.remote_inbox, f.name), f.size + 1)
                for f in self._order]

    def _same_file(self, sftp: paramiko.SFTPClient, path: str, remote: RemoteFile,
                   handle: paramiko.SFTPFile) -> None:
        """``_check_same`` with the open handle's and the name's stats."""
        self._check_same(path, remote.name, handle.stat(), sftp.lstat(path))

    def _check_same(self, path: str, name: str, opened: paramiko.SFTPAttributes,
                    named: paramiko.SFTPAttributes) -> None:
        """NotTaken unless the open handle and the name (its lstat) are one regular file,
        owned as the listing showed: the server opens by name and follows a link swapped in
        after the listing, maybe to another partner's file of the same size and mtime. The
        size and mtime against the listing are the download's own check (a changed file)."""
        listed = self._listed.get(name, named)
        if not stat.S_ISREG(named.st_mode or 0):
            reason = "its name is now a symbolic link or not a regular file"
        elif not stat.S_ISREG(opened.st_mode or 0):
            reason = "what the server opened is not a regular file"
        elif not _same_owner(opened, listed) or not _same_owner(named, listed):
            reason = (f"what the server opened belongs to another owner ({_owner(opened)}, "
                      f"listed {_owner(listed)})")
        elif (opened.st_size, opened.st_mtime) != (named.st_size, named.st_mtime):
            reason = "what the server opened is not the file its name shows now"
        else:
            return
        raise NotTaken(f"partner {self.partner_id}: {name} not taken at this poll: "
                       f"{reason} (a link swapped in after the listing?)")

    def dispose(self, taken: FileRow) -> str | None:
        """Move the taken file to the processed folder (or delete it), and its done-file;
        only when the name still holds that file (see ``Inbox.dispose``)."""
        sftp = self.connect()
        p, src = self.partner, self.source
        remote_name = taken.remote_name
        path, target = self._dispose_paths(taken)
        done = path + DONE_SUFFIX
        target_dir = src.effective_remote_processed_dir
        try:
            # The name's lstat and, for a move, whether the target is taken: both asked at once.
            now, taken_target = self._call(f"{src.remote_disposition} {remote_name}",
                                           self._dispose_stats(sftp).answers, path, target)
            target = target or posixpath.join(target_dir, remote_name)
            if not stat.S_ISREG(now.st_mode or 0) or now.st_size != taken.size or \
                    float(now.st_mtime or 0) != taken.mtime:
                # Another file under the same name (renamed over it while it was processed):
                # it is the next poll's new file, never moved away unread.
                return (f"{remote_name} on the server is not the file that was taken (now "
                        f"{now.st_size} bytes, taken {taken.size}); it stays for the next poll")
            if src.remote_disposition == "delete":
                self._on_name((src.remote_inbox,), "delete " + remote_name, sftp.remove, path,
                              gone_ok=True)
            else:
                if taken_target:
                    target = f"{target}.{taken.file_id}"  # an earlier file of that name
                self._on_name((src.remote_inbox, target_dir), "move " + remote_name,
                              self._rename, sftp, path, target, gone_ok=True)
        except FileNotFoundError as err:
            # Either the file is gone (already disposed of: a rerun after a crash), or it is
            # still there and the processed folder is what is missing: never silent then.
            if src.remote_disposition == "move" and self._call(
                    "move " + remote_name, self._exists, sftp, path):
                raise TransientError(
                    f"partner {p.id}: cannot move {remote_name} to {target_dir}: that folder "
                    f"does not exist (or is not a folder): "
                    f"{missing_folder_fix(p, 'remote_processed_dir')}; the file stays in "
                    f"{src.remote_inbox} until it can be moved") from err
        except PermissionError as err:
            raise TransientError(f"partner {p.id}: cannot {src.remote_disposition} "
                                 f"{remote_name}: permission denied ({err})") from err
        if src.completion == "done_file":
            with contextlib.suppress(FileNotFoundError, PermissionError):
                self._call("remove " + remote_name + DONE_SUFFIX, sftp.remove, done)
        return None

    def _dispose_paths(self, taken: FileRow) -> tuple[str, str | None]:
        """The taken file's remote path, and its target in the processed folder for a move."""
        src = self.source
        path = self._path(src.remote_inbox, taken.remote_name)
        return path, (posixpath.join(src.effective_remote_processed_dir, taken.remote_name)
                      if src.remote_disposition == "move" else None)

    def dispose_next(self, taken: FileRow) -> None:
        """``taken`` is disposed of right after the next ``deliver`` (its ack): that delivery
        writes the dispose's two stats (``DisposeStats.sent_with``) with its last request, the
        rename into place, and they are answered while it waits for that rename: one round
        trip a file less, of eight (bench/bench_deliver.py, 5 ms each way: dispose 26-37 ms
        a file -> 17-19). The stats are read-only, on other names: their order with the
        rename does not matter; the dispose checks the answers before it moves anything."""
        self._next_dispose = taken

    def _dispose_stats(self, sftp: paramiko.SFTPClient) -> DisposeStats:
        """The connection's dispose stats (sent ahead by ``deliver`` or by ``dispose``)."""
        if self._stats is None:
            self._stats = DisposeStats(self._read_ahead(sftp).requests)
        return self._stats

    def deliver(self, local: Path, name: str, status: bool = False) -> None:
        """Upload an acknowledgment: temp name, size check, rename (replacing an older one).
        A status file goes to the status folder, created the first time (issue 14, 9b)."""
        folder = self.source.effective_remote_status_dir if status else \
            self.source.remote_ack_dir
        then, self._next_dispose = self._next_dispose, None
        if not folder:
            return
        sftp = self.connect()
        if status:
            self._status_folder(sftp, folder)
        target = self._path(folder, name)
        # One temp name per acknowledgment, the same in every process (a partner is polled
        # by one worker at a time): a later delivery removes, then recreates and renames,
        # whatever an upload cut in the middle left behind.
        tmp = self._path(folder, f".{name}.tmp")
        size = local.stat().st_size
        try:
            with open(local, "rb") as src:
                attrs = self._on_name((folder,), "upload " + name, self._upload, sftp, src,
                                      tmp)
            if attrs.st_size != size:
                with contextlib.suppress(OSError):
                    sftp.remove(tmp)
                raise TransientError(f"partner {self.partner_id}: upload of {name} is "
                                     f"{attrs.st_size} bytes, not {size}")
            riding = self._dispose_stats(sftp).sent_with(*self._dispose_paths(then)) \
                if then is not None and not status else contextlib.nullcontext()
            try:
                with riding:
                    self._on_name((folder,), "rename " + name, self._rename, sftp, tmp,
                                  target)
            except BaseException:
                if self._stats is not None:
                    self._stats.forget()  # no dispose follows now: a later one asks afresh
                raise
        except FileNotFoundError as err:
            raise TransientError(f"partner {self.partner_id}: cannot write {name} to "
                                 f"{folder}: that folder does not exist (or is not a folder): "
                                 f"{missing_folder_fix(self.partner, 'remote_ack_dir')}"
                                 ) from err
        except PermissionError as err:
            raise TransientError(f"partner {self.partner_id}: cannot write {name} to "
                                 f"{folder}: permission denied") from err

    def _status_folder(self, sftp: paramiko.SFTPClient, folder: str) -> None:
        try:
            sftp.stat(folder)
        except FileNotFoundError:
            with contextlib.suppress(OSError):  # made meanwhile, or refused: upload says so
                sftp.mkdir(folder, 0o750)

    @staticmethod
    def _upload(sftp: paramiko.SFTPClient, src: BinaryIO, remote: str) -> paramiko.SFTPAttributes:
        """Write ``src`` to ``remote`` as a new file; its attributes, from the open handle,
        every write's status checked (``Requests.upload``).

        Never through a link (OPERATIONS): ``put`` would open the predictable temp name with
        truncate and follow a link the partner planted there (overwriting, say, another
        partner's ack). Remove never follows a link; the exclusive create then fails on a
        link planted again in between, instead of writing through it.
        """
        return Requests(sftp).upload(remote, src)

    @staticmethod
    def _rename(sftp: paramiko.SFTPClient, source: str, target: str) -> None:
        """Atomic replace where the server has posix-rename (OpenSSH), else remove + rename.
        Both replace a link at ``target`` itself, never the file it points to."""
        try:
            sftp.posix_rename(source, target)
        except OSError as err:
            if isinstance(err, FileNotFoundError | PermissionError) or "posix" not in str(err):
                raise
            with contextlib.suppress(FileNotFoundError):
                sftp.remove(target)
            sftp.rename(source, target)

    @staticmethod
    def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
        try:
            sftp.stat(path)
        except FileNotFoundError:
            return False
        return True


def missing_folder_fix(partner: PartnerConfig, key: str) -> str:
    """How to fix a remote folder that is missing: create it, or point the key elsewhere."""
    assert isinstance(partner.source, SftpSource)
    folder = (partner.source.effective_remote_processed_dir if key == "remote_processed_dir"
              else getattr(partner.source, key))
    fix = (f"create {folder} on the server, or set partners.{partner.id}.{key} to an "
           "existing folder")
    if key == "remote_processed_dir":
        fix += ' (or remote_disposition = "delete")'
    return fix


def _owner(attrs: paramiko.SFTPAttributes) -> str:
    return f"{attrs.st_uid}:{attrs.st_gid}"


def _same_owner(a: paramiko.SFTPAttributes, b: paramiko.SFTPAttributes) -> bool:
    return (a.st_uid, a.st_gid) == (b.st_uid, b.st_gid)
