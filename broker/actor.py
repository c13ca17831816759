"""Writing an actor: the ``Actor`` base class, ``@operation`` and what handlers may use.

An actor is a class with one method per operation, marked ``@operation``::

    class Echo(Actor):
        service = "echo"

        @operation
        def say(self, text: str, blobs=()) -> Result:
            return Result({"text": text}, blobs=list(blobs))

The runtime (``broker.runtime``) connects to the broker, checks each request's arguments
against the method's signature and annotations (``broker.arguments``), runs it and sends
the result, or the ``Error`` it raised, back. ``python -m actors.NAME`` runs
``broker.runtime.main(ActorClass)``.

Handlers may use ``self.call`` (the request being run: its deadline, ``check()``),
``self.publish()`` (events, from any thread) and ``self.client()`` (a broker client for
this thread, to call other actors).
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import __version__, logs
from . import config as configlib
from .client import Client
from .protocol import Error


def operation(fn: Callable | None = None, *, name: str | None = None) -> Callable:
    """Mark a method as an operation of the actor (``name`` defaults to the method's)."""
    def mark(method: Callable) -> Callable:
        method._sb_operation = name or method.__name__
        return method
    return mark(fn) if fn is not None else mark


@functools.cache
def operations(cls: type) -> dict[str, Callable]:
    """The ``@operation`` methods of an actor class by operation name (subclasses win)."""
    found = {}
    for klass in reversed(cls.__mro__):
        for value in vars(klass).values():
            name = getattr(value, "_sb_operation", None)
            if name:
                found[name] = value
    return found


class StartRefused(Exception):
    """Raised by ``on_start`` when the home holds what this release must not run on (a
    database of a newer release): the runtime logs the one line, with ``code``, and the
    process exits with ``EXIT_REFUSED`` instead of serving. Not a crash: no traceback."""

    code = "start_refused"  # a subclass names its case


EXIT_REFUSED = 65  # EX_DATAERR: the data in the home, not the program, is the problem


@dataclass
class Result:
    """A handler's result with blobs (raw frames sent zero-copy after the header)."""
    value: Any
    blobs: list = field(default_factory=list)


@dataclass
class Call:
    """The request a handler is running (``actor.call`` on the actor thread)."""
    id: Any
    op: str
    deadline: float  # UNIX time

    def remaining(self) -> float:
        return self.deadline - time.time()

    def check(self) -> None:
        """Raise ``timeout`` when the deadline has passed (for long loops in handlers)."""
        if time.time() > self.deadline:
            raise Error("timeout", f"{self.op} ran past its deadline")


class ThreadClients:
    """One broker ``Client`` per thread that asks for one (zmq sockets are single-threaded).

    A thread's client lives as long as the thread: clients of threads that have ended are
    closed when the next one is made, and by ``close()``. ``close()`` leaves alone the
    clients of threads still running (a daemon thread may be inside a call: closing its
    socket under it could abort the process); they go with the process.
    """

    def __init__(self, connect: Callable[[], Client]):
        self.connect = connect  # makes a client (the runtime sets its endpoint and keys)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._owners: list[tuple[threading.Thread, Client]] = []

    def get(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.connect()
            with self._lock:
                self._close_ended()
                self._owners.append((threading.current_thread(), client))
        return client

    def close(self) -> None:
        with self._lock:
            self._close_ended(also=threading.current_thread())

    def _close_ended(self, also: threading.Thread | None = None) -> None:
        keep = []
        for thread, client in self._owners:
            if thread is also or not thread.is_alive():
                client.close()
            else:
                keep.append((thread, client))
        self._owners = keep
        if also is not None:
            self._local.__dict__.pop("client", None)


class Actor:
    """Base class of all actors. Override the hooks you need; add ``@operation`` methods."""

    service: str = ""  # the broker service this actor serves
    capacity: int = 1  # requests handled at once (each on its own actor thread)
    prefetch: int = 0  # requests the broker may queue here beyond capacity (small fast ops)
    tick_interval: float | None = None  # seconds between on_tick() calls, None = never
    subscriptions: tuple[str, ...] = ()  # event topic prefixes delivered to on_event()
    watchdog: float | None = None  # seconds the main loop may stall before the process
    #   dumps its stacks and exits (for actors nobody else watches: the monitor)

    def __init__(self, cfg: configlib.Config):
        self.cfg = cfg
        self.home = cfg.home
        self.log = logs.Log(self.service)
        self.started = time.time()
        self._local = threading.local()  # .call: the request this thread runs
        self._publish: Callable[[str, dict], None] = lambda topic, body: None  # the runtime's
        self._clients = ThreadClients(lambda: Client(cfg.home.broker_endpoint))

    # --- hooks (run on an actor thread, except on_start/on_stop on the main thread)

    def on_start(self) -> None:
        """Before READY is sent: open files, load models."""

    def on_stop(self) -> None:
        """After the last request was answered: release what on_start took."""

    def on_tick(self) -> None:
        """Every ``tick_interval`` seconds: timers live here, never as sleeps."""

    def on_event(self, topic: str, body: dict) -> None:
        """An event matching ``subscriptions``."""

    def alive(self) -> bool:
        """Liveness probe asked before each heartbeat; False makes the actor look hung."""
        return True

    # --- helpers for handlers

    @property
    def call(self) -> Call | None:
        return getattr(self._local, "call", None)

    def publish(self, topic: str, body: dict) -> None:
        """Publish an event; safe from any thread."""
        self._publish(topic, body)

    def client(self) -> Client:
        """This thread's broker client, to call other actors; the runtime closes it."""
        return self._clients.get()

    # --- built-in operations

    @operation
    def ping(self) -> dict:
        """Answer with pid, version and uptime."""
        return {"pid": os.getpid(), "version": __version__,
                "uptime": round(time.time() - self.started, 3)}

    @operation
    def ops(self) -> dict:
        """List this actor's operations with their arguments and first doc line."""
        described = {}
        for name, method in operations(type(self)).items():
            params = [p for p in inspect.signature(method).parameters if p not in ("self",)]
            doc = (inspect.getdoc(method) or "").split("\n")[0]
            described[name] = {"args": params, "doc": doc}
        return described
