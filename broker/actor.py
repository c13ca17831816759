"""The actor runtime: what every actor process shares.

An actor is a class with one method per operation, marked ``@operation``::

    class Echo(Actor):
        service = "echo"

        @operation
        def say(self, text: str, blobs=()) -> Result:
            return Result({"text": text}, blobs=list(blobs))

The runtime does the rest. Its I/O loop (the main thread) owns the broker connection:
READY, HEARTBEAT every interval, replies, reconnects when the broker goes silent. Handlers
run on ``capacity`` actor threads, so a long operation never delays heartbeats. A handler
that overruns its deadline by ``interval * liveness`` is taken as hung: the loop stops
heartbeating, the broker reports ``hung`` and the monitor dumps stacks and restarts us.

Also here: ``faulthandler`` into ``dumps/.<program>.<pid>.fault`` (fatal signals, and all
thread stacks on SIGUSR1), JSON logs, and SIGTERM handling: tell the broker we leave
(DISCONNECT), finish what we hold (up to ``DRAIN_SECONDS``), ``on_stop()``, exit 0.
"""

from __future__ import annotations

import faulthandler
import functools
import inspect
import os
import queue
import signal
import socket as socketlib
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

from . import __version__, logs
from . import config as configlib
from .client import CurveKeys, dealer
from .protocol import (DISCONNECT, HEARTBEAT, NOBLOCK, READY, REPLY, REQUEST, WORKER, Error,
                       deadline_of, error_reply, pack, recv_frames, send_frames, unpack)

DRAIN_SECONDS = 8.0  # under supervisord's stopwaitsecs (10): finish in-flight work
UNSENT_LOG_EVERY = 60.0  # seconds between "broker not reachable" warnings


def operation(fn: Callable | None = None, *, name: str | None = None) -> Callable:
    """Mark a method as an operation of the actor (``name`` defaults to the method's)."""
    def mark(method: Callable) -> Callable:
        method._sb_operation = name or method.__name__
        return method
    return mark(fn) if fn is not None else mark


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
        self._local = threading.local()
        self._publish: Callable[[str, dict], None] = lambda topic, body: None

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


@functools.cache
def operations(cls: type) -> dict[str, Callable]:
    found = {}
    for klass in reversed(cls.__mro__):
        for value in vars(klass).values():
            name = getattr(value, "_sb_operation", None)
            if name:
                found[name] = value
    return found


@dataclass(frozen=True)
class _Parameters:
    names: frozenset  # keyword arguments it takes (blobs excluded)
    required: frozenset  # those without a default
    any_keyword: bool  # it has **kwargs
    blobs: bool  # it takes the request's blobs


@functools.cache
def _parameters(method: Callable) -> _Parameters:
    params = list(inspect.signature(method).parameters.values())[1:]  # without self
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = {p.name for p in params if p.name in names and p.default is p.empty}
    return _Parameters(frozenset(names - {"blobs"}), frozenset(required - {"blobs"}),
                       any(p.kind is p.VAR_KEYWORD for p in params), "blobs" in names)


def _check_arguments(op: str, method: Callable, args: dict) -> bool:
    """Raise ``invalid_argument`` unless ``args`` fit the handler; True if it takes blobs."""
    params = _parameters(method)
    missing = params.required - args.keys()
    if missing:
        raise Error("invalid_argument", f"{op}: missing argument(s): {', '.join(sorted(missing))}")
    unknown = set(args) - params.names if not params.any_keyword else set()
    if unknown or "blobs" in args:
        bad = ", ".join(sorted(unknown | ({"blobs"} & set(args))))
        known = ", ".join(sorted(params.names)) or "none"
        raise Error("invalid_argument", f"{op}: unknown argument(s): {bad} (it takes: {known})")
    return params.blobs


_fault_file: Any = None  # this process's fault-handler file, once installed


def install_fault_handlers(home: configlib.Home, name: str) -> Any:
    """faulthandler for fatal signals and SIGUSR1 into ``dumps/.<program>.<pid>.fault``.

    The monitor puts the file's content into the dump it writes when the process crashes
    or hangs. Returns the open file (it must stay open for the process's life).
    """
    program = os.environ.get("SUPERVISOR_PROCESS_NAME") or name
    home.dumps.mkdir(parents=True, exist_ok=True)
    path = home.dumps / f".{program}.{os.getpid()}.fault"
    global _fault_file
    fault_file = _fault_file = open(path, "w")
    faulthandler.enable(fault_file, all_threads=True)
    faulthandler.register(signal.SIGUSR1, fault_file, all_threads=True, chain=False)
    fault_file.path = path  # type: ignore[attr-defined]
    return fault_file


