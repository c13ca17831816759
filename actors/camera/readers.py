"""Frames from a camera source, as JPEG bytes, one after another.

JPEG frames are passed on as the source made them: an MJPEG camera's parts, a V4L2
device's MJPG buffers, an MJPG video file's packets (OpenCV's raw mode). Only other
sources (raw YUV webcams, H.264 streams and files) are decoded and encoded here.
A video file plays in a loop at its own frame rate, like a camera that never stops.
"""

from __future__ import annotations

import base64
import io
import os
import time
import urllib.error
import urllib.request
from typing import Iterator
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import cv2
from PIL import Image

from broker.protocol import Error

OPEN_TIMEOUT = 5.0  # seconds to reach an MJPEG camera or read its next part
MAX_PART = 32 * 1024 * 1024  # bytes: a bigger "frame" is a broken stream
PROPERTIES = {"brightness": cv2.CAP_PROP_BRIGHTNESS, "contrast": cv2.CAP_PROP_CONTRAST,
              "saturation": cv2.CAP_PROP_SATURATION, "gain": cv2.CAP_PROP_GAIN,
              "exposure": cv2.CAP_PROP_EXPOSURE, "auto_exposure": cv2.CAP_PROP_AUTO_EXPOSURE,
              "focus": cv2.CAP_PROP_FOCUS, "autofocus": cv2.CAP_PROP_AUTOFOCUS,
              "zoom": cv2.CAP_PROP_ZOOM}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(
        scheme)


class _Redirects(urllib.request.HTTPRedirectHandler):
    """A camera's redirects: followed to http(s) only, and its user name and password go
    to the configured origin only (urllib would send them to any host, and follow ftp://)."""

    def __init__(self, url: str):
        self.origin = _origin(url)

    def http_error_302(self, req, fp, code, msg, headers):
        target = urljoin(req.full_url, headers.get("location") or headers.get("uri") or "")
        scheme = urlsplit(target).scheme.lower()
        if scheme not in ("http", "https"):
            fp.close()
            raise Error("invalid_option", f"the camera redirects to a {scheme or 'bad'}: URL; "
                                          "only http and https redirects are followed")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != self.origin:
            new.remove_header("Authorization")
        return new


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    try:
        return Image.open(io.BytesIO(jpeg)).size  # reads the header only
    except Exception:
        raise Error("device_gone", "the camera sent a frame that is not a JPEG") from None


class MjpegReader:
    """An MJPEG camera over HTTP: ``multipart/x-mixed-replace`` of JPEG parts."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        headers = {}
        if parts.username is not None:  # urllib takes user:password@ for part of the host
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(
                credentials.encode()).decode()
            host = parts.hostname + (f":{parts.port}" if parts.port else "")
            url = urlunsplit(parts._replace(netloc=host))
        opener = urllib.request.build_opener(_Redirects(url))
        try:
            self.response = opener.open(urllib.request.Request(url, headers=headers),
                                        timeout=OPEN_TIMEOUT)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise Error("access_denied", f"the camera refused the user name or password "
                                             f"(HTTP {exc.code})") from None
            raise Error("device_gone", f"the camera answered HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise Error("device_gone", f"the camera does not answer: {exc}") from None
        ctype = self.response.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/"):
            self.response.close()
            raise Error("invalid_option", f"the camera URL sends {ctype or 'no type'}, not an "
                                          "MJPEG stream (multipart/x-mixed-replace)")
        boundary = ctype.partition("boundary=")[2].strip().strip('"')
        self.boundary = b"--" + boundary.removeprefix("--").encode()
        self.size: tuple[int, int] | None = None
        self.fps: float | None = None

    def frames(self) -> Iterator[bytes]:
        stream = self.response
        try:
            while True:
                line = stream.readline(1024)
                if not line:
                    raise Error("device_gone", "the camera ended its stream")
                if not line.startswith(self.boundary):
                    continue
                length = None
                while True:
                    header = stream.readline(4096)
                    if not header:
                        raise Error("device_gone", "the camera ended its stream")
                    if header in (b"\r\n", b"\n"):
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length is None or not 0 < length <= MAX_PART:
                    raise Error("device_gone", "the camera's stream has parts without a "
                                               "usable Content-Length")
                jpeg = stream.read(length)
                if len(jpeg) != length:
                    raise Error("device_gone", "the camera ended its stream mid-frame")
                if self.size is None:
                    self.size = jpeg_size(jpeg)
                yield jpeg
        except (OSError, ValueError) as exc:
            raise Error("device_gone", f"the camera's stream broke: {exc}") from None

    def close(self) -> None:
        self.response.close()


class OpenCvReader:
    """A V4L2 device, an RTSP stream or a video file, through OpenCV."""

    def __init__(self, target: str, kind: str, size: tuple[int, int] | None, quality: int):
        self.kind = kind
        self.quality = quality
        if kind == "v4l2":
            cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
                if size:
                    cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
                    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        else:
            if kind == "file" and not os.path.isfile(target):
                raise Error("device_gone", "the camera's video file is not there")
            cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            if kind == "v4l2" and os.path.exists(target) and not os.access(
                    target, os.R_OK | os.W_OK):
                raise Error("access_denied", f"{target} may not be opened by this user (add "
                                             "it to the video group)")
            if kind == "v4l2" and os.path.exists(target):
                raise Error("device_busy", "the camera is in use by another program")
            raise Error("device_gone", "the camera cannot be opened")
        self.cap = cap
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
        self.raw = fourcc == b"MJPG" and (
            cap.set(cv2.CAP_PROP_CONVERT_RGB, 0) if kind == "v4l2"
            else cap.set(cv2.CAP_PROP_FORMAT, -1))
        self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if size and self.size != tuple(size):
            cap.release()
            raise Error("invalid_option", f"the camera gives {self.size[0]}x{self.size[1]}, "
                                          f"not {size[0]}x{size[1]}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps <= 240 else 25.0

    def frames(self) -> Iterator[bytes]:
        period = 1.0 / self.fps
        due = time.monotonic()
        misses = 0
        while True:
            ok, frame = self.cap.read()
            if not ok:
                misses += 1
                if self.kind == "file" and misses < 3:
                    self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # play it again
                    continue
                raise Error("device_gone", "the camera stopped sending frames")
            misses = 0
            if self.raw and frame.ndim <= 2 and frame.shape[0] == 1:
                jpeg = frame.tobytes()
            else:
                ok, encoded = cv2.imencode(".jpg", frame,
                                           [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if not ok:
                    raise Error("device_gone", "a frame could not be encoded")
                jpeg = encoded.tobytes()
            if self.kind == "file":  # a camera's pace, not the disk's
                due += period
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    due = time.monotonic()
            yield jpeg

    def properties(self) -> dict[str, float]:
        """The device's adjustable properties that it answers for (V4L2 only)."""
        if self.kind != "v4l2":
            return {}
        found = {}
        for name, prop in PROPERTIES.items():
            value = self.cap.get(prop)
            if value not in (-1.0,):
                found[name] = value
        return found

    def set_property(self, name: str, value: float) -> bool:
        return self.kind == "v4l2" and name in PROPERTIES and bool(
            self.cap.set(PROPERTIES[name], value))

    def close(self) -> None:
        self.cap.release()


def open_reader(source: dict, size: tuple[int, int] | None, quality: int):
    if source["kind"] == "mjpeg":
        return MjpegReader(source["target"])
    return OpenCvReader(source["target"], source["kind"], size, quality)
