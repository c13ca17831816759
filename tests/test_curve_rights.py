"""A listed CURVE key has the rights its ``curve_clients`` entry names, and no more.

Each test replays an attack of a remote peer that holds a listed key (a compromised OCR
machine) with a real CURVE connection to a real broker: asking local services for
sessions and images, registering as the buffer, claiming a local program's pid so the
monitor kills it, sending hostile hOCR, sending messages over the size limit. The
gateway's side (a ``locate`` path outside the buffer) is replayed with a fake buffer on
the local socket: no reply is trusted as a path, whoever sent it.
"""

from __future__ import annotations

import os
import socket as socketlib
import subprocess
import threading
import time

import pytest
import zmq

from broker import config as configlib
from broker.client import CurveKeys
from broker.protocol import READY, REPLY, REQUEST, WORKER, Error, pack
from tests.support.peer import Peer
from tests.support.service import curve_service, running
from tests.support.stack import free_port, poll_for, wait_service, workers, write_ini
from tests.support.web import Api, WebSession

pytestmark = pytest.mark.timeout(120)

INTERVAL = 0.2
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a49444154789c63600000000200015d0c02360000000049454e44ae426082")


class Keys:
    def __init__(self):
        self.public, self.secret = zmq.curve_keypair()

    def curve(self, home) -> CurveKeys:
        server = (home / "cert" / "broker.pub").read_bytes().strip()
        return CurveKeys(server, self.public, self.secret)


def curve_broker(stack, home, clients: str, extra: str = "", interval: float = INTERVAL) -> str:
    """Start a broker with a CURVE endpoint admitting ``clients``; returns the endpoint."""
    port = free_port()
    write_ini(home, "DSConfiguration.ini",
              f"[heartbeat]\ninterval = {interval}\nliveness = 3\n\n[broker]\n"
              f"tcp_endpoint = tcp://127.0.0.1:{port}\ncurve_clients = {clients}\n{extra}")
    stack.broker()
    poll_for(lambda: (home / "cert" / "broker.pub").exists(), 10, "the broker's key pair")
    return f"tcp://127.0.0.1:{port}"


# --- the broker


def test_a_worker_key_may_not_call_local_services_unless_its_entry_says_client(stack, home):
    worker, trusted = Keys(), Keys()
    endpoint = curve_broker(stack, home, f"{worker.public.decode()}\n"
                                         f"  {trusted.public.decode()}:ocr,client")
    stack.echo("buffer")
    wait_service(stack.client(), "buffer")
    attacker = stack.client(endpoint, curve=worker.curve(home))
    for service, op in (("buffer", "echo"), ("broker", "services"), ("uploader", "submit")):
        with pytest.raises(Error) as caught:
            attacker.call(service, op, {"session": "x"}, timeout=5)
        assert caught.value.code == "forbidden", (service, caught.value)
        assert "client" in caught.value.message
    allowed = stack.client(endpoint, curve=trusted.curve(home))
    assert allowed.call("buffer", "echo", {"a": 1}, timeout=5)["args"] == {"a": 1}


@pytest.mark.parametrize("service", ["buffer", "gateway", "uploader", "monitor", "barcode"])
def test_a_worker_key_may_register_only_as_the_services_its_entry_names(stack, home, service):
    key = Keys()
    endpoint = curve_broker(stack, home, key.public.decode())  # no services named: ocr
    admin = stack.client()
    impostor = Peer(endpoint, {"service": service, "pid": 1, "capacity": 1},
                    lambda op, args: {"path": "/etc/passwd"}, key.curve(home), INTERVAL)
    honest = Peer(endpoint, {"service": "ocr", "pid": 2, "capacity": 1},
                  lambda op, args: {"text": "ok"}, key.curve(home), INTERVAL)
    try:
        wait_service(admin, "ocr")
        assert impostor.disconnected.wait(5), "the broker did not turn the impostor away"
        assert workers(admin, service) == []
        assert admin.call("ocr", "page", timeout=5) == {"text": "ok"}
    finally:
        impostor.go_silent()
        honest.go_silent()


def test_another_key_cannot_answer_for_a_worker_by_taking_its_routing_id(stack, home):
    """A routing id is the peer's choice: the broker checks the key of every message."""
    first, second = Keys(), Keys()
    endpoint = curve_broker(stack, home, f"{first.public.decode()}, "
                                         f"{second.public.decode()}:barcode", interval=1.0)
    admin = stack.client()
    held = stack.socket(zmq.DEALER)
    _connect(held, first.curve(home), endpoint, b"same-id")
    held.send_multipart([b"", WORKER, READY, pack({"service": "ocr", "pid": 3})])
    wait_service(admin, "ocr")
    asking, out = in_thread(lambda: stack.client().call("ocr", "page", timeout=8))
    envelope = poll_for(lambda: _request_of(held), 5, "the request at the first worker")
    held.close(linger=0)
    thief = stack.socket(zmq.DEALER)
    _connect(thief, second.curve(home), endpoint, b"same-id")
    # Within the first worker's 3 s expiry: the thief answers its request as it.
    poll_for(lambda: thief.poll(0) or _send_forged(thief, envelope), 2, "a send", every=0.1)
    asking.join(15)
    assert out.get("value") != "forged", "the broker took a reply from another key"
    assert isinstance(out.get("error"), Error)


