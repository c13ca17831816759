"""The broker's routing, in this process: a Broker in a thread on inproc:// endpoints, with
workers and clients that are raw DEALER sockets speaking the frames of broker/protocol.py.

A worker is alive while the test waits on it (``take()`` answers heartbeats) and silent
otherwise, so most tests use a slow heartbeat (a worker left alone for a while stays); the
expiry tests use a fast one (``fast_harness``: gone after 0.6 s of silence).
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import threading
import time

import pytest
import zmq

from broker import config as configlib
from broker.broker import Broker
from broker.client import Client, Subscription
from broker.protocol import (ACTOR_STATE, CLIENT, DISCONNECT, HEARTBEAT, MAX_WAIT, READY, REPLY,
                             REQUEST, SERVICE_WANTED, WORKER, deadline_of, pack, unpack)
from tests.support.stack import poll_for

SLOW = 1.0  # heartbeat interval of most tests (expiry after 3 s)
FAST = 0.2  # of the expiry tests (expiry after 0.6 s)
LIVENESS = 3
REQUEST_TIMEOUT = 0.5  # [broker] request_timeout: the deadline of a request without one
NAMES = itertools.count()


class Peer:
    """A DEALER on the broker's frontend; ``frames()`` waits for the next message."""

    def __init__(self, ctx: zmq.Context, endpoint: str):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # A send with no broker to take it (its thread already closed its sockets) raises
        # zmq.Again after this, instead of blocking the test until pytest's timeout.
        self.sock.setsockopt(zmq.SNDTIMEO, 5000)
        self.sock.connect(endpoint)

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def frames(self, timeout: float) -> list[bytes] | None:
        return self.sock.recv_multipart() if self.sock.poll(timeout * 1000) else None


class FakeClient(Peer):
    """Sends requests without waiting for their replies (several in flight)."""

    def request(self, rid, service: str = "work", op: str = "do", *blobs: bytes,
                timeout: float = 10, idempotent: bool = False, **header) -> None:
        header = {"id": rid, "service": service, "op": op, "args": {},
                  "deadline": time.time() + timeout, "idempotent": idempotent, **header}
        self.send(b"", CLIENT, REQUEST, pack(header), *blobs)

    def reply(self, timeout: float = 5) -> tuple[dict, list[bytes]]:
        """(header, blobs) of the next reply; fails if none comes in time."""
        frames = self.frames(timeout)
        assert frames is not None, f"no reply within {timeout} s"
        assert frames[:3] == [b"", CLIENT, REPLY], frames
        return unpack(frames[3]), frames[4:]

    def error(self, timeout: float = 5) -> tuple[object, str]:
        header, _ = self.reply(timeout)
        assert header["ok"] is False, header
        return header["id"], header["error"]["code"]


class FakeWorker(Peer):
    """A worker that answers heartbeats only while the test waits on it with ``take()``:
    one left alone goes silent, as a hung process does."""

    def __init__(self, ctx: zmq.Context, endpoint: str, service: str, **ready):
        super().__init__(ctx, endpoint)
        self.send(b"", WORKER, READY, pack({"service": service, "pid": 0, "host": "unit",
                                            **ready}))

    def take(self, timeout: float = 5) -> tuple[bytes, dict, list[bytes]] | None:
        """The next request as (envelope, header, blobs), or None after ``timeout``."""
        end = time.monotonic() + timeout
        while (frames := self.frames(max(0.0, end - time.monotonic()))) is not None:
            assert frames[:2] == [b"", WORKER], frames
            if frames[2] == HEARTBEAT:
                self.send(b"", WORKER, HEARTBEAT)
                continue
            if frames[2] == DISCONNECT:
                # The broker forgot us (a heartbeat answered after our expiry): no request
                # will come.
                return None
            assert frames[2] == REQUEST, frames
            return frames[3], unpack(frames[4]), frames[5:]
        return None

    def answer(self, envelope: bytes, header: dict, result: object, *blobs: bytes) -> None:
        self.send(b"", WORKER, REPLY, envelope,
                  pack({"id": header["id"], "ok": True, "result": result}), *blobs)


