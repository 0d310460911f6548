"""The ``aim-gateway`` command: the only place that knows arguments, exit codes and printing.

Exit codes (guide section 8): ``check`` 0 ACCEPTED, 1 PARTIAL/REJECTED, 2 usage or configuration
error; ``run --once`` 0 when the run completed, 3 when the gateway itself could not run;
``show`` 1 for an unknown file or license; ``reprocess``, ``release``, ``pause``, ``resume``
and ``resend`` 0 done, 1 refused or failed (the reason on stderr); ``replay`` 0 when nothing
would change, 1 when something would, 2 on a usage or configuration error.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path
from typing import NoReturn

from gateway import cli_access, cli_ops
from gateway.admin.reasons import is_text
from gateway.cli_access import actor as _actor
from gateway.config import Config, find_config, load_config
from gateway.errors import ConfigError, FatalError, GatewayError, UsageError
from gateway.ledger.reads.files import FILE_STATUSES
from gateway.ledger.reads.licenses import LICENSE_STATES
from gateway.service.logs import setup_logging

EXIT_OK = 0
EXIT_NOT_ACCEPTED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"aim-gateway: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)


def _days(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"not a number of days (0 or more): {text!r}")
    return int(text)


def _as_of(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aim-gateway", description="AIM License Gateway: batch intake, "
                     "validation and licensing of aluminum import license applications.")
    parser.add_argument("--config", help="config.toml (default: $AIMGW_CONFIG or ./config.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v, -vv: log more")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return p

    p = command("check", "Validate a file and print the acknowledgment it would get; "
                "change nothing.")
    p.add_argument("file", type=Path)
    p.add_argument("--as-of", type=_as_of, help="processing date YYYY-MM-DD (default today)")
    p.add_argument("--partner", help="partner id whose profile and history apply")
    p.add_argument("--ack-format", choices=("xml", "csv"), default=None,
                   help="acknowledgment form to print (default: CSV for CSV input, else XML)")

    p = command("run", "Poll every partner, process what is there.")
    p.add_argument("--once", action="store_true", required=True,
                   help="one cycle, then exit (the scheduled service is `serve`)")
    p.add_argument("--as-of", type=_as_of, help="processing date YYYY-MM-DD (default today)")

    command("serve", "Run the scheduled service until SIGTERM or SIGINT.")

    p = command("db", "The ledger database.")
    db_sub = p.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    u = db_sub.add_parser("upgrade", help="create or upgrade the ledger's schema",
                          description="Apply the ledger migrations this database lacks "
                          "(SQLite file or the PostgreSQL of gateway.ledger).")
    u.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = command("mapping", "Partner mappings.")
    mapping_sub = p.add_subparsers(dest="mapping_command", required=True, parser_class=_Parser)
    m = mapping_sub.add_parser("test", help="show the canonical rows a mapping makes of a file",
                               description="Show the canonical rows (CSV mapping) or the "
                               "transformed document (XSLT mapping) a mapping makes of FILE.")
    m.add_argument("mapping", type=Path, help="the mapping file (.toml or .xsl)")
    m.add_argument("file", type=Path, help="a file as the partner sends it")
    m.add_argument("--rows", type=int, default=20, help="how many rows to show (default 20)")

    p = command("partner", "Partner onboarding.")
    partner_sub = p.add_subparsers(dest="partner_command", required=True, parser_class=_Parser)
    t = partner_sub.add_parser("test", help="self-test of a partner's SFTP connection",
                               description="Connect, show the server's host-key fingerprint, "
                               "authenticate, list the inbox, and prove that a probe file can "
                               "be written under a temp name and renamed in the "
                               "acknowledgment folder, then removed. Says what failed.")
    t.add_argument("partner_id")
    t.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    _admin_commands(command)
    _web_command(command)
    cli_access.add_commands(command, _Parser)
    return parser


def _admin_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """What admins read and do (docs/operations.md); every listing has --json."""
    p = command("status", "Per partner: state, last poll, last file, failures, backlog, "
                "unfinished files, licenses, alerts.")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")

    p = command("files", "Files received, newest first.")
    p.add_argument("--partner", help="only this partner's files")
    p.add_argument("--status", type=str.upper, metavar="STATUS", choices=FILE_STATUSES,
                   help="ACCEPTED, PARTIAL, REJECTED, DUPLICATE, FAILED (an F-code), "
                   "'IN PROGRESS' or QUARANTINED (failed 3 times in a row, set aside)")
    p.add_argument("--since", type=_as_of, help="received on or after YYYY-MM-DD")
    p.add_argument("--limit", type=_positive, default=50, help="most rows shown (default 50)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--csv", action="store_true", help="CSV (the web page's columns)")

    p = command("show", "The whole story of one file: receipt, findings, licenses, license "
                "changes, ACE files, acknowledgment and its delivery, events; or of one "
                "license: its state and its history along its corrections.")
    p.add_argument("file_id", metavar="ID", help="a file id (YYYYMMDD-NNNNNN) or a license "
                   "number")
    p.add_argument("--as-of", type=_as_of, help="the day whose license states are shown "
                   "(default today)")
    p.add_argument("--limit", type=_positive, default=50, help="most applications and "
                   "findings listed one by one (default 50; grouped by code: all)")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.add_argument("--csv", action="store_true", help="a file's findings as CSV")

    p = command("licenses", "Licenses issued, newest first, with their state.")
    p.add_argument("--number", help="one license number")
    p.add_argument("--ref", help="the applications' ref")
    p.add_argument("--importer", help="part of the importer's name (any case)")
    p.add_argument("--partner", help="only this partner's licenses")
    p.add_argument("--since", type=_as_of, help="issued on or after YYYY-MM-DD")
    p.add_argument("--until", type=_as_of, help="issued on or before YYYY-MM-DD")
    p.add_argument("--state", type=str.upper, metavar="STATE", choices=LICENSE_STATES,
                   help="ACTIVE, EXPIRED (active, valid-through date past), SUPERSEDED "
                   "(replaced by a correction) or CANCELLED, on the as-of date")
    p.add_argument("--expiring-within", type=_days, metavar="DAYS",
                   help="only ACTIVE licenses valid through the as-of date + DAYS at the "
                   "latest (0: their last day is today)")
    p.add_argument("--as-of", type=_as_of, help="the day whose states are shown (default "
                   "today)")
    p.add_argument("--limit", type=_positive, default=100, help="most rows (default 100)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--csv", action="store_true", help="CSV (the web page's columns)")

    p = command("reprocess", "Take an archived or failed file through the pipeline again "
                "(e.g. after a mapping fix), as a new file linked to it. Licenses issued "
                "before come back as I201; the partner's remote file is not touched.")
    p.add_argument("file_id")
    p.add_argument("--reason", required=True, help="why (recorded with your user name)")
    p.add_argument("--as-of", type=_as_of, help="processing date YYYY-MM-DD (default today)")
    p.add_argument("--json", action="store_true", help="the new file as JSON")

    cli_ops.add_commands(command)  # release, pause, resume, resend, mail-test

    p = command("purge", "Remove what the [retention] periods have passed: old events, the "
                "details of old files, old originals on disk. Licenses are never purged.")
    p.add_argument("--dry-run", action="store_true", help="show what would go; change nothing "
                   "(not audited: no --reason needed)")
    p.add_argument("--reason", help="why (recorded with your user name); required but for "
                   "--dry-run")
    p.add_argument("--as-of", type=_as_of, help="purge as on this date (default now)")
    p.add_argument("--json", action="store_true", help="JSON instead of text")

    p = command("replay", "Decide the archived files again, in memory, by the rules and HTS "
                "edition in force on the as-of date; show per file the applications whose "
                "status or codes would change. Writes nothing. Exit 0: nothing would change, "
                "1: something would.")
    p.add_argument("--partner", help="only this partner's files")
    p.add_argument("--since", type=_as_of, help="processed on or after YYYY-MM-DD")
    p.add_argument("--until", type=_as_of, help="processed on or before YYYY-MM-DD")
    p.add_argument("--as-of", type=_as_of, required=True,
                   help="the date whose rules and HTS edition apply, YYYY-MM-DD")
    p.add_argument("--json", action="store_true", help="JSON instead of text")


def _load(args: argparse.Namespace) -> Config:
    return load_config(find_config(getattr(args, "config", None)))


# Files the gateway creates (ledger, archive, acknowledgments, ACE files) are readable by the
# gateway's user and group only: a transmitter or an auditor joins the group, nobody else reads
# partners' trade data.
UMASK = 0o027

# The gateway allocates many short-lived containers an application (a large file's batches
# from its reading process, the decisions, the ledger rows), most of them alive when Python's
# first collection comes at its default of 700 allocations: for 100,000 applications the
# collector ran 814 times and took 0.42 s, 5-7 % of the gateway process's CPU (measured with
# gc.callbacks); from 10,000, 53 times and 0.01 s. Cyclic garbage waits a little longer.
GC_FIRST_GENERATION = 10_000


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not is_text(getattr(args, "reason", None)):  # bytes that are not UTF-8 (PEP 383)
        print(f"aim-gateway {args.command}: error: --reason is not UTF-8 text (check the "
              "terminal's encoding); nothing recorded", file=sys.stderr)
        return EXIT_USAGE
    os.umask(UMASK)
    gc.set_threshold(GC_FIRST_GENERATION, *gc.get_threshold()[1:])
    setup_logging(args.verbose, serving=args.command == "serve")
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # `aim-gateway files | head`: the reader has had enough; not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (ConfigError, UsageError) as err:  # UsageError: no config file, no such partner
        print(str(err), file=sys.stderr)
        return EXIT_USAGE
    except FatalError as err:
        print(f"aim-gateway: {err}", file=sys.stderr)
        return EXIT_USAGE if args.command in ("check", "replay") else EXIT_FAILED
    except GatewayError as err:
        print(f"aim-gateway: {err}", file=sys.stderr)
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check":
        return _check(args)
    if args.command == "mapping":
        return _mapping_test(args)
    if args.command == "partner":
        from gateway.inbox.onboarding import partner_self_test

        config = _load(args)
        ok, lines = partner_self_test(config.partner(args.partner_id))
        print("\n".join(lines))
        return EXIT_OK if ok else EXIT_NOT_ACCEPTED
    config = _load(args)
    if args.command == "run":
        from gateway.admin import queries, run_report
        from gateway.service.runner import run_once

        for polled in run_once(config, args.as_of):  # each file taken: its status and counts
            print(run_report.run_text(polled, queries.taken(config, polled.taken)))
        return EXIT_OK
    if args.command == "db":
        from gateway.ledger.store import open_ledger

        ledger = open_ledger(config, migrate=False)
        try:
            before = ledger.schema_version()
            applied = ledger.upgrade()
            after = ledger.schema_version()
        finally:
            ledger.close()
        print(f"ledger schema {before} -> {after}" + (f" (applied {applied})" if applied
                                                      else " (up to date)"))
        return EXIT_OK
    if args.command == "serve":
        from gateway.admin.monitor import background_servers
        from gateway.service.scheduler import serve

        # Metrics and the admin page, when configured, are bound before any work: a port in
        # use or a missing token stops serve at once.
        with background_servers(config) as running:  # the start banner names them
            serve(config, listening=running.addresses, on_reload=running.reload)
        return EXIT_OK
    if args.command == "web":
        return _web(args, config)
    if args.command in ("user", "audit"):
        return cli_access.run(args, config)
    return _admin(args, config)


def _admin(args: argparse.Namespace, config: Config) -> int:
    from gateway.admin import queries, report
    from gateway.ledger.reads.files import FileQuery
    from gateway.ledger.reads.licenses import LicenseQuery

    zone = config.gateway.zone  # of the times people read
    if args.command == "status":
        _check_alerts(config)
        print(report.status(config, args.json, sys.stdout))
        return EXIT_OK
    if args.command in ("files", "licenses"):  # a table, JSON or CSV; "N of M" if cut
        rows, total = queries.counted_files(config, FileQuery(
            partner=args.partner or "", status=args.status or "", since=args.since,
            limit=args.limit)) if args.command == "files" else queries.counted_licenses(
            config, LicenseQuery(
                number=args.number or "", ref=args.ref or "", importer=args.importer or "",
                partner=args.partner or "", issued_from=args.since, issued_to=args.until,
                state=args.state or "", expiring_within=args.expiring_within,
                on=_today(config, args.as_of), limit=args.limit))
        out, more = report.listing(args.command, rows, total, _form(args), zone)
        sys.stdout.write(out)
        if more:  # on stderr: JSON and CSV stay plain data
            print(f"aim-gateway: {more}", file=sys.stderr)
        return EXIT_OK
    if args.command == "show":
        return _show(args, config)
    if args.command == "reprocess":
        return _reprocess(args, config)
    if args.command in cli_ops.COMMANDS:
        return cli_ops.run(args, config, _actor())
    if args.command == "replay":
        return _replay(args, config)
    if args.command == "purge":
        from gateway.admin.actions import purge

        now = None
        if args.as_of:
            now = datetime.combine(args.as_of, time(23, 59, 59), tzinfo=config.gateway.zone)
        if not args.dry_run and args.reason is None:
            print("aim-gateway purge: error: the following arguments are required: --reason "
                  "(but for --dry-run, which changes nothing)", file=sys.stderr)
            return EXIT_USAGE
        result = purge(config, now=now, dry_run=args.dry_run, actor=_actor(),
                       reason=args.reason)
        print(report.purge_json(result) if args.json else report.purge_text(result, zone))
        return EXIT_OK
    raise AssertionError(args.command)


def _form(args: argparse.Namespace) -> str:
    return "json" if args.json else "csv" if getattr(args, "csv", False) else ""


def _today(config: Config, as_of: date | None) -> date:
    """The day license states are read on: the gateway's processing date (EXPIRED after the
    valid-through date, as the run that decides corrections sees it)."""
    from gateway.service.process import processing_date

    return processing_date(config, as_of)


def _show(args: argparse.Namespace, config: Config) -> int:
    """A file's story, or a license's when the id is no file's."""
    from gateway.admin import queries, report

    today, form = _today(config, args.as_of), _form(args)
    story = queries.story(config, args.file_id, today, None if form else args.limit)
    if story is not None:  # as data (JSON, CSV): every application and finding
        sys.stdout.write(report.story_out(story, form, queries.groups(config, args.file_id),
                                          config.gateway.zone))
        return EXIT_OK
    found = queries.license_of(config, args.file_id, today)
    if found is None:
        print(f"aim-gateway: no file or license {args.file_id!r} in the ledger: "
              f"{report.ID_FORMAT}", file=sys.stderr)
        return EXIT_NOT_ACCEPTED
    print(report.license_json(found) if args.json else report.license_text(found))
    return EXIT_OK


