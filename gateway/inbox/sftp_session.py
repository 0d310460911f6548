"""The SSH side of ``SftpInbox``: one verified, authenticated SFTP session to a partner.

- Host keys are verified against the partner's known_hosts file: an unknown or changed key is
  refused with the partner's name and the key's SHA-256 fingerprint (never auto-added).
- Key authentication (passphrase from the environment) or, for partners that need it, a
  password from the environment. No secret is read from config.toml or written to a log.
- Timeouts on connect, banner and authentication, a keepalive, and a timeout on every SFTP
  operation, so that no poll hangs.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
from paramiko.buffered_pipe import BufferedPipe, PipeTimeout

from gateway.config import SftpSource
from gateway.errors import FatalError, TransientError
from gateway.textsafe import printable


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as OpenSSH prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _Transport(paramiko.Transport):
    """AES-GCM first: its MAC is part of the cipher, which spares paramiko's pure-Python HMAC
    per packet (bench/bench_sftp.py: about a fifth faster downloads). Servers without GCM
    still negotiate the rest of paramiko's list."""

    # A private attribute (the stubs list only the public property): the documented way to
    # reorder ciphers is a subclass overriding it.
    _preferred_ciphers = tuple(sorted(
        paramiko.Transport._preferred_ciphers,  # type: ignore[attr-defined]
        key=lambda name: "gcm" not in name))

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        _no_delay(sock)
        super().__init__(sock, *args, **kwargs)


def _no_delay(sock: object) -> None:
    """TCP_NODELAY on the connection, before the handshake: every write of the client
    goes out at once. With Nagle's algorithm on, a write made while an earlier one is not yet
    acknowledged waits for that acknowledgement, which the server may delay (up to 40 ms on
    Linux) to send it with data; a small file's last stats (gateway/inbox/sftp_pipeline.py)
    follow a window adjustment or a close that way. Measured with bench/bench_sftp.py's
    1,000 small files, with and without it in one run: list + fetch 0.74 s instead of 0.95 s
    (best of 8). OpenSSH sets it for interactive sessions; a socket that is not TCP (a
    test's) is left as is."""
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


if TYPE_CHECKING:  # generic in the stubs only
    _Pipe = BufferedPipe[bytes]
else:
    _Pipe = BufferedPipe


class _ChannelBuffer(_Pipe):
    """paramiko's buffer of a channel's incoming bytes, the same calls and the same blocking
    and timeouts, without its cost per read: paramiko's keeps an ``array`` and deletes what
    each read takes from its front, moving all the bytes behind it, and an SFTP download
    reads every answer in two pieces (its length, then the rest) with up to the channel's
    window (2 MiB) buffered behind them. This one keeps a read position and drops the bytes
    read only once they are half the buffer (bench/bench_sftp.py: 200 MiB in 0.64 s instead
    of 0.81 s, client CPU 0.42 s instead of 0.55 s; OpenSSH's ``sftp`` 0.48 s)."""

    _COMPACT = 1 << 20  # bytes read before they are dropped from the front

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()
        self._data = bytearray()
        self._start = 0  # bytes before it are read
        self._closed_now = False
        self._ready: threading.Event | None = None  # set while there is something to read

    def _waiting(self) -> int:
        return len(self._data) - self._start

    def set_event(self, event: threading.Event) -> None:
        with self._changed:
            self._ready = event
            if self._closed_now or self._waiting():
                event.set()
            else:
                event.clear()

    def feed(self, data: bytes) -> None:
        with self._changed:
            if self._ready is not None:
                self._ready.set()
            self._data += data
            self._changed.notify_all()

    def read_ready(self) -> bool:
        with self._changed:
            return self._waiting() > 0

    def read(self, nbytes: int, timeout: float | None = None) -> bytes:
        with self._changed:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._waiting() and not self._closed_now:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise PipeTimeout()
                self._changed.wait(left)
            return self._take(nbytes)

    def _take(self, nbytes: int) -> bytes:
        end = min(self._start + nbytes, len(self._data))
        with memoryview(self._data) as view:
            out = bytes(view[self._start:end])
        if end == len(self._data):
            self._data.clear()
            self._start = 0
            if self._ready is not None and not self._closed_now:
                self._ready.clear()
        elif end >= self._COMPACT and 2 * end >= len(self._data):
            del self._data[:end]  # moves less than was read since the last time
            self._start = 0
        else:
            self._start = end
        return out

    def empty(self) -> bytes:
        with self._changed:
            return self._take(self._waiting())

    def close(self) -> None:
        with self._changed:
            self._closed_now = True
            self._changed.notify_all()
            if self._ready is not None:
                self._ready.set()

    def __len__(self) -> int:
        with self._changed:
            return self._waiting()

    @classmethod
    def install(cls, channel: paramiko.Channel) -> None:
        """Put one in place of ``channel``'s buffer, taking over what it holds (nothing is in
        flight when a session has just opened, but nothing is lost if something is)."""
        buffer = cls()
        old, channel.in_buffer = channel.in_buffer, buffer
        with buffer._changed:
            buffer._data[:0] = old.empty()


