"""The local-folder inbox: a folder on this machine, the twin of ``SftpInbox``."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

from gateway.config import LocalSource, PartnerConfig
from gateway.errors import FatalError
from gateway.inbox.base import (
    FileChanged,
    NotTaken,
    RemoteFile,
    copy_with_digest,
    text_name,
    wanted,
)
from gateway.ledger.store import FileRow
from gateway.storage import fsync_dir, together


class LocalInbox:
    """A folder on this machine (the sample partner, or a share mounted by a broker)."""

    def __init__(self, partner: PartnerConfig) -> None:
        source = partner.source
        # The configuration check refuses a local partner without an inbox; say so if it slips.
        if not isinstance(source, LocalSource) or source.inbox is None:
            raise FatalError(f"partner {partner.id!r}: kind = 'local' needs an inbox")
        self.partner = partner
        self.source = source
        self.partner_id = partner.id
        self.root: Path = source.inbox
        self._on_disk: dict[str, str] = {}  # text name -> name on disk, where they differ
        self._fetched: dict[str, tuple[int, int]] = {}  # name -> (device, inode) at fetch

    def list(self) -> list[RemoteFile]:
        if not self.root.is_dir():
            return []
        now = time.time()
        found = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                # lstat: a symlink is never followed out of the inbox.
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode) or not wanted(entry.name, self.partner.patterns):
                    continue
                if now - st.st_mtime < self.partner.effective_min_age:
                    continue
                name = text_name(entry.name)
                if name != entry.name:
                    self._on_disk[name] = entry.name
                found.append(RemoteFile(name, st.st_size, st.st_mtime))
        found.sort(key=lambda f: (f.mtime, f.name))
        return found

    def _disk_name(self, name: str) -> str:
        """The name on disk of a file listed as ``name`` (they differ for non-UTF-8 names)."""
        if name not in self._on_disk and "\\x" in name and self.root.is_dir():
            for entry in os.listdir(self.root):  # after a restart: list() not called yet
                if text_name(entry) == name:
                    self._on_disk[name] = entry
        return self._on_disk.get(name, name)

    def fetch(self, remote: RemoteFile, dest: Path, limit: int | None = None,
              ) -> tuple[int, str]:
        # O_NONBLOCK: a FIFO swapped in after the listing must not hang the poll (an open for
        # reading blocks until a writer comes); O_NOFOLLOW: nor a link be followed out.
        try:
            fd = os.open(self.root / self._disk_name(remote.name),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOENT):  # swapped for a link, or gone
                raise NotTaken(f"{remote.name} was replaced or removed after the listing "
                               f"({err.strerror})") from None
            raise
        with os.fdopen(fd, "rb") as src:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise NotTaken(f"{remote.name} was no longer a regular file when it was opened")
            os.set_blocking(fd, True)
            self._fetched[remote.name] = (opened.st_dev, opened.st_ino)
            try:
                return copy_with_digest(src, dest, remote.size, limit)
            except FileChanged as err:
                raise FileChanged(f"partner {self.partner_id}: {remote.name}: {err}") from None

    def dispose(self, taken: FileRow) -> str | None:
        remote_name = self._disk_name(taken.remote_name)
        src = self.root / remote_name
        if self.source.disposition == "keep":
            return None
        try:
            now = src.lstat()
        except FileNotFoundError:
            return None  # disposed of already (a rerun after a crash)
        # The inode is known when the file was fetched by this process (the usual case); after
        # a restart, size and mtime as taken.
        inode = self._fetched.get(taken.remote_name, (now.st_dev, now.st_ino))
        if not stat.S_ISREG(now.st_mode) or (now.st_size, now.st_mtime) != (
                taken.size, taken.mtime) or (now.st_dev, now.st_ino) != inode:
            return (f"{taken.remote_name} in the inbox is not the file that was taken (another "
                    "file renamed over it); it stays for the next poll")
        if self.source.disposition == "delete":
            src.unlink()
            fsync_dir(self.root)
            return None
        self._move_to_processed(remote_name, taken.file_id)
        return None

    def _move_to_processed(self, name: str, file_id: str) -> None:
        """Rename the taken file into the processed folder, never through a link: the folder
        is opened component by component with O_NOFOLLOW and the rename is made relative to
        the two folder handles, so a partner who makes ``processed`` (or a folder above it
        inside its inbox) a link to another partner's inbox gets an error, not a move there.
        A name already in the processed folder: this copy gets its file id."""
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            folder_fd = _real_folder(root_fd, self.root, self.source.effective_processed_dir,
                                     self.partner_id)
            try:
                target = name
                try:
                    os.stat(target, dir_fd=folder_fd, follow_symlinks=False)
                    target = f"{name}.{file_id}"
                except FileNotFoundError:
                    pass
                os.rename(name, target, src_dir_fd=root_fd, dst_dir_fd=folder_fd)
                together([lambda: os.fsync(folder_fd), lambda: os.fsync(root_fd)])
            finally:
                os.close(folder_fd)
        finally:
            os.close(root_fd)


    def deliver(self, local: Path, name: str, status: bool = False) -> None:
        # The outbox folder is where a local partner reads its acknowledgments.
        return None

    def close(self) -> None:
        return None


def _real_folder(root_fd: int, root: Path, folder: Path, partner_id: str) -> int:
    """A handle on ``folder``, created if missing. Inside the partner's inbox (which the
    partner writes) every component is opened with O_NOFOLLOW: a link there is refused. A
    folder outside it is the admin's, opened as configured."""
    flags = os.O_RDONLY | os.O_DIRECTORY
    try:
        parts = folder.relative_to(root).parts
    except ValueError:
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder, flags)
    fd = os.dup(root_fd)
    for part in parts:
        try:
            next_fd = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
        except FileNotFoundError:
            os.mkdir(part, 0o750, dir_fd=fd)
            next_fd = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise FatalError(
                    f"partner {partner_id}: its processed folder {folder} is a symbolic link "
                    "or not a folder; the gateway never moves a file through a link: make it "
                    "a real folder (or set processed_dir)") from None
            raise
        os.close(fd)
        fd = next_fd
    return fd
