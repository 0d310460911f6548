"""A progress line on the terminal for long runs of ``check`` and ``reprocess``.

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
    """``with ReadProgress(path, "check"):`` shows how far the file has been read."""

    def __init__(self, path: Path, label: str, stream: TextIO | None = None,
                 interval: float = 0.2) -> None:
        self.path = path
        self.label = label
        self.stream = stream or sys.stderr
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0

    @property
    def enabled(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def __enter__(self) -> ReadProgress:
        if self.enabled:
            st = self.path.stat()
            self._thread = threading.Thread(target=self._run, args=(
                (st.st_dev, st.st_ino), st.st_size), daemon=True, name="progress")
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
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = max(self._width, len(text))

    def _run(self, dev_ino: tuple[int, int], total: int) -> None:
        started, last, passes = time.monotonic(), -1, 1
        while not self._stop.wait(self.interval):
            done = read_offset(dev_ino)
            if done is not None and done < last:
                passes += 1
            if done is not None:
                last = done
            self._draw(render(self.label, done if done is not None else (last if last >= 0
                              else None), total, time.monotonic() - started, passes))
