"""Clients of the broker: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

A DEALER socket with LINGER=0; each request carries a correlation id; replies with an id
we are not waiting for (late answers to requests we gave up on) are dropped. Waiting past
the deadline raises ``Error("timeout")``; an error reply raises ``Error`` with its code.

    with Client(home.broker_endpoint) as client:
        result = client.call("monitor", "dumps", {}, timeout=5)
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import zmq
import zmq.asyncio

from .protocol import (CLIENT, DEFAULT_TIMEOUT, REPLY, REQUEST, Error, pack, recv_frames,
                       send_frames, unpack)

PROBE = b"sub.probe"  # published by a Subscription to itself to learn it is active

GRACE = 1.0  # seconds we wait past the deadline for the broker's own timeout reply


@dataclass
class Reply:
    result: Any
    blobs: list = field(default_factory=list)  # zmq.Frame objects (zero-copy); .bytes/.buffer


@dataclass(frozen=True)
class CurveKeys:
    """Keys for a remote (tcp) connection: the broker's public key and our own pair."""
    server_public: bytes
    public: bytes
    secret: bytes


def dealer(ctx: zmq.Context, endpoint: str, curve: CurveKeys | None) -> zmq.Socket:
    """A DEALER connected to the broker: no linger, deep queues, CURVE when given."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 100000)
    sock.setsockopt(zmq.RCVHWM, 100000)
    if curve is not None:
        sock.curve_serverkey = curve.server_public
        sock.curve_publickey = curve.public
        sock.curve_secretkey = curve.secret
    sock.connect(endpoint)
    return sock


def _request_frames(request_id: int, service: str, op: str, args: dict | None,
                    blobs: Sequence, timeout: float, idempotent: bool) -> list:
    header = {"id": request_id, "service": service, "op": op, "args": args or {},
              "deadline": time.time() + timeout, "idempotent": idempotent}
    return [b"", CLIENT, REQUEST, pack(header), *blobs]


def _parse_reply(frames: list) -> tuple[Any, dict, list] | None:
    """(id, header, blobs) of a well-formed reply, else None."""
    if len(frames) < 4 or frames[1].bytes != CLIENT or frames[2].bytes != REPLY:
        return None
    try:
        header = unpack(frames[3].buffer)
    except Exception:
        return None
    if not isinstance(header, dict):
        return None
    return header.get("id"), header, frames[4:]


def _result(header: dict, blobs: list) -> Reply:
    if header.get("ok"):
        return Reply(header.get("result"), blobs)
    error = header.get("error")
    raise Error.from_wire(error if isinstance(error, dict) else {"code": "internal"})


class Client:
    """Blocking client: one request at a time (use one client per thread)."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None,
                 curve: CurveKeys | None = None):
        self.ctx = context or zmq.Context.instance()
        self.sock = dealer(self.ctx, endpoint, curve)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.ids = itertools.count(1)
        self.pid = os.getpid()

    def request(self, service: str, op: str, args: dict | None = None, blobs: Sequence = (),
                timeout: float = DEFAULT_TIMEOUT, idempotent: bool = False) -> Reply:
        """Send one request and wait for its reply.

        Raises:
            Error: the reply's error, or ``timeout`` when none came by the deadline.
        """
        request_id = next(self.ids)
        send_frames(self.sock,
                    _request_frames(request_id, service, op, args, blobs, timeout, idempotent))
        give_up = time.monotonic() + timeout + GRACE
        while True:
            left = give_up - time.monotonic()
            if left <= 0 or not self.poller.poll(left * 1000):
                raise Error("timeout", f"no reply from {service}.{op} within {timeout:g} s")
            parsed = _parse_reply(recv_frames(self.sock))
            if parsed is not None and parsed[0] == request_id:
                return _result(parsed[1], parsed[2])

    def call(self, service: str, op: str, args: dict | None = None, **kwargs: Any) -> Any:
        """``request()`` returning only the result."""
        return self.request(service, op, args, **kwargs).result

    def close(self) -> None:
        self.sock.close(linger=0)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class AsyncClient:
    """asyncio client: many requests in flight over one socket, matched by id."""

    def __init__(self, endpoint: str, context: zmq.asyncio.Context | None = None):
        self.ctx = context or zmq.asyncio.Context.instance()
        self.sock = dealer(self.ctx, endpoint, None)
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future] = {}
        self.reader: asyncio.Task | None = None

    async def request(self, service: str, op: str, args: dict | None = None,
                      blobs: Sequence = (), timeout: float = DEFAULT_TIMEOUT,
                      idempotent: bool = False) -> Reply:
        if self.reader is None:
            self.reader = asyncio.get_running_loop().create_task(self._read())
        request_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        try:
            await self.sock.send_multipart(
                _request_frames(request_id, service, op, args, blobs, timeout, idempotent),
                copy=False)
            header, frames = await asyncio.wait_for(future, timeout + GRACE)
        except asyncio.TimeoutError:
            raise Error("timeout", f"no reply from {service}.{op} within {timeout:g} s") from None
        finally:
            self.waiting.pop(request_id, None)
        return _result(header, frames)

    async def call(self, service: str, op: str, args: dict | None = None, **kwargs: Any) -> Any:
        return (await self.request(service, op, args, **kwargs)).result

    async def _read(self) -> None:
        while True:
            parsed = _parse_reply(await self.sock.recv_multipart(copy=False))
            if parsed is None:
                continue
            future = self.waiting.get(parsed[0])
            if future is not None and not future.done():
                future.set_result((parsed[1], parsed[2]))

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            try:
                await self.reader
            except (asyncio.CancelledError, Exception):
                pass
        self.sock.close(linger=0)


class Subscription:
    """Events from the broker, known to be subscribed before ``__init__`` returns.

    A subscription travels SUB -> broker XPUB -> XSUB asynchronously; until it arrives,
    events are lost. So we publish probes into events-in until one comes back: after that
    nothing we subscribed to is missed (start a job only after this).
    """

    def __init__(self, events_in: str, events_out: str, topics: Sequence[bytes] = (b"",),
                 context: zmq.Context | None = None, timeout: float = 10.0):
        ctx = context or zmq.Context.instance()
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.probe = PROBE + b"." + os.urandom(6).hex().encode()
        for topic in (*topics, self.probe):
            self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        self.sub.connect(events_out)
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.connect(events_in)
        try:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                pub.send_multipart([self.probe, pack({})])
                if self.sub.poll(50) and self.sub.recv_multipart()[0] == self.probe:
                    return
            self.sub.close(linger=0)
            raise Error("not_available", "no events from the broker: is the service running?")
        finally:
            pub.close(linger=0)

    def next(self, timeout: float) -> tuple[str, dict] | None:
        """The next event ``(topic, body)``, or None when none came within ``timeout``."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0 or not self.sub.poll(left * 1000):
                return None
            frames = self.sub.recv_multipart()
            if len(frames) != 2 or frames[0].startswith(PROBE):
                continue
            try:
                body = unpack(frames[1])
            except Exception:
                continue
            if isinstance(body, dict):
                return frames[0].decode("utf-8", "replace"), body

    def close(self) -> None:
        self.sub.close(linger=0)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
