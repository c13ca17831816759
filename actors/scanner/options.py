"""SANE options as typed descriptors, checked values, and friendly aliases.

A descriptor says everything a form needs: name, title, description, group, type, unit,
constraint (``{"range": {min, max, step}}`` or ``{"values": [...]}``), the value now and
at open (``default``), and whether it is settable/active. Values are checked against the
constraint before SANE sees them, so a bad one is an ``invalid_option`` naming what is
allowed, and nothing is scanned.

Aliases are the same few names on every device: ``resolution``, ``mode`` (color, gray,
lineart), ``depth``, ``source`` (flatbed, adf, duplex), ``adf``/``duplex`` (booleans),
``page_size`` (A4, Letter, ...), ``area`` (mm), ``brightness``, ``contrast``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from broker.protocol import Error

from .devices import error_of

TYPES = {0: "bool", 1: "int", 2: "fixed", 3: "string", 4: "button", 5: "group"}
UNITS = {0: "none", 1: "pixel", 2: "bit", 3: "mm", 4: "dpi", 5: "percent", 6: "microsecond"}
CAP_SOFT_SELECT, CAP_HARD_SELECT, CAP_SOFT_DETECT = 1, 2, 4
CAP_EMULATED, CAP_AUTOMATIC, CAP_INACTIVE, CAP_ADVANCED = 8, 16, 32, 64
INFO_INEXACT = 1
FIXED_EPSILON = 1 / 65536 * 2  # SANE_Fixed has 16 fraction bits

PAGE_SIZES = {  # width, height in mm
    "a3": (297.0, 420.0), "a4": (210.0, 297.0), "a5": (148.0, 210.0), "a6": (105.0, 148.0),
    "b5": (176.0, 250.0), "letter": (215.9, 279.4), "legal": (215.9, 355.6),
    "executive": (184.2, 266.7),
}
MODE_PATTERNS = {
    "color": re.compile(r"colou?r|rgb", re.I),
    "gray": re.compile(r"gr[ae]y|grayscale|monochrome(?! ?1)", re.I),
    "lineart": re.compile(r"lineart|line art|binary|black ?(&|and) ?white|halftone|thresh", re.I),
}
SOURCE_PATTERNS = {
    "duplex": re.compile(r"duplex", re.I),
    "adf": re.compile(r"adf|feeder|automatic document|\bfront\b", re.I),
    "flatbed": re.compile(r"flatbed|platen|document table|glass", re.I),
}
ALIAS_ORDER = ("source", "adf", "duplex", "mode", "depth", "resolution", "page_size", "area",
               "brightness", "contrast")


def describe(handle: Any) -> list[dict]:
    """Every option of an open device as a descriptor (groups fold into ``group``)."""
    out, group = [], ""
    for index, name, title, desc, kind, unit, size, cap, constraint in handle.get_options():
        if kind == 5:
            group = title
            continue
        if index == 0 or not name:
            continue  # option 0 is the option count
        array = size // 4 if kind in (0, 1, 2) and size > 4 else None
        active = not cap & CAP_INACTIVE
        entry = {
            "name": name, "title": title, "description": desc, "group": group,
            "type": TYPES.get(kind, "unknown"), "unit": UNITS.get(unit, "none"),
            "constraint": _constraint(constraint),
            "value": None, "active": active,
            # python-sane reads and writes single values only: arrays are shown, not set.
            "settable": bool(cap & CAP_SOFT_SELECT) and active and array is None
            and kind != 4,
            "readable": bool(cap & CAP_SOFT_DETECT),
            "automatic": bool(cap & CAP_AUTOMATIC), "advanced": bool(cap & CAP_ADVANCED),
            "emulated": bool(cap & CAP_EMULATED), "index": index,
        }
        if array:
            entry["array"] = array
        if active and cap & CAP_SOFT_DETECT and kind != 4:
            try:
                entry["value"] = handle.get_option(index)
            except Exception:
                pass
            if kind == 0 and entry["value"] is not None:
                entry["value"] = bool(entry["value"])
        out.append(entry)
    return out


def _constraint(raw: Any) -> dict | None:
    if isinstance(raw, tuple) and len(raw) == 3:
        return {"range": {"min": raw[0], "max": raw[1], "step": raw[2]}}
    if isinstance(raw, list):
        return {"values": raw}
    return None


def allowed_text(entry: dict) -> str:
    constraint = entry["constraint"]
    if entry["type"] == "bool":
        return "true or false"
    if constraint is None:
        return f"any {entry['type']}"
    if "values" in constraint:
        return "one of " + ", ".join(map(_show, constraint["values"]))
    low, high, step = (constraint["range"][k] for k in ("min", "max", "step"))
    steps = f" in steps of {_show(step)}" if step and step != (1 if entry["type"] == "int"
                                                               else 0) else ""
    return f"{_show(low)}..{_show(high)}{steps}"


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _invalid(entry: dict, value: Any, why: str = "") -> Error:
    allowed = entry["constraint"] or {"type": entry["type"]}
    return Error("invalid_option", f"{entry['name']}: {value!r} is not allowed{why}; "
                 f"allowed: {allowed_text(entry)}", option=entry["name"], allowed=allowed)


def check(entry: dict, value: Any) -> Any:
    """``value`` converted to the option's type, or ``invalid_option``."""
    if not entry["active"]:
        raise Error("invalid_option", f"{entry['name']} is not active with the other "
                    "settings (e.g. another mode or source)", option=entry["name"])
    if not entry["settable"]:
        raise Error("invalid_option", f"{entry['name']} cannot be set by software",
                    option=entry["name"])
    kind, constraint = entry["type"], entry["constraint"]
    if kind == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise _invalid(entry, value)
    if kind == "string":
        if not isinstance(value, str):
            raise _invalid(entry, value)
        if constraint and "values" in constraint:
            for allowed in constraint["values"]:
                if value.lower() == allowed.lower():
                    return allowed
            raise _invalid(entry, value)
        return value
    number = _number(entry, value)
    if constraint and "values" in constraint:
        for allowed in constraint["values"]:
            if math.isclose(number, allowed, abs_tol=FIXED_EPSILON):
                return allowed
        raise _invalid(entry, value)
    if constraint:
        low, high, step = (constraint["range"][k] for k in ("min", "max", "step"))
        tol = FIXED_EPSILON if kind == "fixed" else 0
        if not low - tol <= number <= high + tol:
            raise _invalid(entry, value, " (out of range)")
        if step and abs((number - low) / step - round((number - low) / step)) * step > tol:
            raise _invalid(entry, value, " (not on a step)")
    return number


