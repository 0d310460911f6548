"""Phase 1 of a large file in a second process, beside the decisions (issue 15).

Reading a file (parse, XSD per application, the value rules, the digest) is about half of a
run's CPU; deciding and writing (licenses, ACE records, the acknowledgment, the ledger rows) is
the other half. In one process they take turns on one core; here a child process runs
``staging.Reader`` over the file and streams its checked applications through a pipe while the
parent decides and writes the ones already read: on two cores a 1-line-per-application file
runs about 1.5× faster (bench/README.md). The child only reads: it writes nothing anywhere but
the pipe, so the durability order, the crash guarantees and every output stay exactly as they
are (the goldens run through it too, ``tests/test_read_process.py``).

What the parent sees is the in-process ``Reader``: the same applications in the same order,
``header`` known once the first one is yielded, the same ``RejectedSubmission`` (F-codes) at
the same place, and any other error of the reading re-raised as it was (an internal error,
counted and quarantined as such). A child that dies (a signal, the OOM killer) fails this
attempt with ``ReadProcessLost``, which the run counts like any internal error: it never
takes the gateway with it, as a crash of the in-process reader would.

When it is used (``read_source``): files of at least ``gateway.read_process_min_bytes``, on a
machine with a second CPU, one child at a time per gateway process; the child runs at a lower
priority (nice +5). So one partner's large file takes only CPU no other file wants: when
another partner's file is being read, that one goes first, and a second large file meanwhile
is read in process, as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from decimal import Decimal
from operator import attrgetter, is_
from pathlib import Path
from typing import Any, BinaryIO

import gateway
from gateway import crash
from gateway.errors import RejectedSubmission
from gateway.findings import Finding, Severity
from gateway.model import Application, Filer, ProductLine, SubmissionHeader
from gateway.validate.hts import CoveredHts
from gateway.validate.rules import LineResult
from gateway.validate.staging import Prepared, Reader, StagedApplication, application_digest

# Messages of the child, each one pickled tuple behind its 4-byte length.
_BATCH = 0  # (header, [encoded applications])
_END = 1  # (header,): the file is read
_REJECTED = 2  # (finding,): RejectedSubmission
_FAILED = 3  # (exception,): any other error of the reading, re-raised by the parent
_NO_REQUEST = 4  # (text,): the request could not be read (nothing read yet: read in process)
_FRAME = struct.Struct("<IB")  # length, codec
_MARSHAL, _PICKLE = 0, 1
# A batch ends past this many product lines (an application counts one more): about 150 KB
# a batch, so that a file of 999-line applications does not hold many of them in the pipe.
_BATCH_LINES = 512
# A pipe of 1 MiB (Linux's default ceiling for a user) instead of 64 KiB: the child reads on
# while the parent works through a batch, instead of waiting on a full pipe.
_PIPE_BYTES = 1 << 20
_NICE = 5
# A write that waited this long found the pipe full: the parent is behind (see child_main).
_BEHIND = 0.001
_CHILD = "from gateway.validate.read_process import _child; _child()"

_APP_FIELDS = tuple(f.name for f in fields(Application))
_LINES_AT = _APP_FIELDS.index("lines")
_app_values = attrgetter(*_APP_FIELDS)
_line_values = attrgetter(*(f.name for f in fields(ProductLine)))
_FINDING_FIELDS = tuple(f.name for f in fields(Finding))
assert _FINDING_FIELDS[:2] == ("code", "severity")
_finding_rest = attrgetter(*_FINDING_FIELDS[2:])

# One child at a time per gateway process: see the module on sharing the CPUs.
_MAX_CHILDREN = 1
_slots_lock = threading.Lock()
_children = 0  # running, spares included
_spares: dict[int, subprocess.Popen[bytes]] = {}  # by thread: started ahead (``prestart``)


class ReadProcessLost(RuntimeError):
    """The reading child ended without finishing its file (killed, or out of memory)."""


# --- The codec: plain tuples, not pickled dataclasses --------------------------------------
# Pickling the dataclasses and Decimals as they are costs 15 us an application of one line
# each way; as tuples of strings 4-5 us (measured on 50,000 applications, bench/README.md).


_result_line = attrgetter("line")
_result_values = attrgetter("hts10", "covered", "unit_value", "quantity", "value")


# An entry that is not the list's own (a line covered by its subheading, A133, gets one made
# for its number) goes as its values.
_entry_values = attrgetter(*(f.name for f in fields(CoveredHts)))


def covered_keys(items: dict[str, CoveredHts]) -> dict[int, str]:
    """The entries of a covered list by identity: what ``encode`` sends in their place."""
    return {id(entry): number for number, entry in items.items()}


def encode(item: StagedApplication, keys: dict[int, str], digest: str = "") -> tuple[Any, ...]:
    """``item`` as plain values (marshal's): an entry of the covered list as its number (the
    parent reads the same edition; ``keys``: ``covered_keys``), a severity as its text; its
    ``digest`` when taken here ("" leaves it to ``decode``)."""
    lines, results = item.app.lines, item.lines
    app = list(_app_values(item.app))
    app[_LINES_AT] = list(map(_line_values, lines))
    # Amounts as text (exact: the exponent is kept); inline, not a helper call each (this
    # loop is a third of what the child adds to the reading at 20 lines an application).
    checked = [(hts10, number if (number := keys.get(id(covered))) is not None or covered is None
                else _entry_values(covered), None if unit is None else str(unit),
                None if quantity is None else str(quantity), None if value is None else str(value))
               for hts10, covered, unit, quantity, value in map(_result_values, results)]
    # Each result is of the line at its place (the rules make one a line, in order): then the
    # lines go once. Otherwise the results' lines go whole, beside.
    own = None if len(results) == len(lines) and all(map(is_, map(_result_line, results), lines)) \
        else list(map(_line_values, map(_result_line, results)))
    found = [(f.code, f.severity.value, *rest) for f in item.findings
             for rest in (_finding_rest(f),)]
    return (item.seq, app, found, checked, own, item.exempt, digest)


def decode(data: tuple[Any, ...], items: dict[str, CoveredHts]) -> StagedApplication:
    seq, app, found, checked, own, exempt, digest = data
    lines = app[_LINES_AT] = [ProductLine(*values) for values in app[_LINES_AT]]
    of = lines if own is None else [ProductLine(*values) for values in own]
    results = [LineResult(line, hts10, items[covered] if type(covered) is str else
                          None if covered is None else CoveredHts(*covered),
                          None if unit is None else Decimal(unit),
                          None if quantity is None else Decimal(quantity),
                          None if value is None else Decimal(value))
               for line, (hts10, covered, unit, quantity, value) in zip(of, checked, strict=True)]
    application = Application(*app)
    findings = [Finding(code, Severity(severity), *rest) for code, severity, *rest in found]
    return StagedApplication(seq, application, findings, results, exempt,
                             digest or application_digest(application))


_filer_values = attrgetter(*(f.name for f in fields(Filer)))


def encode_header(header: SubmissionHeader | None) -> tuple[Any, ...] | None:
    """The header as plain values (no dataclass is pickled: see ``decode``)."""
    if header is None:
        return None
    filer = None if header.filer is None else _filer_values(header.filer)
    return header.submission_id, header.created, filer, header.schema_version


def decode_header(data: tuple[Any, ...] | None) -> SubmissionHeader | None:
    if data is None:
        return None
    submission_id, created, filer, version = data
    return SubmissionHeader(submission_id, created, None if filer is None else Filer(*filer),
                            version)


# --- The child -----------------------------------------------------------------------------


def _send(out: BinaryIO, message: tuple[Any, ...]) -> None:
    """One message: marshal for the batches of plain values (half of pickle's time each way,
    measured: 0.06 s against 0.11 s to write 100,000 lines' worth), pickle for the rest."""
    try:
        data, codec = marshal.dumps(message), _MARSHAL
    except ValueError:  # an object among the values (an exception, an unlisted HTS entry)
        data, codec = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL), _PICKLE
    out.write(_FRAME.pack(len(data), codec))
    out.write(data)
    out.flush()


