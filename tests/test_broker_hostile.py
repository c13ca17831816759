"""The broker with real processes against hostile input: malformed messages, CURVE keys
that are not listed, workers and clients that misbehave.

Every test starts a real broker and real echo actors in a fresh home with fast heartbeats
(tests/support/broker.py has the timings).
"""

from __future__ import annotations

import math
import os
import random
import socket as socketlib
import stat
import time

import pytest
import zmq

from broker.client import Client, CurveKeys
from broker.protocol import (CLIENT, DISCONNECT, HEARTBEAT, READY, REPLY, REQUEST, WORKER, Error,
                             pack, unpack)
from tests.support.broker import EXPIRY, INTERVAL, LIVENESS, log_text
from tests.support.stack import free_port, poll_for, wait_service, write_ini

pytestmark = pytest.mark.timeout(60)


# --- hostile input


def _fuzz_messages(rng: random.Random, count: int, huge: bytes):
    """``count`` multipart messages a DEALER could send, none of them a sane request."""
    hostname = socketlib.gethostname().encode()

    def junk(lo=0, hi=48):
        return rng.randbytes(rng.randint(lo, hi))

    def bad_msgpack():
        return rng.choice([
            junk(1, 32), b"\xc1", b"\x92\x01", b"\x81\xa1", b"\xdd\xff\xff\xff\xff",
            b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc6\x7f\xff\xff\xff",
            pack({"id": 1}) + b"extra", b"",
        ])

    def not_a_map():
        return pack(rng.choice([
            1, -1, 2**63, 3.5, None, True, "service", b"bytes", [1, 2, 3],
            ["echo", "whoami"], [{"service": "echo"}], [[[[]]]],
        ]))

    def odd_value():
        return rng.choice([
            None, True, 0, -1, 2**31 - 1, -(2**63), 2**64 - 1, 1.5, -1e300, math.inf,
            -math.inf, "", "x" * 300, "\u2603", b"\x00\xff", [], [1, [2]], {}, {"a": {"b": 1}},
            {1: 2}, {b"k": b"v"},
        ])

    def request_header():
        header = {
            "id": odd_value(),
            "service": rng.choice([None, "", 7, b"echo", ["echo"], "broker", "echo",
                                   f"fuzz-{rng.randrange(50)}"]),
            "op": rng.choice([None, "", 3, b"ping", "ping", "services", "echo",
                              f"zz{rng.randrange(1000)}"]),
            "args": rng.choice([None, [], "args", {"x": odd_value()}, {1: 2},
                                {"self": 1}, {"blobs": 2}]),
            "deadline": rng.choice([None, "soon", [], -1, 0, time.time() - 5,
                                    time.time() + 0.3, 2**63, -math.inf, math.inf, True]),
            "idempotent": odd_value(),
        }
        for key in rng.sample(sorted(header), rng.randrange(len(header) + 1)):
            del header[key]  # some keys missing, sometimes all of them
        if header.get("service") == "echo" and header.get("op") not in (None, "", 3):
            header["op"] = f"zz{rng.randrange(1000)}"  # never make the real worker sleep
        return pack(header)

    def ready_header():
        header = {
            "service": rng.choice([None, "", "broker", 5, ["x"], f"fuzz-{rng.randrange(50)}"]),
            # pids within what a real process may have: see the out-of-range pid test.
            "pid": rng.choice([None, "x", [], -5, 0, 1, 2**31 - 1, rng.randrange(1, 2**22)]),
            "host": rng.choice([None, "", hostname.decode(), "elsewhere", 42, ["h"]]),
            "capacity": rng.choice([None, 0, -3, 10**6, "two", [], 1.5, math.inf]),
            "prefetch": rng.choice([None, 0, -3, 10**9, "x", math.nan]),
            "version": odd_value(),
        }
        for key in rng.sample(sorted(header), rng.randrange(len(header) + 1)):
            del header[key]
        return pack(header)

    commands = [READY, REQUEST, REPLY, HEARTBEAT, DISCONNECT, b"", b"\x00", b"\x06", b"\xff",
                b"\x01\x02"]
    tags = [b"", b"SBC", b"SBC2", b"SBW2", b"sbc1", b"SBW1 ", b"\x00\x00\x00\x00", b"HTTP"]
    huge_left = 3
    for _ in range(count):
        kind = rng.randrange(11)
        if kind == 0:  # any number of random frames
            n = rng.randint(0, 6)
            frames = [junk() for _ in range(n)] or [b""]
        elif kind == 1:  # a wrong protocol tag
            frames = [b"", rng.choice(tags), rng.choice(commands), *(junk() for _ in range(2))]
        elif kind == 2:  # no empty delimiter, or the tag where the delimiter goes
            frames = [rng.choice([CLIENT, WORKER, b"x"]), REQUEST, request_header()]
        elif kind == 3:  # client: wrong command, or no header at all
            frames = [b"", CLIENT, rng.choice(commands)][:rng.randint(2, 3)]
            if frames[-1] != REQUEST and rng.random() < 0.5:
                frames.append(request_header())
        elif kind == 4:  # client: the header is not msgpack
            frames = [b"", CLIENT, REQUEST, bad_msgpack(), *(junk() for _ in range(2))]
        elif kind == 5:  # client: msgpack, but not a map
            frames = [b"", CLIENT, REQUEST, not_a_map()]
        elif kind == 6:  # client: a map with missing, mistyped or odd fields
            frames = [b"", CLIENT, REQUEST, request_header(),
                      *(junk() for _ in range(rng.randint(0, 2)))]
        elif kind == 7:  # worker commands from peers the broker does not know (or knows)
            frames = [b"", WORKER, rng.choice([REPLY, HEARTBEAT, DISCONNECT, b"\x09", b""]),
                      *(rng.choice([junk(8, 8), request_header(), bad_msgpack()])
                        for _ in range(rng.randint(0, 3)))]
        elif kind == 8:  # READY with a bad (or sometimes a valid) header
            frames = [b"", WORKER, READY,
                      rng.choice([ready_header, bad_msgpack, not_a_map])()][:rng.randint(3, 4)]
        elif kind == 9:  # more frames than any command has
            frames = [b"", rng.choice([CLIENT, WORKER]), rng.choice(commands),
                      *(junk(0, 8) for _ in range(rng.randint(3, 6)))]
        else:  # huge frames, a few times
            if huge_left:
                huge_left -= 1
                frames = rng.choice([[b"", CLIENT, REQUEST, huge],
                                     [b"", WORKER, READY, huge],
                                     [b"", huge, REQUEST, b"x"],
                                     [b"", CLIENT, REQUEST,
                                      pack({"service": "fuzz-huge", "op": "x",
                                            "deadline": time.time() + 0.5}), huge]])
            else:
                frames = [b"", CLIENT, REQUEST, request_header()]
        yield frames


