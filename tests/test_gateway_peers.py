"""Other local accounts: the gateway refuses them unless ``[access] local_users`` lets them in.

The tests run as root, which owns the service; the other account is ``nobody`` (uid and
gid 65534): a forked child drops to it before it connects, as another user's program
would. Covered: every kind of request from that account is refused with 403 ``other_user``
over HTTP (IPv4 and IPv6 loopback) and HTTPS, nothing is opened for it, and the owner is
served on the same ports; ``local_users = any``, a user name and an ``@group`` let it in
and an edit back to ``owner`` shuts it out again, without a restart.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl

import pytest

from tests.support.service import Service
from tests.support.stack import poll_for

pytestmark = pytest.mark.timeout(120)

NOBODY = 65534  # uid and gid of nobody / nogroup
WAIT = 20.0


def request_as(uid: int, port: int, path: str = "/api/v1/status", method: str = "GET",
               tls: bool = False, host: str = "127.0.0.1") -> tuple[int, dict | str]:
    """(status, JSON or text body) of one request made by a process running as ``uid``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the other account, then connect
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            if tls:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                connection = http.client.HTTPSConnection(host, port, timeout=WAIT,
                                                         context=context)
            else:
                connection = http.client.HTTPConnection(host, port, timeout=WAIT)
            name = f"[{host}]" if ":" in host else host
            connection.request(method, path, body=b"{}" if method == "POST" else None,
                               headers={"Host": f"{name}:{port}",
                                        "Content-Type": "application/json"})
            response = connection.getresponse()
            out = {"status": response.status, "body": response.read().decode("utf-8", "replace")}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out = {"status": 0, "body": repr(exc)}
        finally:
            try:
                os.write(write, json.dumps(out).encode())
            finally:
                os._exit(0)
    os.close(write)
    data = b""
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    answer = json.loads(data)
    try:
        return answer["status"], json.loads(answer["body"])
    except ValueError:
        return answer["status"], answer["body"]


def set_local_users(svc: Service, value: str) -> None:
    (svc.home / "ini" / "user_config.ini").write_text(f"[access]\nlocal_users = {value}\n")


def nobody_status(svc: Service) -> int:
    return request_as(NOBODY, svc.ports[1])[0]


def https_up(svc: Service) -> bool:
    return request_as(0, svc.https_ports[1], tls=True)[0] == 200


def buffer_sessions(svc: Service) -> int:
    with svc.client() as client:
        return len(client.call("buffer", "sessions", timeout=15))


def test_another_local_account_is_refused_everywhere_and_the_owner_is_served(service):
    poll_for(lambda: https_up(service), 30, "HTTPS served")
    before = buffer_sessions(service)
    for port, tls, host in ((service.ports[0], False, "127.0.0.1"),
                            (service.ports[1], False, "::1"),
                            (service.https_ports[1], True, "127.0.0.1")):
        for method, path in (("GET", "/api/v1/status"), ("GET", "/"),
                             ("POST", "/api/v1/sessions"), ("GET", "/api/v1/sources"),
                             ("GET", "/scanbridge.js")):
            status, body = request_as(NOBODY, port, path, method, tls, host)
            assert status == 403, (port, path, status, body)
            assert body["error"]["code"] == "other_user"
            assert "nobody (uid 65534)" in body["error"]["message"]
            assert "local_users" in body["error"]["message"]
        assert request_as(0, port, tls=tls, host=host)[0] == 200
        status, body = request_as(0, port, "/api/v1/sessions", "POST", tls, host)
        assert status == 201, body
    assert buffer_sessions(service) == before + 3  # the owner's; none of nobody's
    refused = [r for r in service.log_records("gateway") if r.get("msg") == "refused local user"]
    assert refused and refused[-1]["uid"] == NOBODY


def test_local_users_lets_named_accounts_in_without_a_restart(service):
    assert nobody_status(service) == 403
    try:
        for value, expected in (("any", 200), ("owner, daemon", 403), ("nobody", 200),
                                ("owner", 403), ("owner, @nogroup", 200), ("@daemon", 403)):
            set_local_users(service, value)
            poll_for(lambda: nobody_status(service) == expected, WAIT,
                     f"local_users = {value} answering nobody {expected}", every=0.2)
    finally:
        set_local_users(service, "owner")
    poll_for(lambda: nobody_status(service) == 403, WAIT, "owner only again", every=0.2)
