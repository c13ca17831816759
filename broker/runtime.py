"""The actor runtime: one actor process's connection to the broker, and its threads.

Threads, and why:

- The **main thread** runs the I/O loop and alone uses the sockets (zmq sockets are
  single-threaded): READY, HEARTBEAT every interval, requests in, replies and events out,
  reconnects when the broker goes silent, ticks, SIGTERM.
- **Handlers** run on an executor (``broker.executors``): inline on the main thread when
  ``capacity == 1`` (lowest latency; a heartbeat thread beats meanwhile, so a long
  operation does not look dead), else on ``capacity`` actor threads.
- **Threads an actor starts itself** (a scan job's) and actor threads hand the loop what
  they want sent (``broker.messages``) through one queue plus a byte on the loop's wake
  pipe: no socket per thread, so short-lived threads leave nothing open.

A handler that overruns its deadline by ``interval * liveness`` is taken as hung: the loop
stops heartbeating, the broker reports ``hung`` and the monitor dumps stacks and restarts
us. SIGTERM: tell the broker we leave (DISCONNECT), finish what we hold (up to
``DRAIN_SECONDS``), ``on_stop()``, exit 0.
"""

from __future__ import annotations

import os
import queue
import signal
import socket as socketlib
import sys
import threading
import time
from typing import Any

import zmq

from . import __version__, faults, logs
from . import config as configlib
from .actor import EXIT_REFUSED, Actor, StartRefused
from .client import Client, CurveKeys, dealer
from .executors import Executor, Handlers, InlineExecutor, PoolExecutor
from .messages import TICK, Event, Outcome, Publish, Reply, Request, TickDone
from .protocol import (DISCONNECT, HEARTBEAT, NOBLOCK, READY, REQUEST, REPLY, WORKER,
                       deadline_of, pack, recv_frames, send_frames, unpack)

DRAIN_SECONDS = 8.0  # under supervisord's stopwaitsecs (10): finish in-flight work
UNSENT_LOG_EVERY = 60.0  # seconds between "broker not reachable" warnings
MAX_PENDING_EVENTS = 10000  # events kept until the broker's subscription arrives
BATCH = 1000  # messages read from one socket per pass, so no socket starves the others