def _check_alerts(config: Config) -> None:
    """`status` raises a due silence alert itself: a partner nobody polls still gets one."""
    from gateway.ledger.store import ledger_exists, open_ledger
    from gateway.service.alerts import check_partners
    from gateway.service.runner import event_log

    if not ledger_exists(config) or not any(p.expected_cadence_hours for p in config.partners):
        return
    ledger = open_ledger(config)
    events = event_log(config)
    try:
        check_partners(config, ledger, events)
    except GatewayError as err:  # the ledger busy: the screen is computed anyway
        logging.getLogger("gateway.cli").warning("alert check skipped: %s", err)
    finally:
        events.close()
        ledger.close()


def _reprocess(args: argparse.Namespace, config: Config) -> int:
    from gateway.admin import queries, report
    from gateway.admin.actions import ReprocessFailed, reprocess
    from gateway.admin.progress import ReadProgress

    try:
        new_id = reprocess(config, args.file_id, args.reason, actor=_actor(), as_of=args.as_of,
                           watch=lambda path: ReadProgress(path, f"reprocess {args.file_id}"))
    except ReprocessFailed as err:  # received, then failed: not a refusal
        print(f"aim-gateway: reprocess failed: {err}", file=sys.stderr)
        return EXIT_NOT_ACCEPTED
    except GatewayError as err:
        print(f"aim-gateway: not reprocessed: {err}", file=sys.stderr)
        return EXIT_NOT_ACCEPTED
    story = queries.story(config, new_id)
    assert story is not None
    print(report.reprocessed_json(story.file) if args.json
          else report.reprocessed_text(story.file, args.file_id))
    return EXIT_OK


