"""A real SMTP server on loopback for the e-mail tests: aiosmtpd with STARTTLS (a certificate
from a throwaway CA, trustme) and AUTH, keeping every message it accepts."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sftp_server import free_port

from gateway.service import mail

USER, PASSWORD = "gateway", "smtp-test-password-1"


@dataclass
class Received:
    """One accepted message, and how its session was held."""

    recipients: list[str]
    message: EmailMessage
    encrypted: bool
    authenticated: bool


@dataclass
class SmtpServer:
    host: str
    port: int
    ca_file: Path
    received: list[Received] = field(default_factory=list)
    # A message whose body holds one of these markers is answered the marker's reply at DATA
    # (``{"POISON": "554 5.6.0 refused"}``) and not kept.
    refuse: dict[str, str] = field(default_factory=dict)
    # While set to an unset Event, DATA is answered only once the test sets it (a slow server).
    hold: threading.Event | None = None

    def to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.received if address in r.recipients]


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, _server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if self.server.hold is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.server.hold.wait, 60)
        body = envelope.content.decode("utf-8", "replace")
        for marker, reply in self.server.refuse.items():
            if marker in body:
                return reply
        self.server.received.append(Received(
            list(envelope.rcpt_tos), message, session.ssl is not None,
            bool(session.authenticated)))
        return "250 OK"


def _authenticate(_server: Any, _session: Any, _envelope: Any, _mechanism: str,
                  data: Any) -> AuthResult:
    ok = (isinstance(data, LoginPassword) and data.login == USER.encode()
          and data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # a failure answered 535 by aiosmtpd


def start(tmp: Path, *, tls: bool = True) -> tuple[SmtpServer, Controller]:
    """A server that requires STARTTLS, then AUTH (``tls=False``: plain, no AUTH offered)."""
    ca = trustme.CA()
    ca_file = tmp / "smtp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = SmtpServer("127.0.0.1", free_port(), ca_file)
    options: dict[str, Any] = {}
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        options = {"tls_context": context, "require_starttls": True,
                   "authenticator": _authenticate, "auth_required": True,
                   "auth_require_tls": True}
    controller = Controller(_Handler(server), hostname=server.host, port=server.port,
                            **options)
    controller.start()
    return server, controller


@pytest.fixture(autouse=True)
def fresh_backoff() -> Iterator[None]:
    """Each test starts with the SMTP server not backed off (the back-off is per process);
    autouse in each test module that imports it."""
    mail._BACKOFF.succeeded()
    yield
    mail._BACKOFF.succeeded()


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server, controller = start(tmp_path)
    try:
        yield server
    finally:
        controller.stop()
