"""SFTP intake and delivery against a real OpenSSH server (tests/sftp_server.py)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ProjectConfig
from conftest import wait_until as wait_for
from sftp_server import SftpAccount, SshServer, TcpCutProxy

from gateway.config import Config, load_config
from gateway.inbox.onboarding import partner_self_test
from gateway.service.runner import PollReport
from gateway.service.runner import run_once as run_cycle

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
SAMPLES = CASES_INBOX / "sample"
GOOD = (SAMPLES / "acme-20261201-good.xml").read_bytes()


def sftp_project(base: Path) -> ProjectConfig:
    """The SFTP tests' project (partners added by each test): the service polls every second."""
    return ProjectConfig(base).set("gateway", poll_interval_seconds=1)


def run_once(cfg: Path) -> list[PollReport]:
    return run_cycle(load_config(cfg))


def drop(account: SftpAccount, name: str, data: bytes = GOOD) -> None:
    Path(account.inbox, name).write_bytes(data)


STATUS_FILES = {"status.json", "status.csv"}  # the partner's health, in <acks>/status/


def acks(account: SftpAccount) -> list[str]:
    """The acknowledgments in the partner's remote folder (not its status files)."""
    return sorted(set(os.listdir(account.acks)) - STATUS_FILES - {"status"})


def db(base: Path) -> sqlite3.Connection:
    return sqlite3.connect(base / "data" / "ledger.sqlite")


def with_id(data: bytes, submission_id: str, prefix: str) -> bytes:
    """The good sample with its own SubmissionId and refs (a distinct submission)."""
    return data.replace(b"ACME-20261201-001", submission_id.encode()).replace(
        b'ref="PO-44', f'ref="{prefix}-'.encode()).replace(b'ref="WH-', f'ref="{prefix}W-'.encode())


def test_two_partners_on_one_poll_get_files_taken_and_acks_delivered(
        tmp_path: Path, sshd: SshServer) -> None:
    acme, bolt = sshd.account("acme"), sshd.account("bolt")
    cfg = (sftp_project(tmp_path).sftp_partner("acme", sshd, acme)
           .sftp_partner("bolt", sshd, bolt).write())
    drop(acme, "a.xml")
    drop(bolt, "b.xml", with_id(GOOD, "BOLT-1", "BO"))
    reports = {r.partner: r for r in run_once(cfg)}
    assert [len(reports[p].taken) for p in ("acme", "bolt")] == [1, 1]
    assert reports["acme"].error is None and reports["bolt"].error is None
    for account, name in ((acme, "a.xml"), (bolt, "b.xml")):
        assert os.listdir(account.inbox) == []
        assert os.listdir(account.processed) == [name]
        assert acks(account) == [f"{name}.ack.xml"]
        # The status files have their folder: a broker's `get *.csv` of its acks takes none.
        assert set(os.listdir(Path(account.acks, "status"))) == STATUS_FILES
        assert not set(os.listdir(account.acks)) & STATUS_FILES
        remote_ack = Path(account.acks, f"{name}.ack.xml").read_bytes()
        local_ack = (tmp_path / "outbox" / account.name / f"{name}.ack.xml").read_bytes()
        assert remote_ack == local_ack and b"<Status>ACCEPTED</Status>" in remote_ack
    with db(tmp_path) as con:
        assert con.execute("SELECT COUNT(*) FROM licenses").fetchone()[0] == 6
        assert {r[0] for r in con.execute("SELECT state FROM files")} == {"DONE"}
    # A second poll finds nothing new and takes nothing twice.
    assert all(not r.taken for r in run_once(cfg))


