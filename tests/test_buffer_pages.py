"""The buffer's pages and sessions: order, tags and delete; sessions opened, closed,
expired and kept over a restart; retried and staged adds.

Runs the real ``Buffer`` object in this process (SQLite and files in a temp home) through
the ``buffer`` fixture.
"""

from __future__ import annotations

import time

import pytest

from broker.protocol import Error
from tests.support.buffer import encoded, page
from tests.support.buffer_edits import (H, W, add_png, code_of, dark_corners, edit, order,
                                        page_files, pixels, stored_path)


# --- order, tags, delete

def test_list_is_in_add_order_and_index_inserts(buffer):
    a = add_png(buffer, page(40, 30))
    b = add_png(buffer, page(40, 30))
    c = buffer.b.add(buffer.session, [encoded(page(40, 30), "PNG")], index=1)
    assert c["index"] == 1
    listed = buffer.b.list_images(buffer.session)
    assert [(i["id"], i["index"]) for i in listed] == [(a, 0), (c["id"], 1), (b, 2)]


def test_move_and_reorder(buffer):
    a, b, c = (add_png(buffer, page(40, 30)) for _ in range(3))
    assert buffer.b.move(buffer.session, [c], 0) == [c, a, b] == order(buffer)
    assert buffer.b.move(buffer.session, [c, a], 1) == [b, c, a] == order(buffer)
    assert buffer.b.reorder(buffer.session, [a, b, c]) == [a, b, c] == order(buffer)
    assert [i["index"] for i in buffer.b.list_images(buffer.session)] == [0, 1, 2]


def test_reorder_needs_every_id_exactly_once(buffer):
    a, b, c = ids = [add_png(buffer, page(40, 30)) for _ in range(3)]
    for wrong in [[a, b], [a, b, b], [a, b, c, c], [c, b, "x"]]:
        assert code_of(buffer.b.reorder, buffer.session, wrong) == "invalid_argument"
    assert order(buffer) == ids


def test_tags_add_remove_and_filter(buffer):
    a, b, c = (add_png(buffer, page(40, 30)) for _ in range(3))
    buffer.b.tag(buffer.session, [a, b], add=["invoice"])
    buffer.b.tag(buffer.session, [b, c], add=["2024", "draft"])
    [info] = buffer.b.tag(buffer.session, [b], remove=["draft"])
    assert info["tags"] == ["invoice", "2024"]

    def ids(tags, match):
        return [i["id"] for i in buffer.b.list_images(buffer.session, tags=tags, match=match)]

    assert ids(["invoice", "2024"], "any") == [a, b, c]
    assert ids(["invoice", "2024"], "all") == [b]
    assert ids(["draft"], "any") == [c]
    assert ids(["nothing"], "any") == []
    assert code_of(buffer.b.list_images, buffer.session, tags=["x"],
                   match="some") == "invalid_argument"


def test_delete_removes_renumbers_and_drops_files(buffer):
    a, b, c = (add_png(buffer, page(40, 30)) for _ in range(3))
    first_file = stored_path(buffer, b)
    edit(buffer, b, {"op": "invert"})
    edited_file = stored_path(buffer, b)
    kept = {stored_path(buffer, a), stored_path(buffer, c)}
    assert buffer.b.delete(buffer.session, [b]) == {"deleted": [b]}
    listed = buffer.b.list_images(buffer.session)
    assert [(i["id"], i["index"]) for i in listed] == [(a, 0), (c, 1)]
    assert not first_file.exists() and not edited_file.exists()
    assert page_files(buffer) == kept
    assert code_of(buffer.b.get, buffer.session, b) == "not_found"


# --- sessions

def test_open_session_by_id_twice_reopens_it(buffer):
    first = buffer.b.open_session(session="scanner-42-session")
    assert (first["session"], first["new"], first["images"]) == ("scanner-42-session", True, 0)
    image = add_png(buffer, page(40, 30), session="scanner-42-session")
    again = buffer.b.open_session(session="scanner-42-session")
    assert (again["new"], again["images"]) == (False, 1)
    assert [i["id"] for i in buffer.b.list_images("scanner-42-session")] == [image]


def test_other_session_cannot_reach_the_image(buffer):
    image = add_png(buffer, page(W, H))
    other = buffer.b.open_session()["session"]
    assert code_of(buffer.b.get, other, image) == "not_found"
    assert code_of(buffer.b.edit, other, [{"op": "invert"}], image=image) == "not_found"
    assert code_of(buffer.b.delete, other, [image]) == "not_found"
    assert buffer.b.list_images(other) == []
    assert dark_corners(pixels(buffer, image)) == {"top-left"}


