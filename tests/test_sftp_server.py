"""The SFTP test infrastructure works: a real sshd, verified host keys, stop/start, cut proxy."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
from pathlib import Path

import paramiko
import pytest
import sftp_server
from sftp_server import SshServer, SshServerError, TcpCutProxy


def test_layout(sshd: SshServer) -> None:
    assert sshd.host == "127.0.0.1"
    assert sshd.running
    assert sshd.passphrase == "correct horse"
    for path in (sshd.key_file, sshd.key_file_with_passphrase, sshd.known_hosts,
                 sshd.wrong_known_hosts):
        assert path.is_file()
    host_line = sshd.known_hosts.read_text().splitlines()[0]
    wrong_line = sshd.wrong_known_hosts.read_text().splitlines()[0]
    assert host_line.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAA")
    assert wrong_line.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAA")
    assert host_line != wrong_line
    with pytest.raises(paramiko.PasswordRequiredException):
        paramiko.Ed25519Key.from_private_key_file(str(sshd.key_file_with_passphrase))

    acme = sshd.account("acme")
    assert acme == sshd.account("acme")  # idempotent
    for remote in (acme.inbox, acme.acks, acme.processed):
        assert os.path.isabs(remote)
        assert Path(remote).is_dir()
        assert Path(remote).is_relative_to(sshd.root)
    assert "Server listening on 127.0.0.1" in sshd.log_text()


def test_sftp_write_list_rename_remove(sshd: SshServer) -> None:
    acme = sshd.account("acme")
    with sshd.connect() as client, client.open_sftp() as sftp:
        with sftp.open(f"{acme.inbox}/batch.xml.part", "wb") as remote:
            remote.write(b"<licenses/>\n")
        sftp.rename(f"{acme.inbox}/batch.xml.part", f"{acme.inbox}/batch.xml")
        entries = {a.filename: a for a in sftp.listdir_attr(acme.inbox)}
        assert set(entries) == {"batch.xml"}
        assert entries["batch.xml"].st_size == 12
        assert stat.S_ISREG(entries["batch.xml"].st_mode or 0)
        assert (Path(acme.inbox) / "batch.xml").read_bytes() == b"<licenses/>\n"

        sftp.rename(f"{acme.inbox}/batch.xml", f"{acme.processed}/batch.xml")
        assert sftp.listdir(acme.inbox) == []
        assert sftp.listdir(acme.processed) == ["batch.xml"]
        sftp.remove(f"{acme.processed}/batch.xml")
        assert sftp.listdir(acme.processed) == []
    assert f"Accepted publickey for {sshd.user}" in sshd.log_text()


def test_passphrase_key(sshd: SshServer) -> None:
    acme = sshd.account("acme")
    with sshd.connect(key_file=sshd.key_file_with_passphrase,
                 passphrase=sshd.passphrase) as client, client.open_sftp() as sftp:
        assert sftp.listdir(acme.inbox) == []
    with pytest.raises(paramiko.SSHException):  # wrong passphrase: the key cannot be read
        sshd.connect(key_file=sshd.key_file_with_passphrase, passphrase="wrong horse")


def test_changed_host_key_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    with pytest.raises(paramiko.BadHostKeyException):
        sshd.connect(known_hosts=sshd.wrong_known_hosts)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        sshd.connect(known_hosts=empty)


def test_stop_then_start_on_same_port(sshd: SshServer) -> None:
    port = sshd.port
    client = sshd.connect()
    sftp = client.open_sftp()
    sshd.stop()
    assert not sshd.running
    with pytest.raises((paramiko.SSHException, OSError)):
        sshd.connect()
    with pytest.raises((paramiko.SSHException, OSError, EOFError)):  # open session dropped
        sftp.listdir(sshd.root.as_posix())
    client.close()

    sshd.start()
    assert sshd.running
    assert sshd.port == port
    with sshd.connect() as client2, client2.open_sftp() as sftp2:
        sftp2.listdir(sshd.account("acme").inbox)
    assert sshd.log_text().count("Server listening on") == 2


# paramiko's prefetch thread dies with EOFError in the background when the connection is cut.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_cut_download_then_whole_download(sshd: SshServer, cut_proxy: TcpCutProxy,
                                          tmp_path: Path) -> None:
    acme = sshd.account("acme")
    payload = os.urandom(5 * 1024 * 1024)
    (Path(acme.inbox) / "big.bin").write_bytes(payload)
    remote = f"{acme.inbox}/big.bin"

    cut_proxy.cut_after(200_000)
    partial = tmp_path / "partial.bin"
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):  # noqa: SIM117
        with sshd.connect(port=cut_proxy.port) as client, client.open_sftp() as sftp:
            sftp.get(remote, str(partial))
    first = cut_proxy.connections[0]
    assert first.done.wait(5)
    assert first.cut
    assert first.bytes_to_client == 200_000
    assert not partial.exists() or partial.stat().st_size < len(payload)

    whole = tmp_path / "whole.bin"
    with sshd.connect(port=cut_proxy.port) as client, client.open_sftp() as sftp:
        sftp.get(remote, str(whole))
    assert hashlib.sha256(whole.read_bytes()).digest() == hashlib.sha256(payload).digest()
    assert len(cut_proxy.connections) == 2
    assert cut_proxy.connections[1].cut_after is None
    assert not cut_proxy.connections[1].cut


def test_proxy_is_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        TcpCutProxy(22, target_host="192.0.2.1")
    with pytest.raises(ValueError, match="loopback"):
        TcpCutProxy(22, host="0.0.0.0")


def test_proxy_stops(sshd: SshServer) -> None:
    with TcpCutProxy(sshd.port) as proxy:
        port = proxy.port
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            assert sock.recv(8) == b"SSH-2.0-"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_start_failure_reports_the_log(tmp_path: Path) -> None:
    server = SshServer(tmp_path / "broken")
    server.host_key.write_text("not a key\n")
    with pytest.raises(SshServerError, match=r"(?s)did not start.*hostkeys"):
        server.start(timeout=5)
    assert not server.running


def test_missing_sshd_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sftp_server, "SSHD", tmp_path / "no-such-sshd")
    with pytest.raises(SshServerError, match="not installed"):
        SshServer(tmp_path / "x")
