"""A large file read by a second process (gateway.validate.read_process), issue 15.

The decisions must not be able to tell: every sample, hostile and generated file read through
the child gives the in-process reader's applications (to the exponent of each amount), header
and error at the same place; a whole run through it writes the same acknowledgment, ACE files
and ledger rows. A child that dies fails that attempt only, with nothing issued; a gateway
killed mid-file leaves no child behind; one child per gateway process, released on every path.
"""

from __future__ import annotations

import marshal
import os
import pickle
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import acme_project
from lifecycle_files import application, submission

from gateway.cli import main
from gateway.config import load_config
from gateway.errors import RejectedSubmission
from gateway.findings import Finding, Severity
from gateway.ledger import progress
from gateway.licensing.pipeline import rule_context
from gateway.parse.mapping import load_mapping
from gateway.service.process import RunPass
from gateway.service.runner import run_once
from gateway.validate import read_process
from gateway.validate.hts import CoveredHts
from gateway.validate.read_process import ProcessReader, ReadProcessLost, read_source
from gateway.validate.staging import Prepared, Reader, prepare

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CASES = TESTS / "cases" / "inbox"
HOSTILE = TESTS / "hostile"
AS_OF = date(2026, 12, 1)
MAPPINGS = {"hanse": ROOT / "mappings" / "hanse-metall.toml",
            "nordic": ROOT / "mappings" / "nordic-orders.xsl"}
# Whatever the test machine has, the child is allowed (read_source asks for a second CPU).
pytestmark = pytest.mark.usefixtures("two_cpus")


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_process, "_cpus", lambda: 2)


def generated(tmp_path: Path, lines: int, per_app: int, fmt: str = "xml",
              errors: float = 0.05) -> Path:
    """A realistic file from bench/generate.py (several countries, HTS numbers, errors)."""
    out = tmp_path / f"gen-{lines}-{per_app}.{fmt}"
    subprocess.run([sys.executable, str(ROOT / "bench" / "generate.py"), "--lines", str(lines),
                    "--lines-per-app", str(per_app), "--out", str(out), "--format", fmt,
                    "--error-rate", str(errors)], check=True, capture_output=True)
    return out


def _broken_after(tmp_path: Path, apps: int) -> Path:
    """``apps`` good applications, then a tag that does not close: F001 after all of them."""
    body = submission("BROKEN-1", *(application(f"PO-{n}") for n in range(apps)))
    path = tmp_path / "broken-after.xml"
    path.write_bytes(body.replace(b"</LicenseSubmission>", b"<Application ref='X'>"))
    return path


def case_files() -> list[Path]:
    files = [p for folder in sorted(CASES.iterdir()) for p in sorted(folder.iterdir())]
    files += [p for p in sorted(HOSTILE.iterdir()) if p.name != "README.md"]
    return files


def _prepared(path: Path, work: Path, partner: str | None = None) -> Prepared | None:
    ctx = rule_context(load_config(acme_project(work / "cfg", "keep")), AS_OF)
    mapping = load_mapping(MAPPINGS[partner]) if partner in MAPPINGS else None
    try:
        return prepare(path, ctx, mapping, work, path.name)
    except RejectedSubmission:
        return None  # refused before any reading: no child is involved


def _read(source: Reader | ProcessReader) -> tuple[object, list[str], object]:
    """What a reader gives: its applications (as their exact text), header and end."""
    items: list[str] = []
    end: object = "end"
    try:
        for item in source.applications():
            items.append(repr(item))  # Decimal's repr keeps the exponent ("1.50" is not "1.5")
    except RejectedSubmission as rejected:
        end = rejected.finding
    except Exception as err:
        end = (type(err), str(err))
    return source.header, items, end



def _both(prepared: Prepared) -> tuple[tuple[object, list[str], object], ...]:
    alone = _read(prepared.reader())
    with read_source(prepared, 1) as source:
        assert isinstance(source, ProcessReader)
        beside = _read(source)
    return alone, beside


