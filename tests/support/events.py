"""Subscribing to the broker's events in tests, without missing the first ones."""

from __future__ import annotations

import time

from broker.client import Subscription


class Events(Subscription):
    """``broker.client.Subscription`` on a test stack, closed with it."""

    def __init__(self, stack, *topics: bytes):
        super().__init__(stack.events_in, stack.events_out, topics, context=stack.ctx)
        stack.sockets.append(self.sub)

    def next(self, match=lambda topic, body: True, timeout: float = 5.0) -> tuple[str, dict]:
        """The first event (topic, body) for which ``match`` is true."""
        end = time.monotonic() + timeout
        while True:
            event = super().next(max(0.0, end - time.monotonic()))
            if event is None:
                raise AssertionError(f"no matching event within {timeout} s")
            if match(*event):
                return event
