"""Camera sources: the machine's V4L2 devices and the named ones of ``[camera] sources``.

Ids are stable across restarts and replugging: ``camera:NAME`` for a named source, and for
a V4L2 device its ``/dev/v4l/by-id`` name (vendor, model, serial) when udev made one, else
its ``videoN`` node. Only capture nodes are listed (``index`` 0 of a device in sysfs: the
others are metadata nodes of the same camera).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from broker.logs import mask_url
from broker.protocol import Error

SYSFS = Path("/sys/class/video4linux")
BY_ID = Path("/dev/v4l/by-id")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "camera"


def kind_of(target: str) -> str:
    scheme = urlsplit(target).scheme.lower()
    if scheme in ("http", "https"):
        return "mjpeg"
    if scheme in ("rtsp", "rtsps", "rtmp"):
        return "stream"
    return "file"


def v4l2_devices() -> list[dict]:
    if not SYSFS.is_dir():
        return []
    by_id = {}
    if BY_ID.is_dir():
        for link in BY_ID.iterdir():
            try:
                by_id[os.path.realpath(link)] = link.name
            except OSError:
                continue
    found = []
    for node in sorted(SYSFS.glob("video*"), key=lambda p: int(p.name[5:] or 0)):
        try:
            if (node / "index").read_text().strip() not in ("", "0"):
                continue
            name = (node / "name").read_text().strip()
        except OSError:
            continue
        device = f"/dev/{node.name}"
        stable = by_id.get(device)
        sid = f"camera:{_slug(stable.removeprefix('usb-'))}" if stable else f"camera:{node.name}"
        found.append({"id": sid, "type": "camera", "name": name or node.name, "kind": "v4l2",
                      "device": device})
    return found


def listing(named: dict[str, str], v4l2: bool) -> list[dict]:
    sources = [{"id": f"camera:{name}", "type": "camera", "name": name, "kind": kind_of(target),
                "device": mask_url(target), "target": target} for name, target in named.items()]
    taken = {s["id"] for s in sources}
    for device in v4l2_devices() if v4l2 else []:
        sid, number = device["id"], 2
        while sid in taken:
            sid, number = f"{device['id']}-{number}", number + 1
        taken.add(sid)
        sources.append({**device, "id": sid, "target": device["device"]})
    return sources


def find(sources: list[dict], source: object) -> dict:
    if not isinstance(source, str):
        raise Error("invalid_argument", "source must be a camera source id")
    for entry in sources:
        if source in (entry["id"], entry["device"]):
            return entry
    known = ", ".join(s["id"] for s in sources) or "none"
    raise Error("not_found", f"no camera {source!r} (cameras: {known})")


def public(entry: dict) -> dict:
    """What clients see of a source: never the target (it may hold a password)."""
    return {k: v for k, v in entry.items() if k != "target"}
