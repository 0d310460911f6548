"""The ``aim-gateway`` command: the only place that knows arguments, exit codes and printing.

Exit codes (guide section 8): ``check`` 0 ACCEPTED, 1 PARTIAL/REJECTED, 2 usage or configuration
error; ``run --once`` 0 when the run completed, 3 when the gateway itself could not run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from pathlib import Path

from gateway.config import Config, find_config, load_config
from gateway.errors import ConfigError, FatalError, GatewayError

EXIT_OK = 0
EXIT_NOT_ACCEPTED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"aim-gateway: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _as_of(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aim-gateway", description="AIM License Gateway: batch intake, "
                     "validation and licensing of aluminum import license applications.")
    parser.add_argument("--config", help="config.toml (default: $AIMGW_CONFIG or ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
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

    p = command("status", "Per partner: last file, counts, files not yet finished.")
    p.add_argument("--json", action="store_true")

    p = command("show", "The whole story of one file.")
    p.add_argument("file_id")
    p.add_argument("--json", action="store_true")
    return parser


def _load(args: argparse.Namespace) -> Config:
    return load_config(find_config(getattr(args, "config", None)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _dispatch(args)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE
    except FatalError as err:
        print(f"aim-gateway: {err}", file=sys.stderr)
        return EXIT_USAGE if args.command == "check" else EXIT_FAILED
    except GatewayError as err:
        print(f"aim-gateway: {err}", file=sys.stderr)
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check":
        return _check(args)
    if args.command == "mapping":
        return _mapping_test(args)
    if args.command == "partner":
        from gateway.onboarding import partner_self_test

        config = _load(args)
        ok, lines = partner_self_test(config.partner(args.partner_id))
        print("\n".join(lines))
        return EXIT_OK if ok else EXIT_NOT_ACCEPTED
    config = _load(args)
    if args.command == "run":
        from gateway.runner import Runner

        runner = Runner(config, as_of=args.as_of)
        try:
            reports = runner.run_once()
        finally:
            runner.close()
        for report in reports:
            line = f"{report.partner}: {len(report.taken)} file(s) taken"
            if report.skipped:
                line += f", {report.skipped} already seen"
            if report.backing_off:
                line += ", backing off after repeated failures (see `aim-gateway status`)"
            if report.error:
                line += f", ERROR {report.error}"
            print(line)
        return EXIT_OK
    if args.command == "serve":
        from gateway.service import serve

        serve(config)
        return EXIT_OK
    from gateway import report

    if args.command == "status":
        print(report.status(config, as_json=args.json))
        return EXIT_OK
    if args.command == "show":
        text = report.show(config, args.file_id, as_json=args.json)
        if text is None:
            print(f"aim-gateway: no file {args.file_id!r} in the ledger", file=sys.stderr)
            return EXIT_NOT_ACCEPTED
        print(text)
        return EXIT_OK
    raise AssertionError(args.command)


def _mapping_test(args: argparse.Namespace) -> int:
    from gateway.errors import RejectedSubmission
    from gateway.mapping import MappingError, load_mapping, preview

    try:
        mapping = load_mapping(args.mapping.resolve())
    except MappingError as err:
        print(f"aim-gateway: the mapping has {len(err.problems)} problem(s):", file=sys.stderr)
        for problem in err.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_USAGE
    if not args.file.is_file():
        print(f"aim-gateway: no such file: {args.file}", file=sys.stderr)
        return EXIT_USAGE
    try:
        print(preview(mapping, args.file, args.rows), end="")
    except RejectedSubmission as rejected:
        f = rejected.finding
        print(f"{f.code}: {f.message}", file=sys.stderr)
        return EXIT_NOT_ACCEPTED
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from gateway.check import check_file
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
    result = check_file(config, args.file, partner, args.as_of, args.ack_format)
    sys.stdout.buffer.write(result.ack)
    sys.stdout.flush()
    return EXIT_OK if result.status in (FileStatus.ACCEPTED, FileStatus.DUPLICATE) \
        else EXIT_NOT_ACCEPTED



if __name__ == "__main__":
    sys.exit(main())