def _portable(err: BaseException) -> BaseException:
    """``err`` if it survives pickling as itself, else a RuntimeError with its words; with
    the child's traceback as a note either way (the parent's log shows where it came from)."""
    note = "in the reading process:\n" + "".join(traceback.format_exception(err)).rstrip()
    try:
        copy = pickle.loads(pickle.dumps(err))
        if type(copy) is not type(err) or str(copy) != str(err):
            raise TypeError("not the same exception")
    except Exception:
        err = RuntimeError(f"{type(err).__name__}: {err}")
    err.add_note(note)
    return err


def child_main(stdin: BinaryIO, out: BinaryIO) -> int:
    """Read the request (a pickled ``Prepared`` file), then stream the file's applications."""
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    try:
        prepared = pickle.load(stdin)
        if not isinstance(prepared, Prepared):
            raise TypeError(f"not a Prepared file: {type(prepared).__name__}")
    except Exception as err:  # the parent reads the file itself
        _send(out, (_NO_REQUEST, f"{type(err).__name__}: {err}"))
        return 2
    keys = covered_keys(prepared.ctx.covered.items)
    reader = prepared.reader(digests=False)
    batch: list[tuple[Any, ...]] = []
    size = 0
    # Who takes the digests: the parent, unless it is the one behind (this child's last write
    # waited for room in the pipe). Short applications make the parent the slower (1 line
    # each: its per-application work), long ones this child (20 lines: the line rules).
    digests = False
    try:
        for item in reader.applications():
            batch.append(encode(item, keys, application_digest(item.app) if digests else ""))
            size += 1 + len(item.app.lines)
            if size >= _BATCH_LINES:
                started = time.perf_counter()
                _send(out, (_BATCH, encode_header(reader.header), batch))
                digests = time.perf_counter() - started > _BEHIND
                batch, size = [], 0
                # A test's child dies here, its first batch sent (not one of crash.STEPS:
                # the gateway's own process does not stop there).
                crash.point("reading_child")
        ending: tuple[Any, ...] = (_END, encode_header(reader.header))
    except RejectedSubmission as rejected:
        ending = (_REJECTED, rejected.finding)
    except Exception as err:
        ending = (_FAILED, _portable(err))
    # What was read before the end comes first, as the in-process reader yields it first.
    _send(out, (_BATCH, encode_header(reader.header), batch))
    _send(out, ending)
    return 0


