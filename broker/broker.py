"""The broker: routes requests to services, relays events, tracks worker liveness.

One poll loop over the frontend ROUTER (ipc, and the optional CURVE tcp endpoint) and the
XSUB/XPUB event pair. Each pass handles what arrived, then (once per heartbeat interval)
expires silent workers, times out queued requests and sends heartbeats. Expiry is
``interval * liveness``, defined once in ``Broker.__init__``. Any message from a worker
counts as a heartbeat.

The broker never dies on input: a malformed frame is counted, logged (rate-limited) and
dropped. Run with ``python -m broker.broker``. The records it keeps (services, workers,
requests) and its own service (``broker``: ping, services) are in ``registry.py``; the
sockets it binds are made in ``sockets.py``.
"""

from __future__ import annotations

import collections
import itertools
import os
import signal
import socket as socketlib
import time
from typing import Any

import zmq

from . import config as configlib
from . import logs
from .protocol import (ACTOR_STATE, BROKER_SERVICE, CLIENT, DISCONNECT, HEARTBEAT, NOBLOCK,
                       READY, REPLY, REQUEST, SERVICE_WANTED, WORKER, deadline_of, error_reply,
                       pack, recv_frames, send_frames, unpack)
from .faults import install_fault_handlers, remove_fault_file
from .procutil import pid_alive
from .registry import Request, Service, Worker, own_reply
from .sockets import open_sockets

log = logs.Log("broker")

WANTED_EVERY = 1.0  # seconds between two service.wanted events for one service


def _request_id(frames: list) -> Any:
    try:
        return unpack(frames[4].buffer).get("id")
    except Exception:
        return None


