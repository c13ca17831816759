"""The commands and doctor checks of the ``scanbridge`` CLI, and what every command shares.

The CLI (``scanbridge/``) registers its own command groups here and imports the
``commands`` module of every actor package, so an actor adds its local tooling
(``actors/certhelper/commands.py``: trust, untrust, certificate checks) without the CLI
naming it, and without the actor importing the CLI::

    from common.commands import command, doctor_check

    def build(parser): parser.add_argument("--no-system", action="store_true")

    @command("trust", "make browsers trust the local CA", build)
    def cmd_trust(home, opts): ...

    @doctor_check("certificates")
    def checks(home, cfg): yield "ok", "local CA ...", ""

A handler returns the exit status or calls ``fail()``. Every failure is one line on stderr
and a non-zero status: 1 for a failed operation, 2 for bad usage or input, 3 when the
service is not running, 65 for a home written by a newer release (a database at a schema
version this one does not know), 78 for bad configuration.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Iterator, NoReturn

from broker import config as configlib
from broker import supervision
from broker.actor import EXIT_REFUSED
from broker.client import Client

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_CONFIG = 1, 2, 3, 78
EXIT_NEWER_HOME = EXIT_REFUSED  # 65, what the program owning such a database exits with

Handler = Callable[[configlib.Home, argparse.Namespace], int]
Builder = Callable[[argparse.ArgumentParser], None]
Check = tuple[str, str, str]  # (level: ok|warn|FAIL, what, how to fix it)
CheckRun = Callable[[configlib.Home, "configlib.Config | None"], Iterator[Check]]


@dataclass(frozen=True)
class Command:
    name: str  # as typed: ``scanbridge NAME``
    help: str  # one line in ``scanbridge --help``
    run: Handler
    build: Builder | None = None  # adds the command's arguments to its parser
    description: str | None = None  # above the arguments in ``scanbridge NAME --help``


@dataclass(frozen=True)
class DoctorCheck:
    name: str  # the doctor orders its groups by name
    run: CheckRun  # (home, the configuration or None when it is invalid) -> checks


COMMANDS: dict[str, Command] = {}
DOCTOR_CHECKS: dict[str, DoctorCheck] = {}


def command(name: str, help: str, build: Builder | None = None,
            description: str | None = None) -> Callable[[Handler], Handler]:
    """Register the decorated handler as ``scanbridge NAME``."""
    def register(run: Handler) -> Handler:
        if name in COMMANDS and COMMANDS[name].run is not run:
            raise ValueError(f"two commands named {name!r}")
        COMMANDS[name] = Command(name, help, run, build, description)
        return run
    return register


def doctor_check(name: str) -> Callable[[CheckRun], CheckRun]:
    """Register the decorated generator as a group of ``scanbridge doctor`` checks."""
    def register(run: CheckRun) -> CheckRun:
        if name in DOCTOR_CHECKS and DOCTOR_CHECKS[name].run is not run:
            raise ValueError(f"two doctor checks named {name!r}")
        DOCTOR_CHECKS[name] = DoctorCheck(name, run)
        return run
    return register


# --- what handlers share

class CommandError(Exception):
    """A command's failure: the message is printed as ``scanbridge: MESSAGE``."""

    def __init__(self, message: str, status: int = EXIT_FAILED):
        super().__init__(message)
        self.status = status


def fail(message: str, status: int = EXIT_FAILED) -> NoReturn:
    raise CommandError(message, status)


def load_config(home: configlib.Home) -> configlib.Config:
    try:
        return configlib.load(home)
    except configlib.ConfigError as exc:
        fail(f"configuration error: {exc}", EXIT_CONFIG)


def not_running(home: configlib.Home, what: str = "service") -> NoReturn:
    fail(f"the {what} is not running for {home.root} (start it with: scanbridge start)",
         EXIT_NOT_RUNNING)


def broker_client(home: configlib.Home, what: str = "service") -> Client:
    """A client of the home's broker, after checking the configuration and that the
    broker answers (a client of a broker that is not there would wait for its timeout)."""
    load_config(home)
    if not supervision.socket_answers(home.run / "broker.sock"):
        not_running(home, what)
    return Client(home.broker_endpoint)