def _number(entry: dict, value: Any) -> int | float:
    if isinstance(value, bool):
        raise _invalid(entry, value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _invalid(entry, value) from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _invalid(entry, value)
    if entry["type"] == "int":
        if value != int(value):
            raise _invalid(entry, value, " (not a whole number)")
        return int(value)
    return float(value)


class Settings:
    """Applies named values and aliases to an open device, re-reading options as it goes
    (setting one option can change which others are active, or their ranges)."""

    def __init__(self, handle: Any):
        self.handle = handle
        self.reload()

    def reload(self) -> None:
        self.options = {entry["name"]: entry for entry in describe(self.handle)}

    def value(self, name: str) -> Any:
        entry = self.options.get(name)
        return entry["value"] if entry else None

    def set(self, name: str, value: Any) -> None:
        entry = self.options.get(name)
        if entry is None:
            raise Error("invalid_option", f"this device has no option {name!r}; options: "
                        f"{', '.join(self.options)}; aliases: {', '.join(ALIAS_ORDER)}",
                        option=name)
        checked = check(entry, value)
        try:
            self.handle.set_option(entry["index"], checked)
        except Exception as exc:
            error = error_of(exc, f"setting {name}")
            if error.code == "invalid_option":
                raise _invalid(entry, value) from None
            raise error from None
        self.reload()  # cheap, and always right whatever SANE's info bits said

    def snapshot(self) -> dict:
        """The values of the settable options now (a device's defaults at first open)."""
        return {name: entry["value"] for name, entry in self.options.items()
                if entry["settable"] and entry["value"] is not None}

    def restore(self, values: dict) -> None:
        """Set options back to ``values``. Backends keep values between opens (the test
        backend does), so every request starts from the defaults, not from the last
        job's settings. Two passes: a value may be settable only once another is back."""
        for _ in range(2):
            changed = False
            for name, value in values.items():
                entry = self.options.get(name)
                if entry and entry["settable"] and entry["value"] != value:
                    try:
                        self.set(name, value)
                        changed = True
                    except Error:
                        pass
            if not changed:
                return

    def apply(self, values: Any) -> dict:
        """Apply ``{name: value}``: aliases first (in a working order), then raw options."""
        if values is None:
            return {}
        if not isinstance(values, dict):
            raise Error("invalid_argument", "options must be a map of name to value")
        for name in values:
            if not isinstance(name, str):
                raise Error("invalid_argument", "option names must be strings")
        for name in ALIAS_ORDER:
            if name in values:
                getattr(self, f"_alias_{name}")(values[name])
        for name, value in values.items():
            if name not in ALIAS_ORDER:
                self.set(name, value)
        return {name: entry["value"] for name, entry in self.options.items()
                if entry["active"] and entry["value"] is not None}

    # --- aliases

    def _choose(self, name: str, wanted: Any, patterns: dict, kind: str) -> str:
        entry = self.options.get(name)
        if entry is None or not entry["constraint"] or "values" not in entry["constraint"]:
            raise Error("invalid_option", f"this device has no {kind} choice", option=name)
        values = entry["constraint"]["values"]
        if not isinstance(wanted, str):
            raise _invalid(entry, wanted)
        for value in values:
            if value.lower() == wanted.lower():
                return value
        pattern = patterns.get(wanted.lower())
        if pattern is not None:
            matches = [v for v in values if pattern.search(v)]
            if kind == "source" and wanted.lower() == "adf":
                matches = [v for v in matches if not SOURCE_PATTERNS["duplex"].search(v)]
            if matches:
                return matches[0]
        friendly = self.aliases().get(name, {}).get("values", [])
        raise Error("invalid_option", f"{name}: {wanted!r} is not allowed; allowed: "
                    f"{', '.join(friendly + [v for v in values if v.lower() not in friendly])}",
                    option=name, allowed={"values": values, "aliases": friendly})

    def _alias_source(self, wanted: Any) -> None:
        self.set("source", self._choose("source", wanted, SOURCE_PATTERNS, "source"))

    def _alias_adf(self, on: Any) -> None:
        if on is True:
            self._alias_source("adf")
        elif on is not False:
            raise Error("invalid_option", "adf must be true or false", option="adf")

    def _alias_duplex(self, on: Any) -> None:
        if on is not True and on is not False:
            raise Error("invalid_option", "duplex must be true or false", option="duplex")
        if "duplex" in self.options and self.options["duplex"]["type"] == "bool":
            self.set("duplex", on)
        elif on and "adf-mode" in self.options:  # epson: source ADF + adf-mode Duplex
            self.set("adf-mode", "Duplex")
        elif on:
            self._alias_source("duplex")

    def _alias_mode(self, wanted: Any) -> None:
        if (isinstance(wanted, str) and wanted.lower() == "lineart"
                and not self._has_value("mode", MODE_PATTERNS["lineart"])):
            # No lineart mode (e.g. the test backend): gray at 1 bit per pixel is the same.
            self.set("mode", self._choose("mode", "gray", MODE_PATTERNS, "mode"))
            if "depth" not in self.options:
                raise Error("invalid_option", "this device has no lineart mode",
                            option="mode")
            self.set("depth", 1)
            return
        self.set("mode", self._choose("mode", wanted, MODE_PATTERNS, "mode"))

    def _has_value(self, name: str, pattern: re.Pattern) -> bool:
        entry = self.options.get(name)
        values = (entry or {}).get("constraint") or {}
        return any(pattern.search(v) for v in values.get("values", ()))

    def _alias_depth(self, depth: Any) -> None:
        self.set("depth", depth)

    def _alias_resolution(self, dpi: Any) -> None:
        if "resolution" in self.options:
            self.set("resolution", dpi)
            return
        if "x-resolution" in self.options:
            self.set("x-resolution", dpi)
            if "y-resolution" in self.options:
                self.set("y-resolution", dpi)
            return
        raise Error("invalid_option", "this device has no resolution setting",
                    option="resolution")

    def _alias_brightness(self, value: Any) -> None:
        self._plain("brightness", value)

    def _alias_contrast(self, value: Any) -> None:
        self._plain("contrast", value)

    def _plain(self, name: str, value: Any) -> None:
        if name not in self.options:
            raise Error("invalid_option", f"this device has no {name} control", option=name)
        self.set(name, value)

    def max_area(self) -> tuple[float, float]:
        """The largest scan area (width, height) in mm."""
        try:
            return (self.options["br-x"]["constraint"]["range"]["max"],
                    self.options["br-y"]["constraint"]["range"]["max"])
        except (KeyError, TypeError):
            raise Error("invalid_option", "this device does not let the scan area be set",
                        option="area") from None

    def _alias_page_size(self, wanted: Any) -> None:
        width, height = self.max_area()
        if not isinstance(wanted, str) or (wanted.lower() not in PAGE_SIZES
                                           and wanted.lower() != "max"):
            raise Error("invalid_option", f"page_size: {wanted!r} is not allowed; allowed: "
                        f"max, {', '.join(self.page_sizes())}", option="page_size",
                        allowed={"values": ["max", *self.page_sizes()]})
        if wanted.lower() != "max":
            w, h = PAGE_SIZES[wanted.lower()]
            if w > width + FIXED_EPSILON or h > height + FIXED_EPSILON:
                raise Error("invalid_option", f"page_size: {wanted} ({w:g}x{h:g} mm) is "
                            f"larger than this device's area ({width:g}x{height:g} mm); "
                            f"allowed: max, {', '.join(self.page_sizes())}",
                            option="page_size", allowed={"values": ["max", *self.page_sizes()]})
            width, height = w, h
        self._set_area(0.0, 0.0, width, height)

    def page_sizes(self) -> list[str]:
        try:
            width, height = self.max_area()
        except Error:
            return []
        return [name.upper() if len(name) == 2 else name.capitalize()
                for name, (w, h) in PAGE_SIZES.items()
                if w <= width + FIXED_EPSILON and h <= height + FIXED_EPSILON]

    def _alias_area(self, area: Any) -> None:
        if not isinstance(area, dict) or set(area) - {"left", "top", "width", "height"}:
            raise Error("invalid_option", "area must be {left, top, width, height} in mm",
                        option="area")
        for name, value in area.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise Error("invalid_option", f"area.{name} must be a number of mm >= 0",
                            option="area")
        max_w, max_h = self.max_area()
        left, top = area.get("left", 0), area.get("top", 0)
        width, height = area.get("width", max_w - left), area.get("height", max_h - top)
        if width <= 0 or height <= 0 or left + width > max_w + FIXED_EPSILON \
                or top + height > max_h + FIXED_EPSILON:
            raise Error("invalid_option", f"area {area} is outside the scan area "
                        f"(0..{max_w:g} x 0..{max_h:g} mm)", option="area",
                        allowed={"width": max_w, "height": max_h})
        self._set_area(float(left), float(top), float(left + width), float(top + height))

    def _set_area(self, left: float, top: float, right: float, bottom: float) -> None:
        # Sheet-fed scanners also want the paper size; set it first where it exists.
        for name, value in (("page-width", right), ("page-height", bottom)):
            entry = self.options.get(name)
            if entry and entry["settable"] and entry["constraint"] \
                    and "range" in entry["constraint"]:
                self.set(name, min(value, entry["constraint"]["range"]["max"]))
        # Shrink before moving, so the corners never cross on the way.
        self.set("tl-x", 0.0)
        self.set("tl-y", 0.0)
        self.set("br-x", right)
        self.set("br-y", bottom)
        self.set("tl-x", left)
        self.set("tl-y", top)

    def aliases(self) -> dict:
        """The aliases this device supports, with what they accept."""
        out: dict[str, Any] = {}
        for name in ("resolution", "x-resolution", "depth", "brightness", "contrast"):
            entry = self.options.get(name)
            if entry and entry["settable"]:
                alias = "resolution" if name == "x-resolution" else name
                out.setdefault(alias, {"option": name, "type": entry["type"],
                                       "constraint": entry["constraint"]})
        for name, patterns in (("mode", MODE_PATTERNS), ("source", SOURCE_PATTERNS)):
            entry = self.options.get(name)
            if entry and entry["settable"] and entry["constraint"] \
                    and "values" in entry["constraint"]:
                values = entry["constraint"]["values"]
                names = [k for k, p in patterns.items() if any(p.search(v) for v in values)]
                if name == "mode" and "lineart" not in names and "gray" in names \
                        and 1 in ((self.options.get("depth") or {}).get("constraint")
                                  or {}).get("values", ()):
                    names.append("lineart")
                out[name] = {"option": name, "values": names, "device_values": values}
        if "source" in out:
            if "adf" in out["source"]["values"]:
                out["adf"] = {"type": "bool"}
            if "duplex" in out["source"]["values"] or "duplex" in self.options:
                out["duplex"] = {"type": "bool"}
        try:
            width, height = self.max_area()
            out["page_size"] = {"values": ["max", *self.page_sizes()]}
            out["area"] = {"unit": "mm", "width": width, "height": height}
        except Error:
            pass
        return out