def _child() -> None:
    """The child's entry (``python -c``, so that this module is not imported twice)."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print goes to stderr, never into the stream
    try:
        code = child_main(sys.stdin.buffer, out)
        out.flush()
    except BrokenPipeError:  # the parent stopped reading: it gave the file up, or it died
        code = 1
    os._exit(code)  # nothing left to flush or clean up: the child wrote only to the pipe


# --- The parent ----------------------------------------------------------------------------


class ProcessReader:
    """``staging.Reader``'s interface over a child process reading the file (see the module)."""

    def __init__(self, prepared: Prepared, process: subprocess.Popen[bytes]) -> None:
        self.prepared = prepared
        self._process = process
        self._header: SubmissionHeader | None = None
        self._fallback: Reader | None = None
        self._closed = False

    def close(self) -> None:
        """End the child, read to the end or not (idempotent)."""
        if not self._closed:
            self._closed = True
            self._stop()

    @property
    def header(self) -> SubmissionHeader | None:
        return self._fallback.header if self._fallback is not None else self._header

    def applications(self) -> Iterator[StagedApplication]:
        try:
            yield from self._received()
        finally:
            self.close()

    def _received(self) -> Iterator[StagedApplication]:
        pipe = self._process.stdout
        assert pipe is not None
        items = self.prepared.ctx.covered.items
        while True:
            head = pipe.read(_FRAME.size)
            size, codec = _FRAME.unpack(head) if len(head) == _FRAME.size else (0, _MARSHAL)
            body = pipe.read(size) if size else b""
            if not body:
                self._process.wait()
                raise ReadProcessLost(
                    f"the process reading {self.prepared.file_name} ended before the end of the "
                    f"file (exit status {self._process.returncode})")
            message = marshal.loads(body) if codec == _MARSHAL else pickle.loads(body)
            kind = message[0]
            if kind == _BATCH:
                self._header = decode_header(message[1])
                for data in message[2]:
                    yield decode(data, items)
            elif kind == _END:
                self._header = decode_header(message[1])
                return
            elif kind == _REJECTED:
                raise RejectedSubmission(message[1])
            elif kind == _FAILED:
                raise message[1]
            else:  # _NO_REQUEST: nothing was read there; read here, as without a child
                self._fallback = self.prepared.reader()
                yield from self._fallback.applications()
                return

    def _stop(self) -> None:
        """The child is done, or no longer wanted: it is ended and waited for either way."""
        global _children
        _end(self._process)
        with _slots_lock:
            _children -= 1


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _spawn() -> subprocess.Popen[bytes] | None:
    """A child waiting for its request (about 80 ms to start: the interpreter and the reading
    modules), or None when no process is to be had."""
    # The child imports this very package, wherever it was imported from here.
    package_root = str(Path(gateway.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, close_fds=True)
    except OSError:
        return None
    assert process.stdout is not None
    with contextlib.suppress(OSError):
        fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    return process


def _request(process: subprocess.Popen[bytes], prepared: Prepared) -> bool:
    """Send ``prepared`` to a waiting child; False (the child ended) when that fails."""
    assert process.stdin is not None
    try:
        request = pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)
        process.stdin.write(request)
        process.stdin.close()
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        _end(process)  # a context that does not pickle, or a child gone: read in process
        return False
    return True


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(OSError):
            process.kill()
    for stream in (process.stdout, process.stdin):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    process.wait()


