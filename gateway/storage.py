"""Durable file operations: write to a temp name, fsync, rename; fsync the folder.

Nothing is ever written through a symbolic link (OPERATIONS, partner isolation): a temp name
is unlinked, then created exclusively without following a link (``open_new``); a rename
replaces a link at the final name, never its target.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

# O_EXCL already refuses an existing link; O_NOFOLLOW says so again where it exists.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | \
    getattr(os, "O_CLOEXEC", 0)


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    # Dot-prefixed and pid-tagged: never mistaken for a finished output, never shared.
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def open_new(path: Path, mode: str = "wb", **kwargs: Any) -> IO[Any]:
    """Open a temp name for writing as a new file: whatever is there (a leftover, or a link
    someone planted at the predictable name) is removed first (unlink never follows a link),
    and a link planted again in between makes the open fail rather than write through it."""
    path.unlink(missing_ok=True)
    fd = os.open(path, _NEW_FILE, 0o666)
    try:
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def atomic_write(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    with open_new(tmp) as fh:
        if isinstance(data, bytes | bytearray):
            fh.write(data)
        else:
            for chunk in data:
                fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def publish(tmp: Path, path: Path) -> None:
    """Rename a finished, fsynced temp file into place durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def durable_move(src: Path, dst: Path) -> None:
    """Atomic rename on one file system, made durable in both folders."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


class SpooledOutput:
    """An output whose head is known only at the end (counts, status): the body is spooled to
    a dot-named temp file as it streams, and ``publish`` writes head + body + tail to a temp
    name, fsyncs it and renames it into place."""

    def __init__(self, path: Path, newline: str | None = "\n") -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._body_path = path.with_name(f".{path.name}.{os.getpid()}.body")
        self.body = open_new(self._body_path, "w", encoding="utf-8", newline=newline)

    def publish(self, head: str, tail: str = "") -> None:
        self.body.close()
        tmp = temp_name(self.path)
        with open_new(tmp) as out:
            out.write(head.encode("utf-8"))
            with open(self._body_path, "rb") as body:
                shutil.copyfileobj(body, out, 1024 * 1024)
            out.write(tail.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        publish(tmp, self.path)
        self._body_path.unlink(missing_ok=True)

    def discard(self) -> None:
        self.body.close()
        self._body_path.unlink(missing_ok=True)
