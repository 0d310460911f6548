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
import ctypes
import fcntl
import io
import marshal
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import date, datetime, timedelta, timezone
from datetime import time as time_of_day
from decimal import Decimal
from operator import attrgetter, is_
from pathlib import Path
from typing import Any, BinaryIO

import gateway
from gateway import crash
from gateway.errors import RejectedSubmission
from gateway.findings import Finding, Severity
from gateway.model import Application, Filer, ProductLine, SubmissionHeader
from gateway.parse.csv_file import CsvApplication
from gateway.parse.xml_model import ParsedApplication
from gateway.turns import TURNS
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
_REQUEST = struct.Struct("<Q")  # the request's length, before its pickle (``read_request``)
_MARSHAL, _PICKLE = 0, 1
# A batch ends past this many product lines (an application counts one more): about 150 KB
# a batch, so that a file of 999-line applications does not hold many of them in the pipe.
_BATCH_LINES = 512
# A pipe of 1 MiB (Linux's default ceiling for a user) instead of 64 KiB: the child reads on
# while the parent works through a batch, instead of waiting on a full pipe.
_PIPE_BYTES = 1 << 20
_NICE = 5
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_XML, _CSV = "x", "c"  # an application sent as read (``encode_read``), of either format
# A write that waited this long found the pipe full: the parent is behind (see child_main).
_BEHIND = 0.001
_STEP = 0.05  # of the applications sent as read, more or fewer (see child_main)
_CHILD = "from gateway.validate.read_process import _child; _child()"
# The environment the child keeps (``_spawn``): Python's own, the locale, the time zone.
_CHILD_ENVIRONMENT = ("PYTHON", "LC_", "LANG", "TZ", "PATH", "HOME", "TMPDIR")

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
_reading: set[int] = set()  # the pids of the children reading a file now


def reading_pids() -> list[int]:
    """The children reading a file now: how far each has read is the file's progress
    (``ledger.progress.read_offset``)."""
    with _slots_lock:
        return list(_reading)


class ReadProcessLost(RuntimeError):
    """The reading child ended without finishing its file (killed, or out of memory), or sent
    what does not decode."""


# --- What the parent unpickles --------------------------------------------------------------
# The child parses a partner's bytes (lxml, libxml2): one taken over through a parser flaw
# must not run code in the gateway by what it sends. Unpickling calls what a message names,
# so the parent names only what the child sends: exceptions, the gateway's plain value
# classes listed here (not any gateway class: some dataclasses open files as they are made),
# and a few value types. A module not imported already is never imported for a message.
_SENT_TYPES = frozenset({Finding, Severity, CoveredHts, Application, ProductLine, Filer,
                         SubmissionHeader, ParsedApplication, CsvApplication, LineResult,
                         Decimal, date, datetime, time_of_day, timedelta, timezone,
                         set, frozenset, bytearray, complex})


class _ChildUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = getattr(sys.modules.get(module), name, None) if "." not in name else None
        if isinstance(found, type) and (found in _SENT_TYPES
                                        or issubclass(found, BaseException)):
            return found
        raise pickle.UnpicklingError(f"{module}.{name} is not sent by a reading process")


def _unpickle(body: bytes) -> Any:
    return _ChildUnpickler(io.BytesIO(body)).load()


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
    app = _app_data(item.app)
    # The unit value as text (exact: the exponent is kept); the quantity and the value as
    # whether there is one: each is ``Decimal`` of its line's own text (``rules._check_lines``),
    # which ``decode`` reads again, instead of a string made here and sent beside it (0.4 us
    # a line less of encode, marshal and decode, 8 % of the codec, measured). Inline, not a
    # helper call each (this loop is a third of what the child adds to the reading at 20
    # lines an application).
    checked = [(hts10, number if (number := keys.get(id(covered))) is not None or covered is None
                else _entry_values(covered), None if unit is None else str(unit),
                quantity is not None, value is not None)
               for hts10, covered, unit, quantity, value in map(_result_values, results)]
    # Each result is of the line at its place (the rules make one a line, in order): then the
    # lines go once. Otherwise the results' lines go whole, beside.
    own = None if len(results) == len(lines) and all(map(is_, map(_result_line, results), lines)) \
        else list(map(_line_values, map(_result_line, results)))
    return (item.seq, app, _findings_data(item.findings), checked, own, item.exempt, digest)