class HostKeyRejected(TransientError):
    """The server's host key is unknown or changed: nothing was sent to it."""


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown host key, naming the partner and the key's fingerprint."""

    def __init__(self, partner_id: str) -> None:
        self.partner_id = partner_id

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        where = hostname.removeprefix("[").replace("]:", ":")  # [host]:port, as known_hosts
        raise HostKeyRejected(
            f"partner {self.partner_id}: unknown host key for {where}: {key.get_name()} "
            f"{fingerprint(key)} is not in known_hosts; refused. If this is the partner's real "
            "key, add it to the partner's known_hosts file (check the fingerprint with them).")


def _load_key(partner_id: str, source: SftpSource) -> paramiko.PKey | None:
    if source.key_file is None:
        return None
    passphrase = os.environ.get(source.key_passphrase_env) if source.key_passphrase_env \
        else None
    try:
        # Bytes, as cryptography's loaders require: paramiko annotates it as str.
        return paramiko.PKey.from_path(source.key_file, passphrase.encode()  # type: ignore[arg-type]
                                       if passphrase else None)
    except paramiko.PasswordRequiredException as err:
        raise FatalError(f"partner {partner_id}: the key file {source.key_file} needs a "
                         f"passphrase: set {source.key_passphrase_env or 'key_passphrase_env'}"
                         ) from err
    except (paramiko.SSHException, OSError, ValueError) as err:
        raise FatalError(_key_file_problem(partner_id, source.key_file) or
                         f"partner {partner_id}: cannot read the key file {source.key_file}: "
                         f"{err}") from err


def _key_file_problem(partner_id: str, path: Path) -> str | None:
    """What is wrong with a key file that is a public key (``id_ed25519.pub``), and which file
    to give instead; None when it is not one."""
    try:
        first = path.read_text(errors="replace").split(maxsplit=1)
    except OSError:
        return None
    if not first or not (first[0].startswith(("ssh-", "ecdsa-sha2-", "sk-"))):
        return None
    private = path.with_suffix("") if path.suffix == ".pub" else None
    fix = (f"set key_file to the private key {private}" if private and private.is_file() else
           "set key_file to the private key (the file without .pub, beginning with "
           "'-----BEGIN OPENSSH PRIVATE KEY-----')")
    return (f"partner {partner_id}: key_file {path} is a public key ({first[0]}): it goes "
            f"to the partner's authorized_keys; {fix}")


def _known_hosts_problem(partner_id: str, path: Path, err: Exception) -> str:
    """What is wrong with a known_hosts file paramiko cannot read, and how to fix it."""
    line = str(err.args[0]) if err.args else str(err)
    looks_like_key = path.name.endswith(".pub") or line.split(" ", 1)[0] in (
        "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521", "ssh-dss")
    hint = " (it looks like a public key file)" if looks_like_key else ""
    return (f"partner {partner_id}: known_hosts file {path} is not in known_hosts "
            f"format{hint}: {printable(line)[:120]}. Each line must be 'HOST KEYTYPE KEY', "
            "for example '[sftp.example.com]:2222 ssh-ed25519 AAAA...': put the server's "
            "name (and [name]:port for a port other than 22) in front of the key, or take "
            "the lines `ssh-keyscan -p PORT HOST` prints, after checking the fingerprint "
            "with the partner.")


