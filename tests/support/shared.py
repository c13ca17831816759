"""Fixtures shared by a family of test modules: one service for all of them.

A long test file split by theme keeps one service for its parts, as it had one for the
whole file (starting supervisord costs seconds). ``@shared_by_modules`` turns a fixture
body into a module-scoped fixture that the family's modules import: the first module
that asks runs the body up to its ``yield``; the value is stopped (the body resumed) after
the last module of the run that imports the fixture, or when the session ends.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .service import Service, started


def shared_by_modules(body: Callable[..., Iterator], name: str | None = None):
    """A module-scoped fixture (named ``name``, or like ``body``) whose value the modules
    importing it share; ``body`` is a fixture body (a generator, or a function that
    returns the value) and may ask for other fixtures."""
    wanted = list(inspect.signature(body).parameters)
    running: list = []  # [value, generator] while started

    def finish() -> None:
        if running:
            _, gen = running
            running.clear()
            next(gen, None)

    def later_user(request: pytest.FixtureRequest) -> bool:
        items = request.session.items
        mine = [i for i, item in enumerate(items) if item.module is request.module]
        return any(shared in vars(item.module).values()
                   for item in items[max(mine, default=len(items)) + 1:])

    def fixture(request: pytest.FixtureRequest):
        if not running:
            made = body(**{name: request.getfixturevalue(name) for name in wanted})
            if inspect.isgenerator(made):
                running[:] = [next(made), made]
                request.config.add_cleanup(finish)  # -x, or a failed start of a later module
            else:
                running[:] = [made, iter(())]
        yield running[0]
        if not later_user(request):
            finish()

    shared = pytest.fixture(scope="module", name=name or body.__name__)(fixture)
    return shared


def default_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The body of conftest.py's ``service``: default settings, a fresh home."""
    yield from started(Path(tmp_path_factory.mktemp("home")))
