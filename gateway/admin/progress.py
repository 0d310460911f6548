"""A progress bar on the terminal for long runs of ``check``, ``reprocess`` and ``replay``:
percent, megabytes and an estimate of the time left.

How far the file has been read is measured as for the views of a running service
(``gateway.ledger.progress``: one sampler); where that cannot be seen, the line shows the time
spent only. Drawn only when the stream is a terminal.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TextIO

from gateway.ledger.progress import OffsetSampler
from gateway.ledger.reads.clock import duration_text

BAR = 24


def render(label: str, done: int | None, total: int, elapsed: float, passes: int,
           eta: float | None = None) -> str:
    """``check big.xml [#######-----]  42%  150.3/358.0 MB  pass 2  12 s  ~17 s left``"""
    seconds = f"{elapsed:.0f} s"
    if eta is not None:
        seconds += f"  ~{duration_text(eta)} left"
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
        # (label, sampler) of the file read now; swapped whole, read whole by the drawing
        # thread
        self._target: tuple[str, OffsetSampler] = (label, OffsetSampler(None, 0))
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
        self._target = (label, OffsetSampler.of(path))

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
        started = time.monotonic()
        while not self._stop.wait(self.interval):
            label, sampler = self._target
            done = sampler.sample()
            self._draw(render(label, done, sampler.total, time.monotonic() - started,
                              sampler.passes, sampler.eta))