# The child's ways of sharing the work, each taken for certain (crash.read_share): every
# application checked there and its digest taken there, half sent as read (the parent checks
# them), all sent as read. Unset: shared by who is behind, as in production.
SHARES = ["0", "0.5", "1"]


@pytest.mark.parametrize("share", [None, "1"])
@pytest.mark.parametrize("path", case_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_case_reads_the_same_through_the_child(
        path: Path, tmp_path: Path, share: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if share is not None:
        monkeypatch.setenv("AIMGW_READ_SHARE", share)
    partner = path.parent.name if path.parent.parent == CASES else None
    prepared = _prepared(path, tmp_path, partner)
    if prepared is None:
        pytest.skip("refused before reading (F002/F004 ...): no reader runs")
    alone, beside = _both(prepared)
    assert beside == alone


@pytest.mark.parametrize("share", [None, *SHARES])
@pytest.mark.parametrize(("lines", "per_app", "fmt"), [
    (3000, 1, "xml"), (3000, 20, "xml"), (4000, 999, "xml"), (3000, 3, "csv")])
def test_generated_files_read_the_same_through_the_child(
        tmp_path: Path, lines: int, per_app: int, fmt: str, share: str | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if share is not None:
        monkeypatch.setenv("AIMGW_READ_SHARE", share)
    prepared = _prepared(generated(tmp_path, lines, per_app, fmt), tmp_path)
    assert prepared is not None
    alone, beside = _both(prepared)
    assert len(alone[1]) == -(-lines // per_app)  # several batches went through the pipe
    assert beside == alone
    # Every application goes by marshal (pickle is the slow fallback for odd objects): the
    # generated files hold subheading-covered lines (A133), findings, every severity.
    keys = read_process.covered_keys(prepared.ctx.covered.items)
    for item in prepared.reader(digests=False).applications():
        marshal.dumps(read_process.encode(item, keys))


@pytest.mark.parametrize("share", SHARES)
def test_an_f_code_after_many_applications_comes_at_the_same_place(
        tmp_path: Path, share: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMGW_READ_SHARE", share)
    prepared = _prepared(_broken_after(tmp_path, 1500), tmp_path)
    assert prepared is not None
    alone, beside = _both(prepared)
    assert len(alone[1]) == 1500 and getattr(alone[2], "code", None) == "F001"
    assert beside == alone


def test_a_gateway_holding_many_descriptors_reads_through_the_child(tmp_path: Path) -> None:
    """A serving gateway may hold over 1,024 descriptors (select's limit): the pipe's number
    is then above it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"at most {hard} descriptors here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1300), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        prepared = _prepared(generated(tmp_path, 3000, 1), tmp_path)
        assert prepared is not None
        with read_source(prepared, 1) as source:
            assert isinstance(source, ProcessReader) and source._fd > 1024
        alone, beside = _both(prepared)
        assert beside == alone
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_error_of_the_reading_is_raised_as_it_was(tmp_path: Path) -> None:
    prepared = _prepared(generated(tmp_path, 100, 1), tmp_path)
    assert prepared is not None
    prepared.path.unlink()
    prepared.path.mkdir()  # a folder where the file was: the reader's open() fails
    alone, beside = _both(prepared)
    assert alone[2][0] is IsADirectoryError  # type: ignore[index]
    assert beside == alone


def test_a_request_the_child_cannot_read_is_read_in_process(tmp_path: Path) -> None:
    prepared = _prepared(generated(tmp_path, 1000, 1), tmp_path)
    assert prepared is not None
    # As a child that cannot unpickle the request answers (e.g. a compiled build's context).
    process = subprocess.Popen([sys.executable, "-c", read_process._CHILD],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(b"not a pickle")
    process.stdin.close()
    with read_process._slots_lock:
        read_process._children += 1  # as read_source counts the child it starts
    source = ProcessReader(prepared, process)
    try:
        assert _read(source) == _read(prepared.reader())
    finally:
        source.close()
    assert process.returncode == 2 and read_process._children == 0


class _Runs:
    """Unpickled, calls ``call(*args)``: what a child taken over could send."""

    def __init__(self, call: object, *args: object) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.call, self.args


@pytest.mark.parametrize("after", [b"w", b"www"])
def test_the_bytes_after_the_request_stay_for_the_work_sharing(tmp_path: Path,
                                                                 after: bytes) -> None:
    """The parent's "I waited" bytes can follow its request at once: the child reads the
    request and no byte more (a buffered ``pickle.load`` took them, and the sharing missed
    them), so that ``_Hungry`` still finds them in the pipe."""
    prepared = _prepared(generated(tmp_path, 1000, 1), tmp_path)
    assert prepared is not None
    request = pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb", buffering=0) as stdin:
        writer = threading.Thread(target=os.write, args=(
            write_end, read_process._REQUEST.pack(len(request)) + request + after))
        writer.start()
        got = read_process.read_request(stdin.fileno())
        writer.join()
        os.close(write_end)
        assert got.file_name == prepared.file_name and got.path == prepared.path
        assert read_process._Hungry(stdin)() and not read_process._Hungry(stdin)()


@pytest.mark.parametrize("sent", [b"", b"\x05\x00", b"\xff" * 8, b"\x10" + b"\x00" * 7 + b"ab"])
def test_a_request_cut_short_is_no_request(sent: bytes) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, sent)
    os.close(write_end)
    try:
        with pytest.raises(EOFError):
            read_process.read_request(read_end)
    finally:
        os.close(read_end)


@pytest.mark.parametrize("message", [
    pytest.param(lambda marker: (read_process._FAILED, _Runs(os.mkdir, str(marker))),
                 id="a call of os"),
    pytest.param(lambda marker: (read_process._FAILED, _Runs(
        exec, f"open({str(marker)!r}, 'w').close()")), id="exec"),
    pytest.param(lambda marker: (read_process._BATCH, None, [_Runs(
        Path.touch, Path(marker))]), id="a method in a batch"),
    pytest.param(lambda marker: (read_process._FAILED, _Runs(
        __import__, "antigravity")), id="an import"),
    # A gateway class the child never sends: made, it opens the file's acknowledgment.
    pytest.param(lambda marker: (read_process._BATCH, None, [_Runs(RunPass)]),
                 id="a gateway class not sent"),
])
def test_a_message_naming_more_than_the_child_sends_runs_nothing(
        tmp_path: Path, message: object) -> None:
    """A reading child taken over through a parser flaw cannot run code in the gateway by
    what it sends: the parent unpickles only the exceptions, the gateway's own classes and
    a few value types; anything else fails the read, and nothing named is called."""
    prepared = _prepared(generated(tmp_path, 100, 1), tmp_path)
    assert prepared is not None
    marker = tmp_path / "ran"
    data = pickle.dumps(message(marker))  # type: ignore[operator]
    frame = read_process._FRAME.pack(len(data), read_process._PICKLE) + data
    process = subprocess.Popen(
        [sys.executable, "-c", f"import sys; sys.stdout.buffer.write({frame!r})"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.close()
    with read_process._slots_lock:
        read_process._children += 1
    source = ProcessReader(prepared, process)
    try:
        end = _read(source)[2]
    finally:
        source.close()
    assert isinstance(end, tuple) and end[0] is ReadProcessLost
    assert "does not decode" in end[1] and "not sent by a reading process" in end[1]
    assert not marker.exists() and "antigravity" not in sys.modules
    assert read_process._children == 0


def test_what_a_child_sends_decodes_as_it_was() -> None:
    """The restricted unpickler takes every kind of object the child sends by pickle."""
    finding = Finding("F001", Severity.ERROR, "not XML", line=3)
    err = ValueError("a reader's own failure")
    err.add_note("in the reading process")
    sent = (read_process._REJECTED, finding, err, IsADirectoryError(21, "Is a directory"),
            Decimal("1.50"), date(2026, 12, 1), {"a"}, frozenset({"b"}),
            CoveredHts("7601103000", "unwrought aluminum", "1"))
    got = read_process._unpickle(pickle.dumps(sent))
    assert got == sent[:2] + got[2:4] + sent[4:]
    assert str(got[2]) == str(err) and got[2].__notes__ == err.__notes__
    assert type(got[3]) is IsADirectoryError and got[3].errno == 21


def test_one_child_per_process_and_released_on_every_path(tmp_path: Path) -> None:
    prepared = _prepared(generated(tmp_path, 3000, 1), tmp_path)
    assert prepared is not None
    with read_source(prepared, 1) as first:
        assert isinstance(first, ProcessReader)
        with read_source(prepared, 1) as second:
            assert isinstance(second, Reader)  # another file meanwhile: read in process
        next(iter(first.applications()))  # read a little, then give the file up
    assert read_process._children == 0
    with pytest.raises(KeyError), read_source(prepared, 1) as third:
        assert isinstance(third, ProcessReader)
        raise KeyError("the decisions failed")
    assert read_process._children == 0
    assert third._process.returncode is not None  # ended and waited for
    with read_source(prepared, len(prepared.path.read_bytes()) + 1) as small:
        assert isinstance(small, Reader)  # under the threshold
    with read_source(prepared, 0) as never:
        assert isinstance(never, Reader)


def test_the_progress_of_a_file_is_the_childs_reading(tmp_path: Path) -> None:
    """The file's progress (status, web page) is how far its reader has read: the child's."""
    prepared = _prepared(generated(tmp_path, 20000, 1), tmp_path)
    assert prepared is not None
    st = prepared.path.stat()
    dev_ino = (st.st_dev, st.st_ino)
    with read_source(prepared, 1) as source:
        assert isinstance(source, ProcessReader)
        assert read_process.reading_pids() == [source._process.pid]
        items = source.applications()
        next(items)
        assert progress._offset_in("/proc/self", dev_ino) is None  # not open here
        offset = progress.read_offset(dev_ino)
        assert offset is not None and 0 < offset <= st.st_size
        for _ in items:
            pass
    assert read_process.reading_pids() == []


def test_a_dead_child_fails_the_read(tmp_path: Path) -> None:
    # More than the pipe holds (1 MiB): the child cannot have sent the whole file before
    # it is killed, however slow this side is.
    prepared = _prepared(generated(tmp_path, 30000, 1), tmp_path)
    assert prepared is not None
    with read_source(prepared, 1) as source:
        assert isinstance(source, ProcessReader)
        items = source.applications()
        next(items)
        source._process.kill()
        with pytest.raises(ReadProcessLost, match="ended before the end of the file"):
            for _ in items:
                pass
    assert read_process._children == 0


def test_a_child_started_ahead_is_the_one_that_reads(tmp_path: Path) -> None:
    prepared = _prepared(generated(tmp_path, 3000, 1), tmp_path)
    assert prepared is not None
    size = prepared.path.stat().st_size
    read_process.prestart(size, size + 1)  # under the threshold: none
    assert not read_process._spares
    read_process.prestart(size, 1)
    spare = next(iter(read_process._spares.values()))
    with read_source(prepared, 1) as source:
        assert isinstance(source, ProcessReader) and source._process is spare
        assert _read(source) == _read(prepared.reader())
    assert read_process._children == 0 and not read_process._spares


def test_a_child_started_ahead_and_not_used_is_ended(tmp_path: Path) -> None:
    read_process.prestart(10, 1)
    spare = next(iter(read_process._spares.values()))
    read_process.prestart(10, 1)  # one a thread
    assert len(read_process._spares) == 1 and read_process._children == 1
    read_process.discard_spare()
    assert spare.returncode is not None
    assert read_process._children == 0 and not read_process._spares
    read_process.discard_spare()  # none: nothing to do


# --- Whole runs ------------------------------------------------------------------------------


def _with_threshold(base: Path, min_bytes: int) -> Path:
    cfg = acme_project(base, "keep")
    text = cfg.read_text(encoding="utf-8")
    assert "[gateway]" not in text
    cfg.write_text(f"[gateway]\nread_process_min_bytes = {min_bytes}\n\n" + text,
                   encoding="utf-8")
    return cfg


def _outputs(base: Path) -> dict[str, bytes]:
    """Every output a run wrote, with the times it cannot repeat taken out."""
    times = re.compile(rb"(<(ReceivedAt|ProcessedAt)>[^<]*</\2>|\"(created_at|received_at|"
                       rb"processed_at|written_at)\": \"[^\"]*\")")
    out = {}
    for path in sorted((base / "outbox").rglob("*")):
        if path.is_file() and not path.name.startswith("status."):
            out[str(path.relative_to(base))] = times.sub(b"", path.read_bytes())
    return out


def _ledger(base: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(base / "data" / "ledger.sqlite") as db:
        rows = list(db.execute("SELECT file_id, seq, ref, status, license_number, digest "
                               "FROM applications ORDER BY file_id, seq"))
        rows += list(db.execute("SELECT license_number, file_id, state FROM licenses "
                                "ORDER BY license_number"))
        rows += list(db.execute("SELECT file_id, code, message FROM findings "
                                "ORDER BY rowid"))
    return rows


@pytest.mark.parametrize("share", [None, "0.5"])
@pytest.mark.parametrize(("per_app", "fmt"), [(1, "xml"), (7, "xml"), (2, "csv")])
def test_a_run_through_the_child_writes_what_one_without_writes(
        tmp_path: Path, per_app: int, fmt: str, share: str | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if share is not None:
        monkeypatch.setenv("AIMGW_READ_SHARE", share)
    source = generated(tmp_path, 3000, per_app, fmt)
    runs = {}
    for name, min_bytes in (("alone", 0), ("beside", 1)):
        base = tmp_path / name
        cfg = _with_threshold(base, min_bytes)
        (base / "inbox" / source.name).write_bytes(source.read_bytes())
        run_once(load_config(cfg), AS_OF)
        runs[name] = (_outputs(base), _ledger(base))
        assert read_process._children == 0 and not read_process._spares
    assert runs["alone"][0] and runs["alone"][1]
    assert any("/ace/AE-" in name for name in runs["alone"][0])
    assert runs["beside"] == runs["alone"]


def test_check_of_a_large_file_answers_the_same_through_the_child(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`check` decides with the run's core: a large file read by the child gets the same
    acknowledgment as read in process."""
    source = generated(tmp_path, 3000, 2)
    spawned = []
    real = read_process._spawn
    monkeypatch.setattr(read_process, "_spawn", lambda: spawned.append(1) or real())
    answers = []
    for min_bytes in (0, 1):
        cfg = _with_threshold(tmp_path / f"check-{min_bytes}", min_bytes)
        code = main(["--config", str(cfg), "check", str(source), "--partner", "acme",
                     "--as-of", AS_OF.isoformat()])
        answers.append((code, re.sub(r"<(ReceivedAt|ProcessedAt)>[^<]*</\1>", "",
                                     capsys.readouterr().out)))
        assert read_process._children == 0
    assert answers[0][0] == 1 and "<Application " in answers[0][1]  # PARTIAL: errors in it
    assert answers[1] == answers[0] and spawned == [1]  # the second read by a child


def test_a_repeated_ref_read_by_the_child_takes_the_two_pass_path(tmp_path: Path) -> None:
    """A ref twice (A105): the one pass stops (its child ended), the file is staged and
    decided again; the same outputs and rows as without a child."""
    body = submission("REPEATED-1", *(application(f"PO-{n}") for n in range(1500)),
                      application("PO-7", quantity="100"))
    runs = {}
    for name, min_bytes in (("alone", 0), ("beside", 1)):
        base = tmp_path / name
        cfg = _with_threshold(base, min_bytes)
        (base / "inbox" / "repeated.xml").write_bytes(body)
        run_once(load_config(cfg), AS_OF)
        runs[name] = (_outputs(base), _ledger(base))
        assert read_process._children == 0
    with sqlite3.connect(tmp_path / "alone" / "data" / "ledger.sqlite") as db:
        assert db.execute("SELECT count(*) FROM findings WHERE code = 'A105'").fetchone()[0] == 2
    assert runs["beside"] == runs["alone"]


def test_a_child_started_ahead_for_a_file_never_read_is_ended_with_the_poll(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same bytes again are a DUPLICATE (F006), decided without reading: the child
    started while the file was received is ended at the poll's end, not left behind."""
    cfg = _with_threshold(tmp_path, 1)
    body = generated(tmp_path, 3000, 1).read_bytes()
    spawned: list[subprocess.Popen[bytes] | None] = []
    real = read_process._spawn

    def spawn() -> subprocess.Popen[bytes] | None:
        spawned.append(real())
        return spawned[-1]

    monkeypatch.setattr(read_process, "_spawn", spawn)
    for name in ("first.xml", "again.xml"):
        spawned.clear()
        (tmp_path / "inbox" / name).write_bytes(body)
        run_once(load_config(cfg), AS_OF)
        assert len(spawned) == 1 and spawned[0] is not None
        assert spawned[0].returncode is not None  # ended and waited for
        assert read_process._children == 0 and not read_process._spares
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as db:
        statuses = [r[0] for r in db.execute("SELECT status FROM files ORDER BY file_id")]
    assert statuses[1] == "DUPLICATE"


def test_a_child_that_dies_fails_the_attempt_and_issues_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _with_threshold(tmp_path, 1)
    source = generated(tmp_path, 3000, 1)
    (tmp_path / "inbox" / source.name).write_bytes(source.read_bytes())
    monkeypatch.setenv("AIMGW_CRASH_AT", "reading_child")  # only the child stops there
    run_once(load_config(cfg), AS_OF)
    assert (tmp_path / "inbox" / source.name).exists()  # kept for the next poll
    assert not list((tmp_path / "outbox").rglob("AE-*"))
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as db:
        assert db.execute("SELECT count(*) FROM licenses").fetchone() == (0,)
    monkeypatch.delenv("AIMGW_CRASH_AT")
    run_once(load_config(cfg), AS_OF)
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as db:
        assert db.execute("SELECT count(*) FROM licenses").fetchone()[0] > 2500
    assert read_process._children == 0


@pytest.mark.parametrize("when", ["reading", "waiting"])
def test_a_gateway_killed_leaves_no_child(tmp_path: Path, when: str) -> None:
    """Killed mid-file, or while its child started ahead waits for its request: the child
    ends on its own (its next write fails, or its request never comes)."""
    path = generated(tmp_path, 20000, 1)
    config = acme_project(tmp_path / "cfg", "keep")
    reading = (
        f"ctx = rule_context(load_config(Path({str(config)!r})), date(2026, 12, 1))\n"
        f"prepared = prepare(Path({str(path)!r}), ctx, None, Path({str(tmp_path)!r}), 'f')\n"
        "with read_process.read_source(prepared, 1) as source:\n"
        "    items = source.applications()\n"
        "    next(items)\n"
        "    print(source._process.pid, flush=True)\n"
        "    sys.stdin.read()\n")
    waiting = (
        "read_process.prestart(10, 1)\n"
        "print(next(iter(read_process._spares.values())).pid, flush=True)\n"
        "sys.stdin.read()\n")
    script = (
        "import sys\n"
        "from datetime import date\n"
        "from pathlib import Path\n"
        "from gateway.config import load_config\n"
        "from gateway.licensing.pipeline import rule_context\n"
        "from gateway.validate import read_process\n"
        "from gateway.validate.staging import prepare\n"
        "read_process._cpus = lambda: 2\n" + (reading if when == "reading" else waiting))
    gateway = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert gateway.stdout is not None
    child = int(gateway.stdout.readline())
    assert _alive(child)
    gateway.send_signal(signal.SIGKILL)
    gateway.wait()
    deadline = time.monotonic() + 60
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)  # a condition, polled: the child ends on its next write or read
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")
