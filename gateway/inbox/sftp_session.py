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
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import paramiko

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


class HostKeyRejected(TransientError):
    """The server's host key is unknown or changed: nothing was sent to it."""


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown host key, naming the partner and the key's fingerprint."""

    def __init__(self, partner_id: str) -> None:
        self.partner_id = partner_id

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        raise HostKeyRejected(
            f"partner {self.partner_id}: the host key of {hostname} is not in known_hosts "
            f"({key.get_name()} {fingerprint(key)}); refused. If this is the partner's real "
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
        raise FatalError(f"partner {partner_id}: cannot read the key file {source.key_file}: "
                         f"{err}") from err


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


def failure_text(err: BaseException, operation_timeout: float) -> str:
    """Why an operation failed, in words (some paramiko errors have an empty message)."""
    if isinstance(err, TimeoutError):
        return (f"no answer within {operation_timeout:g} s "
                "(operation_timeout): the server or the network hangs")
    text = str(err).strip() or type(err).__name__
    if isinstance(err, EOFError) or text == "Socket is closed":
        return f"the connection was lost ({text})"
    return text


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
    except paramiko.BadHostKeyException as err:
        client.close()
        raise HostKeyRejected(
            f"partner {partner_id}: the host key of {where} CHANGED: the server "
            f"offered {err.key.get_name()} {fingerprint(err.key)}, known_hosts has "
            f"{fingerprint(err.expected_key)}. Refused (possible man in the middle); "
            "confirm the new key with the partner before updating known_hosts.") from err
    except HostKeyRejected:
        client.close()
        raise
    except paramiko.AuthenticationException as err:
        client.close()
        raise TransientError(f"partner {partner_id}: authentication as {source.user} failed "
                             f"({err})") from err
    except (paramiko.SSHException, OSError, EOFError) as err:
        client.close()
        raise TransientError(f"partner {partner_id}: cannot connect to {where}: "
                             f"{err or type(err).__name__}") from err
    transport = client.get_transport()
    assert transport is not None
    transport.set_keepalive(source.keepalive_seconds)
    try:
        sftp = client.open_sftp()
    except (paramiko.SSHException, OSError, EOFError) as err:
        client.close()
        raise TransientError(f"partner {partner_id}: {where} accepted the login but not the "
                             f"SFTP session: {failure_text(err, source.operation_timeout)}"
                             ) from err
    channel = sftp.get_channel()
    if channel is None:  # paramiko sets it on every session it opens; the stubs allow None
        client.close()
        raise TransientError(f"partner {partner_id}: {where} gave no SFTP channel")
    channel.settimeout(source.operation_timeout)
    return Session(client, sftp, transport.get_remote_server_key())
