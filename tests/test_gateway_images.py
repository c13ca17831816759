"""The gateway's v1 images over raw HTTP: the list, the stored file with its caching
headers and 304s, conversions, thumbnails, info and history, edits and undo, delete and
order.

One service shared with the other test_gateway_* modules of tests/support/gateway_api.py.
"""

from __future__ import annotations

import threading
import urllib.parse

import pytest
from PIL import Image

from tests.support.gateway_api import (NON_SQUARE_SIZE, Session, assert_error, decoded, picture,
                                       rgb, stored_file)
from tests.support.gateway_api import landscape, service, session  # fixtures
from tests.support.stack import poll_for
from tests.support.web import Answer

pytestmark = pytest.mark.timeout(120)


# --- reading images


def jpeg_at(session: Session, sub: str) -> tuple[Answer, Image.Image]:
    """The session's GET ``sub``, a 200 with a JPEG: (the answer, the JPEG decoded)."""
    answer = session.get(sub)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "image/jpeg"
    image = decoded(answer.body)
    assert image.format == "JPEG"
    return answer, image


def test_images_are_listed_in_page_order_with_etags(session):
    first = session.scan(pages=2)["images"]
    imported = session.imported(picture(50, 20))[0]["id"]
    images = session.images()
    assert [info["id"] for info in images] == [*first, imported]
    assert [info["index"] for info in images] == [0, 1, 2]
    etags = [info["etag"] for info in images]
    assert all(etag.startswith('"') and etag.endswith('"') for etag in etags)
    assert len(set(etags)) == 3
    for info in images:
        assert info["format"] in ("png", "jpeg", "tiff")
        assert info["mode"] in ("bw", "gray", "color")
        assert info["bytes"] > 0 and info["edits"] == 0
    assert (images[2]["width"], images[2]["height"]) == (50, 20)


