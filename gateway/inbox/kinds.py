"""The partner's inbox of its configured kind."""

from __future__ import annotations

from gateway.config import PartnerConfig, SftpSource
from gateway.inbox.base import Inbox
from gateway.inbox.local import LocalInbox
from gateway.ledger.store import Ledger


def open_inbox(partner: PartnerConfig, ledger: Ledger | None = None) -> Inbox:
    """The partner's inbox: a local folder, or its SFTP server (connected on first use)."""
    if isinstance(partner.source, SftpSource):
        # Imported here: paramiko is loaded only by a gateway that has an SFTP partner.
        from gateway.inbox.sftp import SftpInbox

        return SftpInbox(partner, ledger)
    return LocalInbox(partner)