def test_ten_thousand_malformed_messages_neither_kill_nor_confuse_the_broker(stack):
    broker = stack.broker()
    stack.echo()
    client = stack.client()
    wait_service(client, "echo")

    seed = random.randrange(2**32)
    rng = random.Random(seed)
    dealers = []
    for _ in range(20):
        dealer = stack.socket(zmq.DEALER)
        dealer.setsockopt(zmq.SNDHWM, 0)
        dealer.connect(stack.endpoint)
        dealers.append(dealer)
    huge = rng.randbytes(16 * 1024 * 1024)
    sent = 0
    for frames in _fuzz_messages(rng, 10_000, huge):
        rng.choice(dealers).send_multipart(frames)
        sent += 1
    assert sent == 10_000

    # Sockets that do not speak the broker's protocol at all.
    req = stack.socket(zmq.REQ)
    req.connect(stack.endpoint)
    req.send(b"hello broker")  # arrives as [id][empty][payload]: too few frames
    req2 = stack.socket(zmq.REQ)
    req2.connect(stack.endpoint)
    req2.send_multipart([CLIENT, REQUEST, b"\xc1"])
    for kind in (zmq.PUB, zmq.PUSH, zmq.SUB, zmq.REP):  # incompatible with a ROUTER
        odd = stack.socket(kind)
        odd.connect(stack.endpoint)
        if kind in (zmq.PUB, zmq.PUSH):
            odd.send_multipart([b"", CLIENT, REQUEST, pack({"service": "echo", "op": "x"})])
    raw = []
    for payload in (b"GET / HTTP/1.1\r\n\r\n", rng.randbytes(4096),
                    b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00NULL" + b"\x00" * 16):
        conn = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        conn.connect(str(stack.home / "run" / "broker.sock"))
        conn.sendall(payload)
        raw.append(conn)
    try:
        # A last ping on every fuzz socket: the broker reads each peer in order, so when
        # all of them are answered everything before them was handled.
        for number, dealer in enumerate(dealers):
            dealer.send_multipart([b"", CLIENT, REQUEST, pack(
                {"id": f"sync-{number}", "service": "broker", "op": "ping"})])
        for number, dealer in enumerate(dealers):
            end = time.monotonic() + 20
            while True:
                assert dealer.poll(max(0.0, end - time.monotonic()) * 1000), \
                    f"fuzz socket {number} got no answer to its ping (fuzz seed {seed})"
                frames = dealer.recv_multipart()
                if frames[2:3] == [REPLY] and unpack(frames[3]).get("id") == f"sync-{number}":
                    break
        assert broker.poll() is None, f"the broker died (fuzz seed {seed})"
        registry = client.call("broker", "services", timeout=5)
        assert registry["dropped"] > 1000, registry["dropped"]
        # Some READYs were valid: those peers were registered as workers, then dropped
        # by a second READY or, silent from now on, by expiry.
        assert '"worker ready", "service": "fuzz-' in log_text(stack.home, "broker")
        # Plus a few impostors that register once and go silent, so the expiry path
        # (hung: the pid is alive here; dead: it is not, or another host) meets them.
        for number, ready in enumerate([
                {"service": "fuzz-silent", "pid": os.getpid(), "host": socketlib.gethostname()},
                {"service": "fuzz-silent", "pid": 2**31 - 1, "host": socketlib.gethostname()},
                {"service": "fuzz-silent", "pid": 1, "host": "elsewhere", "capacity": 10**9},
                {"service": "fuzz-silent"}]):
            dealer = stack.socket(zmq.DEALER)
            dealer.connect(stack.endpoint)
            dealer.send_multipart([b"", WORKER, READY, pack(ready)])
            dealer.send_multipart([b"", CLIENT, REQUEST, pack(
                {"service": "fuzz-silent", "op": "x", "deadline": time.time() + 0.3,
                 "idempotent": number % 2 == 0})])
        wait_service(client, "fuzz-silent", count=4, timeout=5)
        poll_for(lambda: not any(svc["workers"] for name, svc in client.call(
            "broker", "services", timeout=5)["services"].items() if name != "echo"),
            EXPIRY + 3, "the fuzz workers to expire")
        assert broker.poll() is None, f"the broker died (fuzz seed {seed})"

        reply = client.request("echo", "echo", {"text": "still here", "n": [1, 2]},
                               blobs=[b"\x00payload\xff"], timeout=5)
        assert reply.result["args"] == {"text": "still here", "n": [1, 2]}
        assert [b.bytes for b in reply.blobs] == [b"\x00payload\xff"]
        assert client.call("broker", "ping", timeout=5)["pid"] == broker.pid
        assert "dropped malformed message" in log_text(stack.home, "broker")
    finally:
        for conn in raw:
            conn.close()


# --- CURVE


def test_the_curve_endpoint_answers_only_clients_whose_key_is_listed(stack, home):
    port = free_port()
    allowed_public, allowed_secret = zmq.curve_keypair()
    stranger_public, stranger_secret = zmq.curve_keypair()
    write_ini(home, "DSConfiguration.ini",
              f"[heartbeat]\ninterval = {INTERVAL}\nliveness = {LIVENESS}\n\n"
              f"[broker]\ntcp_endpoint = tcp://127.0.0.1:{port}\n"
              f"curve_clients = {allowed_public.decode()}:client\n")
    broker = stack.broker()
    key_file, pub_file = home / "cert" / "broker.key", home / "cert" / "broker.pub"
    poll_for(lambda: key_file.exists() and pub_file.exists(), 10, "the broker's key pair")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    server_public = pub_file.read_bytes().strip()
    assert len(server_public) == 40
    endpoint = f"tcp://127.0.0.1:{port}"

    allowed = stack.client(endpoint, curve=CurveKeys(server_public, allowed_public,
                                                     allowed_secret))
    poll_for(lambda: _answers(allowed), 10, "an answer over CURVE")
    assert allowed.call("broker", "ping", timeout=5)["pid"] == broker.pid

    stranger = stack.client(endpoint, curve=CurveKeys(server_public, stranger_public,
                                                      stranger_secret))
    start = time.monotonic()
    with pytest.raises(Error) as caught:
        stranger.call("broker", "ping", timeout=0.5)
    assert caught.value.code == "timeout"
    assert time.monotonic() - start < 3

    # A key pair whose public half is listed but whose secret is not its own: no answer.
    impostor = stack.client(endpoint, curve=CurveKeys(server_public, allowed_public,
                                                      stranger_secret))
    with pytest.raises(Error) as caught:
        impostor.call("broker", "ping", timeout=0.5)
    assert caught.value.code == "timeout"

    plain = stack.socket(zmq.DEALER)
    plain.connect(endpoint)
    plain.send_multipart([b"", CLIENT, REQUEST,
                          pack({"id": 1, "service": "broker", "op": "ping",
                                "deadline": time.time() + 5})])
    assert plain.poll(1000) == 0, "a plain-text peer got an answer on the CURVE endpoint"

    # The allowed client is still served, and the broker survived all of it.
    assert allowed.call("broker", "ping", timeout=5)["pid"] == broker.pid
    assert broker.poll() is None


def _answers(client: Client) -> bool:
    try:
        client.call("broker", "ping", timeout=1)
        return True
    except Error:
        return False


# --- hostile peers


@pytest.mark.parametrize("pid", [2**40, 1e20], ids=["pid-2**40", "pid-1e20"])
def test_a_worker_announcing_an_out_of_range_pid_does_not_crash_the_broker(stack, pid):
    broker = stack.broker()
    client = stack.client()
    dealer = stack.socket(zmq.DEALER)
    dealer.connect(stack.endpoint)
    dealer.send_multipart([b"", WORKER, READY, pack({"service": "odd", "pid": pid,
                                                     "host": socketlib.gethostname()})])
    client.call("broker", "ping", timeout=5)
    dealer.close(linger=0)  # silent from now on: it expires after interval * liveness
    end = time.monotonic() + EXPIRY + 1.0
    while time.monotonic() < end:
        assert broker.poll() is None, "the broker died"
        time.sleep(0.05)
    assert client.call("broker", "ping", timeout=2)["pid"] == broker.pid


def test_a_client_that_never_reads_its_replies_does_not_stall_the_broker(stack):
    broker = stack.broker()
    client = stack.client()
    client.call("broker", "ping", timeout=5)
    greedy = stack.socket(zmq.DEALER)
    greedy.setsockopt(zmq.RCVHWM, 1)
    greedy.setsockopt(zmq.RCVBUF, 4096)
    greedy.setsockopt(zmq.SNDHWM, 0)
    greedy.connect(stack.endpoint)
    ping = [b"", CLIENT, REQUEST, pack({"id": 0, "service": "broker", "op": "ping"})]
    try:
        for _ in range(150_000):  # more replies than SNDHWM + socket buffers hold
            greedy.send_multipart(ping)
        end = time.monotonic() + 4
        while time.monotonic() < end:
            client.call("broker", "ping", timeout=0.5)  # raises Error("timeout") if stuck
            time.sleep(0.2)
        greedy.close(linger=0)
        assert client.call("broker", "ping", timeout=2)["pid"] == broker.pid
    finally:
        broker.kill()  # a stuck broker ignores SIGTERM: do not make the teardown wait


def test_a_request_with_a_nan_deadline_is_not_queued_forever(stack, home):
    write_ini(home, "DSConfiguration.ini",
              f"[heartbeat]\ninterval = {INTERVAL}\nliveness = {LIVENESS}\n\n"
              "[broker]\nrequest_timeout = 0.5\n")
    stack.broker()
    dealer = stack.socket(zmq.DEALER)
    dealer.connect(stack.endpoint)
    dealer.send_multipart([b"", CLIENT, REQUEST, pack({"id": 7, "service": "nobody", "op": "x",
                                                       "deadline": math.nan})])
    # Any answer will do (bad_request at once, or timeout after the default 0.5 s).
    assert dealer.poll(2000), "no answer to a request with a NaN deadline"
    frames = dealer.recv_multipart()
    assert frames[:3] == [b"", CLIENT, REPLY]
    assert unpack(frames[3])["ok"] is False
