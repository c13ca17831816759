"""The scanner actor's sources and options, and what a page looks like, as a real process
behind a real broker scanning from SANE's test backend (the stacks: tests/support/scanner.py).

The test device keeps option values between opens; the scanner sets them back to the
device's defaults before every request, which one test checks.
"""

from __future__ import annotations

import shutil

import pytest

from broker.config import CHECKOUT
from tests.support.events import Events
from tests.support.scanner import (AREA, SMALL, error_of, listed, option, pixels, png, scan,
                                   scan_to_end, start_scanning)

pytestmark = pytest.mark.timeout(60)


# --- sources and options


def test_sources_lists_the_two_test_devices_with_stable_ids(stack):
    client, _ = start_scanning(stack)

    sources = client.call("scanner", "sources", {}, timeout=10)
    refreshed = client.call("scanner", "sources", {"refresh": True}, timeout=10)

    assert [s["id"] for s in sources] == ["test:0", "test:1"]
    for entry in sources:
        assert entry["type"] == "scanner" and entry["backend"] == "test"
        assert entry["device"] == entry["id"]  # no USB address: the SANE name is stable
        assert entry["busy"] is False
        assert entry["vendor"] and entry["model"] and entry["kind"]
    assert refreshed == sources


def test_test_scanners_false_hides_the_test_devices(stack):
    client, session = start_scanning(stack, "test_scanners = false\n")

    assert client.call("scanner", "sources", {"refresh": True}, timeout=10) == []
    assert error_of(scan, client, session, SMALL).code == "not_found"


def test_a_device_gone_after_a_refresh_answers_device_gone(stack):
    client, session = start_scanning(stack)
    assert scan_to_end(client, stack, session, SMALL, source="test:1")[0] == "scan.done"
    # The operator's own ini/sane.d now configures one test device: a refresh restarts
    # SANE with it, as when a scanner is unplugged.
    own = stack.home / "ini" / "sane.d"
    shutil.copytree(CHECKOUT / "ini" / "sane.d", own)
    conf = own / "test.conf"
    conf.write_text(conf.read_text().replace("number_of_devices 2", "number_of_devices 1"))

    refreshed = client.call("scanner", "sources", {"refresh": True}, timeout=10)

    assert [s["id"] for s in refreshed] == ["test:0"]
    for call in (lambda: scan(client, session, SMALL, source="test:1"),
                 lambda: client.call("scanner", "options", {"source": "test:1"}, timeout=10)):
        error = error_of(call)
        assert error.code == "device_gone" and "test:1" in error.message
    assert error_of(scan, client, session, SMALL, source="test:9").code == "not_found"
    assert scan_to_end(client, stack, session, SMALL)[0] == "scan.done"  # test:0 still works


def test_options_are_typed_descriptors_with_aliases_and_checked_values(stack):
    client, session = start_scanning(stack)

    described = client.call("scanner", "options", {"source": "test:0"}, timeout=10)

    assert described["source"] == "test:0" and described["busy"] is False
    resolution = option(described, "resolution")
    assert (resolution["type"], resolution["unit"]) == ("fixed", "dpi")
    assert resolution["constraint"] == {"range": {"min": 1.0, "max": 1200.0, "step": 1.0}}
    assert resolution["value"] == resolution["default"] == 150.0
    assert resolution["active"] and resolution["settable"]
    mode = option(described, "mode")
    assert mode["type"] == "string" and mode["value"] == "Color"
    assert sorted(mode["constraint"]["values"]) == ["Color", "Gray"]
    assert option(described, "depth")["constraint"] == {"values": [1, 8, 16]}
    assert option(described, "tl-x")["unit"] == "mm"
    for entry in described["options"]:
        assert {"name", "title", "description", "group", "type", "unit", "constraint",
                "value", "default", "active", "settable"} <= set(entry)
    aliases = described["aliases"]
    assert sorted(aliases["mode"]["values"]) == ["color", "gray", "lineart"]
    assert sorted(aliases["source"]["values"]) == ["adf", "flatbed"]
    assert aliases["resolution"]["option"] == "resolution"
    assert aliases["area"] == {"unit": "mm", "width": 200.0, "height": 200.0}

    tried = client.call("scanner", "options", {"source": "test:0", "values": {
        "mode": "gray", "resolution": 300, "test-picture": "Grid"}}, timeout=10)
    assert option(tried, "mode")["value"] == "Gray"
    assert option(tried, "resolution")["value"] == 300.0
    assert option(tried, "test-picture")["value"] == "Grid"

    for values, named, allowed in (
            ({"resolution": 5000}, "resolution", "1..1200"),
            ({"resolution": 0}, "resolution", "1..1200"),
            ({"mode": "sepia"}, "mode", "color, gray, lineart"),
            ({"depth": 12}, "depth", "1, 8, 16")):
        error = error_of(client.call, "scanner", "options",
                         {"source": "test:0", "values": values}, timeout=10)
        assert error.code == "invalid_option", values
        assert named in error.message and allowed in error.message, error.message
        assert error.details["option"] == named
        assert error.details["allowed"], values
    error = error_of(client.call, "scanner", "options",
                     {"source": "test:0", "values": {"no-such-option": 1}}, timeout=10)
    assert error.code == "invalid_option" and "no-such-option" in error.message

    # An invalid value in a scan request: nothing is scanned, no job is recorded.
    events = Events(stack, b"scan.")
    error = error_of(scan, client, session, {**SMALL, "resolution": 5000})
    assert error.code == "invalid_option" and "1..1200" in error.message
    assert error.details["allowed"] == {"range": {"min": 1.0, "max": 1200.0, "step": 1.0}}
    error = error_of(scan, client, session, {**SMALL, "mode": "sepia"})
    assert error.code == "invalid_option" and "lineart" in error.message
    with pytest.raises(AssertionError):
        events.next(timeout=0.3)
    assert client.call("scanner", "jobs", {"session": session}, timeout=10) == []
    assert listed(client, session) == []
    sources = client.call("scanner", "sources", {}, timeout=10)
    assert not any(s["busy"] for s in sources), "the failed scan left the device reserved"


