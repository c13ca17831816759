"""Finding a session by its token alone (actors/gateway/sessions.py ``of_request``), with a
fake buffer: sessions opened here, learned from the buffer, forgotten, and two sessions
given one token hash. Over HTTP: tests/test_device_access.py.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import make_mocked_request

from actors.gateway.sessions import Sessions, digest
from broker.protocol import Error


class Log:
    def info(self, msg, **fields):
        pass

    warning = info


class Buffer:
    """Answers the gateway's calls to the buffer from a dict: session id -> meta."""

    def __init__(self):
        self.metas: dict[str, dict] = {}

    async def call(self, service: str, op: str, args: dict | None = None):
        assert service == "buffer"
        if op == "open_session":
            sid = f"s{len(self.metas)}"
            self.metas[sid] = args["meta"]
            return {"session": sid, "created": 0.0, "expires_after": 60}
        if op == "sessions":
            return [{"session": sid, "meta": meta} for sid, meta in self.metas.items()]
        if op == "session":
            if args["session"] not in self.metas:
                raise Error("not_found", "no such session")
            return {"meta": self.metas[args["session"]]}
        raise AssertionError(op)


def request(token: str | None = None, sid: str | None = None):
    query = "&".join(f"{k}={v}" for k, v in (("token", token), ("session", sid)) if v)
    return make_mocked_request("GET", f"/api/v1/sources/x/options?{query}")


def run(test):
    asyncio.run(test(Sessions(Buffer(), 0.0, Log())))


def test_each_token_finds_its_own_session_until_it_is_forgotten():
    async def test(sessions):
        first = await sessions.create("")
        second = await sessions.create("https://a.example")
        assert (await sessions.of_request(request(first["token"]))).id == first["id"]
        assert (await sessions.of_request(request(second["token"]))).id == second["id"]
        sessions.forget(first["id"])
        with pytest.raises(Error) as refused:
            await sessions.of_request(request(first["token"]))
        assert refused.value.code == "unauthorized"
        assert "no session known here" in refused.value.message
        assert (await sessions.of_request(request(second["token"]))).id == second["id"]
    run(test)


def test_a_session_from_before_a_restart_is_found_once_named():
    async def test(sessions):
        opened = await sessions.create("")
        sessions.forget(opened["id"])  # as a new gateway that never saw it
        with pytest.raises(Error) as refused:
            await sessions.of_request(request(opened["token"]))
        assert refused.value.code == "unauthorized"
        named = await sessions.of_request(request(opened["token"], opened["id"]))
        assert named.id == opened["id"]
        assert (await sessions.of_request(request(opened["token"]))).id == opened["id"]
    run(test)


def test_of_two_sessions_with_one_token_hash_the_first_known_answers():
    async def test(sessions):
        opened = await sessions.create("")
        copied = dict(sessions.broker.metas[opened["id"]])  # a second session, same meta
        sessions.broker.metas["copy"] = copied
        await sessions.check(request(opened["token"]), "copy")
        assert sessions.known["copy"].token_hash == digest(opened["token"])
        assert (await sessions.of_request(request(opened["token"]))).id == opened["id"]
        sessions.forget(opened["id"])
        assert (await sessions.of_request(request(opened["token"]))).id == "copy"
        sessions.forget("copy")
        with pytest.raises(Error):
            await sessions.of_request(request(opened["token"]))
    run(test)
