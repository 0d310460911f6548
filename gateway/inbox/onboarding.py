"""``aim-gateway partner test ID``: the onboarding self-test of a partner's SFTP connection.

Each step is reported with what it found or exactly what failed, so that a broker setting up
a feed can fix its side without reading logs.
"""

from __future__ import annotations

import io
import os
import posixpath
import time

from gateway.config import PartnerConfig, SftpSource
from gateway.errors import GatewayError
from gateway.inbox.sftp import SftpInbox, missing_folder_fix
from gateway.inbox.sftp_session import fingerprint, in_words

OK, FAILED = "ok  ", "FAIL"


def partner_self_test(partner: PartnerConfig) -> tuple[bool, list[str]]:
    """Run the steps in order, stopping at the first failure; return (passed, report lines)."""
    lines = [f"partner {partner.id} ({partner.name}), kind {partner.kind}"]
    source = partner.source
    if not isinstance(source, SftpSource):
        local = source.inbox
        good = local is not None and local.is_dir() and os.access(local, os.R_OK | os.W_OK)
        lines.append(f"{OK if good else FAILED} local inbox {local} "
                     f"{'is readable and writable' if good else 'is missing or not writable'}")
        return good, lines
    inbox = SftpInbox(partner)
    step, folder_key = "connect", ""  # the step, and the key naming its folder
    try:
        step = f"connect to {source.host}:{source.port} and verify the host key"
        sftp = inbox.connect()
        key = inbox.server_key
        if key is not None:
            lines.append(f"{OK} host key {key.get_name()} {fingerprint(key)} matches "
                         f"{source.known_hosts}")
        lines.append(f"{OK} authenticated as {source.user}")
        step, folder_key = f"list the inbox {source.remote_inbox}", "remote_inbox"
        names = sftp.listdir(source.remote_inbox)
        lines.append(f"{OK} inbox {source.remote_inbox} lists {len(names)} entr"
                     f"{'y' if len(names) == 1 else 'ies'}")
        folder = source.remote_ack_dir
        if folder:
            probe = f"aimgw-probe-{int(time.time())}-{os.getpid()}"
            tmp = posixpath.join(folder, f".{probe}.tmp")
            final = posixpath.join(folder, f"{probe}.txt")
            step, folder_key = f"write {tmp}", "remote_ack_dir"
            inbox._upload(sftp, io.BytesIO(b"AIM gateway onboarding probe\n"), tmp)
            step, folder_key = f"rename it to {final}", ""
            inbox._rename(sftp, tmp, final)
            step = f"remove {final}"
            sftp.remove(final)
            lines.append(f"{OK} acknowledgment folder {folder}: wrote a temp file, renamed it, "
                         "removed it")
        else:
            lines.append(f"{OK} no remote acknowledgment folder configured (acks stay in the "
                         "outbox)")
        if source.remote_disposition == "move":
            step = f"find the processed folder {source.effective_remote_processed_dir}"
            folder_key = "remote_processed_dir"
            sftp.stat(source.effective_remote_processed_dir)
            lines.append(f"{OK} processed folder {source.effective_remote_processed_dir} "
                         "exists")
    except FileNotFoundError as err:
        fix = (f"it does not exist: {missing_folder_fix(partner, folder_key)}" if folder_key
               else in_words(err, source))
        lines.append(f"{FAILED} {step}: {fix}")
        return False, lines
    except (GatewayError, OSError, EOFError) as err:
        words = str(err) if isinstance(err, GatewayError) else in_words(err, source)
        lines.append(f"{FAILED} {step}: {words}")
        return False, lines
    finally:
        inbox.close()
    lines.append("all checks passed")
    return True, lines