# --- what a page looks like


def test_every_request_starts_from_the_device_defaults_not_the_last_settings(stack):
    client, session = start_scanning(stack)
    tried = client.call("scanner", "options", {"source": "test:0", "values": {
        "mode": "gray", "resolution": 30}}, timeout=10)
    assert option(tried, "mode")["value"] == "Gray"
    # A scan refused for its second option must not leave the first one set either.
    assert error_of(scan, client, session, {"mode": "lineart", "resolution": 5000}).code \
        == "invalid_option"

    again = client.call("scanner", "options", {"source": "test:0"}, timeout=10)
    topic, body = scan_to_end(client, stack, session, {"area": AREA})

    assert option(again, "mode")["value"] == option(again, "mode")["default"] == "Color"
    assert option(again, "depth")["value"] == 8
    assert option(again, "resolution")["value"] == 150.0  # ini/sane.d/test.conf
    assert topic == "scan.done"
    page = png(client, session, body["images"][0])
    assert page.mode == "RGB" and page.size == pixels(100, 50, 150)


@pytest.mark.parametrize("dpi", [75, 150, 300])
@pytest.mark.parametrize("mode, pillow_mode, buffer_mode", [
    ("color", "RGB", "color"), ("gray", "L", "gray"), ("lineart", "1", "bw")])
def test_a_page_has_the_asked_pixel_size_and_mode(stack, mode, pillow_mode, buffer_mode, dpi):
    client, session = start_scanning(stack)

    topic, done = scan_to_end(client, stack, session, {"mode": mode, "resolution": dpi,
                                                        "area": AREA})

    assert topic == "scan.done" and done["state"] == "done", done
    [image] = done["images"]
    info = client.call("buffer", "info", {"session": session, "image": image}, timeout=10)
    size = pixels(AREA["width"], AREA["height"], dpi)
    assert (info["width"], info["height"]) == size
    assert info["mode"] == buffer_mode
    assert info["dpi"] == [float(dpi), float(dpi)]
    decoded = png(client, session, image)
    assert decoded.size == size
    assert decoded.mode == pillow_mode


@pytest.mark.parametrize("depth, buffer_mode, bit_depth, pixel_mode, most", [
    (1, "bw", 1, "1", 255), (8, "gray", 8, "L", 255), (16, "gray", 16, "I;16", 65535)])
def test_gray_depth_is_kept_and_16_bit_gray_stays_16_bit(stack, depth, buffer_mode, bit_depth,
                                                         pixel_mode, most):
    client, session = start_scanning(stack)

    topic, done = scan_to_end(client, stack, session, {
        **SMALL, "mode": "gray", "depth": depth, "test-picture": "Color pattern"})

    assert topic == "scan.done", done
    [image] = done["images"]
    info = client.call("buffer", "info", {"session": session, "image": image}, timeout=10)
    assert (info["mode"], info["bit_depth"], info["pixel_mode"]) == (
        buffer_mode, bit_depth, pixel_mode)
    assert info["meta"]["depth"] == depth
    decoded = png(client, session, image)
    assert decoded.size == pixels(AREA["width"], AREA["height"], 75)
    low, high = decoded.getextrema()
    if depth == 16:
        assert decoded.mode in ("I;16", "I"), decoded.mode
        assert high > 255, "16-bit samples were cut to 8 bits"
        assert high <= most
        width, height = decoded.size
        values = {decoded.getpixel((x, y)) for x in range(0, width, 5)
                  for y in range(0, height, 5)}
        assert len(values) > 2, "only black and white: not the colour pattern"
        assert any(value % 257 for value in values), "8-bit samples scaled up to 16 bits"
    else:
        assert decoded.mode == pixel_mode
        assert high <= most
    assert low < high, "the picture is flat"
