"""How far each file being processed now has been read: bytes, percent and an estimate (ETA),
as ``status``, the web page, the partner status files and the terminal bar show it.

How it is measured: the parsers stream the file themselves; rather than thread a callback
through every reader (and pay for it on the hot path), a thread looks at how far this process
has read the file: the offset of each descriptor open on it (``/proc/self/fdinfo``, Linux),
and of its reading process's for a large file (``validate.read_process``).
Where that cannot be seen, nothing but the time is known.

Where it is kept: one small JSON file per file in progress, ``<data_dir>/work/progress/<file
id>.json``, written from the start for a file of ``RECORD_AT_ONCE_BYTES`` or more and after
the first second for a smaller one (done sooner, it gets none), replaced atomically at most
once a second and removed when the pass ends. Not a
ledger row, because the pass holds the ledger's one write transaction (SQLite ``BEGIN
IMMEDIATE``) from its first decision to its commit: no connection could commit a progress row
meanwhile, and the file's own transaction must not wait for one. The record is rewritten every
second even when the offset stands still, so its age is a heartbeat: a record older than
``STALE_SECONDS`` (its process died) is not shown.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from gateway.ledger.reads.clock import duration_text
from gateway.storage import open_new, temp_name
from gateway.validate.read_process import reading_pids

INTERVAL = 1.0  # seconds between two records of one file
STALE_SECONDS = 30.0  # a record not renewed for this long is a dead process's
# A file this large is recorded from its start (a smaller one after INTERVAL, if it is not done
# by then); at most service.runner.LIVE_STATUS_BYTES, so that a partner's status files written
# at the start of a large file show it in progress.
RECORD_AT_ONCE_BYTES = 1 << 20


def read_offset(dev_ino: tuple[int, int]) -> int | None:
    """The furthest offset of the descriptors open on the file of this process and of its
    reading processes (a large file is read by one: ``validate.read_process``); None =
    unknown."""
    best: int | None = None
    for proc in ("/proc/self", *(f"/proc/{pid}" for pid in reading_pids())):
        offset = _offset_in(proc, dev_ino)
        if offset is not None:
            best = offset if best is None else max(best, offset)
    return best


def _offset_in(proc: str, dev_ino: tuple[int, int]) -> int | None:
    try:
        fds = os.listdir(f"{proc}/fd")
    except OSError:
        return None
    best: int | None = None
    for fd in fds:
        try:
            st = os.stat(f"{proc}/fd/{fd}")
            if (st.st_dev, st.st_ino) != dev_ino:
                continue
            with open(f"{proc}/fdinfo/{fd}") as info:
                for line in info:
                    if line.startswith("pos:"):
                        pos = int(line.split()[1])
                        best = pos if best is None else max(best, pos)
        except (OSError, ValueError):
            continue  # closed meanwhile
    return best


def eta_seconds(done: int | None, total: int, rate: float) -> float | None:
    """Seconds left at ``rate`` bytes a second; None when not known."""
    if done is None or total <= 0 or rate <= 0:
        return None
    return max(0.0, (total - done) / rate)


class OffsetSampler:
    """Successive looks at how far the file has been read: the offset, the pass (a reader that
    starts again from the top, a pre-scan then the parse, is a new pass) and the rate of the
    current pass."""

    def __init__(self, dev_ino: tuple[int, int] | None, total: int) -> None:
        self.dev_ino, self.total = dev_ino, total
        self.done: int | None = None
        self.passes = 1
        self._pass_started = time.monotonic()
        self._pass_from = 0

    @classmethod
    def of(cls, path: Path) -> OffsetSampler:
        try:
            st = path.stat()
        except OSError:  # gone: the time only
            return cls(None, 0)
        return cls((st.st_dev, st.st_ino), st.st_size)

    def sample(self) -> int | None:
        """Look now; the offset (the last one seen when the file is not open at this instant)."""
        now = read_offset(self.dev_ino) if self.dev_ino is not None else None
        if now is not None:
            if self.done is not None and now < self.done:
                self.passes += 1
                self._pass_started, self._pass_from = time.monotonic(), 0
            self.done = now
        return self.done

    @property
    def rate(self) -> float:
        """Bytes a second in the current pass."""
        spent = time.monotonic() - self._pass_started
        return (self.done - self._pass_from) / spent if self.done and spent > 0 else 0.0

    @property
    def eta(self) -> float | None:
        return eta_seconds(self.done, self.total, self.rate)


@dataclass(frozen=True, slots=True)
class Progress:
    """One file in progress, as recorded."""

    file_id: str
    partner: str
    name: str
    size: int
    done: int  # bytes read in the current pass
    passes: int
    eta_seconds: float | None  # the current pass's end, at its rate so far
    started_at: str  # ISO 8601, UTC
    updated_at: str

    @property
    def percent(self) -> float:
        return min(100.0, 100.0 * self.done / self.size) if self.size > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "percent": round(self.percent, 1)}

    def text(self) -> str:
        """``42% 150.3/358.0 MB, about 12 s left`` (the pass when it is not the first)."""
        out = f"{self.percent:.0f}% {self.done / 1e6:.1f}/{self.size / 1e6:.1f} MB"
        if self.passes > 1:
            out += f" pass {self.passes}"
        if self.eta_seconds is not None:
            out += f", about {duration_text(self.eta_seconds)} left"
        return out


def progress_dir(data_dir: Path) -> Path:
    return data_dir / "work" / "progress"


class ProgressRecorder:
    """``with ProgressRecorder(data_dir, file_id, partner, name, path):`` records how far the
    pass has read ``path`` while the block runs (the process's one progress thread, ``_Ticker``;
    the pass itself does nothing), and removes the record when it ends, however it ends."""

    def __init__(self, data_dir: Path, file_id: str, partner: str, name: str, path: Path,
                 interval: float = INTERVAL) -> None:
        self.path = progress_dir(data_dir) / f"{file_id}.json"
        self.file_id, self.partner, self.name = file_id, partner, name
        self.sampler = OffsetSampler.of(path)
        self.interval = interval
        self.started_at = _now_iso()
        self._lock = threading.Lock()  # a tick and the end never overlap
        self._ended = False
        self._recorded = False  # a record was written (and is removed at the end)

    def follow(self, path: Path) -> None:
        """The pass reads ``path`` from now on, not the file it began with (an XSLT mapping's
        output, made from the received file): how far it has read ``path``, of ``path``'s size,
        is the progress from now on, as the next pass."""
        sampler = OffsetSampler.of(path)
        with self._lock:
            sampler.passes = self.sampler.passes + 1
            self.sampler = sampler

    def record(self) -> None:
        done = self.sampler.sample()
        progress = Progress(self.file_id, self.partner, self.name, self.sampler.total,
                            done or 0, self.sampler.passes, self.sampler.eta, self.started_at,
                            _now_iso())
        try:
            # Replaced whole, but not fsynced: a record lost in a crash is worth nothing.
            tmp = temp_name(self.path)
            with open_new(tmp) as fh:
                fh.write(json.dumps(progress.to_json()).encode())
            os.replace(tmp, self.path)
        except OSError:
            pass  # a view shows less; the file's processing never fails for it

    def __enter__(self) -> ProgressRecorder:
        if self.sampler.total >= RECORD_AT_ONCE_BYTES:
            self.tick()  # shown at once (and in the status files written at start)
        _ticker().add(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        _ticker().remove(self)
        with self._lock:
            self._ended = True
            if self._recorded:
                with contextlib.suppress(OSError):
                    self.path.unlink(missing_ok=True)

    def tick(self) -> None:
        """Write or renew the record (unless the pass has ended meanwhile)."""
        with self._lock:
            if self._ended:
                return
            if not self._recorded:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError:
                    return  # a view shows less; tried again at the next tick
                self._recorded = True
            self.record()


class _Ticker:
    """The process's one progress thread: renews the record of every pass in progress, each
    every ``interval``, the first time one interval after the pass began.

    Why one thread, not one per file: a thread started and joined per file cost about 1.7 ms
    of a small file's poll on a busy 2-core machine (cProfile, bench/bench_poll.py). And why
    the first record after one interval: a small file, done within it (the usual case), is
    never shown in progress and costs no record written, renamed and removed (5 file system
    operations per file)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._due: dict[ProgressRecorder, float] = {}
        self._changed = threading.Condition()
        self._wake_at = 0.0  # when the thread looks next (at most INTERVAL away)
        threading.Thread(target=self._run, daemon=True, name="progress").start()

    def add(self, recorder: ProgressRecorder) -> None:
        with self._changed:
            due = self._due[recorder] = time.monotonic() + recorder.interval
            if due < self._wake_at:
                # Only then: woken for every file, the thread would take the GIL from the
                # pass at its next ledger statement (0.6 ms a small file, measured).
                self._changed.notify()

    def remove(self, recorder: ProgressRecorder) -> None:
        with self._changed:
            self._due.pop(recorder, None)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [r for r, at in self._due.items() if at <= now]
                if not due:
                    self._wake_at = min(self._due.values(), default=now + INTERVAL)
                    self._changed.wait(self._wake_at - now)
                    continue
                for recorder in due:
                    self._due[recorder] = now + recorder.interval
            for recorder in due:  # outside the lock: a slow disk never holds up add/remove
                try:
                    recorder.tick()
                except Exception:  # this is every pass's one progress thread:
                    # one record that cannot be written must not end the records of the others
                    # (for the rest of a serve); the record is a view, the pass never needs it.
                    continue