def test_an_image_as_stored_is_the_buffers_file_with_revalidation_headers(service, landscape):
    session, iid = landscape
    info = session.info(iid)
    answer = session.get(f"/images/{iid}")
    assert answer.status == 200, answer.body
    assert answer.body == stored_file(service, info["etag"]).read_bytes()
    assert len(answer.body) == info["bytes"]
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.headers["Cache-Control"] == "private, no-cache"
    image = decoded(answer.body)
    assert image.format == "PNG"
    assert image.size == (info["width"], info["height"]) == NON_SQUARE_SIZE
    etag = answer.headers["ETag"]
    assert etag

    again = session.get(f"/images/{iid}", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.body == b""
    assert again.headers["ETag"] == etag

    for v in (info["etag"].strip('"'), urllib.parse.quote(info["etag"])):
        cached = session.get(f"/images/{iid}?v={v}")
        assert cached.status == 200
        assert cached.body == answer.body
        assert cached.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    stale = session.get(f"/images/{iid}?v=0123456789abcdef-7")
    assert stale.headers["Cache-Control"] == "private, no-cache"
    same = session.get(f"/images/{iid}?format=png")  # the stored format: the same file
    assert same.status == 200 and same.body == answer.body


def test_an_image_converted_to_jpeg_and_scaled_fits_the_width(landscape):
    session, iid = landscape
    answer, image = jpeg_at(session, f"/images/{iid}?format=jpeg&width=200")
    assert image.width <= 200
    assert abs(image.width / image.height - NON_SQUARE_SIZE[0] / NON_SQUARE_SIZE[1]) < 0.05
    etag = answer.headers["ETag"]
    assert etag and answer.headers["Cache-Control"] == "private, no-cache"
    again = session.get(f"/images/{iid}?format=jpeg&width=200", headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b""
    other = session.get(f"/images/{iid}?format=jpg&width=100")
    assert other.status == 200 and other.headers["ETag"] != etag
    assert decoded(other.body).width <= 100


def test_an_unknown_image_format_or_size_is_400(landscape):
    session, iid = landscape
    error = assert_error(session.get(f"/images/{iid}?format=xcf"), 400, "invalid_argument")
    assert "xcf" in error["message"]
    assert_error(session.get(f"/images/{iid}?width=0"), 400, "invalid_argument")
    assert_error(session.get(f"/images/{iid}?width=wide"), 400, "invalid_argument")
    assert_error(session.get(f"/images/{iid}/thumbnail?size=5"), 400, "invalid_argument")


def test_a_thumbnail_fits_its_size_revalidates_and_changes_after_an_edit(landscape):
    session, iid = landscape
    answer, image = jpeg_at(session, f"/images/{iid}/thumbnail?size=100")
    assert image.width <= 100 and image.height <= 100
    assert max(image.size) >= 90  # fits the box, not a speck in it
    assert image.width > image.height  # keeps the page's shape
    etag = answer.headers["ETag"]
    assert answer.headers["Cache-Control"] == "private, no-cache"

    again = session.get(f"/images/{iid}/thumbnail?size=100", headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b""

    edited = session.post(f"/images/{iid}/ops", json=[{"op": "rotate", "angle": 90}])
    assert edited.status == 200, edited.body
    after = session.get(f"/images/{iid}/thumbnail?size=100", headers={"If-None-Match": etag})
    assert after.status == 200
    assert after.headers["ETag"] != etag
    rotated = decoded(after.body)
    assert rotated.height > rotated.width and rotated.height <= 100


@pytest.mark.parametrize("sub", ["/thumbnail?size=100", "?format=jpeg&width=200"])
def test_a_thumbnail_or_conversion_pinned_to_the_images_etag_is_cached_for_good(landscape,
                                                                                sub):
    # scanbridge.js thumbnailUrl() and imageUrl() put the image's etag (from the list,
    # without quotes) in v=; that URL changes with every edit, so it may be cached for good.
    session, iid = landscape
    version = session.info(iid)["etag"].strip('"')
    pinned = session.get(f"/images/{iid}{sub}&v={version}")
    assert pinned.status == 200, pinned.body
    assert pinned.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    session.post(f"/images/{iid}/ops", json=[{"op": "invert"}])
    stale = session.get(f"/images/{iid}{sub}&v={version}")
    assert stale.status == 200
    assert stale.headers["Cache-Control"] == "private, no-cache"
    assert stale.body != pinned.body


def test_image_info_has_the_edit_history(landscape):
    session, iid = landscape
    answer = session.get(f"/images/{iid}/info")
    assert answer.status == 200, answer.body
    info = answer.json()
    assert info["id"] == iid and info["edits"] == 0
    assert len(info["history"]) == 1
    assert (info["history"][0]["width"], info["history"][0]["height"]) == NON_SQUARE_SIZE
    session.post(f"/images/{iid}/ops", json=[{"op": "rotate", "angle": 90}])
    session.post(f"/images/{iid}/ops", json=[{"op": "invert"}])
    info = session.get(f"/images/{iid}/info").json()
    assert info["edits"] == 2
    assert len(info["history"]) == 3
    assert [step["seq"] for step in info["history"]] == [0, 1, 2]
    assert (info["history"][1]["width"], info["history"][1]["height"]) == (147, 295)


def test_image_endpoints_of_an_unknown_image_are_404(session):
    for method, sub, body in (("GET", "", None), ("GET", "?format=jpeg", None),
                              ("GET", "/info", None), ("GET", "/thumbnail", None),
                              ("POST", "/ops", [{"op": "invert"}]), ("POST", "/undo", None),
                              ("DELETE", "", None)):
        answer = session.request(method, f"/images/nosuchimage{sub}", json=body)
        assert_error(answer, 404, "not_found")


# --- edits


def test_rotating_a_non_square_page_swaps_width_and_height(service, landscape):
    session, iid = landscape
    before_info = session.info(iid)
    before = session.get(f"/images/{iid}")
    old_etag = before.headers["ETag"]
    answer = session.post(f"/images/{iid}/ops", json=[{"op": "rotate", "angle": 90}])
    assert answer.status == 200, answer.body
    info = answer.json()
    assert info["id"] == iid
    assert (info["width"], info["height"]) == (147, 295)
    assert info["edits"] == 1
    assert session.info(iid) == info

    after = session.get(f"/images/{iid}", headers={"If-None-Match": old_etag})
    assert after.status == 200  # the old ETag no longer matches
    assert after.headers["ETag"] != old_etag
    assert after.body == stored_file(service, info["etag"]).read_bytes()
    old_version = urllib.parse.quote(before_info["etag"])
    stale = session.get(f"/images/{iid}?v={old_version}")  # a page's URL from before
    assert stale.body == after.body
    assert stale.headers["Cache-Control"] == "private, no-cache"
    pinned = session.get(f"/images/{iid}?v={urllib.parse.quote(info['etag'])}")
    assert pinned.body == after.body
    assert pinned.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    clockwise = decoded(before.body).convert("RGB").transpose(Image.Transpose.ROTATE_270)
    assert decoded(after.body).convert("RGB").tobytes() == clockwise.tobytes()


def test_crop_cuts_the_given_pixel_box(landscape):
    session, iid = landscape
    before = decoded(session.get(f"/images/{iid}").body).convert("RGB")
    box = {"left": 10, "top": 20, "right": 110, "bottom": 70}
    answer = session.post(f"/images/{iid}/ops", json={"op": "crop", **box})
    assert answer.status == 200, answer.body
    assert (answer.json()["width"], answer.json()["height"]) == (100, 50)
    after = decoded(session.get(f"/images/{iid}").body).convert("RGB")
    assert after.tobytes() == before.crop((10, 20, 110, 70)).tobytes()


def test_an_unknown_or_bad_edit_is_400_and_changes_nothing(landscape):
    session, iid = landscape
    info = session.info(iid)
    for ops in ([{"op": "explode"}], [], [{"op": "crop", "left": 0, "top": 0, "right": 999,
                                           "bottom": 999}], "rotate", {"ops": "rotate"}):
        assert_error(session.post(f"/images/{iid}/ops", json=ops), 400, "invalid_argument")
    assert_error(session.post(f"/images/{iid}/ops", data=b"[{", headers={
        "Content-Type": "application/json"}), 400, "bad_request")
    assert session.info(iid) == info


def test_undo_restores_the_image_before_the_last_edit(landscape):
    session, iid = landscape
    original = session.get(f"/images/{iid}").body
    session.post(f"/images/{iid}/ops", json=[{"op": "rotate", "angle": 90}])
    edited = session.post(f"/images/{iid}/ops", json=[{"op": "invert"}]).json()

    answer = session.post(f"/images/{iid}/undo")
    assert answer.status == 200, answer.body
    undone = answer.json()
    assert undone["edits"] == 1 and undone["etag"] != edited["etag"]
    assert (undone["width"], undone["height"]) == (147, 295)
    answer = session.post(f"/images/{iid}/undo")
    restored = answer.json()
    assert restored["edits"] == 0
    assert (restored["width"], restored["height"]) == NON_SQUARE_SIZE
    assert restored["etag"] not in (edited["etag"], undone["etag"])
    assert session.info(iid) == restored
    assert rgb(session.get(f"/images/{iid}").body) == rgb(original)


def test_an_edit_made_outside_the_gateway_shows_in_the_next_get(service, landscape):
    session, iid = landscape
    assert decoded(session.get(f"/images/{iid}").body).size == NON_SQUARE_SIZE
    with service.client() as client:  # as the CLI or another actor would
        client.call("buffer", "edit", {"session": session.id, "image": iid,
                                       "ops": [{"op": "rotate", "angle": 90}]}, timeout=10)
        current = session.info(iid)
        poll_for(lambda: session.get(f"/images/{iid}").body
                 == stored_file(service, current["etag"]).read_bytes(), 5,
                 "the GET answering the edited file")
        client.call("buffer", "undo", {"session": session.id, "image": iid}, timeout=10)
        current = session.info(iid)
        poll_for(lambda: session.get(f"/images/{iid}").body
                 == stored_file(service, current["etag"]).read_bytes(), 5,
                 "the GET answering the file after the undo")
        client.call("buffer", "delete", {"session": session.id, "images": [iid]}, timeout=10)
    poll_for(lambda: session.get(f"/images/{iid}").status == 404, 5, "the GET answering 404")
    assert_error(session.get(f"/images/{iid}"), 404, "not_found")


def test_gets_during_edits_never_leave_a_stale_image_behind(service, landscape):
    session, iid = landscape
    stop = threading.Event()
    failures: list[str] = []

    def reader():
        while not stop.is_set():
            answer = session.get(f"/images/{iid}")
            if answer.status != 200:
                failures.append(f"{answer.status} {answer.body[:200]!r}")
    for _ in range(3):
        readers = [threading.Thread(target=reader) for _ in range(3)]
        for thread in readers:
            thread.start()
        try:
            for _ in range(5):  # odd: the page ends up turned
                edited = session.post(f"/images/{iid}/ops", json=[{"op": "rotate",
                                                                   "angle": 90}])
                assert edited.status == 200, edited.body
        finally:
            stop.set()
            for thread in readers:
                thread.join(10)
            stop.clear()
        assert failures == []
        current = session.info(iid)
        assert session.get(f"/images/{iid}").body == \
            stored_file(service, current["etag"]).read_bytes()


# --- deleting and ordering


def test_deleting_one_image_removes_it_from_the_list_and_its_url(session):
    first, second = session.scan(pages=2)["images"]
    answer = session.delete(f"/images/{first}")
    assert answer.status == 200, answer.body
    assert answer.json() == {"deleted": [first]}
    assert session.ids() == [second]
    assert session.images()[0]["index"] == 0
    assert_error(session.get(f"/images/{first}"), 404, "not_found")
    assert_error(session.get(f"/images/{first}/thumbnail"), 404, "not_found")
    assert_error(session.delete(f"/images/{first}"), 404, "not_found")


def test_deleting_images_by_ids_and_then_all_without_a_body(session):
    ids = [session.imported(picture(20 + n, 20))[0]["id"] for n in range(4)]
    answer = session.delete("/images", json={"images": [ids[1], ids[3]]})
    assert answer.status == 200, answer.body
    assert sorted(answer.json()["deleted"]) == sorted([ids[1], ids[3]])
    assert session.ids() == [ids[0], ids[2]]

    assert_error(session.delete("/images", json={"images": ["nosuchimage"]}), 404,
                 "not_found")
    assert_error(session.delete("/images", json={"images": "all"}), 400, "invalid_argument")
    assert_error(session.delete("/images", json={"ids": [ids[0]]}), 400, "invalid_argument")
    assert session.ids() == [ids[0], ids[2]]

    answer = session.delete("/images")
    assert answer.status == 200, answer.body
    assert sorted(answer.json()["deleted"]) == sorted([ids[0], ids[2]])
    assert session.images() == []
    assert session.delete("/images").json() == {"deleted": []}


def test_put_order_reorders_the_pages(session):
    ids = session.scan(pages=3)["images"]
    wanted = [ids[2], ids[0], ids[1]]
    answer = session.put("/order", json={"order": wanted})
    assert answer.status == 200, answer.body
    assert answer.json() == {"order": wanted}
    images = session.images()
    assert [info["id"] for info in images] == wanted
    assert [info["index"] for info in images] == [0, 1, 2]
    answer = session.put("/order", json=list(reversed(wanted)))  # a bare list works too
    assert answer.status == 200, answer.body
    assert session.ids() == list(reversed(wanted))


@pytest.mark.parametrize("shape", ["missing", "duplicate", "unknown", "not ids", "no body",
                                   "unknown field"])
def test_a_wrong_order_is_refused_and_changes_nothing(session, shape):
    ids = [session.imported(picture(20 + n, 20))[0]["id"] for n in range(3)]
    body = {"missing": {"order": ids[:2]},
            "duplicate": {"order": [ids[0], ids[0], ids[1], ids[2]]},
            "unknown": {"order": [ids[0], ids[1], "nosuchimage"]},
            "not ids": {"order": [1, 2, 3]},
            "no body": None,
            "unknown field": {"order": ids, "by": "size"}}[shape]
    answer = session.put("/order", json=body)
    assert answer.status in (400, 404), (answer.status, answer.body)
    assert_error(answer, answer.status)
    assert session.ids() == ids
