"""Subscribing to events in tests, without missing the first ones: the broker's
(``Events``) and a web session's on the gateway's WebSocket (``ws_events``)."""

from __future__ import annotations

import json
import time

import aiohttp

from broker.client import Subscription

from .service import Service
from .web import WebSession


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


async def ws_events(svc: Service, session: WebSession, timeout: float):
    """An aiohttp session and the session's event socket, once its hello arrived (within
    ``timeout`` seconds); the caller closes both."""
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(svc.url(f"{session.path}/events"),
                               params={"token": session.token})
    hello = json.loads((await ws.receive(timeout=timeout)).data)
    assert hello["topic"] == "hello", hello
    return http, ws
