"""``scanbridge``: run, start, stop and inspect the service; call any actor.

    scanbridge run                      the whole service in the foreground (Ctrl-C stops)
    scanbridge start | stop | status    as a background daemon
    scanbridge restart ACTOR            restart one program (supervisord)
    scanbridge logs ACTOR [-f] [-n N]   its log, as text
    scanbridge dumps [--show NAME]      crash and hang dumps
    scanbridge call SERVICE OP [JSON]   one request through the broker; prints the result
    scanbridge allow ORIGIN             let a web origin use the service
    scanbridge trust | untrust          make browsers trust the local HTTPS CA, or stop
    scanbridge doctor                   check the installation and say how to fix it
    scanbridge sources | options SRC    the scanners and their options
    scanbridge scan --source SRC -o OUT scan pages into a PDF, TIFF or image files
    scanbridge ocr FILE... | barcodes FILE...   text, searchable PDF or barcodes of files
    scanbridge worker ocr --connect tcp://HOST:PORT --server-key KEY   remote OCR workers
    scanbridge install --user | uninstall --user [--purge]   start at login, or no more
    scanbridge --version                the version of this install

Every failure is one line on stderr and a non-zero exit status: 1 for a failed operation,
2 for bad usage or input, 3 when the service is not running, 65 for a home written by a
newer release, 78 for bad configuration.

The commands come from the registry in ``common/commands.py``: this package's modules
(one per command group) and the ``commands`` module of any actor package register there.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
import sys
from typing import NoReturn

import actors
import broker
from broker import config as configlib
from common.commands import COMMANDS, EXIT_USAGE, CommandError

# This package's command groups; importing one registers its commands.
GROUPS = ("service", "call", "access", "doctor", "devices", "recognition", "install")
# The order of ``scanbridge --help``; commands not named here follow in registration order.
ORDER = ("run", "start", "stop", "status", "restart", "logs", "dumps", "call", "allow",
         "doctor", "trust", "untrust", "scan", "sources", "options", "ocr", "barcodes",
         "worker", "install", "uninstall")


def load_commands() -> None:
    """Import this package's command groups and every ``actors.NAME.commands`` module."""
    for group in GROUPS:
        importlib.import_module(f"{__package__}.{group}")
    for found in pkgutil.iter_modules(actors.__path__, "actors."):
        if found.ispkg and importlib.util.find_spec(f"{found.name}.commands") is not None:
            importlib.import_module(f"{found.name}.commands")


class Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see: {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def parser() -> argparse.ArgumentParser:
    load_commands()
    top = Parser(prog="scanbridge", description=__doc__.split("\n")[0],
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--home", help="the Scanbridge home (default: $SCANBRIDGE_HOME, else "
                                    "the checkout when run from one, else "
                                    "$XDG_DATA_HOME/scanbridge)")
    top.add_argument("--version", action="version", version=f"scanbridge {broker.__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rank = {name: number for number, name in enumerate(ORDER)}
    for spec in sorted(COMMANDS.values(), key=lambda spec: rank.get(spec.name, len(ORDER))):
        command = sub.add_parser(spec.name, help=spec.help, description=spec.description)
        if spec.build is not None:
            spec.build(command)
        command.set_defaults(func=spec.run)
    return top


def main(argv: list[str] | None = None) -> None:
    opts = parser().parse_args(argv)
    home = configlib.Home(opts.home)
    try:
        status = opts.func(home, opts)
    except CommandError as exc:
        print(f"scanbridge: {exc}", file=sys.stderr)
        status = exc.status
    except KeyboardInterrupt:
        status = 130
    except BrokenPipeError:
        status = 0
    sys.exit(status)