def test_a_file_still_being_written_is_not_taken_until_stable(
        tmp_path: Path, sshd: SshServer) -> None:
    acme = sshd.account("acme")
    cfg = sftp_project(tmp_path).sftp_partner("acme", sshd, acme, min_age_seconds=1).write()
    half = GOOD[: len(GOOD) // 2]
    drop(acme, "a.xml", half)
    assert run_once(cfg)[0].taken == []  # first sight: not yet known to be stable
    time.sleep(1.2)
    drop(acme, "a.xml", GOOD[: len(GOOD) * 3 // 4])  # still growing
    assert run_once(cfg)[0].taken == []
    drop(acme, "a.xml", GOOD)
    assert run_once(cfg)[0].taken == []  # complete, but seen for less than 1 s
    time.sleep(1.2)
    taken = run_once(cfg)[0].taken
    assert len(taken) == 1
    with db(tmp_path) as con:
        assert con.execute("SELECT size, status FROM files").fetchall() == [
            (len(GOOD), "ACCEPTED")]


def test_done_file_partner(tmp_path: Path, sshd: SshServer) -> None:
    acme = sshd.account("acme")
    cfg = (sftp_project(tmp_path).sftp_partner("acme", sshd, acme, completion="done_file")
           .write())
    drop(acme, "a.xml")
    drop(acme, "a.xml.part", b"<half")  # an upload in progress is never taken either
    assert run_once(cfg)[0].taken == []
    Path(acme.inbox, "a.xml.done").write_bytes(b"")
    assert len(run_once(cfg)[0].taken) == 1
    assert sorted(os.listdir(acme.inbox)) == ["a.xml.part"]  # done-file removed with it
    assert os.listdir(acme.processed) == ["a.xml"]


def test_server_down_fails_only_that_partner_and_backs_off_with_one_alert(
        tmp_path: Path, sshd: SshServer) -> None:
    acme = sshd.account("acme")
    local_inbox = tmp_path / "local-in"
    local_inbox.mkdir()
    cfg = (sftp_project(tmp_path)
           .sftp_partner("acme", sshd, acme, port=1, failure_alert_after=2, max_backoff_seconds=1)
           .partner("local", name="L", inbox=local_inbox).write())
    shutil.copy(SAMPLES / "acme-20261201-good.xml", local_inbox / "l.xml")
    reports = {r.partner: r for r in run_once(cfg)}
    assert reports["acme"].error and "connection refused by 127.0.0.1:1" in reports["acme"].error
    assert len(reports["local"].taken) == 1  # the other partner was not held up
    run_once(cfg)
    time.sleep(1.1)
    run_once(cfg)
    events = (tmp_path / "data" / "events.jsonl").read_text()
    assert events.count('"partner.failing"') == 1  # one alert, not one per poll
    with db(tmp_path) as con:
        failures, alerting = con.execute(
            "SELECT failures, alerting FROM partner_state WHERE partner = 'acme'").fetchone()
    assert failures >= 2 and alerting == 1


def test_recovery_after_the_server_comes_back_clears_the_alert(
        tmp_path: Path, sshd: SshServer) -> None:
    acme = sshd.account("acme")
    cfg = (sftp_project(tmp_path)
           .sftp_partner("acme", sshd, acme, failure_alert_after=1, max_backoff_seconds=1)
           .write())
    drop(acme, "a.xml")
    sshd.stop()
    assert run_once(cfg)[0].error
    sshd.start()
    time.sleep(1.1)
    assert len(run_once(cfg)[0].taken) == 1
    events = (tmp_path / "data" / "events.jsonl").read_text()
    assert events.count('"partner.failing"') == 1
    assert events.count('"partner.recovered"') == 1


@pytest.mark.parametrize("which", ["wrong", "unknown"])
def test_wrong_or_unknown_host_key_is_refused_naming_partner_and_fingerprint(
        tmp_path: Path, sshd: SshServer, which: str) -> None:
    acme = sshd.account("acme")
    known = sshd.wrong_known_hosts
    if which == "unknown":
        known = tmp_path / "empty_known_hosts"
        known.write_text("")
    cfg = sftp_project(tmp_path).sftp_partner("acme", sshd, acme, known_hosts=known).write()
    drop(acme, "a.xml")
    report = run_once(cfg)[0]
    assert report.taken == []
    assert report.error is not None
    assert "partner acme" in report.error and "SHA256:" in report.error
    assert ("CHANGED" if which == "wrong" else "not in known_hosts") in report.error
    assert os.listdir(acme.inbox) == ["a.xml"]  # nothing taken, nothing moved


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_connection_cut_mid_download_takes_the_file_whole_later_never_twice(
        tmp_path: Path, sshd: SshServer, cut_proxy: TcpCutProxy) -> None:
    acme = sshd.account("acme")
    cfg = (sftp_project(tmp_path).sftp_partner("acme", sshd, acme, port=cut_proxy.port)
           .write())
    big = with_id(GOOD, "BIG-1", "BG").replace(
        b"<Description>Can body stock, alloy 3104, coils</Description>",
        b"<Description>" + b"x" * 190 + b"</Description>")
    # Pad with comments so the download is long enough to cut in the middle.
    big = big.replace(b"</LicenseSubmission>", b"<!--" + b"p" * 3_000_000 + b"-->\n"
                      b"</LicenseSubmission>")
    drop(acme, "big.xml", big)
    cut_proxy.cut_after(400_000)
    first = run_once(cfg)[0]
    assert first.taken == [] and first.error and "big.xml" in first.error
    assert os.listdir(acme.inbox) == ["big.xml"]
    assert list((tmp_path / "data" / "work" / "tmp").iterdir()) == []  # no partial file kept
    second = run_once(cfg)[0]
    assert len(second.taken) == 1
    with db(tmp_path) as con:
        assert con.execute("SELECT size, status FROM files").fetchall() == [
            (len(big), "ACCEPTED")]
    assert run_once(cfg)[0].taken == []


def test_crash_between_download_and_remote_disposition(tmp_path: Path,
                                                      sshd: SshServer) -> None:
    acme = sshd.account("acme")
    cfg = sftp_project(tmp_path).sftp_partner("acme", sshd, acme).write()
    drop(acme, "a.xml")
    command = [sys.executable, "-m", "gateway.cli", "run", "--once", "--config", str(cfg)]
    crashed = subprocess.run(command, env={**os.environ, "AIMGW_CRASH_AT": "after_receipt"},
                             capture_output=True, check=False)
    assert crashed.returncode == 86, crashed.stderr
    assert os.listdir(acme.inbox) == ["a.xml"]  # received locally, not yet disposed of
    rerun = subprocess.run(command, capture_output=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert os.listdir(acme.inbox) == [] and os.listdir(acme.processed) == ["a.xml"]
    assert acks(acme) == ["a.xml.ack.xml"]
    with db(tmp_path) as con:
        assert con.execute("SELECT state, status FROM files").fetchall() == [
            ("DONE", "ACCEPTED")]
        assert con.execute("SELECT COUNT(*) FROM licenses").fetchone()[0] == 3


def test_symlink_in_the_remote_inbox_is_never_followed(tmp_path: Path,
                                                      sshd: SshServer) -> None:
    acme = sshd.account("acme")
    cfg = sftp_project(tmp_path).sftp_partner("acme", sshd, acme).write()
    secret = tmp_path / "secret.xml"
    secret.write_bytes(GOOD)
    os.symlink(secret, Path(acme.inbox, "link.xml"))
    assert run_once(cfg)[0].taken == []


def test_passphrase_key_from_the_environment(tmp_path: Path, sshd: SshServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    acme = sshd.account("acme")
    cfg = sftp_project(tmp_path).sftp_partner(
        "acme", sshd, acme, key_file=sshd.key_file_with_passphrase,
        key_passphrase_env="ACME_KEY_PASS").write()
    drop(acme, "a.xml")
    monkeypatch.setenv("ACME_KEY_PASS", sshd.passphrase)
    assert len(run_once(cfg)[0].taken) == 1


def config_of(cfg: Path) -> Config:
    return load_config(cfg)


def test_partner_self_test_reports_each_step(tmp_path: Path, sshd: SshServer) -> None:
    acme = sshd.account("acme")
    good = sftp_project(tmp_path).sftp_partner("acme", sshd, acme).write()
    ok, lines = partner_self_test(config_of(good).partner("acme"))
    assert ok, lines
    text = "\n".join(lines)
    assert "SHA256:" in text and "authenticated" in text and "renamed it" in text
    assert acks(acme) == []  # the probe was removed
    bad = (sftp_project(tmp_path)
           .sftp_partner("acme", sshd, acme, known_hosts=sshd.wrong_known_hosts).write())
    ok, lines = partner_self_test(config_of(bad).partner("acme"))
    assert not ok and "FAIL" in lines[-1] and "CHANGED" in lines[-1]
    cli = subprocess.run([sys.executable, "-m", "gateway.cli", "partner", "test", "acme",
                          "--config", str(bad)], capture_output=True, text=True, check=False)
    assert cli.returncode == 1 and "SHA256:" in cli.stdout



def test_serve_with_two_sftp_partners(tmp_path: Path, sshd: SshServer) -> None:
    acme, bolt = sshd.account("acme"), sshd.account("bolt")
    cfg = (sftp_project(tmp_path).sftp_partner("acme", sshd, acme, interval_seconds=1)
           .sftp_partner("bolt", sshd, bolt, schedule="* * * * *").write())
    drop(acme, "a.xml")
    drop(bolt, "b.xml", with_id(GOOD, "BOLT-1", "BO"))
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config",
                             str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=(tmp_path / "serve.log").open("wb"))
    try:
        assert wait_for(lambda: acks(acme) == ["a.xml.ack.xml"])
        assert wait_for(lambda: acks(bolt) == ["b.xml.ack.xml"])  # first run now
        drop(acme, "c.xml", with_id(GOOD, "ACME-2", "AC"))
        assert wait_for(lambda: "c.xml.ack.xml" in acks(acme))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, (tmp_path / "serve.log").read_text(errors="replace")
    assert sorted(os.listdir(acme.processed)) == ["a.xml", "c.xml"]
