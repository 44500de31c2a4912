"""The `checkgate` command line.

Each area registers its own subcommands (a module with `register(subparsers)`), so
this file only lists them. Exit codes follow the contract: 0 success, 1 a negative
result (e.g. an invalid code), 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

logger = logging.getLogger(__name__)

# (module, what it offers) - each module has register(subparsers).
COMMAND_MODULES = [
    "checkgate.demo",
    "edge.cli",
    "server.cli",
    "drivers.thermometer.cli",
    "drivers.qr.cli",
    "edge.credentials.cli",
    "checkgate.provision",
]

EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # bad usage exits 2 with the reason
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="checkgate", description="Checkpoint gate controller.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue  # that area is not installed in this build
            raise
        module.register(sub)
    return parser


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        code = func(args)
    except KeyboardInterrupt:
        return 130
    return EXIT_OK if code is None else int(code)


if __name__ == "__main__":
    sys.exit(main())
