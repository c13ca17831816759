"""What the broker knows: the records of services, their workers and the requests they wait
for or hold, and the broker's own service (``broker``: ping, services) that reports them.

Plain ``__slots__`` records, changed only by ``broker.Broker``: a ``Service`` queues the
``Request`` records no ``Worker`` has taken yet; each worker holds the ones it works on
(``inflight``, by the broker's envelope key) until it replies or is lost.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterable
from typing import Any

from .protocol import error_reply


def _bounded(value: Any, lo: int, hi: int) -> int:
    return min(max(value, lo), hi) if isinstance(value, int) else lo


class Request:
    __slots__ = ("rid", "sock", "client", "id", "service", "frames", "deadline", "idempotent")

    def __init__(self, rid, sock, client, header, frames, deadline):
        self.rid = rid  # envelope frame: the broker's own key for this request
        self.sock = sock  # the frontend socket the client is on
        self.client = client  # its routing id
        self.id = header.get("id")
        self.service = header["service"]
        self.frames = frames  # [header, blob*], forwarded untouched
        self.deadline = deadline  # monotonic
        self.idempotent = bool(header.get("idempotent", False))


class Worker:
    __slots__ = ("key", "sock", "address", "service", "pid", "host", "capacity", "inflight",
                 "expiry", "draining", "label", "last_dispatch", "limit", "peer")

    def __init__(self, sock, address, service, header, expiry, peer=None):
        self.key = (id(sock), address)
        self.sock = sock
        self.address = address
        self.service = service
        self.peer = peer  # the CURVE key of a remote worker; None on the local socket
        pid = header.get("pid")
        # Only a plausible pid: the broker signals nothing, but checks liveness with it.
        self.pid = pid if isinstance(pid, int) and 0 < pid < 1 << 22 else 0
        self.host = str(header.get("host") or ("remote" if peer else ""))[:255]
        self.capacity = _bounded(header.get("capacity"), 1, 1024)
        # Requests it may hold beyond capacity (queued there): pipelining for fast ops.
        self.limit = self.capacity + _bounded(header.get("prefetch"), 0, 10000)
        self.inflight: dict[bytes, Request] = {}
        self.expiry = expiry
        self.draining = False  # sent DISCONNECT: finishes its work, gets no more
        self.label = address.hex()[-8:]
        self.last_dispatch = 0.0


class Service:
    __slots__ = ("name", "workers", "queue", "wanted_at", "requests", "last_activity")

    def __init__(self, name):
        self.name = name
        self.workers: list[Worker] = []
        self.queue: collections.deque[Request] = collections.deque()
        self.wanted_at = 0.0
        self.requests = 0  # total dispatched
        self.last_activity = time.time()


def listing(services: Iterable[Service], dropped: int, undeliverable: int) -> dict:
    """The answer to ``broker.services``: each service's workers, queue and totals, and the
    messages the broker dropped (malformed) or could not deliver."""
    return {
        "services": {
            svc.name: {
                "workers": [{"worker": w.label, "pid": w.pid, "host": w.host,
                             "capacity": w.capacity, "inflight": len(w.inflight),
                             "draining": w.draining} for w in svc.workers],
                "queued": len(svc.queue),
                "requests": svc.requests,
                "last_activity": svc.last_activity,
            } for svc in services
        },
        "dropped": dropped,
        "undeliverable": undeliverable,
    }


def own_reply(header: dict, services: Iterable[Service], dropped: int,
              undeliverable: int) -> dict:
    """The broker's own service answering a request's header: ``ping`` (its pid and clock)
    or ``services`` (the listing above)."""
    op = header.get("op")
    if op == "ping":
        result: Any = {"pid": os.getpid(), "time": time.time()}
    elif op == "services":
        result = listing(services, dropped, undeliverable)
    else:
        return error_reply(header.get("id"), "unknown_op",
                           f"the broker has no op {op!r} (it has: ping, services)")
    return {"id": header.get("id"), "ok": True, "result": result}
