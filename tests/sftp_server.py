"""Test infrastructure for SFTP: a real OpenSSH ``sshd`` on 127.0.0.1 and a cutting TCP proxy.

``SshServer`` runs ``/usr/sbin/sshd -D -e`` with throwaway keys in a temporary folder:

* an Ed25519 host key, a client key without passphrase (``key_file``) and one protected by
  ``passphrase`` (``key_file_with_passphrase``), both in ``authorized_keys``;
* ``known_hosts`` holding ``[127.0.0.1]:PORT ssh-ed25519 ...`` for the host key, and
  ``wrong_known_hosts`` holding a *different* Ed25519 key for the same host (changed host key);
* ``root``: the remote file system. There is no chroot, so remote paths are the absolute local
  paths under ``root``; ``account(name)`` creates ``root/<name>/{inbox,acks,processed}``.

``stop()`` takes the server down (the listener and every open session: connections drop),
``start()`` brings it back on the SAME port, so known_hosts stays valid.

``TcpCutProxy`` forwards 127.0.0.1:proxy.port to the server and, when asked with
``cut_after(n)``, closes the next connection once exactly ``n`` bytes have flowed
server → client (a download cut in the middle).

Both are registered as pytest fixtures (``sshd``, ``cut_proxy``) in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import ipaddress
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import pytest
from ports import free_port as free_port

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = Path("/usr/bin/ssh-keygen")
PRIVSEP_DIR = Path("/run/sshd")
LOOPBACK = "127.0.0.1"
PASSPHRASE = "correct horse"
START_TIMEOUT = 10.0


class SshServerError(RuntimeError):
    """sshd is missing, did not start or did not stop; the message carries its log."""


@dataclass(frozen=True)
class SftpAccount:
    """One partner's remote folders (absolute remote paths = local paths, no chroot)."""

    name: str
    root: str
    inbox: str
    acks: str
    processed: str


# -- helpers -------------------------------------------------------------------------------------


def _require_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"only loopback addresses are allowed here, not {host!r}")


def _keygen(path: Path, passphrase: str = "", comment: str = "aim-gateway-test") -> str:
    """Create an Ed25519 key pair at ``path`` / ``path.pub``; return 'ssh-ed25519 AAAA...'."""
    subprocess.run(
        [str(SSH_KEYGEN), "-t", "ed25519", "-N", passphrase, "-q", "-C", comment,
         "-f", str(path)],
        check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
    )
    key_type, blob = path.with_name(path.name + ".pub").read_text().split()[:2]
    return f"{key_type} {blob}"


def _login_name() -> str:
    """``getpass.getuser()``, unless that is not the account this process runs as and sshd,
    not running as root, could then not log it in."""
    name = getpass.getuser()
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        uid = -1
    if uid == -1 or (os.geteuid() != 0 and uid != os.geteuid()):
        return pwd.getpwuid(os.geteuid()).pw_name
    return name


@functools.cache
def _sshd_version() -> tuple[int, int]:
    """(major, minor) of the installed OpenSSH, (0, 0) when it cannot be told."""
    for cmd in ([str(SSHD), "-V"], ["ssh", "-V"]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                                 stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            continue
        match = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stdout + out.stderr)
        if match:
            return int(match.group(1)), int(match.group(2))
    return 0, 0


def _children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux /proc; empty elsewhere)."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# -- the SSH server ------------------------------------------------------------------------------