def test_close_session_removes_its_images_and_files(buffer):
    other = buffer.b.open_session()["session"]
    kept = add_png(buffer, page(40, 30), session=other)
    image = add_png(buffer, page(W, H))
    edit(buffer, image, {"op": "flip"})
    assert buffer.b.close_session(buffer.session) == {"session": buffer.session, "removed": 1}
    assert page_files(buffer) == {stored_path(buffer, kept, other)}
    assert code_of(buffer.b.list_images, buffer.session) == "not_found"


def test_idle_session_expires_at_the_next_tick(buffer):
    buffer.ini("[buffer]\nsession_expiry = 1\n")
    session = buffer.b.open_session()["session"]
    add_png(buffer, page(W, H), session=session)
    buffer.b.on_tick()
    assert buffer.b.session(session)["images"] == 1
    time.sleep(1.2)
    buffer.b.on_tick()
    assert code_of(buffer.b.session, session) == "not_found"
    assert page_files(buffer) == set()


def test_session_in_use_does_not_expire(buffer):
    buffer.ini("[buffer]\nsession_expiry = 1\n")
    session = buffer.b.open_session()["session"]
    image = add_png(buffer, page(W, H), session=session)
    for _ in range(3):  # used every 0.6 s: never idle for the 1 s expiry
        time.sleep(0.6)
        buffer.b.get(session, image)
        buffer.b.on_tick()
    assert buffer.b.session(session)["images"] == 1


def test_restart_keeps_sessions_images_and_history(buffer):
    data = encoded(page(W, H), "JPEG", quality=90)
    image = buffer.b.add(buffer.session, [data])["id"]
    edit(buffer, image, {"op": "rotate", "angle": 90})
    buffer.restart()
    assert buffer.session in [s["session"] for s in buffer.b.sessions()]
    info = buffer.b.info(buffer.session, image)
    assert (info["width"], info["height"], info["edits"]) == (H, W, 1)
    assert dark_corners(pixels(buffer, image)) == {"top-right"}
    buffer.b.undo(buffer.session, image)
    assert buffer.b.get(buffer.session, image).blobs[0] == data


# --- retried adds

def test_add_with_the_same_key_returns_the_first_page(buffer):
    first = buffer.b.add(buffer.session, [encoded(page(W, H), "PNG")], key="scan-7")
    files = page_files(buffer)
    again = buffer.b.add(buffer.session, [encoded(page(40, 30), "PNG")], key="scan-7")
    assert not first.get("duplicate")
    assert (again["id"], again["duplicate"], again["width"]) == (first["id"], True, W)
    assert order(buffer) == [first["id"]]
    assert page_files(buffer) == files


# --- staged adds (a scanner's pipeline: stage in parallel, commit in scan order)

def raw_page(width: int, height: int, shade: int) -> dict:
    return {"blobs": [bytes([shade]) * (width * height)], "format": "raw", "width": width,
            "height": height, "mode": "L", "dpi": [150, 150]}


def test_staged_pages_are_listed_in_commit_order_not_stage_order(buffer):
    tokens = [buffer.b.stage(buffer.session, **raw_page(W, H, shade))["stage"]
              for shade in (10, 20, 30)]
    assert buffer.b.list_images(buffer.session) == []  # durable, but not listed yet
    assert len(page_files(buffer)) == 3

    ids = [buffer.b.commit(buffer.session, token, key=f"job:{number}")["id"]
           for number, token in ((1, tokens[2]), (2, tokens[0]), (3, tokens[1]))]

    assert order(buffer) == ids
    assert [pixels(buffer, image).getpixel((0, 0)) for image in ids] == [30, 10, 20]


def test_a_commit_of_a_lost_stage_says_so_and_a_known_key_drops_the_new_file(buffer):
    first = buffer.b.commit(buffer.session, buffer.b.stage(
        buffer.session, **raw_page(W, H, 50))["stage"], key="job:1")
    token = buffer.b.stage(buffer.session, **raw_page(W, H, 60))["stage"]
    files = page_files(buffer)

    again = buffer.b.commit(buffer.session, token, key="job:1")  # a retried commit

    assert (again["id"], again["duplicate"]) == (first["id"], True)
    assert len(page_files(buffer)) == len(files) - 1
    with pytest.raises(Error) as caught:
        buffer.b.commit(buffer.session, token)
    assert caught.value.code == "not_found" and caught.value.details["stage_lost"]


def test_pages_staged_before_a_restart_are_removed_and_their_commit_fails(buffer):
    token = buffer.b.stage(buffer.session, **raw_page(W, H, 70))["stage"]
    assert len(page_files(buffer)) == 1

    buffer.restart()

    assert page_files(buffer) == set()  # recover() removed the unlisted file
    with pytest.raises(Error) as caught:
        buffer.b.commit(buffer.session, token)
    assert caught.value.details["stage_lost"]