def _connect(sock, keys: CurveKeys, endpoint: str, routing_id: bytes) -> None:
    sock.curve_serverkey, sock.curve_publickey = keys.server_public, keys.public
    sock.curve_secretkey = keys.secret
    sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.connect(endpoint)


def _request_of(sock) -> bytes | None:
    while sock.poll(100):
        frames = sock.recv_multipart()
        if frames[2] == REQUEST:
            return frames[3]
    return None


def _send_forged(sock, envelope: bytes) -> bool:
    for _ in range(3):  # a few times: the first may go out before the handshake is done
        sock.send_multipart([b"", WORKER, REPLY, envelope,
                             pack({"id": 1, "ok": True, "result": "forged"})])
        time.sleep(0.2)
    return True


def in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as exc:
            out["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_messages_over_the_tcp_size_limit_are_dropped(stack, home):
    key = Keys()
    endpoint = curve_broker(stack, home, f"{key.public.decode()}:ocr,client",
                            "tcp_max_message_mb = 1\n")
    stack.echo("echo")
    wait_service(stack.client(), "echo")
    remote = stack.client(endpoint, curve=key.curve(home))
    small = os.urandom(600 * 1024)
    assert remote.request("echo", "echo", blobs=[small], timeout=10).blobs[0].bytes == small
    for blobs in ([os.urandom(2 << 20)], [small, small, small]):  # one frame, or in total
        with pytest.raises(Error) as caught:
            remote.call("echo", "echo", blobs=blobs, timeout=2)
        assert caught.value.code in ("timeout", "too_large"), caught.value
    # The connection is made again and the peer is served within the limit.
    poll_for(lambda: _echoes(remote, small), 20, "an answer after the oversize messages")
    assert stack.client().call("broker", "ping", timeout=5)


def _echoes(client, blob) -> bool:
    try:
        return client.request("echo", "echo", blobs=[blob], timeout=2).blobs[0].bytes == blob
    except Error:
        return False


# --- configuration


@pytest.mark.parametrize("entry, reason", [
    ("{key}:buffer", "buffer"),
    ("{key}:ocr,gateway", "gateway"),
    ("{key}:", "service"),
    ("{key} ocr", "KEY:service"),
    ("{key}, {key}", "twice"),
])
def test_curve_clients_entries_that_would_grant_local_services_fail_start_up(
        tmp_path, entry, reason):
    key = zmq.curve_keypair()[0].decode()
    write_ini(tmp_path, "DSConfiguration.ini",
              f"[broker]\ncurve_clients = {entry.format(key=key)}\n")
    with pytest.raises(configlib.ConfigError) as caught:
        configlib.load(configlib.Home(tmp_path))
    assert "curve_clients" in str(caught.value) and reason in str(caught.value)


def test_curve_clients_entries_name_services_and_client_rights(tmp_path):
    one, two = (zmq.curve_keypair()[0].decode() for _ in range(2))
    write_ini(tmp_path, "DSConfiguration.ini",
              f"[broker]\ncurve_clients = {one}, {two}:ocr, barcode,client\n")
    entries = configlib.load(configlib.Home(tmp_path)).broker.curve_clients
    assert [(e.key, e.services, e.client) for e in entries] == [
        (one, ("ocr",), False), (two, ("ocr", "barcode"), True)]


# --- the whole service


@pytest.fixture(scope="module")
def remote_key():
    return Keys()


@pytest.fixture(scope="module")
def svc(tmp_path_factory, remote_key):
    yield from running(curve_service(tmp_path_factory.mktemp("home"), remote_key.public.decode()))


def ocr_answer(hocr: str):
    def answer(op: str, args: dict) -> dict:
        if op == "check":
            return {"lang": "eng", "tesseract": "5.3.0", "installed": ["eng"]}
        return {"index": args.get("index", 0), "lang": "eng", "rotation": 0,
                "orientation_confidence": 0.0, "width": 1, "height": 1, "text": "owned",
                "words": [], "seconds": 0.01, "worker": {"host": "remote", "pid": 1},
                "hocr": hocr}
    return answer


def test_a_remote_worker_claiming_local_pids_gets_no_process_killed(svc, remote_key):
    ocr_pid, buffer_pid = svc.pid("ocr_00"), svc.pid("buffer")
    canary = subprocess.Popen(["sleep", "600"])
    here = socketlib.gethostname()
    liars = [Peer(svc.tcp, {"service": "ocr", "pid": pid, "host": here, "capacity": 1},
                  ocr_answer(""), remote_key.curve(svc.home), 0.5)
             for pid in (ocr_pid, buffer_pid, canary.pid)]
    # A local actor that lies too: the monitor restarts only a program of the service.
    liars.append(Peer(f"ipc://{svc.home}/run/broker.sock",
                      {"service": "ocr", "pid": buffer_pid, "host": here, "capacity": 1},
                      ocr_answer(""), None, 0.5))
    try:
        with svc.client() as client:
            poll_for(lambda: len(workers(client, "ocr")) == 5, 15, "the lying workers")
        for liar in liars:
            liar.go_silent()  # heartbeats stop while the claimed processes live: "hung"

        def lost():
            return len([r for r in svc.log_records("broker") if r.get("msg") == "worker lost"
                        and r.get("worker_pid") in (ocr_pid, buffer_pid, canary.pid)]) >= 4
        poll_for(lost, 20, "the broker to drop the silent workers")
        time.sleep(4)  # a hang restart takes hang_dump_wait (1 s) and a supervisord kill
        assert canary.poll() is None, "the canary process was killed"
        assert svc.pid("ocr_00") == ocr_pid, "the local OCR worker was restarted"
        assert svc.pid("buffer") == buffer_pid, "the buffer was restarted"
        assert not [r for r in svc.log_records("monitor")
                    if r.get("msg") == "restarted hung actor"]
        states = [r.get("state") for r in svc.log_records("broker")
                  if r.get("msg") == "worker lost" and r.get("remote")]
        assert states and set(states) == {"dead"}
    finally:
        for liar in liars:
            liar.go_silent()
        canary.kill()


def test_hocr_from_a_remote_worker_is_served_sandboxed(svc, remote_key):
    hostile = ('<div class="ocr_page" id="page_1"><script>fetch("/api/v1/sessions")'
               '</script><img src=x onerror="alert(document.domain)"></div>')
    peer = Peer(svc.tcp, {"service": "ocr", "pid": 1, "capacity": 1}, ocr_answer(hostile),
                remote_key.curve(svc.home), 0.5)
    try:
        with svc.client() as client:
            poll_for(lambda: len(workers(client, "ocr")) == 2, 15, "the remote worker")
            svc.supervisorctl("stop", "ocr:ocr_00")  # every page goes to the remote one
            poll_for(lambda: len(workers(client, "ocr")) == 1, 15, "only the remote worker")
        session = WebSession(Api(svc))
        session.upload(PNG_1PX)
        started = session.post("/ocr", json={"output": ["text", "hocr"]})
        assert started.status == 202, started.body
        job = started.json()["job"]
        done = poll_for(lambda: (lambda s: s if s["state"] != "running" else None)(
            session.get(f"/ocr/{job}").json()), 30, "the OCR job")
        assert done["state"] == "done", done
        for output, media in (("hocr", "text/html"), ("text", "text/plain")):
            answer = session.get(f"/ocr/{job}/{output}")
            assert answer.status == 200
            assert answer.headers["Content-Type"].startswith(media)
            policy = answer.headers.get("Content-Security-Policy", "")
            assert "sandbox" in policy and "default-src 'none'" in policy, policy
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert b"<script>" in session.get(f"/ocr/{job}/hocr").body  # as it came, inert
    finally:
        peer.go_silent()
        svc.supervisorctl("start", "ocr:ocr_00")


def test_a_locate_answer_outside_the_buffer_folder_is_a_502_and_not_served(svc):
    session = WebSession(Api(svc))
    image = session.upload(PNG_1PX)
    fake = Peer(f"ipc://{svc.home}/run/broker.sock", {"service": "buffer", "capacity": 4},
                lambda op, args: {"path": "/etc/passwd", "format": "png", "bytes": 1,
                                  "media_type": "image/png", "etag": '"e"'}, None, 0.5)
    try:
        with svc.client() as client:
            poll_for(lambda: len(workers(client, "buffer")) == 2, 15, "the fake buffer")
            svc.supervisorctl("stop", "buffer")
            poll_for(lambda: len(workers(client, "buffer")) == 1, 15, "only the fake buffer")
        for link in (f"{svc.home}/cache/buffer/files/{'../' * 20}etc/passwd", "/etc/passwd"):
            fake.answer = lambda op, args, link=link: {
                "path": link, "format": "png", "bytes": 1, "media_type": "image/png",
                "etag": f'"{link}"'}
            answer = session.get(f"/images/{image}?v={link}")
            assert answer.status == 502, answer.body[:200]
            assert answer.error["code"] == "bad_gateway"
            assert b"root:" not in answer.body
        assert ("locate", {"session": session.id, "image": image}) in fake.requests
    finally:
        fake.go_silent()
        svc.supervisorctl("start", "buffer")
        svc.wait_running("buffer")
