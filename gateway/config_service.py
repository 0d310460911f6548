"""The sections of config.toml for what runs beside the pipeline: the admin page (`[web]`),
serve's metrics (`[metrics]`), e-mail (`[mail]`), the alert webhook (`[alerts]`) and the purge
periods (`[retention]`). Declared as `gateway.config` declares its own (``setting``,
``section``); `Config` holds them. Apart so that neither module outgrows its reader.
"""

# ruff: noqa: RUF009 -- setting() returns dataclasses.field(), which RUF009 cannot see.
from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.settings import NON_EMPTY, NON_NEGATIVE, POSITIVE, Check, matches, setting

EMAIL = matches(r"([^@\s]+@[^@\s]+\.[^@\s]+)?", "an e-mail address, or empty")


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (the web page's default exposure)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere, so it is not loopback
        return False


PORT = Check("a TCP port 0-65535 (0 = any free port)", lambda value: 0 <= value <= 65535)
ENV_NAME = matches(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name")


@dataclass(frozen=True)
class WebSettings:
    """The admin web page (`aim-gateway web`): users sign in (`aim-gateway user add`); a viewer
    reads, an operator also acts."""

    host: str = setting("127.0.0.1", "address served on; others need allow_remote", NON_EMPTY)
    port: int = setting(8765, "TCP port served on", PORT)
    token_env: str = setting("AIMGW_WEB_TOKEN", "environment variable holding the shared "
                             "token of earlier versions (optional, transitional: an operator)",
                             ENV_NAME)
    allow_remote: bool = setting(False, "true = may serve on an address other machines reach")
    in_serve: bool = setting(
        False, "true = `serve` serves the admin page too (one process to deploy)")
    refresh_seconds: int = setting(30, "the dashboard reloads itself this often, unless a form "
                                   "on it is being filled (0 = never)", NON_NEGATIVE)

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        if not self.allow_remote and not is_loopback(self.host):
            yield "host", "not a loopback address; set allow_remote = true to serve other machines"


@dataclass(frozen=True)
class MetricsSettings:
    """`serve`'s monitoring endpoints: /metrics (Prometheus text), /healthz and /readyz."""

    port: int | None = setting(
        None, 'serve answers /metrics, /healthz and /readyz on host:port; "" = off', PORT)
    host: str = setting("127.0.0.1", "address served on: loopback only (no token)", NON_EMPTY)

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        # The endpoints answer without a token: only this machine (a local Prometheus or
        # node agent, a systemd watchdog) may reach them.
        if not is_loopback(self.host):
            yield "host", "not a loopback address; the endpoints have no token"


MailSecurity = Literal["starttls", "tls", "none"]


@dataclass(frozen=True)
class MailSettings:
    """E-mail over SMTP: alerts to admins, a notice to a partner's contact per rejected file."""

    host: str | None = setting(None, 'SMTP server; "" = no e-mail')
    port: int = setting(587, "SMTP port (587: submission with STARTTLS; 465: tls)", PORT)
    security: MailSecurity = setting(
        "starttls", '"starttls", "tls" (implicit, port 465) or "none" (loopback only)')
    ca_file: Path | None = setting(
        None, "CA certificates that sign the server's certificate; \"\" = the system's")
    user_env: str | None = setting(
        None, 'environment variable holding the SMTP user; "" = no login', ENV_NAME)
    password_env: str | None = setting(
        None, "environment variable holding the SMTP password (never in this file)", ENV_NAME)
    sender: str = setting("", "From: address of every message", EMAIL)
    admins: tuple[str, ...] = setting((), "addresses that receive every alert")
    timeout_seconds: float = setting(10.0, "seconds one SMTP conversation may take", POSITIVE)

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.host is None:
            return
        if not self.sender:
            yield "sender", "required when host is set"
        bad = [a for a in self.admins if not a or not EMAIL.test(a)]
        if bad:
            yield "admins", f"not e-mail addresses: {', '.join(bad)}"
        if self.security == "none" and not is_loopback(self.host):
            # Credentials and partners' findings in clear text over a network: refused.
            yield "security", '"none" only for a server on this machine (127.0.0.1)'
        if (self.user_env is None) != (self.password_env is None):
            yield "password_env", "set user_env and password_env together"


@dataclass(frozen=True)
class AlertSettings:
    """Alert events (a partner failing, recovered, silent, active) sent on to a webhook."""

    webhook_url: str | None = setting(
        None, 'POST each alert event as JSON here; "" = none (the URL is never logged)')
    webhook_url_env: str | None = setting(
        None, 'environment variable holding the webhook URL instead (when it holds a token)',
        ENV_NAME)
    webhook_timeout_seconds: float = setting(5.0, "seconds one POST may take", POSITIVE)

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        # The value is never echoed: the URL may carry a token.
        if self.webhook_url is not None and not self.webhook_url.startswith(
                ("http://", "https://")):
            yield "webhook_url", "must start with http:// or https:// (value not shown)"
        if self.webhook_url is not None and self.webhook_url_env is not None:
            yield "webhook_url_env", "set webhook_url or webhook_url_env, not both"


@dataclass(frozen=True)
class RetentionSettings:
    """What `aim-gateway purge` removes, by age in days; licenses are never purged."""

    events_days: int | None = setting(90, 'events older than this; "" = kept', POSITIVE)
    files_days: int | None = setting(
        365, 'findings, applications and events of files received before; "" = kept', POSITIVE)
    archive_days: int | None = setting(
        365, 'archived originals and failed files on disk; "" = kept', POSITIVE)