_tickers: list[_Ticker] = []
_tickers_lock = threading.Lock()


def _ticker() -> _Ticker:
    """This process's ticker (a forked child starts its own: threads do not survive a fork)."""
    with _tickers_lock:
        if not _tickers or _tickers[0].pid != os.getpid():
            _tickers[:] = [_Ticker()]
        return _tickers[0]


def in_progress(data_dir: Path, now: datetime | None = None) -> dict[str, Progress]:
    """The files in progress now, by file id (records not renewed lately left out)."""
    folder = progress_dir(data_dir)
    if not folder.is_dir():
        return {}
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=STALE_SECONDS)
    found: dict[str, Progress] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_bytes())
            data.pop("percent", None)
            progress = Progress(**data)
            if datetime.fromisoformat(progress.updated_at) >= cutoff:
                found[progress.file_id] = progress
        except (OSError, ValueError, TypeError):
            continue  # replaced or removed meanwhile, or not one of ours
    return found


def remove_stale(data_dir: Path, now: float | None = None) -> list[str]:
    """Remove the records (and their temp files) not renewed for ``STALE_SECONDS``: a worker
    killed mid-file leaves its record, which no reader shows and nothing else removes."""
    folder = progress_dir(data_dir)
    if not folder.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - STALE_SECONDS
    removed = []
    for path in folder.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(str(path))
        except FileNotFoundError:  # its own process removed it meanwhile
            continue
    return removed


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