def _app_data(app: Application) -> list[Any]:
    data = list(_app_values(app))
    data[_LINES_AT] = list(map(_line_values, app.lines))
    return data


def _findings_data(found: list[Finding]) -> list[tuple[Any, ...]]:
    return [(f.code, f.severity.value, *_finding_rest(f)) for f in found]


def _application(data: list[Any]) -> Application:
    data[_LINES_AT] = [ProductLine(*values) for values in data[_LINES_AT]]
    return Application(*data)


def _findings(data: list[tuple[Any, ...]]) -> list[Finding]:
    return [Finding(code, _SEVERITIES[severity], *rest) for code, severity, *rest in data]


_SEVERITIES = {severity.value: severity for severity in Severity}  # Severity(text), faster


def encode_read(seq: int, raw: ParsedApplication | CsvApplication) -> tuple[Any, ...]:
    """An application as read, not checked (the parent checks it: see ``child_main``)."""
    if type(raw) is CsvApplication:
        return (_CSV, seq, _app_data(raw.app), _findings_data(raw.findings), raw.rows,
                raw.header_values, raw.extra_lines)
    assert isinstance(raw, ParsedApplication)
    return (_XML, seq, _app_data(raw.app), _findings_data(raw.findings), raw.xsd_errors,
            raw.element_fields, raw.unlisted)


def decode_read(data: tuple[Any, ...]) -> tuple[int, ParsedApplication | CsvApplication]:
    kind, seq, app, found, *rest = data
    if kind == _CSV:
        rows, header_values, extra_lines = rest
        return seq, CsvApplication(_application(app), rows, _findings(found),
                                   tuple(header_values), extra_lines)
    xsd_errors, element_fields, unlisted = rest
    return seq, ParsedApplication(_application(app), xsd_errors, element_fields,
                                  _findings(found), unlisted)


def decode(data: tuple[Any, ...], items: dict[str, CoveredHts]) -> StagedApplication:
    seq, app, found, checked, own, exempt, digest = data
    application = _application(app)
    lines = application.lines
    of = lines if own is None else [ProductLine(*values) for values in own]
    results = [LineResult(line, hts10, items[covered] if type(covered) is str else
                          None if covered is None else CoveredHts(*covered),
                          None if unit is None else Decimal(unit),
                          Decimal(line.quantity_kg or "") if quantity else None,
                          Decimal(line.value_usd or "") if value else None)
               for line, (hts10, covered, unit, quantity, value) in zip(of, checked, strict=True)]
    # Most applications have no finding: no list comprehension run for none.
    return StagedApplication(seq, application, _findings(found) if found else [], results,
                             exempt, digest or application_digest(application))


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


class _Hungry:
    """Whether the parent said it waited for this child since the last ask (bytes on stdin,
    read without waiting)."""

    def __init__(self, stdin: BinaryIO) -> None:
        self.fd = stdin.fileno()
        try:
            os.set_blocking(self.fd, False)
        except (OSError, ValueError):
            self.fd = -1

    def __call__(self) -> bool:
        if self.fd < 0:
            return False
        try:
            return bool(os.read(self.fd, 4096))
        except (BlockingIOError, OSError):
            return False


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


def read_request(fd: int) -> Prepared:
    """The parent's request: its length, then its pickle (``_request``), read from the pipe
    itself and not one byte further. What follows are the parent's "I waited" bytes, for
    ``_Hungry``: a buffered reader (``pickle.load(sys.stdin.buffer)``) would take those that
    came early into its buffer, where nothing looks, and the work would not be shared."""
    head = _read_exact(fd, _REQUEST.size)
    size = _REQUEST.unpack(head)[0] if len(head) == _REQUEST.size else -1
    body = _read_exact(fd, size) if size >= 0 else b""
    if len(body) != size:
        raise EOFError("the request ended before its length")
    prepared = pickle.loads(body)
    if not isinstance(prepared, Prepared):
        raise TypeError(f"not a Prepared file: {type(prepared).__name__}")
    return prepared


