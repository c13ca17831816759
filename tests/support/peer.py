"""A hand-made worker for attack replays: it says READY with any header it is given and
answers requests with what ``answer(op, args)`` returns, on ipc or over CURVE tcp.

Unlike the real actor runtime it tells any lie a hostile peer could (another program's
pid, this host's name, a path outside the buffer, HTML with scripts) and can fall silent
without saying goodbye.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import zmq

from broker.client import CurveKeys, dealer
from broker.protocol import DISCONNECT, HEARTBEAT, READY, REPLY, REQUEST, WORKER, pack, unpack


class Peer:
    def __init__(self, endpoint: str, ready: dict, answer: Callable[[str, dict], Any],
                 curve: CurveKeys | None = None, interval: float = 0.2):
        self.ctx = zmq.Context.instance()
        self.sock = dealer(self.ctx, endpoint, curve)
        self.ready = ready
        self.answer = answer
        self.interval = interval
        self.silent = threading.Event()
        self.disconnected = threading.Event()  # the broker sent DISCONNECT
        self.requests: list[tuple[str, dict]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.send_multipart([b"", WORKER, READY, pack(self.ready)])
        while not self.silent.is_set():
            if self.sock.poll(self.interval * 1000):
                frames = self.sock.recv_multipart()
                command = frames[2] if len(frames) > 2 else b""
                if command == DISCONNECT:
                    self.disconnected.set()
                elif command == REQUEST:
                    self._reply(frames[3], unpack(frames[4]))
            if not self.silent.is_set():
                self.sock.send_multipart([b"", WORKER, HEARTBEAT])
        self.sock.close(linger=0)

    def _reply(self, envelope: bytes, header: dict) -> None:
        self.requests.append((header.get("op"), header.get("args") or {}))
        result = self.answer(header.get("op"), header.get("args") or {})
        body = {"id": header.get("id"), "ok": True, "result": result}
        self.sock.send_multipart([b"", WORKER, REPLY, envelope, pack(body)])

    def go_silent(self) -> None:
        """Stop heartbeats and close, as a hung or vanished worker would."""
        self.silent.set()
        self.thread.join(5)
