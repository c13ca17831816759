"""Subscribing to the broker's events in tests, without missing the first ones."""

from __future__ import annotations

import time

import zmq

from broker.protocol import pack, unpack


class Events:
    """A SUB socket on events-out.sock that is known to be subscribed.

    A subscription travels SUB -> XPUB -> broker -> XSUB asynchronously, so we publish
    probes into events-in.sock until one comes back: after that nothing is missed.
    """

    PROBE = b"test.probe"

    def __init__(self, stack, *topics: bytes):
        self.sub = stack.socket(zmq.SUB)
        for topic in (*topics, self.PROBE):
            self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        self.sub.connect(stack.events_out)
        self.pub = stack.socket(zmq.PUB)
        self.pub.connect(stack.events_in)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            self.pub.send_multipart([self.PROBE, pack({})])
            if self.sub.poll(50) and self.sub.recv_multipart()[0] == self.PROBE:
                return
        raise AssertionError("the event subscription never became active")

    def next(self, match=lambda topic, body: True, timeout: float = 5.0) -> tuple[str, dict]:
        """The first event (topic, body) for which ``match`` is true; probes are skipped."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0 or not self.sub.poll(left * 1000):
                raise AssertionError(f"no matching event within {timeout} s")
            topic, body = self.sub.recv_multipart()
            if topic == self.PROBE:
                continue
            decoded = unpack(body)
            if match(topic.decode(), decoded):
                return topic.decode(), decoded
