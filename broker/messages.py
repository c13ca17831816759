"""What the runtime's threads hand each other: small typed records.

Work goes from the I/O loop to the executor (``Request``, ``Tick``, ``Event``); outcomes
come back from actor threads and from threads an actor starts itself (``Reply``,
``Publish``, ``TickDone``). Only the I/O loop touches the broker and event sockets (zmq
sockets are single-threaded), so everything another thread wants sent travels as one of
these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Request:
    """A request from the broker, for one ``@operation``."""
    envelope: bytes  # the broker's route back to the client
    header: dict  # {id, service, op, args, deadline, idempotent}
    deadline: float  # UNIX time the client stops waiting
    blobs: list  # raw frames after the header (zmq.Frame, zero-copy)


@dataclass(slots=True)
class Tick:
    """Time for ``on_tick()`` (at most one pending at a time)."""


@dataclass(slots=True)
class Event:
    """An event matching the actor's ``subscriptions``, for ``on_event()``."""
    topic: str
    body: dict


Work = Request | Tick | Event


@dataclass(slots=True)
class Reply:
    """A request's answer, to send to the broker."""
    envelope: bytes
    frames: list  # [header, blob*]


@dataclass(slots=True)
class Publish:
    """An event to publish."""
    frames: list  # [topic, body]


@dataclass(slots=True)
class TickDone:
    """``on_tick()`` returned: the next tick may be handed out."""


Outcome = Reply | Publish | TickDone

TICK = Tick()
TICK_DONE = TickDone()
