"""The ``user`` and ``audit`` commands: the admin page's users and the audit trail.

Exit codes: ``user …`` 0 done, 1 refused (unknown or existing user, weak password; the reason
on stderr); ``audit verify`` 0 when the chain is intact, 1 naming the first bad entry (both
answers on stdout).
A password is read from a prompt (twice) or, when stdin is not a terminal, from its first
line: never from the command line, where ``ps`` and shell history would show it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable

from gateway.config import Config
from gateway.errors import FatalError
from gateway.ledger.audit import AuditEntry

EXIT_OK, EXIT_REFUSED = 0, 1


def add_commands(command: Callable[[str, str], argparse.ArgumentParser],
                 parser_class: type[argparse.ArgumentParser]) -> None:
    p = command("user", "The admin page's users (roles viewer and operator).")
    sub = p.add_subparsers(dest="user_command", required=True, parser_class=parser_class)

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        v = sub.add_parser(name, help=text, description=text)
        v.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if name != "list":
            v.add_argument("name")
            v.add_argument("--reason", required=True, help="why, recorded in the audit trail")
        return v

    verb("add", "Add a user; the password is asked for (or read from stdin)").add_argument(
        "--role", required=True, choices=("viewer", "operator"))
    verb("list", "The users and their roles.").add_argument("--json", action="store_true")
    verb("remove", "Remove a user (its sessions end at its next request).")
    verb("passwd", "Set a user's password (asked for, or read from stdin).")
    verb("role", "Change a user's role.").add_argument("role", choices=("viewer", "operator"))

    p = command("audit", "The hash-chained audit trail of admin actions.")
    sub = p.add_subparsers(dest="audit_command", required=True, parser_class=parser_class)
    a = sub.add_parser("list", help="newest admin actions first: when, who, what, why",
                       description="Newest admin actions first: when, who, what, why.")
    a.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    a.add_argument("--limit", type=int, default=50, help="most entries shown (default 50)")
    a.add_argument("--json", action="store_true", help="JSON instead of a table")
    a = sub.add_parser("verify", help="check the chain; exit 1 naming the first bad entry",
                       description="Recompute the chain from the first entry. Exit 0: "
                       "intact (prints the head hash: keep it elsewhere); 1: the first "
                       "edited, removed, reordered or inserted entry is named.")
    a.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    a.add_argument("--expect-head", metavar="HASH",
                   help="a head hash printed by an earlier verify: it must still be in the "
                   "chain (detects a cut or rewritten end)")


def actor() -> str:
    """Who did it, for the audit trail: the login name behind the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container)
        return f"cli:uid {os.getuid()}"


def run(args: argparse.Namespace, config: Config) -> int:
    if args.command == "audit":
        return _audit(args, config)
    from gateway.admin import access

    verb, reason, who = args.user_command, str(getattr(args, "reason", "")), actor()
    try:
        if verb == "list":
            return _list_users(config, args.json)
        if verb == "add":
            access.add_user(config, args.name, args.role, _password(), who, reason)
            print(f"user {args.name} added ({args.role})")
        elif verb == "remove":
            access.remove_user(config, args.name, who, reason)
            print(f"user {args.name} removed")
        elif verb == "passwd":
            access.set_password(config, args.name, _password(), who, reason)
            print(f"password of {args.name} changed; its sessions have ended")
        else:
            was = access.set_role(config, args.name, args.role, who, reason)
            print(f"user {args.name}: {was} -> {args.role}")
    except FatalError as err:
        print(f"aim-gateway: user {verb} refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise FatalError("the two passwords differ")
    return first


def _list_users(config: Config, as_json: bool) -> int:
    from gateway.admin import access

    found = access.list_users(config)
    if as_json:
        print(json.dumps([{"name": u.name, "role": u.role, "created_at": u.created_at,
                           "changed_at": u.changed_at} for u in found], indent=2))
    elif not found:
        print("no users: add one with `aim-gateway user add NAME --role operator`")
    for u in [] if as_json else found:
        print(f"{u.name:<24} {u.role:<9} changed {u.changed_at}")
    return EXIT_OK


def _what(entry: AuditEntry) -> str:
    details = json.loads(entry.details)
    return " ".join([entry.action, *(f"{k}={v}" for k, v in details.items()
                                      if v is not None and k not in ("partner", "file_id"))])


def _on(entry: AuditEntry) -> str:
    return " ".join(x for x in (entry.partner, entry.file_id) if x) or "-"


def _audit(args: argparse.Namespace, config: Config) -> int:
    from gateway.admin import access
    from gateway.admin.listing import table

    if args.audit_command == "list":
        entries = access.audit_entries(config, max(args.limit, 1))
        if args.json:
            print(json.dumps([{**e.fields(), "details": json.loads(e.details),
                               "hash": e.hash} for e in entries], indent=2))
            return EXIT_OK
        if not entries:
            print("no admin actions recorded")
            return EXIT_OK
        print(table(["#", "when (UTC)", "who", "what", "on", "why"], [
            [e.seq, e.at[:19].replace("T", " "), e.actor, _what(e), _on(e), e.reason or "-"]
            for e in entries], max_cell=60))
        return EXIT_OK
    verdict = access.verify_audit(config, args.expect_head)
    if verdict.intact:
        print(f"{verdict.entries} entries, chain intact; head #{verdict.head_seq} "
              f"{verdict.head_hash}")
        return EXIT_OK
    # The answer of the command, as `check` prints its ack: on stdout, with exit 1.
    if verdict.bad_seq is None:  # the chain holds, but an audited event has no entry
        print(f"audit log incomplete: {verdict.problem} ({verdict.entries} entries, chain "
              "intact)")
    else:
        print(f"audit log broken at entry #{verdict.bad_seq}: {verdict.problem} "
              f"({verdict.entries} entries intact before it)")
    return EXIT_REFUSED
