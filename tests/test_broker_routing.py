"""The broker with real processes: routing, worker failures and liveness, errors and
large payloads, events.

Every test starts a real broker and real echo actors in a fresh home with fast heartbeats
(tests/support/broker.py has the timings).
"""

from __future__ import annotations

import os
import signal
import socket as socketlib
import threading
import time
from collections import Counter

import pytest

from broker.protocol import Error
from tests.support.broker import (EXPIRY, INTERVAL, busy_worker, echo_workers, in_thread, joined,
                                  log_text, pids_of)
from tests.support.events import Events
from tests.support.stack import poll_for, wait_service, workers

pytestmark = pytest.mark.timeout(60)


# --- routing


def test_requests_to_a_service_with_three_workers_are_all_answered_and_spread_over_every_worker(
        stack):
    procs, admin = echo_workers(stack, count=3)
    assert pids_of(admin, "echo") == {p.pid for p in procs}

    threads, per_thread = 6, 5
    results: list = []
    errors: list = []
    lock = threading.Lock()

    def worker_thread():
        client = stack.client()  # one Client per thread
        for _ in range(per_thread):
            try:
                result = client.call("echo", "sleep", {"seconds": 0.05}, timeout=10)
            except Exception as exc:
                with lock:
                    errors.append(exc)
            else:
                with lock:
                    results.append(result)

    pool = [threading.Thread(target=worker_thread) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(20)
    assert not errors
    assert len(results) == threads * per_thread == 30
    assert all(r["slept"] == 0.05 for r in results)
    counts = Counter(r["pid"] for r in results)
    assert set(counts) == {p.pid for p in procs}, counts  # every worker got work
    assert min(counts.values()) >= 3, counts  # and no worker was starved
    assert sum(w["inflight"] for w in workers(admin, "echo")) == 0


def test_a_request_sent_before_any_worker_exists_is_answered_once_one_starts(stack):
    stack.broker()
    admin = stack.client()
    events = Events(stack, b"service.wanted")
    sent = time.monotonic()
    thread, out = in_thread(lambda: stack.client().call("echo", "whoami", timeout=10))

    # The broker holds it and asks for the service.
    _, wanted = events.next(lambda topic, body: body.get("service") == "echo")
    assert wanted["queued"] == 1
    poll_for(lambda: admin.call("broker", "services", timeout=5)["services"]
             .get("echo", {}).get("queued") == 1, 5, "the request to be queued")
    assert thread.is_alive()

    time.sleep(max(0.0, 1.0 - (time.monotonic() - sent)))  # the worker starts 1 s later
    proc = stack.echo()
    joined(thread, out, 10)
    assert "error" not in out, out
    assert out["value"] == {"pid": proc.pid, "service": "echo"}
    assert admin.call("broker", "services", timeout=5)["services"]["echo"]["queued"] == 0


def test_a_request_for_a_service_that_never_appears_times_out_at_its_deadline(stack):
    stack.broker()
    client = stack.client()
    client.call("broker", "ping", timeout=5)  # connected
    start = time.monotonic()
    with pytest.raises(Error) as caught:
        client.call("nobody", "anything", timeout=0.5)
    elapsed = time.monotonic() - start
    assert caught.value.code == "timeout"
    # The broker's own answer (the client alone would give up only after 0.5 + 1 s).
    assert "before the deadline" in caught.value.message, caught.value.message
    assert 0.45 <= elapsed < 1.4, elapsed
    assert client.call("broker", "services", timeout=5)["services"]["nobody"]["queued"] == 0


# --- worker failures


def test_an_idempotent_request_whose_worker_is_killed_is_retried_on_another_worker(stack):
    started, admin = echo_workers(stack, count=2)
    procs = {p.pid: p for p in started}

    thread, out = in_thread(lambda: stack.client().call(
        "echo", "sleep", {"seconds": 2.0}, timeout=10, idempotent=True))
    busy = poll_for(lambda: busy_worker(admin, "echo"), 5, "a worker running the request")
    victim = procs.pop(busy["pid"])
    (survivor,) = procs.values()
    victim.kill()  # SIGKILL: no DISCONNECT, the broker notices by heartbeat expiry
    victim.wait(5)

    joined(thread, out, 10)
    assert "error" not in out, out
    assert out["value"] == {"pid": survivor.pid, "slept": 2.0}
    assert pids_of(admin, "echo") == {survivor.pid}


def test_a_non_idempotent_request_whose_worker_is_killed_fails_with_actor_died(stack):
    started, admin = echo_workers(stack, count=2)
    procs = {p.pid: p for p in started}
    events = Events(stack, b"actor.state")

    thread, out = in_thread(lambda: stack.client().call(
        "echo", "sleep", {"seconds": 5.0}, timeout=10, idempotent=False))
    busy = poll_for(lambda: busy_worker(admin, "echo"), 5, "a worker running the request")
    victim = procs.pop(busy["pid"])
    (survivor,) = procs.values()
    killed = time.monotonic()
    victim.kill()
    victim.wait(5)

    joined(thread, out, 10)
    assert isinstance(out.get("error"), Error), out
    assert out["error"].code == "actor_died"
    assert time.monotonic() - killed < EXPIRY + 1.5  # by heartbeat expiry, not the 5 s sleep
    _, state = events.next(lambda t, b: b.get("pid") == victim.pid)
    assert state["state"] == "dead"  # a reaped process is dead, not hung
    assert pids_of(admin, "echo") == {survivor.pid}
    # The survivor never got the failed request and still serves.
    assert busy_worker(admin, "echo") is None
    assert admin.call("echo", "whoami", timeout=5)["pid"] == survivor.pid


def test_a_stopped_worker_is_dropped_as_hung_and_registers_again_when_it_continues(stack):
    (proc,), admin = echo_workers(stack)
    events = Events(stack, b"actor.state")

    os.kill(proc.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    poll_for(lambda: proc.pid not in pids_of(admin, "echo"), EXPIRY + 2, "the worker to expire",
             every=0.02)
    gone_after = time.monotonic() - stopped
    # Dropped after interval * liveness (less the time since its last heartbeat), checked
    # once per interval.
    assert 0.15 < gone_after < EXPIRY + INTERVAL + 0.8, gone_after
    _, state = events.next(lambda t, b: t == "actor.state" and b.get("pid") == proc.pid)
    assert state["state"] == "hung"
    assert state["service"] == "echo"
    assert state["host"] == socketlib.gethostname()

    os.kill(proc.pid, signal.SIGCONT)
    # Its next message gets DISCONNECT from the broker (or it finds the broker silent):
    # either way it connects again and sends READY.
    _, state = events.next(lambda t, b: b.get("pid") == proc.pid and b.get("state") == "ready",
                           timeout=5)
    wait_service(admin, "echo", timeout=5)
    assert pids_of(admin, "echo") == {proc.pid}
    assert admin.call("echo", "whoami", timeout=5)["pid"] == proc.pid


@pytest.mark.parametrize("capacity", [
    1,
    2,
])
def test_sigterm_lets_a_worker_finish_its_request_and_leave_cleanly(stack, capacity):
    (proc,), admin = echo_workers(stack, capacity=capacity)
    events = Events(stack, b"actor.state")

    thread, out = in_thread(lambda: stack.client().call("echo", "sleep", {"seconds": 1.0},
                                                        timeout=10))
    poll_for(lambda: busy_worker(admin, "echo"), 5, "the worker to run the request")
    proc.terminate()

    assert proc.wait(8) == 0
    joined(thread, out, 5)
    assert "error" not in out, out
    assert out["value"] == {"pid": proc.pid, "slept": 1.0}
    _, state = events.next(lambda t, b: b.get("pid") == proc.pid)
    assert state["state"] == "stopped"
    poll_for(lambda: not workers(admin, "echo"), 3, "the registry to forget the worker")
    assert "worker lost" not in log_text(stack.home, "broker")


# --- errors and payloads


def test_error_replies_carry_stable_codes_as_protocol_errors(stack):
    _, client = echo_workers(stack)

    def code_of(op, args=None):
        with pytest.raises(Error) as caught:
            client.call("echo", op, args, timeout=5)
        return caught.value

    assert code_of("no_such_op").code == "unknown_op"
    assert code_of("sleep").code == "invalid_argument"  # "seconds" is missing
    assert code_of("sleep", {"seconds": 0, "extra": 1}).code == "invalid_argument"
    boom = code_of("boom")
    assert boom.code == "internal"
    assert "ZeroDivisionError" in boom.message
    failed = code_of("fail", {"code": "conflict", "message": "asked nicely"})
    assert (failed.code, failed.message) == ("conflict", "asked nicely")
    assert code_of("fail").code == "busy"  # the op's default code
    with pytest.raises(Error) as caught:
        client.call("broker", "no_such_op", timeout=5)
    assert caught.value.code == "unknown_op"
    # The worker is fine after all that.
    assert client.call("echo", "whoami", timeout=5)["service"] == "echo"


def test_a_25_mb_blob_comes_back_byte_for_byte(stack):
    _, client = echo_workers(stack)
    blob = os.urandom(25 * 1024 * 1024)
    small = b"\x00second blob\xff"
    reply = client.request("echo", "echo", {"note": "big"}, blobs=[blob, small], timeout=20)
    assert reply.result["args"] == {"note": "big"}
    assert len(reply.blobs) == 2
    assert reply.blobs[0].bytes == blob
    assert reply.blobs[1].bytes == small


# --- events


def test_an_event_published_by_an_actor_reaches_subscribers_with_its_body(stack):
    (proc,), client = echo_workers(stack)
    events = Events(stack, b"test.news")

    body = {"text": "hello", "n": 42, "items": [1, "two", None], "nested": {"ok": True}}
    assert client.call("echo", "publish_event", {"topic": "test.news.item", "body": body},
                       timeout=5) is True
    topic, received = events.next()
    assert topic == "test.news.item"
    assert {k: received[k] for k in body} == body
    assert isinstance(received["ts"], float)  # the runtime stamps events
    # An unsubscribed topic does not arrive.
    client.call("echo", "publish_event", {"topic": "other.thing", "body": {}}, timeout=5)
    client.call("echo", "publish_event", {"topic": "test.news.last", "body": {"n": 2}},
                timeout=5)
    topic, received = events.next()
    assert (topic, received["n"]) == ("test.news.last", 2)
    assert proc.poll() is None