class Harness:
    """A broker thread and the sockets of one test; ``close()`` stops and frees them."""

    def __init__(self, cfg: configlib.Config):
        self.ctx = zmq.Context()
        name = f"unit-broker-{next(NAMES)}"
        self.endpoint, self.events_in, self.events_out = (
            f"inproc://{name}-{part}" for part in ("front", "events-in", "events-out"))
        self.broker = Broker(cfg, self.ctx, (self.endpoint, self.events_in, self.events_out))
        self.thread = threading.Thread(target=self.broker.run, name=name, daemon=True)
        self.thread.start()
        self.peers: list = []
        self.control = self.keep(Client(self.endpoint, self.ctx))

    def keep(self, peer):
        self.peers.append(peer)
        return peer

    def client(self) -> FakeClient:
        return self.keep(FakeClient(self.ctx, self.endpoint))

    def worker(self, service: str = "work", **ready) -> FakeWorker:
        """A worker (READY header fields ``ready``), once the broker has registered it."""
        before = self.count(service)
        worker = self.keep(FakeWorker(self.ctx, self.endpoint, service, **ready))
        poll_for(lambda: self.count(service) > before, 5, f"a {service} worker to register")
        return worker

    def subscription(self) -> Subscription:
        return self.keep(Subscription(self.events_in, self.events_out, context=self.ctx,
                                      timeout=5))

    def registry(self) -> dict:
        return self.control.call("broker", "services", timeout=5)

    def workers(self, service: str) -> list[dict]:
        return self.registry()["services"].get(service, {}).get("workers", [])

    def count(self, service: str) -> int:
        return len(self.workers(service))

    def stop(self) -> None:
        """Stop the broker thread (the sockets stay open, to read its last answers)."""
        if not self.thread.is_alive():
            return
        self.broker.stop()
        # A message wakes its poll (which may sleep up to a heartbeat interval) to see it.
        try:
            Peer.send(self.keep(Peer(self.ctx, self.endpoint)), b"", CLIENT, REQUEST,
                      pack({"service": "broker", "op": "ping"}))
        except zmq.Again:
            pass  # it stopped (and closed its sockets) by itself meanwhile
        self.thread.join(5)

    def close(self) -> None:
        self.stop()
        for peer in reversed(self.peers):
            (peer.sock if isinstance(peer, Peer) else peer).close()
        assert not self.thread.is_alive(), "the broker thread did not stop"
        # destroy, not term: a socket with messages nobody will read (a test that failed
        # half-way) must not hold the teardown until pytest's timeout.
        self.ctx.destroy(linger=0)


def running(tmp_path, interval: float):
    """A harness whose heartbeat interval is ``interval``, closed after the test."""
    (tmp_path / "ini").mkdir()
    (tmp_path / "ini" / "DSConfiguration.ini").write_text(
        f"[heartbeat]\ninterval = {interval}\nliveness = {LIVENESS}\n"
        f"[broker]\nrequest_timeout = {REQUEST_TIMEOUT}\n")
    harness = Harness(configlib.load(configlib.Home(tmp_path)))
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def harness(tmp_path):
    yield from running(tmp_path, SLOW)


@pytest.fixture
def fast_harness(tmp_path):
    yield from running(tmp_path, FAST)


def next_event(sub: Subscription, topic: str, timeout: float = 3, **match) -> dict:
    """The next ``topic`` event whose body has the fields ``match``."""
    seen = []
    end = time.monotonic() + timeout
    while (event := sub.next(max(0.0, end - time.monotonic()))) is not None:
        if event[0] == topic and match.items() <= event[1].items():
            return event[1]
        seen.append(event)
    raise AssertionError(f"no {topic} event {match} within {timeout} s; seen: {seen}")


def taker(workers: list[FakeWorker], timeout: float = 5) -> tuple[FakeWorker, tuple]:
    """The worker that receives the next request, and that request."""
    poller = zmq.Poller()
    for worker in workers:
        poller.register(worker.sock, zmq.POLLIN)
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        for sock, _ in poller.poll(left * 1000):
            worker = next(w for w in workers if w.sock is sock)
            request = worker.take(0)
            if request is not None:
                return worker, request
    raise AssertionError(f"no worker received a request within {timeout} s")


# --- dispatch


def test_requests_one_at_a_time_alternate_between_two_idle_workers(harness):
    a, b = harness.worker(), harness.worker()
    client = harness.client()
    takers = []
    for rid in range(6):
        client.request(rid, "work", "do", b"\x00blob %d\xff" % rid)
        worker, (envelope, header, blobs) = taker([a, b])
        assert (header["id"], header["op"], blobs) == (rid, "do", [b"\x00blob %d\xff" % rid])
        takers.append(worker)
        worker.answer(envelope, header, {"n": rid}, b"back %d" % rid)
        reply, blobs = client.reply()
        assert (reply["id"], reply["result"], blobs) == (rid, {"n": rid}, [b"back %d" % rid])
    assert takers == [a, b] * 3


def test_a_request_goes_to_the_least_loaded_worker_and_none_past_its_capacity(harness):
    a, b = harness.worker(capacity=2), harness.worker(capacity=2)
    client = harness.client()
    for rid in range(5):
        client.request(rid)
    held = {a: [], b: []}
    for _ in range(4):
        worker, request = taker([a, b])
        held[worker].append(request)
    assert [len(held[a]), len(held[b])] == [2, 2]
    assert a.take(0.3) is None and b.take(0.3) is None  # the fifth waits in the queue
    assert harness.registry()["services"]["work"]["queued"] == 1
    envelope, header, _ = held[b][0]
    b.answer(envelope, header, "done")
    assert client.reply()[0]["id"] == header["id"]
    _, header, _ = b.take()  # the freed place takes the queued request
    assert header["id"] == 4 and a.take(0.2) is None


