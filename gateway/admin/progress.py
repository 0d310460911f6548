"""A progress line on the terminal for long runs of ``check``, ``reprocess`` and ``replay``.

The parsers stream the file themselves; rather than thread a callback through every reader
(and pay for it on the hot path), a background thread looks at how far this process has read
the file: the offset of each descriptor open on it (``/proc/self/fdinfo``, Linux). Where that
cannot be seen, the line shows the time spent only. Drawn only when the stream is a terminal.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TextIO

BAR = 24


def read_offset(dev_ino: tuple[int, int]) -> int | None:
    """The furthest offset of this process's descriptors open on the file; None = unknown."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    best: int | None = None
    for fd in fds:
        try:
            st = os.stat(f"/proc/self/fd/{fd}")
            if (st.st_dev, st.st_ino) != dev_ino:
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                for line in info:
                    if line.startswith("pos:"):
                        pos = int(line.split()[1])
                        best = pos if best is None else max(best, pos)
        except (OSError, ValueError):
            continue  # closed meanwhile
    return best


def render(label: str, done: int | None, total: int, elapsed: float, passes: int) -> str:
    """``check big.xml [#######-----]  42%  150.3/358.0 MB  pass 2  12 s``"""
    seconds = f"{elapsed:.0f} s"
    if done is None or total <= 0:
        return f"{label}  {seconds}"
    share = min(1.0, done / total)
    filled = int(share * BAR)
    bar = "#" * filled + "-" * (BAR - filled)
    text = (f"{label} [{bar}] {share * 100:3.0f}%  {done / 1e6:.1f}/{total / 1e6:.1f} MB")
    if passes > 1:
        text += f"  pass {passes}"  # the file is read more than once (pre-scan, then parse)
    return f"{text}  {seconds}"


class ReadProgress:
    """``with ReadProgress(path, "check"):`` shows how far the file has been read; a command
    that reads one file after another (``replay``) moves the line on with ``follow``."""

    def __init__(self, path: Path | None, label: str, stream: TextIO | None = None,
                 interval: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0
        self._lock = threading.Lock()  # one writer of the terminal at a time
        # (label, (st_dev, st_ino), size) of the file read now; swapped whole, read whole
        # by the drawing thread
        self._target: tuple[str, tuple[int, int] | None, int] = (label, None, 0)
        if path is not None:
            self.follow(path, label)

    @property
    def enabled(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def follow(self, path: Path, label: str) -> None:
        """Show ``path`` (read from now on) under ``label``; the time runs on."""
        if not self.enabled:
            return
        try:
            st = path.stat()
        except OSError:  # gone: the label and the time only
            self._target = (label, None, 0)
            return
        self._target = (label, (st.st_dev, st.st_ino), st.st_size)

    def say(self, text: str, out: TextIO) -> None:
        """Write ``text`` to ``out`` (a command's output, on the same terminal maybe) with the
        line cleared first, so the two never mix; the next tick draws it again."""
        with self._lock:
            if self._thread is not None and self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
            out.write(text)
            out.flush()

    def __enter__(self) -> ReadProgress:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True, name="progress")
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._draw(" " * self._width)  # leave the terminal as it was
        self.stream.write("\r")
        self.stream.flush()

    def _draw(self, text: str) -> None:
        with self._lock:
            self.stream.write("\r" + text.ljust(self._width))
            self.stream.flush()
            self._width = max(self._width, len(text))

    def _run(self) -> None:
        started, shown, last, passes = time.monotonic(), None, -1, 1
        while not self._stop.wait(self.interval):
            target = self._target
            label, dev_ino, total = target
            if target is not shown:  # another file: its own offsets and passes
                shown, last, passes = target, -1, 1
            done = read_offset(dev_ino) if dev_ino is not None else None
            if done is not None and done < last:
                passes += 1
            if done is not None:
                last = done
            self._draw(render(label, done if done is not None else (last if last >= 0
                              else None), total, time.monotonic() - started, passes))
