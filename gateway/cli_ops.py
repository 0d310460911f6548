"""The ``aim-gateway`` commands that act on a partner or a file besides reprocess and purge:
``pause``, ``resume``, ``resend``, ``release`` (``gateway.admin.operations`` does the work,
the same as the web page's buttons), and ``mail-test``. Kept beside ``cli`` so that each
stays short.

Exit codes: 0 done, 1 refused or failed (the reason on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from gateway.config import Config
from gateway.errors import GatewayError

COMMANDS = ("pause", "resume", "resend", "release", "mail-test")
EXIT_OK, EXIT_REFUSED = 0, 1


# Each action: its name, what it acts on (argument, metavar) and what it does.
ACTIONS = (
    ("release", "file_id", None, "Put a quarantined file (one that failed 3 times in a row) "
     "back, to be processed at the next poll, after its cause is fixed."),
    ("pause", "partner_id", "PARTNER", "Stop polling a partner (serve and run --once skip it; "
     "a poll under way finishes) until `resume`; every view says who paused it and why."),
    ("resume", "partner_id", "PARTNER", "Poll a paused partner again from its next scheduled "
     "poll."),
    ("resend", "file_id", None, "Put a file's acknowledgment where its partner reads it again "
     "(the outbox, and the partner's SFTP ack folder): the same bytes as sent before."),
)


def add_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    for name, target, metavar, doc in ACTIONS:
        p = command(name, doc)
        p.add_argument(target, metavar=metavar)
        p.add_argument("--reason", required=True, help="why (recorded with your user name)")

    p = command("mail-test", "Send one e-mail now to [mail] admins (or --to) to check the "
                "SMTP settings: the server, its certificate, the login.")
    p.add_argument("--to", action="append", default=[], metavar="ADDRESS",
                   help="send to this address instead (repeatable)")


def _mail_test(args: argparse.Namespace, config: Config) -> int:
    import smtplib

    from gateway.service.mail import send_test

    recipients = tuple(args.to) or config.mail.admins
    try:
        send_test(config.mail, recipients)
    except (OSError, smtplib.SMTPException) as err:  # the error names no secret
        print(f"aim-gateway: no e-mail sent via {config.mail.host}:{config.mail.port}: "
              f"{type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"sent a test message to {', '.join(recipients)} via "
          f"{config.mail.host}:{config.mail.port}")
    return EXIT_OK


def run(args: argparse.Namespace, config: Config, actor: str) -> int:
    """One of COMMANDS; what it did on stdout, or why not on stderr."""
    from gateway.admin import operations

    if args.command == "mail-test":
        return _mail_test(args, config)

    try:
        if args.command == "pause":
            operations.pause(config, args.partner_id, args.reason, actor)
            print(f"{args.partner_id}: paused; serve and run --once skip it until "
                  f"`aim-gateway resume {args.partner_id} --reason ...`")
        elif args.command == "resume":
            ended = operations.resume(config, args.partner_id, args.reason, actor)
            print(f"{args.partner_id}: resumed (was {ended.words}); polled at its next "
                  "scheduled poll")
        elif args.command == "resend":
            row = operations.resend(config, args.file_id, args.reason, actor)
            print(f"{row.file_id}: acknowledgment {row.ack_name} sent again to {row.partner}")
        else:
            row = operations.release_file(config, args.file_id, args.reason, actor)
            print(f"{row.file_id}: released; the next poll of {row.partner} processes it")
    except GatewayError as err:
        verb = {"pause": "paused", "resume": "resumed", "resend": "sent again",
                "release": "released"}[args.command]
        print(f"aim-gateway: not {verb}: {err}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK
