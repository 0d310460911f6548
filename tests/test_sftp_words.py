"""Connection and setup failures of an SFTP partner in plain words (issue 14 items 2 and 9b):
each case is a real failure (a closed port, a real sshd refusing a key, a listener that never
answers...), and the message names what happened and where, never paramiko's ``[Errno None]``.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import paramiko
import pytest
from conftest import ProjectConfig
from sftp_server import LOOPBACK, SshServer, free_port

from gateway.config import PartnerConfig, SftpSource, load_config
from gateway.errors import GatewayError
from gateway.inbox.onboarding import partner_self_test
from gateway.inbox.sftp import SftpInbox
from gateway.inbox.sftp_session import in_words
from gateway.service.runner import run_once

TIMEOUT = 1.5


@contextmanager
def listener(behaviour: str) -> Iterator[int]:
    """A loopback TCP port that accepts and stays silent (``silent``), accepts and hangs up
    (``hangs-up``), or whose accept queue is full so that a connect times out (``full``)."""
    server = socket.socket()
    server.bind((LOOPBACK, 0))
    server.listen(0)
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if behaviour == "hangs-up":
                conn.close()
            else:
                held.append(conn)

    if behaviour == "full":  # never accepted: the queue fills, the kernel drops the next SYN
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with suppress(BlockingIOError):
                filler.connect((LOOPBACK, port))
            held.append(filler)
    else:
        threading.Thread(target=serve, daemon=True).start()
    try:
        yield port
    finally:
        done.set()
        server.close()
        for conn in held:
            conn.close()


def _partner(tmp_path: Path, sshd: SshServer, **settings: object) -> PartnerConfig:
    account = sshd.account("acme")
    cfg = ProjectConfig(tmp_path).sftp_partner("acme", sshd, account, timeout=TIMEOUT,
                                               **settings).write()
    return load_config(cfg).partner("acme")


def _stranger_key(tmp_path: Path) -> Path:
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True)
    return key


def _connect_error(partner: PartnerConfig) -> str:
    inbox = SftpInbox(partner)
    try:
        with pytest.raises(GatewayError) as caught:
            inbox.connect()
    finally:
        inbox.close()
    return str(caught.value)


# id, how the case is set up (tmp_path, sshd) -> partner settings, the words expected ({port}
# and {user} filled in). Each is the real failure, against a real sshd or a real socket.
Case = Callable[[Path, SshServer], dict[str, object]]
CASES: list[tuple[str, Case, str]] = [
    ("closed-port", lambda t, s: {"port": free_port()}, "connection refused by 127.0.0.1:{port}"),
    ("wrong-host-key", lambda t, s: {"known_hosts": s.wrong_known_hosts},
     "host key mismatch for 127.0.0.1:{port}"),
    ("unknown-host-key", lambda t, s: {"known_hosts": _empty(t)},
     "unknown host key for 127.0.0.1:{port}"),
    ("key-not-authorized", lambda t, s: {"key_file": _stranger_key(t)},
     "authentication failed for user {user} at 127.0.0.1:{port}"),
    ("unresolvable-host", lambda t, s: {"host": "no-such-host.invalid"},
     "cannot resolve the host name no-such-host.invalid"),
]
LISTENERS = [
    # paramiko ends the handshake or the wait for the greeting, whichever times out first.
    ("silent", f"timed out after {TIMEOUT:g} s waiting for the SSH"),
    ("hangs-up", "127.0.0.1:{port} closed the connection before the SSH greeting"),
    ("full", f"timed out after {TIMEOUT:g} s connecting to 127.0.0.1:{{port}}"),
]


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty_known_hosts"
    path.write_text("")
    return path


def _assert_plain(message: str, expected: str) -> None:
    assert expected in message, message
    assert message.startswith("partner acme: ")
    for jargon in ("[Errno", "Unable to connect to port", "Error reading SSH protocol banner"):
        assert jargon not in message, message


@pytest.mark.parametrize(("setup", "expected"), [pytest.param(s, e, id=i) for i, s, e in CASES])
def test_a_connection_failure_is_said_in_plain_words(tmp_path: Path, sshd: SshServer,
                                                     setup: Case, expected: str) -> None:
    settings = setup(tmp_path, sshd)
    partner = _partner(tmp_path, sshd, **settings)
    port = settings.get("port", sshd.port)
    _assert_plain(_connect_error(partner), expected.format(port=port, user=sshd.user))


@pytest.mark.parametrize(("behaviour", "expected"), LISTENERS, ids=[b for b, _ in LISTENERS])
def test_a_server_that_does_not_speak_ssh_is_said_in_plain_words(
        tmp_path: Path, sshd: SshServer, behaviour: str, expected: str) -> None:
    with listener(behaviour) as port:
        sshd.trust_port(port)
        message = _connect_error(_partner(tmp_path, sshd, port=port))
    _assert_plain(message, expected.format(port=port))


def test_the_words_reach_status_and_the_partner_test(tmp_path: Path, sshd: SshServer) -> None:
    """What an admin reads: the poll's error in the ledger, and ``partner test``."""
    port = free_port()
    partner = _partner(tmp_path, sshd, port=port)
    ok, lines = partner_self_test(partner)
    assert not ok and f"connection refused by 127.0.0.1:{port}" in lines[-1], lines
    config = load_config(tmp_path / "config.toml")
    [report] = run_once(config)
    assert report.error is not None and f"connection refused by 127.0.0.1:{port}" in \
        report.error and "Errno" not in report.error


