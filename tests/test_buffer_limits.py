"""Edits and outputs that would make a page over ``[limits] max_image_megapixels`` are
refused before the buffer allocates them.

Runs the whole service (default limit: 200 MP) and attacks it over HTTP, as a web page
could. Each refusal must be 413 ``too_large`` and leave the buffer process's peak memory
(VmHWM, reset before each request through /proc/PID/clear_refs) less than 100 MB above
what it was: a page 1 pixel tall rotated by 45 degrees, or 1 pixel resized to
20000 x 20000, would otherwise take gigabytes before the size check said no.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image

from actors.buffer import imaging
from tests.support.web import WebSession

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20
GROWTH = 100 * MB  # the most a refused request may add to the buffer's peak memory


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), "white").save(out, "PNG")
    return out.getvalue()


def vm_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def peak_growth(service, send) -> tuple[int, object]:
    """(bytes the buffer's peak RSS grew by during ``send()``, its answer)."""
    pid = service.pid("buffer")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := current RSS
    before = vm_kb(pid, "VmHWM")
    answer = send()
    assert service.pid("buffer") == pid, "the buffer died answering the request"
    return (vm_kb(pid, "VmHWM") - before) * 1024, answer


@pytest.fixture(scope="module")
def pages(api):
    """A session with a 1 x 1 page and a 60000 x 1 strip (0.06 MP, in the limit)."""
    session = WebSession(api)
    return session, session.upload(png(1, 1)), session.upload(png(60000, 1, "L"))


GROWING_EDITS = [
    pytest.param("dot", {"op": "resize", "width": 20000, "height": 20000}, id="resize-400MP"),
    pytest.param("dot", {"op": "resize", "width": 65535, "height": 65535},
                 id="resize-4GP"),  # 17 GB of RGBA: the buffer would be killed
    pytest.param("dot", {"op": "resize", "width": 65535}, id="resize-aspect-height"),
    pytest.param("strip", {"op": "resize", "height": 65535}, id="resize-aspect-width"),
    pytest.param("strip", {"op": "rotate", "angle": 45}, id="rotate-45"),  # 1.8 GP canvas
    pytest.param("strip", {"op": "rotate", "angle": -30.5, "fill": "black"}, id="rotate-30"),
]


@pytest.mark.parametrize("which,op", GROWING_EDITS)
def test_an_edit_over_the_pixel_limit_is_refused_before_it_allocates(service, pages,
                                                                     which, op):
    session, dot, strip = pages
    image = dot if which == "dot" else strip
    growth, answer = peak_growth(service, lambda: session.post(f"/images/{image}/ops",
                                                               json=[op]))
    assert answer.status == 413, answer.body
    assert answer.error["code"] == "too_large"
    assert "max_image_megapixels" in answer.error["message"]
    assert growth < GROWTH, f"peak RSS grew by {growth / MB:.0f} MB"
    listed = {i["id"]: i for i in session.get("/images").json()}
    assert (listed[image]["width"], listed[image]["edits"]) == (
        (1, 0) if which == "dot" else (60000, 0))


def test_a_chain_is_refused_at_the_op_that_grows_too_much_and_nothing_is_kept(service,
                                                                              pages):
    session, dot, _ = pages
    ops = [{"op": "resize", "width": 30000, "height": 1},  # 0.03 MP: in the limit
           {"op": "rotate", "angle": 45}]  # a 21214 x 21215 canvas: 450 MP
    growth, answer = peak_growth(service, lambda: session.post(f"/images/{dot}/ops",
                                                               json=ops))
    assert (answer.status, answer.error["code"]) == (413, "too_large")
    assert "21214x21215" in answer.error["message"]
    assert session.get(f"/images/{dot}/info").json()["width"] == 1
    assert growth < GROWTH, f"peak RSS grew by {growth / MB:.0f} MB"


@pytest.mark.parametrize("box", [{"left": -1, "top": 0, "right": 1, "bottom": 1},
                                 {"left": 0, "top": 0, "right": 70000, "bottom": 70000},
                                 {"left": 0, "top": 0, "right": 1 << 40, "bottom": 1}])
def test_a_crop_outside_the_page_is_refused_without_growing(service, pages, box):
    session, dot, _ = pages
    growth, answer = peak_growth(service, lambda: session.post(
        f"/images/{dot}/ops", json=[{"op": "crop", **box}]))
    assert (answer.status, answer.error["code"]) == (400, "invalid_argument")
    assert growth < GROWTH


def test_dpi_and_bitdepth_do_not_grow_the_canvas_and_outputs_never_enlarge(service, pages):
    session, _, strip = pages
    for ops in ([{"op": "dpi", "x": 100000}], [{"op": "bitdepth", "mode": "color"}],
                [{"op": "dpi", "x": 1}]):
        answer = session.post(f"/images/{strip}/ops", json=ops)
        assert answer.status == 200, answer.body
        assert (answer.json()["width"], answer.json()["height"]) == (60000, 1)
    for query in ("?format=png&width=65535&height=65535", "?format=jpeg&width=65535",
                  "/thumbnail?size=1024"):
        growth, answer = peak_growth(service, lambda: session.get(f"/images/{strip}{query}"))
        assert answer.status == 200, answer.body
        shown = Image.open(io.BytesIO(answer.body))
        assert shown.width <= 60000 and shown.height == 1
        assert growth < GROWTH, f"{query}: peak RSS grew by {growth / MB:.0f} MB"
    growth, answer = peak_growth(service, lambda: session.post(
        "/documents", json={"images": [strip], "format": "pdf"}))  # a page 60000 in wide
    assert answer.status == 200 and answer.body.startswith(b"%PDF-"), answer.body[:200]
    assert growth < GROWTH, f"the PDF: peak RSS grew by {growth / MB:.0f} MB"


def test_the_size_checked_before_an_edit_is_the_size_it_makes():
    """The pre-check must agree with Pillow, or pages at the limit would be wrongly
    refused or let through."""
    rng = random.Random(18)
    for _ in range(400):
        width, height = rng.randint(1, 90), rng.randint(1, 90)
        params = rng.choice([{"angle": rng.uniform(-360, 360)},
                             {"angle": rng.randint(-4, 4) * 90},
                             {"angle": rng.randint(-360, 360)},
                             {"width": rng.randint(1, 200)}, {"height": rng.randint(1, 200)},
                             {"width": rng.randint(1, 200), "height": rng.randint(1, 200)}])
        op = "rotate" if "angle" in params else "resize"
        made, _ = imaging.EDITS[op](Image.new("L", (width, height)), (1, 1), params)
        assert imaging.GROWING[op](width, height, params) == made.size, (width, height, params)
