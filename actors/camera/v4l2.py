"""What a V4L2 camera offers: pixel formats, frame sizes and frame rates, by ioctl.

OpenCV can set a size but not list them; the kernel lists them with VIDIOC_ENUM_FMT,
VIDIOC_ENUM_FRAMESIZES and VIDIOC_ENUM_FRAMEINTERVALS (linux/videodev2.h). Asking does
not disturb a stream another open file runs. Stepwise sizes (some cameras, virtual
devices) are given as the common sizes inside their range.
"""

from __future__ import annotations

import fcntl
import os
import struct
from itertools import count

CAPTURE = 1  # V4L2_BUF_TYPE_VIDEO_CAPTURE
DISCRETE = 1  # V4L2_FRMSIZE_TYPE_DISCRETE, V4L2_FRMIVAL_TYPE_DISCRETE
FMTDESC = struct.Struct("<3I32s2I3I")  # index, type, flags, description, pixelformat, mbus, rsv
FRMSIZE = struct.Struct("<3I6I2I")  # index, pixel_format, type, union (6 u32), reserved
FRMIVAL = struct.Struct("<5I6I2I")  # index, pixel_format, width, height, type, union, reserved
COMMON = ((320, 240), (640, 480), (800, 600), (1024, 768), (1280, 720), (1280, 960),
          (1600, 1200), (1920, 1080), (2048, 1536), (2592, 1944), (3840, 2160))
MAX_ENTRIES = 256  # a driver that never says "no more" is not asked forever


def _iowr(number: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord("V") << 8) | number


ENUM_FMT = _iowr(2, FMTDESC.size)
ENUM_FRAMESIZES = _iowr(74, FRMSIZE.size)
ENUM_FRAMEINTERVALS = _iowr(75, FRMIVAL.size)


def _ask(fd: int, request: int, layout: struct.Struct, *fields: int | bytes) -> tuple | None:
    buffer = bytearray(layout.pack(*fields))
    try:
        fcntl.ioctl(fd, request, buffer)
    except OSError:  # EINVAL: no entry with this index (the end of the list)
        return None
    return layout.unpack(buffer)


def _fourcc(code: int) -> str:
    return code.to_bytes(4, "little").decode("ascii", "replace").strip()


def _rates(fd: int, pixel_format: int, width: int, height: int) -> list[float]:
    rates = []
    for index in range(MAX_ENTRIES):
        found = _ask(fd, ENUM_FRAMEINTERVALS, FRMIVAL, index, pixel_format, width, height, 0,
                     *([0] * 8))
        if found is None:
            break
        kind, numerator, denominator = found[4], found[5], found[6]
        if numerator:
            rates.append(round(denominator / numerator, 2))
        if kind != DISCRETE:  # a range: its fastest end is what matters
            break
    return sorted(set(rates), reverse=True)


def _sizes(fd: int, pixel_format: int) -> list[tuple[int, int]]:
    sizes: list[tuple[int, int]] = []
    for index in range(MAX_ENTRIES):
        found = _ask(fd, ENUM_FRAMESIZES, FRMSIZE, index, pixel_format, 0, *([0] * 8))
        if found is None:
            break
        if found[2] == DISCRETE:
            sizes.append((found[3], found[4]))
            continue
        min_w, max_w, _, min_h, max_h, _ = found[3:9]
        sizes += [(w, h) for w, h in COMMON if min_w <= w <= max_w and min_h <= h <= max_h]
        break
    return sizes


def modes(device: str) -> list[dict]:
    """[{format: "MJPG", width, height, fps: [30.0, 15.0]}] the camera offers; [] if the
    device cannot be asked."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return []
    found = []
    try:
        for index in count():
            if index >= MAX_ENTRIES:
                break
            desc = _ask(fd, ENUM_FMT, FMTDESC, index, CAPTURE, 0, b"", 0, 0, 0, 0, 0)
            if desc is None:
                break
            pixel_format = desc[4]
            for width, height in _sizes(fd, pixel_format):
                found.append({"format": _fourcc(pixel_format), "width": width,
                              "height": height, "fps": _rates(fd, pixel_format, width, height)})
    finally:
        os.close(fd)
    return found
