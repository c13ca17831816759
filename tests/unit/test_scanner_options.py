"""Scanner option descriptors and value checks, against a device written here: a stand-in
for a python-sane handle (``get_options``, ``get_option``, ``set_option``) whose options
change with each other as a real backend's do. No SANE, no scanner process.
"""

from __future__ import annotations

import pytest

from actors.scanner.options import (CAP_INACTIVE, CAP_SOFT_DETECT, CAP_SOFT_SELECT,
                                    FIXED_EPSILON, Settings, allowed_text, check, describe)
from broker.protocol import Error

SET = CAP_SOFT_SELECT | CAP_SOFT_DETECT
BOOL, INT, FIXED, STRING, BUTTON, GROUP = range(6)
NONE, PIXEL, BIT, MM, DPI, PERCENT = range(6)


class Device:
    """A flatbed with an ADF: ``threshold`` is active in Lineart mode only, the area is
    215.9 x 297 mm, and ``set_option`` refuses what a backend would."""

    def __init__(self, modes=("Color", "Gray", "Lineart"),
                 sources=("Flatbed", "ADF Front", "ADF Duplex")):
        self.values = {"mode": modes[0], "source": sources[0], "resolution": 150,
                       "depth": 8, "threshold": 50, "tl-x": 0.0, "tl-y": 0.0,
                       "br-x": 215.9, "br-y": 297.0, "gamma-table": None, "preview": False}
        self.modes, self.sources = list(modes), list(sources)
        self.calls: list[tuple[str, object]] = []

    def options(self):
        lineart = self.values["mode"] == "Lineart"
        return [
            (0, "", "Number of options", "", INT, NONE, 4, CAP_SOFT_DETECT, None),
            (1, "", "Scan Mode", "", GROUP, NONE, 0, 0, None),
            (2, "mode", "Mode", "Colour or not", STRING, NONE, 32, SET, self.modes),
            (3, "source", "Source", "", STRING, NONE, 32, SET, self.sources),
            (4, "resolution", "Resolution", "", INT, DPI, 4, SET, (50, 600, 25)),
            (5, "depth", "Depth", "", INT, BIT, 4, SET, [1, 8, 16]),
            (6, "threshold", "Threshold", "", INT, PERCENT, 4,
             SET | (0 if lineart else CAP_INACTIVE), (0, 100, 1)),
            (7, "preview", "Preview", "", BOOL, NONE, 4, SET, None),
            (8, "", "Geometry", "", GROUP, NONE, 0, 0, None),
            (9, "tl-x", "Left", "", FIXED, MM, 4, SET, (0.0, 215.9, 0.0)),
            (10, "tl-y", "Top", "", FIXED, MM, 4, SET, (0.0, 297.0, 0.0)),
            (11, "br-x", "Right", "", FIXED, MM, 4, SET, (0.0, 215.9, 0.0)),
            (12, "br-y", "Bottom", "", FIXED, MM, 4, SET, (0.0, 297.0, 0.0)),
            (13, "gamma-table", "Gamma", "", INT, NONE, 4 * 256, SET, (0, 255, 1)),
            (14, "calibrate", "Calibrate", "", BUTTON, NONE, 0, CAP_SOFT_SELECT, None),
            (15, "lamp-hours", "Lamp hours", "", INT, NONE, 4, CAP_SOFT_DETECT, None),
        ]

    def get_options(self):
        return self.options()

    def get_option(self, index):
        name = self.options()[index][1]
        if name == "lamp-hours":
            return 1234
        return self.values[name]

    def set_option(self, index, value):
        name = self.options()[index][1]
        self.calls.append((name, value))
        if name == "resolution" and value == 575:  # in range and on a step, yet refused
            raise Exception("Invalid argument")
        if name == "depth" and value == 16:
            raise Exception("Device busy")
        self.values[name] = value


@pytest.fixture
def device():
    return Device()


def entry(device, name):
    return next(e for e in describe(device) if e["name"] == name)


def code_and_message(call, *args) -> tuple[str, str]:
    with pytest.raises(Error) as caught:
        call(*args)
    return caught.value.code, caught.value.message


# --- descriptors


def test_describe_folds_groups_into_each_option_and_skips_the_option_count(device):
    entries = describe(device)
    assert [e["name"] for e in entries][:3] == ["mode", "source", "resolution"]
    assert {e["group"] for e in entries if e["name"] in ("mode", "preview")} == {"Scan Mode"}
    assert entry(device, "br-y")["group"] == "Geometry"
    assert entry(device, "resolution")["constraint"] == {
        "range": {"min": 50, "max": 600, "step": 25}}
    assert entry(device, "depth")["constraint"] == {"values": [1, 8, 16]}
    assert (entry(device, "resolution")["unit"], entry(device, "tl-x")["type"]) == ("dpi",
                                                                                  "fixed")