class Broker:
    def __init__(self, cfg: configlib.Config, context: zmq.Context | None = None,
                 endpoints: tuple[str, str, str] | None = None):
        self.cfg = cfg
        self.home = cfg.home
        # (frontend, events in, events out): the home's ipc sockets, or others given by a
        # caller that runs the broker in its own process (inproc:// in the unit tests).
        self.ipc = endpoints is None
        self.endpoints = endpoints or (self.home.broker_endpoint, self.home.events_in,
                                       self.home.events_out)
        self.interval = cfg.heartbeat.interval
        self.expiry = cfg.heartbeat.interval * cfg.heartbeat.liveness  # the one definition
        self.default_timeout = cfg.broker.request_timeout
        self.ctx = context or zmq.Context.instance()
        self.services: dict[str, Service] = {}
        self.workers: dict[tuple, Worker] = {}
        self.rids = (i.to_bytes(8, "big") for i in itertools.count(1))
        self.hostname = socketlib.gethostname()
        self.running = True
        self.dropped = 0  # malformed messages dropped since the last report
        self.dropped_total = 0
        self.undeliverable = 0  # messages a peer could not take (gone, or not reading)
        self.drop_reported = 0.0
        self.refused_reported = 0.0
        sockets = open_sockets(self.ctx, cfg, self.endpoints, self.ipc)
        self.frontends = sockets.frontends
        self.remote = sockets.remote  # the CURVE tcp socket, if any
        self.rights = sockets.rights  # Z85 key -> its curve_clients entry
        self.auth = sockets.auth
        self.events_in = sockets.events_in
        self.events_out = sockets.events_out
        self.poller = zmq.Poller()
        for sock in (*self.frontends, self.events_in, self.events_out):
            self.poller.register(sock, zmq.POLLIN)

    # --- main loop

    def run(self) -> None:
        log.info("broker started", endpoint=self.endpoints[0], pid=os.getpid())
        next_beat = next_heartbeat = time.monotonic() + self.interval
        poll = self.poller.poll
        spin = self.cfg.broker.spin_us / 1e6
        last_activity = 0.0
        while self.running:
            now = time.monotonic()
            # Right after traffic, poll without sleeping for a moment: the next message
            # of a burst is picked up without paying for a wake-up ([broker] spin_us).
            timeout = 0.0 if now - last_activity < spin else max(0.0, next_beat - now)
            try:
                events = poll(timeout * 1000)
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EINTR:
                    continue
                raise
            if events:
                last_activity = time.monotonic()
            for sock, _ in events:
                if sock is self.events_in:
                    self._relay(self.events_in, self.events_out)
                elif sock is self.events_out:
                    self._relay(self.events_out, self.events_in)
                else:
                    self._drain(sock)
            now = time.monotonic()
            if now >= next_beat:
                # Expiry and deadlines are checked four times per interval, so a hang is
                # seen within expiry + interval/4; heartbeats go out once per interval.
                try:
                    self._tick(now, beat=now >= next_heartbeat)
                except Exception:  # a bug here must not take routing down with it
                    log.exception("heartbeat pass failed")
                if now >= next_heartbeat:
                    next_heartbeat = now + self.interval
                next_beat = now + self.interval / 4
        self.close()

    def _drain(self, sock: zmq.Socket) -> None:
        # Up to a batch per pass so one busy peer cannot starve heartbeats.
        remote = sock is self.remote
        for _ in range(1000):
            try:
                frames = recv_frames(sock, NOBLOCK)
            except zmq.Again:
                return
            try:
                if remote:
                    self._route_remote(sock, frames)
                else:
                    self._route(sock, frames, None)
            except Exception as exc:  # the broker never dies on input
                self._drop("unhandled input", error=repr(exc))

    def _route_remote(self, sock: zmq.Socket, frames: list) -> None:
        """A tcp message: only what its key's curve_clients entry allows."""
        peer = self.rights.get(frames[-1].get("User-Id"))
        if peer is None:
            return self._drop("no known CURVE key on a tcp message")
        if sum(len(frame) for frame in frames) > self.cfg.broker.tcp_max_message_mb << 20:
            return self._drop("tcp message over tcp_max_message_mb", key=peer.key[:8])
        if len(frames) >= 4 and frames[2].bytes == CLIENT and not peer.client:
            self._refused(peer, "request", "its curve_clients entry does not say client")
            return self._reply_error(
                sock, frames[0].bytes, _request_id(frames), "forbidden", "this CURVE key may "
                "not send requests; add client to its [broker] curve_clients entry to allow it")
        self._route(sock, frames, peer)

    def _refused(self, peer: configlib.CurveClient, what: str, why: str, **fields) -> None:
        now = time.monotonic()
        if now - self.refused_reported >= 5.0:
            self.refused_reported = now
            log.warning(f"remote {what} refused", key=peer.key[:8], reason=why, **fields)

    def _relay(self, src: zmq.Socket, dst: zmq.Socket) -> None:
        for _ in range(1000):
            try:
                frames = recv_frames(src, NOBLOCK)
            except zmq.Again:
                return
            self._send(dst, frames)  # XPUB drops for slow subscribers, never blocks

    def _drop(self, why: str, **fields: Any) -> None:
        self.dropped += 1
        self.dropped_total += 1
        now = time.monotonic()
        if now - self.drop_reported >= 5.0:
            log.warning("dropped malformed message", reason=why, since_last=self.dropped,
                        total=self.dropped_total, **fields)
            self.dropped = 0
            self.drop_reported = now

    def _route(self, sock: zmq.Socket, frames: list, peer) -> None:
        if len(frames) < 4 or frames[1].bytes != b"":
            return self._drop("too few frames or no empty delimiter")
        address = frames[0].bytes
        tag = frames[2].bytes
        command = frames[3].bytes
        if tag == CLIENT:
            if command == REQUEST and len(frames) >= 5:
                return self._client_request(sock, address, frames[4:])
            return self._drop("bad client command")
        if tag == WORKER:
            return self._worker_message(sock, address, command, frames[4:], peer)
        return self._drop("unknown protocol tag")

    # --- clients

    def _client_request(self, sock, address, frames) -> None:
        try:
            header = unpack(frames[0].buffer)
        except Exception:
            return self._drop("request header is not msgpack")
        if not isinstance(header, dict):
            return self._drop("request header is not a map")
        service = header.get("service")
        if not isinstance(service, str) or not service or not isinstance(header.get("op"), str):
            return self._reply_error(sock, address, header.get("id"), "bad_request",
                                     "a request needs a service and an op (strings)")
        now = time.monotonic()
        wait = max(deadline_of(header, self.default_timeout) - time.time(), 0.0)
        if service == BROKER_SERVICE:
            reply = own_reply(header, self.services.values(), self.dropped_total,
                              self.undeliverable)
            return self._send(sock, [address, b"", CLIENT, REPLY, pack(reply)])
        request = Request(next(self.rids), sock, address, header, frames, now + wait)
        svc = self.services.get(service) or self._service(service)
        svc.queue.append(request)
        svc.last_activity = time.time()
        self._dispatch(svc)
        self._want(svc, now)

    def _service(self, name: str) -> Service:
        svc = self.services[name] = Service(name)
        return svc

    def _want(self, svc: Service, now: float) -> None:
        """Publish service.wanted when requests wait and no worker takes new work."""
        if not svc.queue or any(not w.draining for w in svc.workers):
            return
        if now - svc.wanted_at >= WANTED_EVERY:
            svc.wanted_at = now
            self.publish(SERVICE_WANTED, {"service": svc.name, "queued": len(svc.queue)})

    def _send(self, sock: zmq.Socket, frames: list) -> bool:
        """Send without ever blocking the loop; False when the peer cannot take it.

        A peer that has gone (EHOSTUNREACH) or stopped reading (its queue is at the
        high-water mark: EAGAIN) loses this message - never the broker its liveness.
        """
        try:
            send_frames(sock, frames, NOBLOCK)
            return True
        except zmq.ZMQError:
            self.undeliverable += 1
            return False

    def _send_client(self, request: Request, frames: list) -> None:
        self._send(request.sock, [request.client, b"", CLIENT, REPLY, *frames])

    def _reply_error(self, sock, address, request_id, code, message) -> None:
        self._send(sock, [address, b"", CLIENT, REPLY,
                          pack(error_reply(request_id, code, message))])

    def _fail(self, request: Request, code: str, message: str) -> None:
        self._send_client(request, [pack(error_reply(request.id, code, message))])

    # --- dispatch

    def _dispatch(self, svc: Service) -> None:
        while svc.queue:
            worker = None
            best = None
            for candidate in svc.workers:
                if len(candidate.inflight) >= candidate.limit or candidate.draining:
                    continue
                # Least loaded first, then the one that waited longest: fair over workers.
                rank = (len(candidate.inflight) / candidate.capacity, candidate.last_dispatch)
                if best is None or rank < best:
                    worker, best = candidate, rank
            if worker is None:
                return
            request = svc.queue.popleft()
            if request.deadline <= time.monotonic():
                self._fail(request, "timeout", f"no {svc.name} worker answered in time")
                continue
            if not self._send(worker.sock, [worker.address, b"", WORKER, REQUEST, request.rid,
                                            *request.frames]):
                svc.queue.appendleft(request)
                self._remove_worker(worker, "dead", "unreachable or not reading")
                continue
            worker.inflight[request.rid] = request
            worker.last_dispatch = time.monotonic()
            svc.requests += 1

    # --- workers

    def _worker_message(self, sock, address, command, frames, peer) -> None:
        key = (id(sock), address)
        worker = self.workers.get(key)
        if worker is not None and peer is not None and worker.peer != peer.key:
            # A routing id is the peer's choice: another key took this one's.
            return self._drop("worker message from another CURVE key", worker=worker.label)
        if command == READY:
            return self._worker_ready(sock, address, worker, frames, peer)
        if worker is None:
            # A worker we do not know (the broker restarted): tell it to register again.
            if command != DISCONNECT:
                self._send_worker(sock, address, DISCONNECT)
            return
        worker.expiry = time.monotonic() + self.expiry
        if command == REPLY:
            if len(frames) < 2:
                return self._drop("reply without envelope and header", worker=worker.label)
            request = worker.inflight.pop(frames[0].bytes, None)
            if request is None:
                return  # late reply to a request already answered or failed
            self._send_client(request, frames[1:])
            svc = self.services[worker.service]
            svc.last_activity = time.time()
            if worker.draining and not worker.inflight:
                self._forget(worker)
            else:
                self._dispatch(svc)
        elif command == HEARTBEAT:
            pass
        elif command == DISCONNECT:
            # It finishes what it has, takes nothing new; we acknowledge so it may leave.
            worker.draining = True
            self._send_worker(sock, address, DISCONNECT)
            self._publish_state(worker, "stopped")
            if not worker.inflight:
                self._forget(worker)
            self._dispatch(self.services[worker.service])
        else:
            self._drop("unknown worker command", worker=worker.label)

    def _worker_ready(self, sock, address, worker, frames, peer) -> None:
        if worker is not None:
            self._drop("READY from a registered worker", worker=worker.label)
            return self._remove_worker(worker, "dead", "protocol error")
        try:
            header = unpack(frames[0].buffer) if frames else None
            service = header["service"]
            if not isinstance(service, str) or not service or service == BROKER_SERVICE:
                raise ValueError
            worker = Worker(sock, address, service, header, time.monotonic() + self.expiry,
                            peer and peer.key)
        except Exception:
            self._drop("bad READY header")
            return self._send_worker(sock, address, DISCONNECT)
        if peer is not None and service not in peer.services:
            self._refused(peer, "worker", "its curve_clients entry does not name the service",
                          service=service[:64], allowed=",".join(peer.services))
            return self._send_worker(sock, address, DISCONNECT)
        self.workers[worker.key] = worker
        svc = self.services.get(service) or self._service(service)
        svc.workers.append(worker)
        log.info("worker ready", service=service, worker=worker.label, worker_pid=worker.pid,
                 host=worker.host, capacity=worker.capacity)
        self._publish_state(worker, "ready")
        self._dispatch(svc)

    def _send_worker(self, sock, address, command, *frames) -> None:
        self._send(sock, [address, b"", WORKER, command, *frames])

    def _remove_worker(self, worker: Worker, state: str, reason: str) -> None:
        """A worker is gone without finishing: re-queue or fail what it held."""
        svc = self.services[worker.service]
        self._forget(worker)
        retry = []
        for request in worker.inflight.values():
            if request.idempotent:
                retry.append(request)
            else:
                self._fail(request, "actor_died",
                           f"the {worker.service} actor died while handling the request "
                           f"({reason}); it was not retried because it is not idempotent")
        svc.queue.extendleft(reversed(retry))
        worker.inflight.clear()
        log.warning("worker lost", service=worker.service, worker=worker.label,
                    worker_pid=worker.pid, host=worker.host, remote=worker.peer is not None,
                    state=state, reason=reason, requeued=len(retry))
        self._publish_state(worker, state)
        self._dispatch(svc)
        self._want(svc, time.monotonic())

    def _forget(self, worker: Worker) -> None:
        self.workers.pop(worker.key, None)
        svc = self.services[worker.service]
        if worker in svc.workers:
            svc.workers.remove(worker)

    # --- timers

    def _tick(self, now: float, beat: bool) -> None:
        for worker in list(self.workers.values()):
            if worker.expiry <= now:
                # A remote worker's pid and host are its word: never "hung" (which has
                # the monitor signal and kill that pid here).
                local = worker.peer is None and worker.host == self.hostname and worker.pid > 0
                state = "hung" if local and pid_alive(worker.pid) else "dead"
                self._remove_worker(worker, state, "no heartbeat")
            elif beat:
                self._send_worker(worker.sock, worker.address, HEARTBEAT)
        for svc in self.services.values():
            if not svc.queue:
                continue
            keep = collections.deque()
            for request in svc.queue:
                if request.deadline <= now:
                    self._fail(request, "timeout",
                               f"no {svc.name} worker was available before the deadline")
                else:
                    keep.append(request)
            svc.queue = keep
            self._want(svc, now)

    # --- events

    def publish(self, topic: str, body: dict) -> None:
        body.setdefault("ts", time.time())
        self._send(self.events_out, [topic.encode(), pack(body)])

    def _publish_state(self, worker: Worker, state: str) -> None:
        self.publish(ACTOR_STATE, {"service": worker.service, "worker": worker.label,
                                   "pid": worker.pid, "host": worker.host, "state": state,
                                   "remote": worker.peer is not None})

    def stop(self, *_: Any) -> None:
        self.running = False

    def close(self) -> None:
        # Answer everything still waiting, then leave (reverse order of start-up).
        for svc in self.services.values():
            for request in svc.queue:
                self._fail(request, "not_available", "the broker is shutting down")
            for worker in svc.workers:
                for request in worker.inflight.values():
                    self._fail(request, "not_available", "the broker is shutting down")
        log.info("broker stopped")
        if self.auth is not None:
            self.auth.stop()
        for sock in (self.events_out, self.events_in, *reversed(self.frontends)):
            sock.close(linger=0)


def main() -> None:
    cfg = configlib.load_or_exit()
    logs.setup("broker", cfg.log.level)
    configlib.log_warnings(cfg, log)
    fault_file = install_fault_handlers(cfg.home, "broker")
    broker = Broker(cfg)
    signal.signal(signal.SIGTERM, broker.stop)
    signal.signal(signal.SIGINT, broker.stop)
    broker.run()
    remove_fault_file(fault_file)


if __name__ == "__main__":
    main()