def _read_exact(fd: int, size: int) -> bytes:
    """``size`` bytes of a blocking descriptor (fewer at its end)."""
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, _PIPE_BYTES))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def child_main(stdin: BinaryIO, out: BinaryIO) -> int:
    """Read the request (``read_request``), then stream the file's applications."""
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    try:
        prepared = read_request(stdin.fileno())
    except Exception as err:  # the parent reads the file itself
        _send(out, (_NO_REQUEST, f"{type(err).__name__}: {err}"))
        return 2
    keys = covered_keys(prepared.ctx.covered.items)
    reader = prepared.reader(digests=False)
    batch: list[tuple[Any, ...]] = []
    size = 0
    # The work is shared by whichever side is behind. The parent is when this child's write
    # waits for room in the pipe (short applications: its per-application work): then this
    # child sends fewer applications as read (the parent checks those), and at none, takes the
    # digests too. This child is behind when the parent says it waited (a byte on stdin; long
    # applications: the line rules): then it leaves the digests, and sends more as read.
    # Either way each application is checked once, by the same code (``Reader.check``).
    digests, share, owed = True, 0.0, 0.0
    hungry = _Hungry(stdin)
    if (fixed := crash.read_share()) is not None:  # a test's: no sharing by who is behind
        digests, share, hungry.fd = fixed == 0, fixed, -1
    try:
        for seq, raw in enumerate(reader.read(), start=1):
            owed += share
            if owed >= 1.0:
                owed -= 1.0
                batch.append(encode_read(seq, raw))
            else:
                item = reader.check(seq, raw)
                batch.append(encode(item, keys, application_digest(item.app) if digests else ""))
            size += 1 + len(raw.app.lines)
            if size >= _BATCH_LINES:
                started = time.perf_counter()
                _send(out, (_BATCH, encode_header(reader.header), batch))
                waited = time.perf_counter() - started > _BEHIND
                if fixed is None and waited:  # the parent is behind
                    digests, share = share <= 0.0, max(0.0, share - _STEP)
                elif fixed is None and hungry():  # this child is
                    digests, share = False, min(1.0, share + _STEP) if not digests else 0.0
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


def _die_with_parent() -> None:
    """A gateway killed outright (kill -9) takes its child with it at once (Linux's
    PR_SET_PDEATHSIG), rather than at the child's next write: a file of one huge application
    writes nothing for as long as it is read. Elsewhere, the next write it is. (Linux sends
    it when the *thread* that started the child ends: each child is used by that thread
    only, ``_child_for``.)"""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before that: end now
        os._exit(1)