def _replay(args: argparse.Namespace, config: Config) -> int:
    from gateway.admin.progress import ReadProgress
    from gateway.admin.replay import Replay, ReplayQuery
    from gateway.admin.replay_report import replay_report

    if args.since and args.until and args.since > args.until:
        print(f"aim-gateway: --since {args.since} is after --until {args.until}",
              file=sys.stderr)
        return EXIT_USAGE
    if args.partner:
        config.partner(args.partner)  # unknown id: FatalError with a suggestion → exit 2
    replay = Replay(config, args.as_of, ReplayQuery(args.partner or "", args.since, args.until))
    with ReadProgress(None, "replay") as progress:  # drawn on a terminal only
        for chunk in replay_report(replay, args.json, progress.follow):
            progress.say(chunk, sys.stdout)
    return EXIT_NOT_ACCEPTED if replay.summary.changed else EXIT_OK


def _mapping_test(args: argparse.Namespace) -> int:
    from gateway.errors import RejectedSubmission
    from gateway.parse.mapping import MappingError, load_mapping, preview

    try:
        mapping = load_mapping(args.mapping.resolve())
    except MappingError as err:
        print(f"aim-gateway: the mapping {args.mapping.resolve()} has {len(err.problems)} "
              "problem(s):", file=sys.stderr)
        for problem in err.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_USAGE
    if not args.file.is_file():
        print(f"aim-gateway: no such file: {args.file}", file=sys.stderr)
        return EXIT_USAGE
    try:
        notes: list[str] = []  # the values the mapping could not convert
        print(preview(mapping, args.file, args.rows, notes), end="")
        sys.stderr.writelines(f"not converted: {note}\n" for note in notes)
    except RejectedSubmission as rejected:
        f = rejected.finding
        print(f"{f.code}: {f.message}", file=sys.stderr)
        return EXIT_NOT_ACCEPTED
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from gateway.admin.check import check_file
    from gateway.model import FileStatus

    config = _load(args)
    if not args.file.is_file():
        print(f"aim-gateway: no such file: {args.file}", file=sys.stderr)
        return EXIT_USAGE
    partner = args.partner
    if partner is not None:
        config.partner(partner)  # unknown id: FatalError with a suggestion → exit 2
    elif len(config.partners) == 1:
        partner = config.partners[0].id
    from gateway.admin.progress import ReadProgress

    with ReadProgress(args.file, f"check {args.file.name}"):  # drawn on a terminal only
        result = check_file(config, args.file, partner, args.as_of, args.ack_format)
    sys.stdout.buffer.write(result.ack)
    sys.stdout.flush()
    return EXIT_OK if result.status in (FileStatus.ACCEPTED, FileStatus.DUPLICATE) \
        else EXIT_NOT_ACCEPTED



# -- the admin web page (docs/web.md) -------------------------------------------------------


def _web_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("web", "Serve the admin web page until SIGTERM or SIGINT: loopback only by "
                "default, every request needs the token from $AIMGW_WEB_TOKEN ([web] token_env).")
    p.add_argument("--host", help="address to serve on (default: [web] host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: [web] port, 8765; 0 = any free)")


def _web(args: argparse.Namespace, config: Config) -> int:
    from gateway.admin.hosts import server_url
    from gateway.admin.web.server import make_server, run

    server = make_server(config, args.host, args.port)  # FatalError: no token, open address
    # The URL without the token: this line may end up in a terminal log.
    print(f"aim-gateway web: serving on {server_url(server)} - open it once with "
          f"?token=<the value of ${config.web.token_env}>", flush=True)
    run(server)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
