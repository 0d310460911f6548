"""The local-folder inbox: a folder on this machine, the twin of ``SftpInbox``."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from gateway.config import PartnerConfig
from gateway.inbox.base import FileChanged, RemoteFile, copy_with_digest, text_name, wanted
from gateway.ledger.store import FileRow
from gateway.storage import durable_move, fsync_dir


class LocalInbox:
    """A folder on this machine (the sample partner, or a share mounted by a broker)."""

    def __init__(self, partner: PartnerConfig) -> None:
        self.partner = partner
        self.partner_id = partner.id
        self.root = partner.inbox
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
        fd = os.open(self.root / self._disk_name(remote.name),
                     os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as src:
            opened = os.fstat(fd)
            self._fetched[remote.name] = (opened.st_dev, opened.st_ino)
            try:
                return copy_with_digest(src, dest, remote.size, limit)
            except FileChanged as err:
                raise FileChanged(f"partner {self.partner_id}: {remote.name}: {err}") from None

    def dispose(self, taken: FileRow) -> str | None:
        remote_name = self._disk_name(taken.remote_name)
        src = self.root / remote_name
        if self.partner.disposition == "keep":
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
        if self.partner.disposition == "delete":
            src.unlink()
            fsync_dir(self.root)
            return None
        target = self.partner.effective_processed_dir / remote_name
        if target.exists():  # an earlier file of that name: this copy gets its file id
            target = target.with_name(f"{target.name}.{taken.file_id}")
        durable_move(src, target)
        return None

    def deliver(self, local: Path, name: str) -> None:
        # The outbox folder is where a local partner reads its acknowledgments.
        return None

    def close(self) -> None:
        return None