def test_a_request_waits_until_a_worker_of_its_service_appears_and_says_so(harness):
    events = harness.subscription()
    client = harness.client()
    client.request("early", "late-service")
    wanted = next_event(events, SERVICE_WANTED)
    assert (wanted["service"], wanted["queued"]) == ("late-service", 1)
    time.sleep(0.3)
    worker = harness.worker("late-service")
    envelope, header, _ = worker.take()
    assert header["id"] == "early"
    worker.answer(envelope, header, "finally")
    assert client.reply()[0]["result"] == "finally"
    assert next_event(events, ACTOR_STATE)["state"] == "ready"


def test_a_request_whose_deadline_passes_in_the_queue_is_answered_timeout_not_dispatched(
        harness):
    client = harness.client()
    started = time.monotonic()
    client.request("short", "nobody", timeout=0.3)
    assert client.error() == ("short", "timeout")
    # Deadlines are checked each quarter interval from the first interval on.
    assert 0.25 <= time.monotonic() - started <= SLOW + 1
    worker = harness.worker("nobody")
    assert worker.take(0.3) is None


@pytest.mark.parametrize("deadline", [float("nan"), "soon", None])
def test_a_request_without_a_usable_deadline_waits_the_default_request_timeout(harness,
                                                                             deadline):
    client = harness.client()
    started = time.monotonic()
    client.request(1, "nobody", deadline=deadline)
    assert client.error(timeout=REQUEST_TIMEOUT + SLOW) == (1, "timeout")
    assert time.monotonic() - started >= REQUEST_TIMEOUT - 0.05


def test_deadline_of_keeps_a_sane_deadline_and_replaces_or_caps_the_others():
    now = time.time()
    assert deadline_of({"deadline": now + 5}, 30) == now + 5
    assert deadline_of({"deadline": now - 5}, 30) == now - 5  # already past: times out
    for bad in (math.nan, math.inf, -math.inf, "1e12", True, None, [1]):
        assert now + 29 < deadline_of({"deadline": bad}, 30) < now + 31, bad
    assert deadline_of({}, 30) < now + 31
    assert deadline_of({"deadline": now + 10 * MAX_WAIT}, 30) <= time.time() + MAX_WAIT


# --- workers that leave


@pytest.mark.parametrize("ready, state", [
    ({"pid": 0}, "dead"),
    ({"pid": os.getpid(), "host": socket.gethostname()}, "hung"),  # alive: the monitor acts
    ({"pid": os.getpid(), "host": "another-host"}, "dead"),  # not a pid of this machine
])
def test_a_silent_worker_s_idempotent_request_is_retried_and_the_other_fails_actor_died(
        fast_harness, ready, state):
    events = fast_harness.subscription()
    silent = fast_harness.worker(capacity=2, **ready)
    client = fast_harness.client()
    client.request("retry me", idempotent=True)
    client.request("do not retry", idempotent=False)
    taken = sorted(silent.take()[1]["id"] for _ in range(2))
    assert taken == ["do not retry", "retry me"]
    assert next_event(events, ACTOR_STATE)["state"] == "ready"
    other = fast_harness.worker()  # it stays alive: take() answers its heartbeats
    other_label = fast_harness.workers("work")[-1]["worker"]
    envelope, header, _ = other.take()  # after the silent one's expiry
    assert header["id"] == "retry me"
    other.answer(envelope, header, "second try")
    assert client.error() == ("do not retry", "actor_died")
    reply, _ = client.reply()
    assert (reply["id"], reply["result"]) == ("retry me", "second try")
    next_event(events, ACTOR_STATE, state="ready", worker=other_label)
    next_event(events, ACTOR_STATE, state=state, pid=ready["pid"])
    assert len(fast_harness.workers("work")) == 1
    # Its late answer is dropped: nobody gets a second reply.
    silent.answer(*silent.take(0) or (b"", {"id": "x"}), "late")


def test_a_worker_that_answers_heartbeats_stays_registered_past_many_expiry_periods(
        fast_harness):
    worker = fast_harness.worker()
    label = fast_harness.workers("work")[0]["worker"]
    assert worker.take(FAST * LIVENESS * 4) is None  # answering heartbeats meanwhile
    assert [w["worker"] for w in fast_harness.workers("work")] == [label]