def _child() -> None:
    """The child's entry (``python -c``, so that this module is not imported twice)."""
    # Stopping is the gateway's: Ctrl-C or a service stop signals every process, and the file
    # in hand is to finish (OPERATIONS.md), so the child reads on; it ends when the gateway
    # closes the pipe or dies (its next write fails, or its request never comes).
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    _die_with_parent()
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
        assert process.stdout is not None
        self._fd = process.stdout.fileno()
        with _slots_lock:
            _reading.add(process.pid)
        stdin = process.stdin
        self._stdin_fd = -1 if stdin is None or stdin.closed else stdin.fileno()
        # poll, not select: a serving gateway may hold more than select's 1,024 descriptors.
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)

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
        items = self.prepared.ctx.covered.items
        checker: Reader | None = None  # checks what the child sent as read
        yielded = False  # a batch came: the child read (a fallback would read it twice)
        while True:
            head = self._read(_FRAME.size)
            size, codec = _FRAME.unpack(head) if len(head) == _FRAME.size else (0, _MARSHAL)
            body = self._read(size) if size else b""
            if not body or len(body) < size:  # ended, or cut in the middle of a message
                self._process.wait()
                raise ReadProcessLost(
                    f"the process reading {self.prepared.file_name} ended before the end of the "
                    f"file (exit status {self._process.returncode})")
            try:
                message = marshal.loads(body) if codec == _MARSHAL else _unpickle(body)
            except Exception as err:  # whatever it was, the child is not ours
                raise ReadProcessLost(f"the process reading {self.prepared.file_name} sent a "
                                      f"message that does not decode ({err})") from None
            kind = message[0]
            yielded = yielded or kind == _BATCH
            if kind == _BATCH:
                self._header = decode_header(message[1])
                for data in message[2]:
                    if type(data[0]) is int:
                        yield decode(data, items)
                    else:
                        checker = checker or self.prepared.reader()
                        yield checker.check(*decode_read(data))
            elif kind == _END:
                self._header = decode_header(message[1])
                return
            elif kind == _REJECTED:
                raise RejectedSubmission(message[1])
            elif kind == _FAILED:
                raise message[1]
            elif kind == _NO_REQUEST and not yielded:  # nothing read there: read here
                self._fallback = self.prepared.reader()
                yield from self._fallback.applications()
                return
            else:
                raise ReadProcessLost(f"the process reading {self.prepared.file_name} sent "
                                      f"a message of unknown kind {kind!r}")

    def _read(self, size: int) -> bytes:
        """``size`` bytes of the pipe (fewer at its end). Before waiting for them, the child
        is told that this side waits (a byte on its stdin: ``child_main`` shares the work)."""
        if self._stdin_fd >= 0 and not self._poll.poll(0):
            with contextlib.suppress(OSError):  # the child gone: the read below sees it
                os.write(self._stdin_fd, b"w")
        # Without the pass's turn (gateway.turns): even a message that has begun may wait
        # for the rest of it.
        with TURNS.released():
            return _read_exact(self._fd, size)

    def _stop(self) -> None:
        """The child is done, or no longer wanted: it is ended and waited for either way."""
        global _children
        try:
            _end(self._process)
        finally:  # the slot is free again whatever ending it raised (a Ctrl-C in wait)
            with _slots_lock:
                _children -= 1
                _reading.discard(self._process.pid)


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
    # Only what Python and the tests' seams read: the process that parses a partner's bytes
    # gets no password, passphrase or token of the gateway's environment.
    env = {name: value for name, value in os.environ.items()
           if name.startswith(_CHILD_ENVIRONMENT) or name in crash.ENVIRONMENT}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        process = subprocess.Popen(
            # -P: the working folder is not put first on sys.path (as -c does), so that a
            # ``gateway`` there (an old checkout) is never what the child runs.
            [sys.executable, "-P", "-c", _CHILD], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, close_fds=True, bufsize=0,
            start_new_session=True)  # the terminal's Ctrl-C is the gateway's, not the child's
    except Exception:  # no process to be had (OSError; no sys.executable: TypeError)
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
        view = memoryview(_REQUEST.pack(len(request)) + request)
        while view:  # an unbuffered pipe may take part of it
            view = view[process.stdin.write(view) or 0:]
        # Open still: the "I waited" bytes go there (``ProcessReader._read``), never blocking.
        os.set_blocking(process.stdin.fileno(), False)
    except Exception:  # the child gone, or a request that does not pickle (any error)
        _end(process)  # read in process
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
    idle = None
    with _slots_lock:
        me = threading.get_ident()
        process = _spares.pop(me, None)
        if process is None and _spares and _children >= _MAX_CHILDREN:
            # Another thread's spare, idle while its file is fetched: a file ready to read now
            # does not wait for that one. It is ended and its slot taken (not the process
            # itself: it dies with the thread that started it, ``_die_with_parent``); the
            # other file gets a child if the slot is free again by then, else is read here.
            idle = _spares.pop(next(iter(_spares)))
        elif process is None:
            if _children >= _MAX_CHILDREN:
                return None
            _children += 1
    if idle is not None:
        _end(idle)
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
    global _children
    source: Reader | ProcessReader = prepared.reader()
    if min_bytes > 0 and _cpus() >= 2 and _size(prepared.path) >= min_bytes:
        process = _child_for(prepared)
        if process is not None:
            try:
                source = ProcessReader(prepared, process)
            except BaseException:
                _end(process)
                with _slots_lock:
                    _children -= 1
                raise
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
