"""Events of the broker, per session, numbered, kept, and pushed to WebSockets.

Each session the gateway knows has a channel: every event published for the session gets
the channel's next sequence number and goes into a bounded backlog, then to every socket
of the session. A socket that reconnects with ``?since=N&epoch=E`` first gets what it
missed. ``epoch`` names this gateway process: after a restart the numbers start again, so a
client that comes with another epoch is told ``lost`` (and re-reads the page list).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque

import zmq
import zmq.asyncio
from aiohttp import WSCloseCode, web

from broker.protocol import SESSION_CLOSED, SESSION_OPENED, unpack

CLOSE_WAIT = 2.0  # seconds a closing handshake the server started may take
SOCKET_QUEUE = 2000  # messages waiting for one slow socket before it is dropped
# Put in a socket's queue instead of a message: close it with this code and reason.
SESSION_GONE = (4000, b"the session was closed")
TOO_SLOW = (int(WSCloseCode.TRY_AGAIN_LATER), b"too slow: reconnect with since")


class Channel:
    def __init__(self, backlog: int):
        self.seq = 0
        self.backlog: deque[tuple[int, str]] = deque(maxlen=backlog)
        self.queues: set[asyncio.Queue] = set()

    def publish(self, topic: str, data: dict) -> None:
        self.seq += 1
        message = json.dumps({"seq": self.seq, "topic": topic, "data": data,
                              "time": time.time()}, default=str)
        self.backlog.append((self.seq, message))
        for queue in list(self.queues):
            if queue.qsize() >= SOCKET_QUEUE:
                self.queues.discard(queue)
                queue.put_nowait(TOO_SLOW)
            else:
                queue.put_nowait(message)

    def missed(self, since: int | None) -> tuple[list[str], bool]:
        """Messages after ``since`` and whether some of them are no longer kept."""
        if since is None:
            return [], False
        if since > self.seq:
            return [m for _, m in self.backlog], True
        first = self.backlog[0][0] if self.backlog else self.seq + 1
        return [m for seq, m in self.backlog if seq > since], since + 1 < first


class EventHub:
    def __init__(self, events_out: str, backlog: int, log):
        self.events_out = events_out
        self.backlog = backlog
        self.log = log
        self.epoch = os.urandom(4).hex()
        self.channels: dict[str, Channel] = {}
        self.on_session_closed = None  # set by the app: forget the session's token
        self.listeners: list = []  # f(topic, body) for every event that names a session
        self.task: asyncio.Task | None = None

    def channel(self, sid: str) -> Channel:
        channel = self.channels.get(sid)
        if channel is None:
            channel = self.channels[sid] = Channel(self.backlog)
        return channel

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._receive())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def _receive(self) -> None:
        sub = zmq.asyncio.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self.events_out)
        try:
            while True:
                frames = await sub.recv_multipart()
                if len(frames) != 2:
                    continue
                try:
                    body = unpack(frames[1])
                except Exception:
                    continue
                if isinstance(body, dict) and isinstance(body.get("session"), str):
                    self.dispatch(frames[0].decode("utf-8", "replace"), body)
        finally:
            sub.close(linger=0)

    def dispatch(self, topic: str, body: dict) -> None:
        for listener in self.listeners:
            listener(topic, body)
        sid = body["session"]
        channel = self.channels.get(sid)
        if channel is None or topic == SESSION_OPENED:
            # No page of this gateway holds the session; or its opening, which the
            # page learnt from our answer (and which may beat the channel's creation).
            return
        data = {k: v for k, v in body.items() if k != "session"}
        channel.publish(topic, data)
        if topic == SESSION_CLOSED:
            for queue in list(channel.queues):
                queue.put_nowait(SESSION_GONE)
            del self.channels[sid]
            if self.on_session_closed is not None:
                self.on_session_closed(sid)

    async def serve(self, request: web.Request, sid: str, since: int | None,
                    epoch: str | None) -> web.WebSocketResponse:
        """Run one event socket: hello, what was missed, then live events."""
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096, timeout=CLOSE_WAIT)
        await ws.prepare(request)
        channel = self.channel(sid)
        if epoch is not None and epoch != self.epoch:
            replay, lost = channel.missed(0)[0], since is not None
        else:
            replay, lost = channel.missed(since)
        queue: asyncio.Queue = asyncio.Queue()
        hello = {"seq": channel.seq, "topic": "hello", "time": time.time(),
                 "data": {"session": sid, "epoch": self.epoch, "replayed": len(replay),
                          "lost": lost}}
        queue.put_nowait(json.dumps(hello))
        for message in replay:
            queue.put_nowait(message)
        channel.queues.add(queue)
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read(ws))
        writer = loop.create_task(self._write(ws, queue))
        try:
            await asyncio.wait([reader, writer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            channel.queues.discard(queue)
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
            # Our close (session gone, too slow) waits for the client's answer; it must not
            # run beside a receive, or aiohttp drops the connection without waiting.
            ending = None
            if writer.done() and not writer.cancelled() and writer.exception() is None:
                ending = writer.result()
            if not ws.closed:
                code, reason = ending if isinstance(ending, tuple) else (WSCloseCode.OK, b"")
                await ws.close(code=code, message=reason)
        return ws

    @staticmethod
    async def _read(ws: web.WebSocketResponse) -> None:
        async for _ in ws:  # the client has nothing to say; this ends at its close
            pass

    @staticmethod
    async def _write(ws: web.WebSocketResponse, queue: asyncio.Queue) -> tuple | None:
        """Send the queue's messages; answers the (code, reason) the socket must close with."""
        while True:
            message = await queue.get()
            if isinstance(message, tuple):
                return message
            await ws.send_str(message)