def test_a_worker_that_says_disconnect_finishes_its_request_and_gets_no_new_one(harness):
    leaving, staying = harness.worker(), harness.worker()
    client = harness.client()
    client.request(1)
    worker, (envelope, header, _) = taker([leaving, staying])
    if worker is staying:
        leaving, staying = staying, leaving
    leaving.send(b"", WORKER, DISCONNECT)
    assert leaving.frames(5)[2] == DISCONNECT  # the broker's acknowledgement
    client.request(2)
    assert staying.take()[1]["id"] == 2
    assert leaving.take(0.2) is None
    leaving.answer(envelope, header, "finished")
    assert client.reply()[0]["result"] == "finished"
    poll_for(lambda: harness.count("work") == 1, 5, "the leaving worker to be forgotten")


# --- input the broker must survive


def test_malformed_messages_are_counted_and_dropped_and_routing_goes_on(harness):
    worker = harness.worker()
    raw = harness.keep(Peer(harness.ctx, harness.endpoint))
    dropped = [
        [b"x"],  # too few frames
        [b"not empty", CLIENT, REQUEST, pack({"service": "work", "op": "do"})],
        [b"", b"SBX9", REQUEST, b"x"],  # unknown protocol tag
        [b"", CLIENT, REPLY, pack({})],  # a client does not send replies
        [b"", CLIENT, REQUEST],  # no header
        [b"", CLIENT, REQUEST, b"\xc1"],  # not msgpack
        [b"", CLIENT, REQUEST, pack([1, 2])],  # not a map
        [b"", WORKER, READY, b"\xc1"],  # a READY header that is not msgpack
        [b"", WORKER, READY, pack({"service": "broker"})],  # nobody serves the broker
        [b"", WORKER, READY, pack({"service": ""})],
    ]
    for frames in dropped:
        raw.send(*frames)
    # A bad READY is told to go away; the peer is not registered.
    for _ in range(3):
        frames = raw.frames(5)
        assert frames == [b"", WORKER, DISCONNECT], frames
    raw.send(b"", CLIENT, REQUEST, pack({"id": 9, "service": 3, "op": "do"}))
    assert raw.frames(5)[:3] == [b"", CLIENT, REPLY]
    raw.send(b"", CLIENT, REQUEST, pack({"id": 10, "service": "broker", "op": "nope"}))
    assert unpack(raw.frames(5)[3])["error"]["code"] == "unknown_op"
    # A worker message from a peer the broker does not know: register again, it says.
    raw.send(b"", WORKER, HEARTBEAT)
    assert raw.frames(5) == [b"", WORKER, DISCONNECT]
    # A reply for nothing (late, or invented) from a registered worker goes nowhere.
    worker.answer(b"\x00" * 8, {"id": "invented"}, "nobody asked")
    worker.send(b"", WORKER, REPLY)  # without envelope and header: dropped too
    # The worker's socket is read apart from ours: wait for its last message to count.
    poll_for(lambda: harness.registry()["dropped"] >= len(dropped) + 1, 5, "the drops")
    registry = harness.registry()
    assert registry["dropped"] == len(dropped) + 1, registry
    assert list(registry["services"]) == ["work"]  # no bad READY registered anything
    assert len(registry["services"]["work"]["workers"]) == 1
    client = harness.client()
    client.request("after", "work", "do")
    envelope, header, _ = worker.take()
    worker.answer(envelope, header, "still routing")
    reply, _ = client.reply()
    assert (reply["id"], reply["result"]) == ("after", "still routing")
    assert raw.frames(0.2) is None  # the invented reply reached nobody


def test_a_request_without_a_service_or_op_is_answered_bad_request(harness):
    client = harness.client()
    for rid, header in enumerate([{"op": "do"}, {"service": "work"}, {"service": "", "op": "x"},
                                  {"service": "work", "op": 5}]):
        client.send(b"", CLIENT, REQUEST, pack({"id": rid, **header}))
        assert client.error() == (rid, "bad_request")
    assert harness.registry()["dropped"] == 0


def test_a_second_ready_from_a_registered_worker_drops_it_and_fails_its_request(harness):
    worker = harness.worker()
    client = harness.client()
    client.request("held")
    assert worker.take()[1]["id"] == "held"
    worker.send(b"", WORKER, READY, pack({"service": "work"}))
    assert client.error() == ("held", "actor_died")
    poll_for(lambda: harness.count("work") == 0, 5, "the worker to be dropped")


# --- shutting down


def test_on_stop_the_broker_answers_every_queued_and_held_request_not_available(harness):
    worker = harness.worker()
    client = harness.client()
    client.request("held")
    client.request("queued", "nobody")
    assert worker.take()[1]["id"] == "held"
    poll_for(lambda: harness.registry()["services"].get("nobody", {}).get("queued"), 5,
             "the request to be queued")
    harness.stop()
    assert sorted([client.error(), client.error()]) == [("held", "not_available"),
                                                        ("queued", "not_available")]