def in_words(err: BaseException, source: SftpSource, *, connecting: bool = False) -> str:
    """Why talking to the partner's server failed, in plain words naming where: the one
    translation of socket and paramiko errors (``[Errno None] Unable to connect to port 22``,
    ``Error reading SSH protocol banner``...) for every message an admin reads."""
    where = f"{source.host}:{source.port}"
    if isinstance(err, paramiko.ssh_exception.NoValidConnectionsError) and err.errors:
        # One error per address tried (IPv6 and IPv4 of one name): the first says it.
        (host, port, *_), first = next(iter(err.errors.items()))
        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        err = first
    if isinstance(err, paramiko.BadHostKeyException):
        return (f"host key mismatch for {where}: the server offered {err.key.get_name()} "
                f"{fingerprint(err.key)}, known_hosts has {fingerprint(err.expected_key)}: its "
                "key CHANGED")
    if isinstance(err, paramiko.AuthenticationException):
        return f"authentication failed for user {source.user} at {where} ({err})"
    if isinstance(err, socket.gaierror):
        return f"cannot resolve the host name {source.host} ({err.strerror})"
    if isinstance(err, TimeoutError):
        if connecting:
            return f"timed out after {source.connect_timeout:g} s connecting to {where}"
        return (f"no answer within {source.operation_timeout:g} s "
                "(operation_timeout): the server or the network hangs")
    if isinstance(err, OSError) and err.errno in _KERNEL_WORDS:
        return _KERNEL_WORDS[err.errno].format(where=where)
    text = str(err).strip() or type(err).__name__
    if isinstance(err, paramiko.SSHException) and text.startswith(_NO_BANNER):
        # paramiko reads the greeting in its own thread; what ended it is the context.
        if isinstance(err.__context__, TimeoutError):
            return (f"timed out after {source.auth_timeout:g} s waiting for the SSH greeting "
                    f"of {where} (is it an SSH server?)")
        return (f"{where} closed the connection before the SSH greeting (not an SSH server, "
                "or it refuses connections from this address)")
    if connecting and text == "No existing session":
        # The handshake outlasted connect_timeout, which paramiko gives the whole negotiation.
        return (f"timed out after {source.connect_timeout:g} s waiting for the SSH handshake "
                f"of {where} (is it an SSH server?)")
    if isinstance(err, EOFError) or text == "Socket is closed":
        return f"the connection to {where} was lost ({text})"
    return text


_NO_BANNER = "Error reading SSH protocol banner"
_KERNEL_WORDS = {
    errno.ECONNREFUSED: "connection refused by {where} (no SSH server listens on that port)",
    errno.EHOSTUNREACH: "no route to host {where}",
    errno.ENETUNREACH: "no route to host {where} (network unreachable)",
    errno.ECONNRESET: "connection reset by {where}",
}


@dataclass(frozen=True)
class Session:
    """An open SSH connection and its SFTP channel, with the host key the server showed."""

    client: paramiko.SSHClient
    sftp: paramiko.SFTPClient
    server_key: paramiko.PKey


def _client(partner_id: str, source: SftpSource) -> paramiko.SSHClient:
    """A client that knows the partner's host keys and refuses any other."""
    assert source.known_hosts is not None  # the configuration check requires it
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(str(source.known_hosts))
    except OSError as err:
        raise FatalError(f"partner {partner_id}: cannot read known_hosts {source.known_hosts}: "
                         f"{err}") from err
    except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError) as err:
        raise FatalError(_known_hosts_problem(partner_id, source.known_hosts, err)) from err
    client.set_missing_host_key_policy(_RejectUnknown(partner_id))
    return client


def open_session(partner_id: str, source: SftpSource) -> Session:
    """Connect, verify the host key, authenticate and open SFTP; every failure is raised
    naming the partner (FatalError for its configuration, TransientError for the server)."""
    assert source.host is not None  # the configuration check requires it
    client = _client(partner_id, source)
    where = f"{source.host}:{source.port}"
    password = os.environ.get(source.password_env) if source.password_env else None
    try:
        client.connect(
            source.host, port=source.port, username=source.user,
            pkey=_load_key(partner_id, source), password=password,
            timeout=source.connect_timeout, banner_timeout=source.auth_timeout,
            auth_timeout=source.auth_timeout, channel_timeout=source.operation_timeout,
            look_for_keys=False, allow_agent=False,
            # The stubs' factory protocol wants gss_kex, which paramiko no longer passes.
            transport_factory=_Transport)  # type: ignore[arg-type]
    except HostKeyRejected:
        client.close()
        raise
    except (paramiko.SSHException, OSError, EOFError) as err:
        client.close()
        words = in_words(err, source, connecting=True)
        if isinstance(err, paramiko.BadHostKeyException):
            raise HostKeyRejected(
                f"partner {partner_id}: {words}. Refused (possible man in the middle); "
                "confirm the new key with the partner before updating known_hosts.") from err
        raise TransientError(f"partner {partner_id}: {words}") from err
    transport = client.get_transport()
    assert transport is not None
    transport.set_keepalive(source.keepalive_seconds)
    try:
        sftp = client.open_sftp()
    except (paramiko.SSHException, OSError, EOFError) as err:
        client.close()
        raise TransientError(f"partner {partner_id}: {where} accepted the login but not the "
                             f"SFTP session: {in_words(err, source)}"
                             ) from err
    channel = sftp.get_channel()
    if channel is None:  # paramiko sets it on every session it opens; the stubs allow None
        client.close()
        raise TransientError(f"partner {partner_id}: {where} gave no SFTP channel")
    channel.settimeout(source.operation_timeout)
    _ChannelBuffer.install(channel)
    return Session(client, sftp, transport.get_remote_server_key())
