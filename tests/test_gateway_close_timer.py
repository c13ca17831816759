"""The gateway's session close timer, driven with aiohttp on the event WebSocket: a
session closes ``session_close_delay`` seconds after its last socket closed, unless a page
reconnects, and one that never opened a socket is not closed by it.

One service with ``session_close_delay = 1.5``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from broker.protocol import Error
from tests.support.gateway_events import DELAY, Web, web_test
from tests.support.gateway_events import closing  # fixtures
from tests.support.service import Service

pytestmark = pytest.mark.timeout(120)


# --- the close timer (session_close_delay = 1.5)


def locate(svc: Service, sid: str, iid: str) -> Path:
    with svc.client() as client:
        return Path(client.call("buffer", "locate", {"session": sid, "image": iid},
                                timeout=15)["path"])


def buffer_list(svc: Service, sid: str) -> list:
    with svc.client() as client:
        return client.call("buffer", "list", {"session": sid}, timeout=15)


async def wait_gone(web: Web, sid: str, token: str, timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while True:
        status, body = await web.info(sid, token)
        if status == 404:
            assert body["error"]["code"] == "not_found", body
            return
        assert status == 200, body
        assert time.monotonic() < end, f"session {sid} still open after {timeout} s"
        await asyncio.sleep(0.05)


@web_test("closing")
async def test_closing_the_last_socket_closes_the_session_after_the_delay(web: Web):
    sid, token = await web.open_session()
    iid = await web.import_png(sid, token)
    stored = await asyncio.to_thread(locate, web.svc, sid, iid)
    assert stored.is_file()
    first = await web.connect(sid, token)
    second = await web.connect(sid, token)
    status, info = await web.info(sid, token)
    assert status == 200 and info["sockets"] == 2 and info["close_delay"] == DELAY

    # One of two sockets closing starts no timer.
    await first.close()
    await asyncio.sleep(DELAY + 0.75)
    status, info = await web.info(sid, token)
    assert status == 200 and info["sockets"] == 1 and info["images"] == 1, info

    started = time.monotonic()
    await second.close()
    status, info = await web.info(sid, token)
    if time.monotonic() - started < DELAY - 0.3:
        assert status == 200, info  # not before the delay
    await wait_gone(web, sid, token)
    took = time.monotonic() - started
    assert DELAY - 0.1 <= took <= DELAY + 8, f"closed {took:.2f} s after the last socket"
    # The buffer closed it too: its images and their files are gone.
    with pytest.raises(Error) as gone:
        await asyncio.to_thread(buffer_list, web.svc, sid)
    assert gone.value.code == "not_found"
    assert not stored.exists()


@web_test("closing")
async def test_a_reload_within_the_delay_keeps_the_session(web: Web):
    sid, token = await web.open_session()
    iid = await web.import_png(sid, token)
    page = await web.connect(sid, token)
    await page.close()
    await asyncio.sleep(0.2)  # the page reloads
    reloaded = await web.connect(sid, token, since=page.hello["seq"],
                                 epoch=page.hello["data"]["epoch"])
    assert reloaded.hello["data"]["lost"] is False
    assert reloaded.hello["data"]["replayed"] == 0
    await asyncio.sleep(DELAY + 0.75)
    status, info = await web.info(sid, token)
    assert status == 200 and info["images"] == 1 and info["sockets"] == 1, info
    status, listed = await web.request("GET", f"/api/v1/sessions/{sid}/images", token)
    assert status == 200 and [i["id"] for i in listed] == [iid]
    # The reloaded page still gets live events.
    other = await web.import_png(sid, token)
    message = await reloaded.next()
    assert message["topic"] == "buffer.changed" and message["data"]["ids"] == [other]
    # Its socket closing starts the timer again.
    await reloaded.close()
    await wait_gone(web, sid, token)


@web_test("closing")
async def test_a_session_that_never_opened_a_socket_is_not_closed_by_the_timer(web: Web):
    sid, token = await web.open_session()
    iid = await web.import_png(sid, token)
    await asyncio.sleep(DELAY + 0.75)
    status, info = await web.info(sid, token)
    assert status == 200 and info["images"] == 1 and info["sockets"] == 0, info
    status, _ = await web.request("GET", f"/api/v1/sessions/{sid}/images/{iid}", token)
    assert status == 200
    status, body = await web.request("DELETE", f"/api/v1/sessions/{sid}", token)
    assert status == 200 and body == {"id": sid, "removed": 1}, body