@pytest.mark.parametrize(("err", "expected"), [
    # The kernel's answers we cannot provoke on loopback, as paramiko passes them on.
    (paramiko.ssh_exception.NoValidConnectionsError(
        {("10.9.9.9", 22): OSError(errno.EHOSTUNREACH, os.strerror(errno.EHOSTUNREACH))}),
     "no route to host 10.9.9.9:22"),
    (paramiko.ssh_exception.NoValidConnectionsError(
        {("10.9.9.9", 22): OSError(errno.ENETUNREACH, os.strerror(errno.ENETUNREACH))}),
     "no route to host 10.9.9.9:22 (network unreachable)"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
     "connection reset by 10.9.9.9:22"),
], ids=["no-route", "network-unreachable", "reset"])
def test_kernel_answers_in_words(err: BaseException, expected: str) -> None:
    source = SftpSource(host="10.9.9.9", port=22, user="u")
    assert in_words(err, source, connecting=True) == expected


# -- setup failures say the fix (9b) -------------------------------------------------------------


def test_a_public_key_given_as_key_file_names_the_private_key(tmp_path: Path,
                                                              sshd: SshServer) -> None:
    public = sshd.key_file.with_name(sshd.key_file.name + ".pub")
    assert public.is_file()
    message = _connect_error(_partner(tmp_path, sshd, key_file=public))
    assert f"key_file {public} is a public key" in message, message
    assert f"set key_file to the private key {sshd.key_file}" in message, message
    assert "PEM" not in message and "cryptography.io" not in message


def test_a_missing_processed_folder_says_create_it_or_set_the_key(tmp_path: Path,
                                                                   sshd: SshServer) -> None:
    partner = _partner(tmp_path, sshd)
    assert isinstance(partner.source, SftpSource)
    processed = partner.source.effective_remote_processed_dir
    os.rmdir(processed)
    fix = (f"create {processed} on the server, or set partners.acme.remote_processed_dir "
           "to an existing folder")
    ok, lines = partner_self_test(partner)
    assert not ok and fix in lines[-1], lines
    Path(partner.source.remote_inbox, "a.xml").write_bytes(
        (Path(__file__).parent / "cases" / "inbox" / "sample" / "acme-20261201-good.xml")
        .read_bytes())
    [report] = run_once(load_config(tmp_path / "config.toml"))
    assert report.error is not None and fix in report.error, report.error


def test_a_missing_remote_inbox_says_create_it_or_set_the_key(tmp_path: Path,
                                                               sshd: SshServer) -> None:
    partner = _partner(tmp_path, sshd, remote_inbox=str(sshd.root / "nowhere"))
    [report] = run_once(load_config(tmp_path / "config.toml"))
    assert report.error is not None and (
        f"create {sshd.root / 'nowhere'} on the server, or set partners.acme.remote_inbox"
        in report.error), report.error
    ok, lines = partner_self_test(partner)
    assert not ok and "partners.acme.remote_inbox" in lines[-1], lines