def test_describe_says_what_cannot_be_set_and_reads_no_value_of_an_inactive_option(device):
    threshold = entry(device, "threshold")
    assert (threshold["active"], threshold["settable"], threshold["value"]) == (False, False,
                                                                                None)
    gamma = entry(device, "gamma-table")  # an array: shown, not set
    assert (gamma["array"], gamma["settable"]) == (256, False)
    assert entry(device, "calibrate")["settable"] is False  # a button
    lamp = entry(device, "lamp-hours")  # read-only
    assert (lamp["settable"], lamp["readable"], lamp["value"]) == (False, True, 1234)
    assert entry(device, "preview")["value"] is False  # a bool is a bool, not 0


# --- checking one value


@pytest.mark.parametrize("value, checked", [
    (150, 150), (50, 50), (600, 600), ("300", 300), (300.0, 300)])
def test_an_int_in_range_on_a_step_is_taken_in_its_type(device, value, checked):
    result = check(entry(device, "resolution"), value)
    assert result == checked and type(result) is int


@pytest.mark.parametrize("value, why", [
    (25, " (out of range)"), (625, " (out of range)"), (160, " (not on a step)"),
    (150.5, " (not a whole number)"), (True, ""), ("high", ""), (float("nan"), ""),
    (float("inf"), ""), (None, ""), ([150], "")])
def test_an_int_out_of_range_off_a_step_or_not_a_number_is_invalid_option(device, value,
                                                                          why):
    code, message = code_and_message(check, entry(device, "resolution"), value)
    assert code == "invalid_option"
    assert message == (f"resolution: {value!r} is not allowed{why}; "
                       "allowed: 50..600 in steps of 25")


def test_a_fixed_value_within_sane_fixed_precision_of_the_bound_is_in_range(device):
    br_x = entry(device, "br-x")
    assert check(br_x, 215.9 + FIXED_EPSILON / 2) == pytest.approx(215.9, abs=FIXED_EPSILON)
    assert code_and_message(check, br_x, 215.9 + 3 * FIXED_EPSILON)[0] == "invalid_option"
    assert check(br_x, -FIXED_EPSILON / 2) == -FIXED_EPSILON / 2  # SANE rounds it to 0


def test_a_value_list_matches_numbers_and_strings_and_returns_the_device_spelling(device):
    assert check(entry(device, "depth"), 8.0) == 8
    assert check(entry(device, "mode"), "gray") == "Gray"
    code, message = code_and_message(check, entry(device, "depth"), 4)
    assert message == "depth: 4 is not allowed; allowed: one of 1, 8, 16"
    code, message = code_and_message(check, entry(device, "mode"), "Colour")
    assert message == "mode: 'Colour' is not allowed; allowed: one of Color, Gray, Lineart"


@pytest.mark.parametrize("value, checked", [
    (True, True), (0, False), (1, True), ("yes", True), ("False", False)])
def test_a_bool_takes_booleans_zero_one_and_words(device, value, checked):
    assert check(entry(device, "preview"), value) is checked


@pytest.mark.parametrize("value", [2, "on", None, 0.5])
def test_a_bool_refuses_anything_else(device, value):
    assert code_and_message(check, entry(device, "preview"), value)[1] == (
        f"preview: {value!r} is not allowed; allowed: true or false")


def test_an_inactive_or_read_only_option_cannot_be_set(device):
    assert code_and_message(check, entry(device, "threshold"), 50)[1] == (
        "threshold is not active with the other settings (e.g. another mode or source)")
    assert code_and_message(check, entry(device, "lamp-hours"), 1)[1] == (
        "lamp-hours cannot be set by software")


def test_allowed_text_shows_steps_only_when_they_are_not_the_type_s_own(device):
    assert allowed_text(entry(device, "resolution")) == "50..600 in steps of 25"
    device.values["mode"] = "Lineart"
    assert allowed_text(entry(device, "threshold")) == "0..100"  # int step 1
    assert allowed_text(entry(device, "br-x")) == "0..215.9"  # fixed step 0
    assert allowed_text({"type": "string", "constraint": None}) == "any string"


# --- settings on a device


