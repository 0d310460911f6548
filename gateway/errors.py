"""One exception root, grouped by what the caller does next.

    GatewayError
    ├── TransientError        retry at the next poll (SFTP down, database busy)
    │   └── LedgerUnavailable the ledger is busy (locked) or out of reach: the poll's
    │                         failure, never counted against the file in hand
    ├── RejectedSubmission    report it, move the file to failed/ (carries the F-code finding)
    └── FatalError            stop: the gateway cannot run as configured
        ├── ConfigError       config.toml is wrong; carries every problem at once
        └── UsageError        the command named what is not there: no config file, no
                              such partner (the command line's exit 2)

Findings (rule codes) are data, not exceptions: see ``gateway.findings``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.findings import Finding


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class TransientError(GatewayError):
    """Something outside the gateway failed; the same work may succeed at the next poll."""


class LedgerUnavailable(TransientError):
    """The ledger is locked by another process or cannot be reached: nothing is wrong with
    the file in hand, so a poison-file count must not grow (issue 10)."""


class RejectedSubmission(GatewayError):
    """The whole file is rejected with an F-code; it goes to failed/ with an acknowledgment."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(f"{finding.code}: {finding.message}")
        self.finding = finding


class FatalError(GatewayError):
    """The gateway cannot go on (bad configuration, unusable data folder)."""


class ConfigError(FatalError):
    """config.toml has one or more problems; all of them are listed."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}: {len(problems)} problem(s) in the configuration:"]
        lines += [f"  - {p}" for p in problems]
        lines.append("Fix these keys and start the gateway again.")
        super().__init__("\n".join(lines))


def reload_refusal(err: BaseException) -> str:
    """Why a reload (SIGHUP) was refused, without a ConfigError's advice to start the gateway
    again: the running one goes on with the configuration it has."""
    if isinstance(err, ConfigError):
        return "\n".join([f"{err.path}: {len(err.problems)} problem(s) in the configuration:",
                          *(f"  - {p}" for p in err.problems)])
    return str(err)


class UsageError(FatalError):
    """The command asked for something that is not there (a config file, a partner id): the
    caller's mistake, a usage error, not a gateway that cannot run."""