def prestart(size: int, min_bytes: int) -> None:
    """Start this thread's child ahead, for a file of ``size`` bytes about to be received: it
    starts while the file is fetched and stored, instead of after (``read_source`` takes it;
    ``discard_spare`` ends it when no read came)."""
    global _children
    if min_bytes <= 0 or size < min_bytes or _cpus() < 2:
        return
    me = threading.get_ident()
    with _slots_lock:
        if me in _spares or _children >= _MAX_CHILDREN:
            return
        _children += 1
    process = _spawn()
    with _slots_lock:
        if process is None:
            _children -= 1
        else:
            _spares[me] = process


def discard_spare() -> None:
    """End this thread's child started ahead and not used (its file failed before reading)."""
    global _children
    with _slots_lock:
        process = _spares.pop(threading.get_ident(), None)
        if process is not None:
            _children -= 1
    if process is not None:
        _end(process)


def _child_for(prepared: Prepared) -> subprocess.Popen[bytes] | None:
    """This thread's spare, else a new child when the slot is free; its request sent."""
    global _children
    with _slots_lock:
        process = _spares.pop(threading.get_ident(), None)
        if process is None:
            if _children >= _MAX_CHILDREN:
                return None
            _children += 1
    if process is None:
        process = _spawn()
    if process is not None and _request(process, prepared):
        return process
    with _slots_lock:
        _children -= 1
    return None


@contextmanager
def read_source(prepared: Prepared, min_bytes: int) -> Iterator[Reader | ProcessReader]:
    """The reader of ``prepared``: a child process for a file of at least ``min_bytes`` when a
    CPU is free for it (see the module), else the in-process ``Reader``. ``min_bytes`` 0 never
    uses a child. The child is ended on leaving, whatever was read of it."""
    source: Reader | ProcessReader = prepared.reader()
    if min_bytes > 0 and _cpus() >= 2 and _size(prepared.path) >= min_bytes:
        process = _child_for(prepared)
        if process is not None:
            source = ProcessReader(prepared, process)
    try:
        yield source
    finally:
        if isinstance(source, ProcessReader):
            source.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1  # the in-process reader reports it as it always has
