"""The gateway's event WebSocket (``/api/v1/sessions/{sid}/events``), driven with aiohttp.

The hello message, the causal order and numbering of a scan's events, fan-out to every
socket of a session and to no other session, replay after a reconnect with ``since`` and
``epoch`` (``lost`` when the backlog or the epoch cannot cover the gap), buffer.changed
events of imports and edits made over HTTP, ``session.closed`` and close code 4000 when
the session is deleted.

Two services: the module's (default settings) and one with ``event_backlog = 10``. The
close timer: test_gateway_close_timer.py.
"""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.support.gateway_events import (BACKLOG, WAIT, Web, consecutive, done_of, seqs,
                                          web_test)
from tests.support.gateway_events import small_backlog  # fixtures

pytestmark = pytest.mark.timeout(120)


# --- hello, order, fan-out


@web_test("service")
async def test_the_first_message_is_hello_with_the_session_an_epoch_and_seq(web: Web):
    sid, token = await web.open_session()
    other, other_token = await web.open_session()
    before = time.time()
    socket = await web.connect(sid, token)
    hello = socket.hello
    assert set(hello) == {"seq", "topic", "data", "time"}
    assert isinstance(hello["seq"], int) and hello["seq"] >= 0  # the channel's last seq
    assert before - 5 <= hello["time"] <= time.time() + 5
    assert hello["data"]["session"] == sid
    assert hello["data"]["replayed"] == 0
    assert hello["data"]["lost"] is False
    epoch = hello["data"]["epoch"]
    assert isinstance(epoch, str) and epoch
    # The epoch names the gateway process, not the session.
    second = await web.connect(other, other_token)
    assert second.hello["data"]["epoch"] == epoch
    assert second.hello["data"]["session"] == other
    assert await socket.quiet(0.3) == []  # hello, then nothing until something happens


@web_test("service")
async def test_a_new_sessions_channel_holds_no_event_before_its_first_socket(web: Web):
    # The buffer's session.opened event races the channel that POST /sessions creates:
    # it must not land in the channel sometimes (seq 1, replayed with since=0) and not
    # other times. Several sessions, as one may well win the race by chance.
    early = []
    for _ in range(20):
        sid, token = await web.open_session()
        socket = await web.connect(sid, token, since=0)
        if socket.hello["seq"] != 0:
            early.append((socket.hello, await socket.next()))
        await socket.close()
    assert early == [], f"{len(early)} of 20 new sessions had events already"