def remove_fault_file(fault_file: Any) -> None:
    """After a clean exit there is nothing for the monitor to read."""
    faulthandler.disable()
    faulthandler.unregister(signal.SIGUSR1)
    fault_file.close()
    try:
        os.unlink(fault_file.path)
    except OSError:
        pass


class Runtime:
    """Runs one actor: the broker connection on the main thread.

    With ``capacity == 1`` handlers run on the main thread itself (no hand-off between
    threads: the lowest latency) and a heartbeat thread keeps beating while one runs; the
    broker socket is then guarded by ``io_lock``, which the main thread gives up only while
    a handler runs. With ``capacity > 1`` handlers run on that many actor threads, which
    hand replies back through an inproc socket.
    """

    def __init__(self, actor: Actor, cfg: configlib.Config, endpoint: str | None = None,
                 curve: CurveKeys | None = None, context: zmq.Context | None = None):
        self.actor = actor
        self.cfg = cfg
        self.endpoint = endpoint or cfg.home.broker_endpoint
        self.curve = curve
        self.interval = cfg.heartbeat.interval
        self.expiry = cfg.heartbeat.interval * cfg.heartbeat.liveness
        self.ctx = context or zmq.Context.instance()
        self.log = logs.Log(actor.service)
        self.inline = actor.capacity <= 1
        self.io_lock = threading.Lock()
        self.in_handler = False  # the main thread runs a handler (inline mode)
        self.work: queue.SimpleQueue = queue.SimpleQueue()
        self.results_endpoint = f"inproc://results-{id(self)}"
        self.running: dict[bytes, tuple[float, str]] = {}  # envelope -> (deadline, op)
        self.stopping = False
        self.unsent_logged = -UNSENT_LOG_EVERY  # when "broker not reachable" was last logged
        self.finished = False  # the loop has ended: the heartbeat thread may leave
        self.acked = False  # the broker acknowledged our DISCONNECT
        self.withholding = False  # heartbeats stopped because a handler overran
        self.tick_pending = False
        self.pushers: list[zmq.Socket] = []
        self.pushers_lock = threading.Lock()
        self.local = threading.local()
        # Events from threads the actor starts itself (e.g. a scan job's): a queue and a
        # byte on the wake pipe, not a socket per thread (a socket per short-lived thread
        # would leak one eventfd each).
        self.queued_events: queue.SimpleQueue = queue.SimpleQueue()
        self.wake_w: int | None = None
        self.threads: list[threading.Thread] = []
        self.main_thread = threading.get_ident()
        self.methods = operations(type(actor))

    # --- sockets

    def _connect(self) -> None:
        sock = self.broker = dealer(self.ctx, self.endpoint, self.curve)
        self.poller.register(sock, zmq.POLLIN)
        ready = {"service": self.actor.service, "pid": os.getpid(),
                 "host": socketlib.gethostname(), "capacity": self.actor.capacity,
                 "prefetch": self.actor.prefetch, "version": __version__}
        self._to_broker([b"", WORKER, READY, pack(ready)])
        now = time.monotonic()
        self.broker_expiry = now + self.expiry
        self.next_beat = now + self.interval

    def _reconnect(self) -> None:
        self.log.warning("broker silent; reconnecting", endpoint=self.endpoint)
        self.poller.unregister(self.broker)
        self.broker.close(linger=0)
        self.running.clear()  # the new broker does not know those requests
        self._connect()

    def _pusher(self) -> zmq.Socket:
        """This thread's socket towards the I/O loop (zmq sockets are single-threaded)."""
        sock = getattr(self.local, "push", None)
        if sock is None:
            sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.connect(self.results_endpoint)
            self.local.push = sock
            with self.pushers_lock:
                self.pushers.append(sock)
        return sock

    def _publish(self, topic: str, body: dict) -> None:
        body.setdefault("ts", time.time())
        frames = [topic.encode(), pack(body)]
        if threading.get_ident() == self.main_thread:
            self._send_event(frames)
        elif getattr(self.local, "actor_thread", False):
            self._pusher().send_multipart([b"E", *frames])
        else:
            self.queued_events.put(frames)
            try:
                os.write(self.wake_w, b"e")
            except (OSError, TypeError):
                pass  # the pipe is full (the loop wakes anyway), or not running yet

    def _from_queued_events(self) -> None:
        while True:
            try:
                self._send_event(self.queued_events.get_nowait())
            except queue.Empty:
                return

    # --- running handlers

    def _submit(self, item: tuple) -> None:
        """Run a request, tick or event: here (inline mode) or on an actor thread."""
        if not self.inline:
            self.work.put(item)
            return
        self.in_handler = True
        self.io_lock.release()  # the heartbeat thread may use the socket meanwhile
        try:
            self._execute(item)
        finally:
            self.io_lock.acquire()
            self.in_handler = False

    def _actor_thread(self) -> None:
        self.local.actor_thread = True
        while True:
            item = self.work.get()
            if item is None:
                return
            self._execute(item)

    def _execute(self, item: tuple) -> None:
        kind = item[0]
        try:
            if kind == "request":
                envelope = item[1]
                frames = self._handle(*item[2:])
                if self.inline:
                    self.io_lock.acquire()
                    try:
                        self._send_reply(envelope, frames)
                    finally:
                        self.io_lock.release()
                else:
                    send_frames(self._pusher(), [b"R", envelope, *frames])
            elif kind == "tick":
                try:
                    self.actor.on_tick()
                finally:
                    if self.inline:
                        self.tick_pending = False
                    else:
                        self._pusher().send(b"T")
            elif kind == "event":
                self.actor.on_event(item[1], item[2])
        except Exception:
            self.log.exception(f"{kind} handler failed")

    def _handle(self, header: dict, deadline: float, blobs: list) -> list:
        """Run one operation; returns the reply frames ``[header, blob*]``."""
        request_id = header.get("id")
        op = header.get("op")
        frames: list = []
        try:
            if time.time() > deadline:
                raise Error("timeout", f"{op} reached the {self.actor.service} actor after "
                                       "its deadline")
            method = self.methods.get(op)
            if method is None:
                raise Error("unknown_op", f"{self.actor.service} has no op {op!r} "
                                          f"(it has: {', '.join(sorted(self.methods))})")
            args = header.get("args") or {}
            if not isinstance(args, dict):
                raise Error("invalid_argument", "args must be a map")
            if _check_arguments(op, method, args):
                args = {**args, "blobs": blobs}
            self.actor._local.call = Call(request_id, op, deadline)
            value = method(self.actor, **args)
            if isinstance(value, Result):
                value, frames = value.value, value.blobs
            reply = pack({"id": request_id, "ok": True, "result": value})
        except Error as exc:
            reply = pack({"id": request_id, "ok": False, "error": exc.to_wire()})
            frames = []
        except Exception as exc:
            self.log.exception("operation failed", op=op)
            reply = pack(error_reply(request_id, "internal",
                                     f"{self.actor.service}.{op} failed: {exc!r}"))
            frames = []
        finally:
            self.actor._local.call = None
        return [reply, *frames]

    def _send_reply(self, envelope: bytes, frames: list) -> None:
        if self.running.pop(envelope, None) is not None:
            self._to_broker([b"", WORKER, REPLY, envelope, *frames])

    def _to_broker(self, frames: list) -> None:
        """Never block the I/O loop: with no broker connected (say, a remote worker whose
        CURVE key is refused) a DEALER's send would wait for one forever, and with it
        heartbeats, reconnects and SIGTERM. What cannot go now is dropped: the broker
        re-queues or fails a request whose worker went silent."""
        try:
            send_frames(self.broker, frames, NOBLOCK)
        except zmq.Again:
            now = time.monotonic()
            if now - self.unsent_logged > UNSENT_LOG_EVERY:
                self.unsent_logged = now
                hint = (" (is this worker's public key in the service's [broker] "
                        "curve_clients?)" if self.curve is not None else "")
                self.log.warning(f"broker not reachable; messages dropped until it is{hint}",
                                 endpoint=self.endpoint)

    # --- the I/O loop

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit status."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        self.wake_w = wake_w
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.actor._publish = self._publish
        self.results = self.ctx.socket(zmq.PULL)
        self.results.bind(self.results_endpoint)
        # XPUB, not PUB: it tells us when the broker's subscription has arrived; events
        # published before that (from on_start) wait instead of being dropped.
        self.events = self.ctx.socket(zmq.XPUB)
        self.events.setsockopt(zmq.LINGER, 1000)
        self.events.connect(self.cfg.home.events_in)
        self.events_subscribed = False
        self.pending_events: list = []
        self.poller = zmq.Poller()
        self.poller.register(self.results, zmq.POLLIN)
        self.poller.register(wake_r, zmq.POLLIN)
        self.poller.register(self.events, zmq.POLLIN)
        self.subscriber = None
        if self.actor.subscriptions:
            self.subscriber = self.ctx.socket(zmq.SUB)
            for prefix in self.actor.subscriptions:
                self.subscriber.setsockopt(zmq.SUBSCRIBE, prefix.encode())
            self.subscriber.connect(self.cfg.home.events_out)
            self.poller.register(self.subscriber, zmq.POLLIN)
        try:
            self.actor.on_start()
        except Exception:
            self.log.exception("on_start failed")
            return 1
        if self.inline:
            self.threads.append(threading.Thread(target=self._heartbeat_thread, daemon=True,
                                                 name=f"{self.actor.service}-heartbeat"))
        else:
            self.threads.extend(
                threading.Thread(target=self._actor_thread, daemon=True,
                                 name=f"{self.actor.service}-{number}")
                for number in range(self.actor.capacity))
        self.io_lock.acquire()  # held by the main thread except while a handler runs
        self._connect()
        for thread in self.threads:
            thread.start()
        self.log.info("actor started", service=self.actor.service, pid=os.getpid(),
                      capacity=self.actor.capacity)
        try:
            self._loop(wake_r)
        finally:
            faulthandler.cancel_dump_traceback_later()
            self.io_lock.release()
        self._shutdown()
        signal.set_wakeup_fd(-1)
        self.wake_w = None
        os.close(wake_r)
        os.close(wake_w)
        return 0

    def _loop(self, wake_r: int) -> None:
        next_tick = time.monotonic() + (self.actor.tick_interval or 0)
        drain_until = None
        while True:
            now = time.monotonic()
            if self.stopping and drain_until is None:
                drain_until = now + DRAIN_SECONDS
                self._to_broker([b"", WORKER, DISCONNECT])
                self.log.info("stopping: finishing in-flight work", inflight=len(self.running))
            if drain_until is not None and not self.running and (
                    self.acked or now > self.broker_expiry or now > drain_until):
                return
            if drain_until is not None and now > drain_until:
                self.log.warning("stopping with work unfinished", inflight=len(self.running))
                return
            if self.actor.watchdog:
                # Re-armed on every pass: if the loop stalls (deadlock), a C thread writes
                # all stacks into the fault file and exits, and supervisord restarts us.
                faulthandler.dump_traceback_later(self.actor.watchdog, exit=True,
                                                  file=_fault_file or sys.stderr)
            deadline = self.next_beat
            if self.actor.tick_interval and not self.stopping:
                deadline = min(deadline, next_tick)
            try:
                ready = dict(self.poller.poll(max(0.0, deadline - now) * 1000))
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EINTR:
                    continue
                raise
            if wake_r in ready:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
                self._from_queued_events()
            if self.events in ready:
                self._subscriptions()
            if self.broker in ready:
                self._from_broker()
            if self.results in ready:
                self._from_actor_threads()
            if self.subscriber is not None and self.subscriber in ready:
                self._from_events()
            now = time.monotonic()
            if self.actor.tick_interval and now >= next_tick and not self.stopping:
                next_tick = now + self.actor.tick_interval
                if not self.tick_pending:
                    self.tick_pending = True
                    self._submit(("tick",))
            if now >= self.next_beat:
                self._heartbeat(now)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def _from_broker(self) -> None:
        for _ in range(1000):
            try:
                frames = recv_frames(self.broker, NOBLOCK)
            except zmq.Again:
                return
            self.broker_expiry = time.monotonic() + self.expiry
            if len(frames) < 3 or frames[1].bytes != WORKER:
                self.log.warning("dropped malformed frames from the broker")
                continue
            command = frames[2].bytes
            if command == REQUEST and len(frames) >= 5:
                try:
                    header = unpack(frames[4].buffer)
                    if not isinstance(header, dict):
                        raise ValueError("header is not a map")
                except Exception:
                    self.log.warning("dropped request with a bad header")
                    continue
                envelope = frames[3].bytes
                deadline = deadline_of(header, self.cfg.broker.request_timeout)
                self.running[envelope] = (time.monotonic() + deadline - time.time(),
                                          str(header.get("op")))
                self._submit(("request", envelope, header, deadline, frames[5:]))
            elif command == DISCONNECT:
                if self.stopping:
                    self.acked = True
                else:
                    self._reconnect()  # the broker restarted and does not know us
                    return
            elif command != HEARTBEAT:
                self.log.warning("dropped unknown command from the broker")

    def _send_event(self, frames: list) -> None:
        if self.events_subscribed:
            self.events.send_multipart(frames)
        elif len(self.pending_events) < 10000:
            self.pending_events.append(frames)

    def _subscriptions(self) -> None:
        while True:
            try:
                self.events.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.events_subscribed = True
        if self.events_subscribed:
            for frames in self.pending_events:
                self.events.send_multipart(frames)
            self.pending_events.clear()

    def _from_actor_threads(self) -> None:
        for _ in range(1000):
            try:
                frames = recv_frames(self.results, NOBLOCK)
            except zmq.Again:
                return
            kind = frames[0].bytes
            if kind == b"R":
                self._send_reply(frames[1].bytes, frames[2:])
            elif kind == b"E":
                self._send_event(frames[1:])
            elif kind == b"T":
                self.tick_pending = False

    def _from_events(self) -> None:
        for _ in range(1000):
            try:
                topic, body = self.subscriber.recv_multipart(zmq.NOBLOCK)
                item = ("event", topic.decode(), unpack(body))
            except zmq.Again:
                return
            except Exception:
                self.log.warning("dropped malformed event")
                continue
            self._submit(item)

    def _heartbeat_thread(self) -> None:
        """Inline mode: beat while the main thread is busy in a handler.

        It keeps beating while we stop too: a handler may still be finishing its request.
        """
        while not self.finished:
            time.sleep(self.interval / 4)
            if not self.in_handler:
                continue
            with self.io_lock:
                now = time.monotonic()
                if self.in_handler and now >= self.next_beat:
                    self._heartbeat(now, judge_broker=False)

    def _heartbeat(self, now: float, judge_broker: bool = True) -> None:
        self.next_beat = now + self.interval
        if judge_broker and now > self.broker_expiry:
            return self._reconnect()
        overrun = [op for deadline, op in self.running.values() if now > deadline + self.expiry]
        healthy = not overrun and self._probe()
        if not healthy:
            if not self.withholding:
                self.log.error("withholding heartbeats so the monitor restarts this actor",
                               overrun=overrun)
            self.withholding = True
            return
        self.withholding = False
        self._to_broker([b"", WORKER, HEARTBEAT])

    def _probe(self) -> bool:
        try:
            return bool(self.actor.alive())
        except Exception:
            self.log.exception("liveness probe failed")
            return False

    def _shutdown(self) -> None:
        self.finished = True
        for _ in self.threads:
            self.work.put(None)
        for thread in self.threads:
            thread.join(timeout=2.0)
        try:
            self.actor.on_stop()
        except Exception:
            self.log.exception("on_stop failed")
        self._from_actor_threads()  # events published by actor threads before they left
        self._from_queued_events()
        self.log.info("actor stopped", service=self.actor.service)
        with self.pushers_lock:
            for sock in self.pushers:
                sock.close()
        for sock in (self.subscriber, self.results, self.broker, self.events):
            if sock is not None:
                sock.close(linger=1000 if sock is self.events else 0)


def main(actor_class: type[Actor], endpoint: str | None = None,
         curve: CurveKeys | None = None, program: str | None = None) -> None:
    """Entry point of an actor program (``python -m actors.NAME``); a remote actor gives
    its broker ``endpoint`` and CURVE keys, and its ``program`` name for fault files."""
    cfg = configlib.load_or_exit()
    logs.setup(actor_class.service, cfg.log.level)
    fault_file = install_fault_handlers(cfg.home, program or actor_class.service)
    try:
        actor = actor_class(cfg)
        status = Runtime(actor, cfg, endpoint=endpoint, curve=curve).run()
    except Exception:
        logs.Log(actor_class.service).exception("actor failed")
        status = 1
    if status == 0:
        remove_fault_file(fault_file)
    sys.exit(status)