class SshServer:
    """A real OpenSSH sshd on 127.0.0.1 with throwaway keys, all under ``base``.

    Attributes: ``host``, ``port``, ``user``, ``key_file``, ``key_file_with_passphrase``,
    ``passphrase``, ``host_key``, ``host_key_line``, ``known_hosts``, ``wrong_known_hosts``,
    ``root`` (remote file system), ``config_file``, ``log_file``.
    """

    def __init__(self, base: Path, subsystem: str = "internal-sftp") -> None:
        """``subsystem``: the SFTP server sshd runs (its ``Subsystem sftp`` command line)."""
        self.subsystem = subsystem
        if not SSHD.is_file() or not os.access(SSHD, os.X_OK):
            raise SshServerError(
                f"{SSHD} is not installed: the SFTP tests need a real OpenSSH server. "
                "Run `make test` (it installs openssh-server when run as root) or "
                "`apt-get install openssh-server`.")
        if not SSH_KEYGEN.is_file():
            raise SshServerError(f"{SSH_KEYGEN} is not installed (package openssh-client)")
        self.base = Path(base).resolve()
        self.host = LOOPBACK
        self.port = 0
        self.user = _login_name()
        self.passphrase = PASSPHRASE
        keys = self.base / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        keys.chmod(0o700)
        self.host_key = keys / "ssh_host_ed25519_key"
        self.host_key_line = _keygen(self.host_key, comment="aim-gateway-test-host")
        self.wrong_host_key_line = _keygen(keys / "wrong_host_ed25519_key",
                                           comment="aim-gateway-test-wrong-host")
        self.key_file = keys / "client_ed25519"
        self.key_file_with_passphrase = keys / "client_ed25519_passphrase"
        client_lines = [_keygen(self.key_file, comment="aim-gateway-test-client"),
                        _keygen(self.key_file_with_passphrase, self.passphrase,
                                comment="aim-gateway-test-client-passphrase")]
        self.authorized_keys = keys / "authorized_keys"
        self.authorized_keys.write_text("".join(line + "\n" for line in client_lines))
        self.authorized_keys.chmod(0o600)
        self.known_hosts = self.base / "known_hosts"
        self.wrong_known_hosts = self.base / "wrong_known_hosts"
        self._trusted_ports: list[int] = []
        self.root = self.base / "remote"
        self.root.mkdir(exist_ok=True)
        self.config_file = self.base / "sshd_config"
        self.pid_file = self.base / "sshd.pid"
        self.log_file = self.base / "sshd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- accounts / trust ------------------------------------------------------------------------

    def account(self, name: str) -> SftpAccount:
        """Create (idempotently) ``root/<name>/{inbox,acks,processed}``; absolute remote paths."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(f"bad account name {name!r}")
        home = self.root / name
        for sub in ("inbox", "acks", "processed"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        return SftpAccount(name=name, root=str(home), inbox=str(home / "inbox"),
                           acks=str(home / "acks"), processed=str(home / "processed"))

    def trust_port(self, port: int) -> None:
        """Also list ``[127.0.0.1]:port`` (e.g. a proxy in front of this server) in
        ``known_hosts`` (this host key) and ``wrong_known_hosts`` (the other key)."""
        if port not in self._trusted_ports:
            self._trusted_ports.append(port)
            self._write_known_hosts()

    def _write_known_hosts(self) -> None:
        ports = [self.port, *(p for p in self._trusted_ports if p != self.port)]
        for path, line in ((self.known_hosts, self.host_key_line),
                           (self.wrong_known_hosts, self.wrong_host_key_line)):
            path.write_text("".join(f"[{self.host}]:{p} {line}\n" for p in ports))

    # -- process ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def _write_config(self) -> None:
        lines = [
            f"ListenAddress {self.host}",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            f"Subsystem sftp {self.subsystem}",
            "LogLevel VERBOSE",
            "MaxStartups 50",
            "MaxSessions 50",
            "UseDNS no",
            "X11Forwarding no",
            "PrintMotd no",
        ]
        if _sshd_version() >= (9, 8):
            # Tests connect and drop without authenticating on purpose (host-key checks,
            # cut connections): newer sshd would start refusing 127.0.0.1 for it.
            lines.append("PerSourcePenalties no")
        self.config_file.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start sshd (a free port the first time, the same port afterwards) and wait until it
        answers with its SSH banner. Raises ``SshServerError`` with the log on failure."""
        if self.running:
            return
        if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        fixed = self.port != 0
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            if not fixed:
                self.port = free_port(self.host)
            self._write_config()
            self._write_known_hosts()
            error = self._launch(deadline)
            if error is None:
                return
            in_use = "Address already in use" in error or "Cannot bind any address" in error
            if not in_use or time.monotonic() >= deadline or (not fixed and attempt >= 5):
                raise SshServerError(
                    f"sshd did not start on {self.host}:{self.port}: {error}\n"
                    f"--- {self.log_file} ---\n{self.log_text()}")
            if fixed:  # our own port, still held for a moment: try again shortly
                time.sleep(0.1)

    def _launch(self, deadline: float) -> str | None:
        """Run sshd once; None when it serves, else why not (it is stopped then)."""
        self.pid_file.unlink(missing_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"=== starting sshd on {self.host}:{self.port} ===\n".encode())
            log.flush()
            offset = log.tell()
            self._proc = subprocess.Popen(
                [str(SSHD), "-f", str(self.config_file), "-D", "-e"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        listening = f"Server listening on {self.host} port {self.port}"
        while time.monotonic() < deadline:
            status = self._proc.poll()
            if status is not None:
                self._proc = None
                return f"sshd exited with status {status}: {self._last_log_line(offset)}"
            if listening in self._log_since(offset) and self._banner_ok():
                return None
            time.sleep(0.01)
        self._kill_all()
        return "timed out waiting for the SSH banner"

    def _last_log_line(self, offset: int) -> str:
        lines = self._log_since(offset).strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def _banner_ok(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                data = b""
                while b"\n" not in data and len(data) < 256:
                    chunk = sock.recv(256)
                    if not chunk:
                        break
                    data += chunk
                return data.startswith(b"SSH-2.0-")
        except OSError:
            return False

    def stop(self, drop_sessions: bool = True, timeout: float = 5.0) -> None:
        """Take the server down: no new connection is accepted; with ``drop_sessions`` (the
        default) every open session is ended too, so clients see their connection drop."""
        if self._proc is None:
            return
        proc = self._proc
        if proc.poll() is None:
            if drop_sessions:
                _signal(proc.pid, signal.SIGSTOP)  # no new session forks while we look
                self._end_sessions(proc.pid, timeout)
                _signal(proc.pid, signal.SIGTERM)
                _signal(proc.pid, signal.SIGCONT)
            else:
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)

    def _end_sessions(self, pid: int, timeout: float) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            children = _children_of(pid)
            for child in children:
                _signal(child, sig)
            end = time.monotonic() + timeout / 2
            while any(_alive(c) for c in children) and time.monotonic() < end:
                time.sleep(0.01)
            if not any(_alive(c) for c in _children_of(pid)):
                return

    def _kill_all(self) -> None:
        if self._proc is not None:
            for child in _children_of(self._proc.pid):
                _signal(child, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    # -- client side -----------------------------------------------------------------------------

    def partner_settings(self, account: SftpAccount,
                         timeout: float | None = 3.0) -> dict[str, object]:
        """The config keys of an SFTP partner on this server (the one shape every SFTP test
        uses; ProjectConfig.sftp_partner writes them): no min age, and short timeouts unless
        ``timeout`` is None."""
        settings: dict[str, object] = {
            "kind": "sftp", "host": self.host, "port": self.port, "user": self.user,
            "key_file": self.key_file, "known_hosts": self.known_hosts,
            "remote_inbox": account.inbox, "remote_ack_dir": account.acks,
            "remote_processed_dir": account.processed, "min_age_seconds": 0,
        }
        if timeout is not None:
            settings.update(connect_timeout=timeout, auth_timeout=timeout,
                            operation_timeout=timeout * 2)
        return settings

    def connect(
        self,
        *,
        port: int | None = None,
        key_file: Path | None = None,
        passphrase: str | None = None,
        known_hosts: Path | None = None,
        timeout: float = 5.0,
    ) -> paramiko.SSHClient:
        """A paramiko SSHClient, host key verified (``load_host_keys`` + ``RejectPolicy``),
        key auth only. Defaults: this server's port, ``key_file``, ``known_hosts``."""
        client = paramiko.SSHClient()
        client.load_host_keys(str(known_hosts or self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                self.host, port=port or self.port, username=self.user,
                key_filename=str(key_file or self.key_file), passphrase=passphrase,
                look_for_keys=False, allow_agent=False, timeout=timeout,
                banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
            )
        except BaseException:
            client.close()
            raise
        return client

    def __enter__(self) -> SshServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the cutting proxy ---------------------------------------------------------------------------


@dataclass
class ProxyConnection:
    """What happened to one proxied connection."""

    cut_after: int | None
    bytes_to_client: int = 0
    bytes_to_server: int = 0
    cut: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class TcpCutProxy:
    """A threaded TCP proxy ``127.0.0.1:port`` → ``target_host:target_port`` (loopback only).

    ``cut_after(n)`` arms the NEXT accepted connection: once exactly ``n`` bytes have flowed
    server → client, both its sockets are closed. ``cut_after(None)`` (the default state, and
    the state again after one connection used the setting) passes everything through.
    ``connections`` records every connection (``ProxyConnection``).
    """

    def __init__(self, target_port: int, target_host: str = LOOPBACK,
                 host: str = LOOPBACK, max_connections: int = 32) -> None:
        _require_loopback(target_host)
        _require_loopback(host)
        self.host = host
        self.port = 0
        self.target_host = target_host
        self.target_port = target_port
        self.max_connections = max_connections
        self.connections: list[ProxyConnection] = []
        self._next_cut: int | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._active = threading.BoundedSemaphore(max_connections)

    def cut_after(self, n_bytes: int | None) -> None:
        if n_bytes is not None and n_bytes < 0:
            raise ValueError("n_bytes must be >= 0 or None")
        with self._lock:
            self._next_cut = n_bytes

    def start(self) -> TcpCutProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopping.clear()
        self._spawn(self._accept_loop, "cut-proxy-accept")
        return self

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._active.acquire(blocking=False):
                client.close()  # bounded: too many open connections
                continue
            with self._lock:
                record = ProxyConnection(cut_after=self._next_cut)
                self._next_cut = None
                self.connections.append(record)
            self._spawn(self._serve, "cut-proxy-conn", client, record)

    def _serve(self, client: socket.socket, record: ProxyConnection) -> None:
        client.settimeout(None)
        try:
            server = socket.create_connection((self.target_host, self.target_port), timeout=5)
        except OSError:
            client.close()
            record.done.set()
            self._active.release()
            return
        server.settimeout(None)
        with self._lock:
            self._sockets.update((client, server))
        up = threading.Thread(target=self._pump, args=(client, server, record, False),
                              name="cut-proxy-up", daemon=True)
        up.start()
        try:
            self._pump(server, client, record, True)
            up.join(2.0)  # the client normally closes once the server did
        finally:
            self._close_both(client, server)
            up.join(5.0)
            for sock in (client, server):
                sock.close()
            with self._lock:
                self._sockets.difference_update((client, server))
            record.done.set()
            self._active.release()

    @staticmethod
    def _close_both(*socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _pump(self, source: socket.socket, target: socket.socket, record: ProxyConnection,
              to_client: bool) -> None:
        """Copy ``source`` to ``target`` until its end; toward the client at most
        ``record.cut_after`` bytes, then both sockets are cut."""
        limit = record.cut_after if to_client else None
        try:
            while True:
                sent = record.bytes_to_client if to_client else record.bytes_to_server
                want = 65536 if limit is None else min(65536, limit - sent)
                if want <= 0:
                    record.cut = True
                    self._close_both(source, target)
                    return
                data = source.recv(want)
                if not data:
                    break
                target.sendall(data)
                if to_client:
                    record.bytes_to_client += len(data)
                else:
                    record.bytes_to_server += len(data)
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)
        except OSError:
            self._close_both(source, target)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            socks = list(self._sockets)
            threads = list(self._threads)
        self._close_both(*socks)
        end = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))

    def __enter__(self) -> TcpCutProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- pytest fixtures (registered in conftest.py) -------------------------------------------------


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    """A running OpenSSH server with throwaway keys in ``tmp_path/sshd``; stopped afterwards.

    Fails (never skips) when sshd is missing or does not start."""
    try:
        server = SshServer(tmp_path / "sshd")
        server.start()
    except SshServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


FAULTY_SFTP_SERVER = Path(__file__).resolve().parent / "faulty_sftp_server.py"


@contextlib.contextmanager
def faulty_sshd(base: Path, flags: Path) -> Iterator[SshServer]:
    """A real sshd whose SFTP server is OpenSSH's behind tests/faulty_sftp_server.py, which
    misbehaves as the files in ``flags`` say (its docstring)."""
    flags.mkdir(exist_ok=True)
    server = SshServer(base, subsystem=f"{sys.executable} {FAULTY_SFTP_SERVER} {flags}")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cut_proxy(sshd: SshServer) -> Iterator[TcpCutProxy]:
    """A ``TcpCutProxy`` in front of ``sshd``; its port is trusted in ``sshd.known_hosts``."""
    proxy = TcpCutProxy(sshd.port, target_host=sshd.host).start()
    sshd.trust_port(proxy.port)
    try:
        yield proxy
    finally:
        proxy.stop()