def test_setting_one_option_re_reads_the_others_so_the_next_may_depend_on_it(device):
    settings = Settings(device)
    applied = settings.apply({"mode": "lineart", "threshold": 70})
    assert (applied["mode"], applied["threshold"]) == ("Lineart", 70)
    assert device.calls == [("mode", "Lineart"), ("threshold", 70)]


def test_a_raw_option_made_inactive_by_the_current_mode_is_refused_before_sane_sees_it(
        device):
    code, message = code_and_message(Settings(device).apply, {"threshold": 70})
    assert code == "invalid_option" and "threshold is not active" in message
    assert device.calls == []


def test_aliases_pick_the_device_values_by_meaning(device):
    settings = Settings(device)
    settings.apply({"source": "adf"})
    assert device.values["source"] == "ADF Front"  # not the duplex one
    settings.apply({"duplex": True})
    assert device.values["source"] == "ADF Duplex"
    settings.apply({"mode": "color", "resolution": 300})
    assert (device.values["mode"], device.values["resolution"]) == ("Color", 300)


def test_lineart_without_a_lineart_mode_is_gray_at_one_bit(device):
    device = Device(modes=("Color", "Gray"))
    Settings(device).apply({"mode": "lineart"})
    assert (device.values["mode"], device.values["depth"]) == ("Gray", 1)


def test_an_unknown_alias_value_lists_the_friendly_names_then_the_device_values(device):
    code, message = code_and_message(Settings(device).apply, {"source": "tray"})
    assert code == "invalid_option"
    assert message == ("source: 'tray' is not allowed; allowed: duplex, adf, flatbed, "
                       "ADF Front, ADF Duplex")


def test_page_size_sets_the_area_shrinking_before_moving_and_refuses_a_larger_page(device):
    settings = Settings(device)
    settings.apply({"page_size": "A5"})
    assert device.calls == [("tl-x", 0.0), ("tl-y", 0.0), ("br-x", 148.0), ("br-y", 210.0),
                            ("tl-x", 0.0), ("tl-y", 0.0)]
    assert settings.page_sizes() == ["A4", "A5", "A6", "B5", "Letter", "Executive"]
    code, message = code_and_message(settings.apply, {"page_size": "legal"})
    assert message.startswith("page_size: legal (215.9x355.6 mm) is larger than this "
                              "device's area (215.9x297 mm)")


@pytest.mark.parametrize("area", [
    {"left": 100, "width": 120}, {"top": -1}, {"width": 0}, {"left": True},
    {"left": 0, "right": 10}, [0, 0, 10, 10]])
def test_an_area_outside_the_bed_or_of_the_wrong_shape_is_refused(device, area):
    code, _ = code_and_message(Settings(device).apply, {"area": area})
    assert code == "invalid_option"
    assert not any(name in ("br-x", "br-y") for name, _ in device.calls)


def test_an_area_is_set_in_mm_from_its_left_top_corner(device):
    Settings(device).apply({"area": {"left": 10, "top": 20, "width": 50, "height": 60}})
    assert {k: device.values[k] for k in ("tl-x", "tl-y", "br-x", "br-y")} == {
        "tl-x": 10.0, "tl-y": 20.0, "br-x": 60.0, "br-y": 80.0}


def test_a_value_the_backend_refuses_is_invalid_option_and_other_failures_keep_their_code(
        device):
    settings = Settings(device)
    code, message = code_and_message(settings.apply, {"resolution": 575})
    assert (code, message) == ("invalid_option", "resolution: 575 is not allowed; allowed: "
                                                 "50..600 in steps of 25")
    assert code_and_message(settings.apply, {"depth": 16})[0] == "device_busy"


@pytest.mark.parametrize("values, code", [
    ([("mode", "gray")], "invalid_argument"), ({1: 2}, "invalid_argument"),
    ({"no-such-option": 1}, "invalid_option"), ({"adf": "yes"}, "invalid_option")])
def test_apply_refuses_what_is_not_a_map_of_known_names(device, values, code):
    assert code_and_message(Settings(device).apply, values)[0] == code


def test_restore_puts_back_every_settable_option_including_one_the_mode_made_inactive(
        device):
    settings = Settings(device)
    device.values["mode"] = "Lineart"
    settings.reload()
    defaults = settings.snapshot()
    assert defaults["threshold"] == 50
    settings.apply({"threshold": 90})
    settings.apply({"mode": "color", "resolution": 600, "preview": True})
    settings.restore(defaults)
    assert (device.values["mode"], device.values["threshold"], device.values["resolution"],
            device.values["preview"]) == ("Lineart", 50, 150, False)
