"""Where handlers run: on the I/O loop's own thread, or on a pool of actor threads.

Both executors take work (``Request``, ``Tick``, ``Event``) from the I/O loop through
``submit()`` and give back outcomes (``Reply``, ``TickDone``) through ``deliver``;
``Handlers.perform`` runs one piece of work against the actor.

``InlineExecutor`` (``capacity == 1``): the handler runs on the main thread itself, with
no hand-off between threads (the lowest latency). The main thread holds ``io_lock``, the
broker socket's guard, except while a handler runs; meanwhile a heartbeat thread takes the
lock and keeps beating, so a long operation does not look dead.

``PoolExecutor`` (``capacity > 1``): that many actor threads take work from a queue; their
outcomes go back to the main thread, which alone sends on the broker socket.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable

from . import logs
from .actor import Actor, Call, Result, operations
from .arguments import check_arguments
from .messages import TICK_DONE, Event, Outcome, Reply, Request, Tick, Work
from .protocol import Error, error_reply, pack


class Handlers:
    """Runs work against the actor; turns whatever a handler raises into a reply."""

    def __init__(self, actor: Actor, log: logs.Log):
        self.actor = actor
        self.log = log
        self.methods = operations(type(actor))

    def perform(self, work: Work) -> Outcome | None:
        """Run one piece of work; the outcome the I/O loop must see, if any."""
        if type(work) is Request:
            return Reply(work.envelope, self.handle(work))
        if type(work) is Tick:
            try:
                self.actor.on_tick()
            except Exception:
                self.log.exception("tick handler failed")
            return TICK_DONE  # even after a failure: the next tick may come
        if type(work) is Event:
            try:
                self.actor.on_event(work.topic, work.body)
            except Exception:
                self.log.exception("event handler failed")
        return None

    def handle(self, request: Request) -> list:
        """Run one operation; returns the reply frames ``[header, blob*]``."""
        header = request.header
        request_id = header.get("id")
        op = header.get("op")
        service = self.actor.service
        frames: list = []
        try:
            if time.time() > request.deadline:
                raise Error("timeout", f"{op} reached the {service} actor after its deadline")
            method = self.methods.get(op)
            if method is None:
                raise Error("unknown_op", f"{service} has no op {op!r} "
                                          f"(it has: {', '.join(sorted(self.methods))})")
            args = header.get("args") or {}
            if not isinstance(args, dict):
                raise Error("invalid_argument", "args must be a map")
            if check_arguments(op, method, args):
                args = {**args, "blobs": request.blobs}
            self.actor._local.call = Call(request_id, op, request.deadline)
            value = method(self.actor, **args)
            if isinstance(value, Result):
                value, frames = value.value, value.blobs
            reply = pack({"id": request_id, "ok": True, "result": value})
        except Error as exc:
            reply = pack({"id": request_id, "ok": False, "error": exc.to_wire()})
            frames = []
        except Exception as exc:
            self.log.exception("operation failed", op=op)
            reply = pack(error_reply(request_id, "internal", f"{service}.{op} failed: {exc!r}"))
            frames = []
        finally:
            self.actor._local.call = None
        return [reply, *frames]


class Executor:
    """Runs handlers for the I/O loop. ``deliver`` is called with each outcome: on the
    main thread (holding ``io_lock``) by the inline executor, on actor threads by the
    pool (it must then hand the outcome over safely)."""

    def __init__(self, handlers: Handlers, deliver: Callable[[Outcome], None], name: str):
        self.handlers = handlers
        self.deliver = deliver
        self.name = name  # thread names start with it
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def submit(self, work: Work) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """After the loop ended: let the threads go (daemon threads: never hang the exit)."""
        for thread in self.threads:
            thread.join(timeout=2.0)


class InlineExecutor(Executor):
    """Handlers on the main thread; a heartbeat thread beats while one runs."""

    def __init__(self, handlers: Handlers, deliver: Callable[[Outcome], None], name: str,
                 io_lock: threading.Lock, beat: Callable[[], None], interval: float):
        super().__init__(handlers, deliver, name)
        self.io_lock = io_lock  # held by the main thread except while a handler runs
        self.beat = beat  # sends a heartbeat if one is due (called holding io_lock)
        self.interval = interval  # seconds between heartbeats
        self.busy = False  # the main thread runs a handler
        self.finished = False  # the loop has ended: the heartbeat thread may leave
        self.threads.append(threading.Thread(target=self._heartbeats, daemon=True,
                                             name=f"{name}-heartbeat"))

    def submit(self, work: Work) -> None:
        self.busy = True
        self.io_lock.release()  # the heartbeat thread may use the socket meanwhile
        outcome = None
        try:
            outcome = self.handlers.perform(work)
        except Exception:  # perform answers every error itself; this is a bug
            self.handlers.log.exception("handler failed")
        finally:
            self.io_lock.acquire()
            self.busy = False
        if outcome is not None:
            self.deliver(outcome)

    def _heartbeats(self) -> None:
        """It keeps beating while we stop too: a handler may still be finishing."""
        while not self.finished:
            time.sleep(self.interval / 4)
            if not self.busy:
                continue
            with self.io_lock:
                if self.busy:
                    self.beat()

    def stop(self) -> None:
        self.finished = True
        super().stop()


class PoolExecutor(Executor):
    """Handlers on ``capacity`` actor threads fed by one queue."""

    def __init__(self, handlers: Handlers, deliver: Callable[[Outcome], None], name: str,
                 capacity: int):
        super().__init__(handlers, deliver, name)
        self.work: queue.SimpleQueue = queue.SimpleQueue()  # None: leave
        self.threads.extend(threading.Thread(target=self._actor_thread, daemon=True,
                                             name=f"{name}-{number}")
                            for number in range(capacity))

    def submit(self, work: Work) -> None:
        self.work.put(work)

    def _actor_thread(self) -> None:
        while True:
            work = self.work.get()
            if work is None:
                return
            try:
                outcome = self.handlers.perform(work)
            except Exception:  # perform answers every error itself; this is a bug
                self.handlers.log.exception("handler failed")
                continue
            if outcome is not None:
                self.deliver(outcome)

    def stop(self) -> None:
        for _ in self.threads:
            self.work.put(None)
        super().stop()