class Runtime:
    """Runs one actor: the I/O loop on the main thread (see the module docstring)."""

    def __init__(self, actor: Actor, cfg: configlib.Config, endpoint: str | None = None,
                 curve: CurveKeys | None = None, context: zmq.Context | None = None):
        self.actor = actor
        self.cfg = cfg
        self.endpoint = endpoint or cfg.home.broker_endpoint
        self.curve = curve  # CURVE keys of a remote actor (tcp endpoint)
        self.ctx = context or zmq.Context.instance()
        self.log = logs.Log(actor.service)
        self.interval = cfg.heartbeat.interval  # seconds between heartbeats
        self.expiry = cfg.heartbeat.interval * cfg.heartbeat.liveness  # silence = dead
        self.main_thread = threading.get_ident()
        # sockets and the wake pipe, opened by run()
        self.broker: zmq.Socket | None = None  # DEALER to the broker
        self.events: zmq.Socket | None = None  # XPUB to the broker's events-in
        self.subscriber: zmq.Socket | None = None  # SUB for ``actor.subscriptions``
        self.poller = zmq.Poller()
        self.wake_r: int | None = None  # readable: the outbox has something (or a signal)
        self.wake_w: int | None = None
        # state of the loop
        self.running: dict[bytes, tuple[float, str]] = {}  # envelope -> (deadline, op)
        self.broker_expiry = 0.0  # monotonic time the broker counts as silent
        self.next_beat = 0.0  # monotonic time of the next heartbeat
        self.tick_pending = False  # a Tick is with the executor
        self.stopping = False  # SIGTERM/SIGINT came
        self.acked = False  # the broker acknowledged our DISCONNECT
        self.withholding = False  # heartbeats stopped because a handler overran
        self.unsent_logged = -UNSENT_LOG_EVERY  # when "broker not reachable" was last logged
        self.events_subscribed = False  # the broker's subscription reached our XPUB
        self.pending_events: list = []  # events published before that
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()  # Outcomes from other threads
        # where handlers run; io_lock guards the broker socket in inline mode
        self.io_lock = threading.Lock()
        handlers = Handlers(actor, self.log)
        self.executor: Executor
        if actor.capacity <= 1:
            self.executor = InlineExecutor(handlers, self._deliver, actor.service,
                                           self.io_lock, self._beat_if_due, self.interval)
        else:
            self.executor = PoolExecutor(handlers, self._post, actor.service, actor.capacity)
        actor._clients.connect = self._client

    # --- sockets

    def _open(self) -> None:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.set_wakeup_fd(self.wake_w)
        self.poller.register(self.wake_r, zmq.POLLIN)
        # XPUB, not PUB: it tells us when the broker's subscription has arrived; events
        # published before that (from on_start) wait instead of being dropped.
        self.events = self.ctx.socket(zmq.XPUB)
        self.events.setsockopt(zmq.LINGER, 1000)
        self.events.connect(self.cfg.home.events_in)
        self.poller.register(self.events, zmq.POLLIN)
        if self.actor.subscriptions:
            self.subscriber = self.ctx.socket(zmq.SUB)
            for prefix in self.actor.subscriptions:
                self.subscriber.setsockopt(zmq.SUBSCRIBE, prefix.encode())
            self.subscriber.connect(self.cfg.home.events_out)
            self.poller.register(self.subscriber, zmq.POLLIN)

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

    def _client(self) -> Client:
        """A broker client for a thread of the actor's (``Actor.client()``)."""
        return Client(self.endpoint, context=self.ctx, curve=self.curve)

    # --- outcomes: from handlers and from threads the actor starts itself

    def _publish(self, topic: str, body: dict) -> None:
        """``Actor.publish``: sent now from the main thread, else through the outbox."""
        body.setdefault("ts", time.time())
        frames = [topic.encode(), pack(body)]
        if threading.get_ident() == self.main_thread:
            self._send_event(frames)
        else:
            self._post(Publish(frames))

    def _post(self, outcome: Outcome) -> None:
        """Hand an outcome to the I/O loop from any thread."""
        self.outbox.put(outcome)
        try:
            os.write(self.wake_w, b"o")
        except (OSError, TypeError):
            pass  # the pipe is full (the loop wakes anyway), or not running yet

    def _from_outbox(self) -> None:
        while True:
            try:
                self._deliver(self.outbox.get_nowait())
            except queue.Empty:
                return

    def _deliver(self, outcome: Outcome) -> None:
        """Act on an outcome (main thread, holding ``io_lock``)."""
        kind = type(outcome)
        if kind is Reply:
            self._send_reply(outcome.envelope, outcome.frames)
        elif kind is Publish:
            self._send_event(outcome.frames)
        elif kind is TickDone:
            self.tick_pending = False

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

    def _send_event(self, frames: list) -> None:
        if self.events_subscribed:
            self.events.send_multipart(frames)
        elif len(self.pending_events) < MAX_PENDING_EVENTS:
            self.pending_events.append(frames)

    # --- the I/O loop

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit status."""
        self._open()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.actor._publish = self._publish
        try:
            self.actor.on_start()
        except StartRefused as exc:
            self.log.error("start refused", code=exc.code, reason=str(exc))
            return EXIT_REFUSED
        except Exception:
            self.log.exception("on_start failed")
            return 1
        self.io_lock.acquire()  # held by the main thread except while a handler runs
        self._connect()
        self.executor.start()
        self.log.info("actor started", service=self.actor.service, pid=os.getpid(),
                      capacity=self.actor.capacity)
        try:
            self._loop()
        finally:
            faults.disarm_watchdog()
            self.io_lock.release()
        self._shutdown()
        return 0

    def _loop(self) -> None:
        tick_interval = self.actor.tick_interval
        next_tick = time.monotonic() + (tick_interval or 0)
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
                faults.arm_watchdog(self.actor.watchdog)  # re-armed on every pass
            deadline = self.next_beat
            if tick_interval and not self.stopping:
                deadline = min(deadline, next_tick)
            try:
                ready = dict(self.poller.poll(max(0.0, deadline - now) * 1000))
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EINTR:
                    continue
                raise
            if self.wake_r in ready:
                try:
                    os.read(self.wake_r, 512)
                except BlockingIOError:
                    pass
                self._from_outbox()
            if self.events in ready:
                self._subscriptions()
            if self.broker in ready:
                self._from_broker()
            if self.subscriber is not None and self.subscriber in ready:
                self._from_events()
            now = time.monotonic()
            if tick_interval and now >= next_tick and not self.stopping:
                next_tick = now + tick_interval
                if not self.tick_pending:
                    self.tick_pending = True
                    self.executor.submit(TICK)
            if now >= self.next_beat:
                self._heartbeat(now)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def _from_broker(self) -> None:
        for _ in range(BATCH):
            try:
                frames = recv_frames(self.broker, NOBLOCK)
            except zmq.Again:
                return
            self.broker_expiry = time.monotonic() + self.expiry  # any traffic counts
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
                self.executor.submit(Request(envelope, header, deadline, frames[5:]))
            elif command == DISCONNECT:
                if self.stopping:
                    self.acked = True
                else:
                    self._reconnect()  # the broker restarted and does not know us
                    return
            elif command != HEARTBEAT:
                self.log.warning("dropped unknown command from the broker")

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

    def _from_events(self) -> None:
        for _ in range(BATCH):
            try:
                topic, body = self.subscriber.recv_multipart(zmq.NOBLOCK)
                event = Event(topic.decode(), unpack(body))
            except zmq.Again:
                return
            except Exception:
                self.log.warning("dropped malformed event")
                continue
            self.executor.submit(event)

    # --- heartbeats

    def _beat_if_due(self) -> None:
        """The inline executor's heartbeat thread, while a handler runs (holding io_lock);
        it does not judge the broker: the main thread reads its messages after."""
        now = time.monotonic()
        if now >= self.next_beat:
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

    # --- shutdown, in reverse order of start-up

    def _shutdown(self) -> None:
        self.executor.stop()
        try:
            self.actor.on_stop()
        except Exception:
            self.log.exception("on_stop failed")
        self._from_outbox()  # replies and events of threads that finished meanwhile
        self.actor._clients.close()
        self.log.info("actor stopped", service=self.actor.service)
        for sock in (self.subscriber, self.broker, self.events):
            if sock is not None:
                sock.close(linger=1000 if sock is self.events else 0)
        signal.set_wakeup_fd(-1)
        wake_r, wake_w, self.wake_r, self.wake_w = self.wake_r, self.wake_w, None, None
        os.close(wake_r)
        os.close(wake_w)


def main(actor_class: type[Actor], endpoint: str | None = None,
         curve: CurveKeys | None = None, program: str | None = None) -> None:
    """Entry point of an actor program (``python -m actors.NAME``); a remote actor gives
    its broker ``endpoint`` and CURVE keys, and its ``program`` name for fault files."""
    cfg = configlib.load_or_exit()
    logs.setup(actor_class.service, cfg.log.level)
    configlib.log_warnings(cfg, logs.Log(actor_class.service))
    fault_file = faults.install_fault_handlers(cfg.home, program or actor_class.service)
    try:
        actor = actor_class(cfg)
        status = Runtime(actor, cfg, endpoint=endpoint, curve=curve).run()
    except Exception:
        logs.Log(actor_class.service).exception("actor failed")
        status = 1
    if status in (0, EXIT_REFUSED):  # a refusal is said in the log; no fault to keep
        faults.remove_fault_file(fault_file)
    sys.exit(status)