@web_test("service")
async def test_an_events_socket_needs_the_sessions_token(web: Web):
    sid, token = await web.open_session()
    other, other_token = await web.open_session()
    url = f"{web.base}/api/v1/sessions/{sid}/events"
    for params, status in (({}, 401), ({"token": other_token}, 403),
                           ({"token": token + "x"}, 403)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await web.http.ws_connect(url, params=params)
        assert refused.value.status == status, params
    # A plain GET (no Upgrade) with the right token is told it is a WebSocket endpoint.
    status, body = await web.request("GET", f"/api/v1/sessions/{sid}/events", token)
    assert status == 400 and body["error"]["code"] == "bad_request", body


@web_test("service")
async def test_a_two_page_scan_sends_progress_changed_page_done_in_causal_order(web: Web):
    sid, token = await web.open_session()
    socket = await web.connect(sid, token)
    job = await web.scan(sid, token, pages=2)
    messages = await socket.until(done_of(job))
    # Numbered from the hello's seq on, one by one: strictly increasing, no gaps.
    assert seqs(messages) == consecutive(socket.hello["seq"] + 1, len(messages))
    assert all(set(m) == {"seq", "topic", "data", "time"} for m in messages)
    assert all("session" not in m["data"] for m in messages)
    topics = [m["topic"] for m in messages]
    assert set(topics) <= {"scan.progress", "buffer.changed", "scan.page", "scan.done"}
    assert topics[-1] == "scan.done"
    done = messages[-1]["data"]
    assert done["job"] == job and done["state"] == "done" and done["pages"] == 2

    pages = [(i, m) for i, m in enumerate(messages) if m["topic"] == "scan.page"]
    assert [m["data"]["page"] for _, m in pages] == [1, 2]
    assert [m["data"]["pages"] for _, m in pages] == [1, 2]
    ids = [m["data"]["image"]["id"] for _, m in pages]
    assert done["images"] == ids
    for number, (at, page) in enumerate(pages, 1):
        assert page["data"]["job"] == job
        image = page["data"]["image"]
        # Causal order of the page: read (progress), stored (changed), acknowledged.
        progress = [i for i, m in enumerate(messages) if m["topic"] == "scan.progress"
                    and m["data"]["job"] == job and m["data"]["page"] == number]
        changed = [i for i, m in enumerate(messages) if m["topic"] == "buffer.changed"
                   and m["data"]["ids"] == [image["id"]]]
        assert progress and min(progress) < at, (number, topics)
        assert len(changed) == 1 and min(progress) < changed[0] < at, (number, topics)
        assert messages[changed[0]]["data"]["action"] == "add"
        assert all(0 <= messages[i]["data"]["percent"] <= 100 for i in progress)

    status, listed = await web.request("GET", f"/api/v1/sessions/{sid}/images", token)
    assert status == 200
    assert [info["id"] for info in listed] == ids
    for info, (_, page) in zip(listed, pages, strict=True):
        image = page["data"]["image"]
        assert image == info  # the page event carries the listed image info
        assert (image["width"], image["height"]) == (590, 590)  # 200 mm at 75 dpi
        assert image["dpi"] == [75.0, 75.0] and image["source"] == "test:0"
    assert await socket.quiet(0.3) == []


@web_test("service")
async def test_two_sockets_of_one_session_get_the_same_messages(web: Web):
    sid, token = await web.open_session()
    first = await web.connect(sid, token)
    second = await web.connect(sid, token)
    assert first.hello["seq"] == second.hello["seq"]
    job = await web.scan(sid, token, pages=1)
    got = await first.until(done_of(job))
    await second.until(done_of(job))
    assert len(got) >= 4  # progress, changed, page, done
    assert second.raw == first.raw  # the very same messages, same seq, same time
    status, info = await web.info(sid, token)
    assert status == 200 and info["sockets"] == 2


@web_test("service")
async def test_another_sessions_socket_gets_none_of_a_sessions_events(web: Web):
    sid, token = await web.open_session()
    other, other_token = await web.open_session()
    mine = await web.connect(sid, token)
    theirs = await web.connect(other, other_token)
    job = await web.scan(sid, token, pages=1)
    await mine.until(done_of(job))
    iid = await web.import_png(sid, token)
    await mine.until(lambda m: m["topic"] == "buffer.changed" and m["data"]["ids"] == [iid])
    assert await theirs.quiet(0.5) == []
    # Its channel did not move either: a new socket's hello has the same seq.
    again = await web.connect(other, other_token, since=theirs.hello["seq"],
                              epoch=theirs.hello["data"]["epoch"])
    assert again.hello["seq"] == theirs.hello["seq"]
    assert again.hello["data"]["replayed"] == 0 and again.hello["data"]["lost"] is False


# --- reconnect and replay


@web_test("service")
async def test_a_socket_reconnecting_with_since_and_epoch_gets_the_missed_events_in_order(web: Web):
    sid, token = await web.open_session()
    # An observer (another tab) stays connected: it sees what the reconnecting page
    # misses, and keeps the session open meanwhile.
    observer = await web.connect(sid, token)
    page = await web.connect(sid, token)
    epoch = page.hello["data"]["epoch"]
    job = await web.scan(sid, token, pages=1)
    await page.until(done_of(job))
    await observer.until(done_of(job))
    last = page.seen[-1]["seq"]
    await page.close()

    job = await web.scan(sid, token, pages=2)
    missed = await observer.until(done_of(job))
    missed_raw = observer.raw[-len(missed):]
    assert seqs(missed) == consecutive(last + 1, len(missed))

    back = await web.connect(sid, token, since=last, epoch=epoch)
    assert back.hello["seq"] == missed[-1]["seq"]
    assert back.hello["data"] == {"session": sid, "epoch": epoch,
                                  "replayed": len(missed), "lost": False}
    replayed = [await back.next() for _ in missed]
    assert back.raw == missed_raw  # the same messages, in order
    assert seqs(replayed) == consecutive(last + 1, len(missed))  # no gap, no duplicate
    assert [m["topic"] for m in replayed].count("scan.page") == 2
    assert await back.quiet(0.3) == []  # nothing twice

    # Live events follow the replay, numbered on.
    iid = await web.import_png(sid, token)
    live = await back.next()
    assert live["seq"] == missed[-1]["seq"] + 1
    assert live["topic"] == "buffer.changed" and live["data"]["ids"] == [iid]

    # Coming back with the current seq: nothing to replay, nothing lost.
    await back.close()
    current = await web.connect(sid, token, since=live["seq"], epoch=epoch)
    assert current.hello["seq"] == live["seq"]
    assert current.hello["data"]["replayed"] == 0
    assert current.hello["data"]["lost"] is False
    assert await current.quiet(0.3) == []


@web_test("service")
async def test_a_reconnect_with_another_epoch_or_a_future_seq_is_told_lost(web: Web):
    sid, token = await web.open_session()
    page = await web.connect(sid, token)
    epoch = page.hello["data"]["epoch"]
    iid = await web.import_png(sid, token)
    changed = await page.next()
    assert changed["data"]["ids"] == [iid]
    await page.close()

    wrong = "0" * 7 + ("1" if epoch != "0" * 7 + "1" else "2")
    stale = await web.connect(sid, token, since=changed["seq"], epoch=wrong)
    assert stale.hello["data"]["lost"] is True  # another gateway's numbers
    assert stale.hello["data"]["epoch"] == epoch  # the current one, to use from now on
    assert stale.hello["seq"] == changed["seq"]
    # Whatever is replayed is this gateway's, in order, up to the hello's seq.
    replayed = [await stale.next() for _ in range(stale.hello["data"]["replayed"])]
    assert seqs(replayed) == consecutive(stale.hello["seq"] - len(replayed) + 1,
                                         len(replayed))
    await stale.close()

    future = await web.connect(sid, token, since=changed["seq"] + 50, epoch=epoch)
    assert future.hello["data"]["lost"] is True
    assert future.hello["seq"] == changed["seq"]


@web_test("small_backlog")
async def test_more_missed_events_than_the_backlog_are_lost_and_the_last_ones_replayed(web: Web):
    sid, token = await web.open_session()
    observer = await web.connect(sid, token)
    page = await web.connect(sid, token)
    since, epoch = page.hello["seq"], page.hello["data"]["epoch"]
    await page.close()

    iid = await web.import_png(sid, token)
    edits = BACKLOG + 5
    for _ in range(edits):
        status, body = await web.request(
            "POST", f"/api/v1/sessions/{sid}/images/{iid}/ops", token,
            json=[{"op": "rotate", "angle": 90}])
        assert status == 200, body
    await observer.until(lambda m: sum(
        1 for s in observer.seen if s["data"].get("action") == "modify") == edits)
    missed = observer.seen
    assert len(missed) == edits + 1 > BACKLOG

    back = await web.connect(sid, token, since=since, epoch=epoch)
    assert back.hello["seq"] == missed[-1]["seq"]
    assert back.hello["data"]["lost"] is True
    assert back.hello["data"]["replayed"] == BACKLOG
    replayed = [await back.next() for _ in range(BACKLOG)]
    assert back.raw == observer.raw[-BACKLOG:]  # the last ten, in order
    assert seqs(replayed) == consecutive(missed[-1]["seq"] - BACKLOG + 1, BACKLOG)
    assert await back.quiet(0.3) == []

    # Within the backlog nothing is lost.
    recent = await web.connect(sid, token, since=missed[-1]["seq"] - 3, epoch=epoch)
    assert recent.hello["data"]["lost"] is False
    assert recent.hello["data"]["replayed"] == 3


# --- buffer.changed from HTTP


@web_test("service")
async def test_imports_and_edits_over_http_send_buffer_changed_events(web: Web):
    sid, token = await web.open_session()
    socket = await web.connect(sid, token)
    base = f"/api/v1/sessions/{sid}"

    async def changed(action: str, ids: list[str]) -> None:
        message = await socket.next()
        assert message["topic"] == "buffer.changed", message
        assert message["data"]["action"] == action, message
        assert message["data"]["ids"] == ids, message

    first = await web.import_png(sid, token, color="red")
    await changed("add", [first])
    second = await web.import_png(sid, token, color="blue")
    await changed("add", [second])

    status, body = await web.request("POST", f"{base}/images/{first}/ops", token,
                                     json=[{"op": "rotate", "angle": 90}])
    assert status == 200 and (body["width"], body["height"]) == (30, 40), body
    await changed("modify", [first])
    status, body = await web.request("POST", f"{base}/images/{first}/undo", token)
    assert status == 200 and (body["width"], body["height"]) == (40, 30), body
    await changed("modify", [first])

    status, body = await web.request("PUT", f"{base}/order", token,
                                     json={"order": [second, first]})
    assert status == 200 and body == {"order": [second, first]}, body
    await changed("reorder", [second, first])

    status, body = await web.request("DELETE", f"{base}/images/{first}", token)
    assert status == 200 and body == {"deleted": [first]}, body
    await changed("remove", [first])
    status, body = await web.request("DELETE", f"{base}/images", token)
    assert status == 200 and body == {"deleted": [second]}, body
    await changed("remove", [second])

    # A refused edit changes nothing and says nothing.
    status, body = await web.request("POST", f"{base}/images/{first}/ops", token,
                                     json=[{"op": "rotate", "angle": 90}])
    assert status == 404, body
    assert await socket.quiet(0.3) == []
    assert seqs(socket.seen) == consecutive(socket.hello["seq"] + 1, 7)


@web_test("service")
async def test_deleting_the_session_sends_session_closed_then_closes_the_socket_with_4000(web: Web):
    sid, token = await web.open_session()
    iid = await web.import_png(sid, token)
    socket = await web.connect(sid, token)
    status, body = await web.request("DELETE", f"/api/v1/sessions/{sid}", token)
    assert status == 200 and body == {"id": sid, "removed": 1}, body
    got = await socket.until(lambda m: m["topic"] == "session.closed")
    assert got[-1]["data"]["reason"] == "closed"
    removed = [m for m in got if m["topic"] == "buffer.changed"]
    assert [(m["data"]["action"], m["data"]["ids"]) for m in removed] == [("remove", [iid])]
    assert seqs(got) == consecutive(socket.hello["seq"] + 1, len(got))
    msg = await socket.ws.receive(timeout=WAIT)
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    assert msg.data == 4000, msg
    assert "closed" in msg.extra
    assert socket.ws.closed and socket.ws.close_code == 4000  # a clean closing handshake
    status, body = await web.info(sid, token)
    assert status == 404 and body["error"]["code"] == "not_found", body
    # The session's events are gone: a socket for it is refused.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await web.http.ws_connect(f"{web.base}/api/v1/sessions/{sid}/events",
                                  params={"token": token})
    assert refused.value.status == 404
