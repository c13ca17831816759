"""The camera side of bench/camera.py: the frames drawn, written as JPEGs and as a clip,
served by an MJPEG camera in its own process, and the CPU time of processes.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tests.support.stack import poll_for

SIZE = (1280, 720)
FPS = 30
FRAMES = 30  # distinct frames in the loop (one second)
QUALITY = 85
BUSY = 0.2  # CPUs used by other processes above which the figures are not clean
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
TICK = os.sysconf("SC_CLK_TCK")

# The MJPEG camera: its own process, a thread per client, frames paced at FPS from a
# fixed start (a late frame is sent at once, the next keeps the schedule).
MJPEG_SERVER = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

folder, port, fps = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
frames = [p.read_bytes() for p in sorted(folder.glob("frame-*.jpg"))]
BOUNDARY = "camframe"

class Camera(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path != "/stream":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        period, due, number = 1.0 / fps, time.monotonic(), 0
        try:
            while True:
                jpeg = frames[number % len(frames)]
                self.wfile.write(f"--{BOUNDARY}\\r\\nContent-Type: image/jpeg\\r\\n"
                                 f"Content-Length: {len(jpeg)}\\r\\n\\r\\n".encode()
                                 + jpeg + b"\\r\\n")
                self.wfile.flush()
                number += 1
                due += period
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    due = time.monotonic()
        except (BrokenPipeError, ConnectionResetError):
            pass

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", port), Camera).serve_forever()
"""


# --- the frames


def draw_frames() -> list[np.ndarray]:
    """FRAMES distinct 1280 x 720 RGB frames: a desk scene with a bar that moves, the
    frame number and a grain that shifts, like a camera's noise."""
    width, height = SIZE
    font = ImageFont.truetype(FONT, 96)
    small = ImageFont.truetype(FONT, 28)
    base = Image.new("RGB", SIZE)
    gradient = np.linspace(60, 200, width, dtype=np.float32)
    rows = np.linspace(0.8, 1.1, height, dtype=np.float32)[:, None]
    plane = np.clip(gradient[None, :] * rows, 0, 255).astype(np.uint8)
    base = Image.fromarray(np.dstack([plane, (plane * 0.9).astype(np.uint8),
                                      (plane * 0.7).astype(np.uint8)]))
    draw = ImageDraw.Draw(base)
    draw.rectangle((180, 90, 720, 650), fill=(238, 236, 228))  # a page on the desk
    for line in range(14):
        draw.text((220, 120 + line * 36), "scanbridge camera bench " * 2, font=small,
                  fill=(40, 40, 48))
    rng = np.random.default_rng(10)
    grain = rng.integers(-5, 6, (height + 8, width + 8, 3), dtype=np.int16)
    frames = []
    for number in range(FRAMES):
        image = base.copy()
        draw = ImageDraw.Draw(image)
        x = 760 + number * 16
        draw.rectangle((x, 120, x + 120, 600), fill=(200, 40 + number * 6, 60))
        draw.text((800, 620), f"{number:03d}", font=font, fill=(255, 255, 255))
        pixels = np.asarray(image).astype(np.int16)
        shift = number % 8
        pixels += grain[shift:shift + height, shift:shift + width]
        frames.append(np.clip(pixels, 0, 255).astype(np.uint8))
    return frames


def write_jpegs(frames: list[np.ndarray], folder: Path) -> list[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    jpegs = []
    for number, pixels in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=QUALITY)
        jpegs.append(buf.getvalue())
        (folder / f"frame-{number:03d}.jpg").write_bytes(buf.getvalue())
    return jpegs


def write_clip(frames: list[np.ndarray], path: Path, loops: int = 3) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write an MJPG .avi here")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, QUALITY)
    for _ in range(loops):
        for pixels in frames:
            writer.write(cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    writer.release()


def start_camera(folder: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", MJPEG_SERVER, str(folder), str(port),
                             str(FPS)])

    def listening():
        if proc.poll() is not None:
            raise RuntimeError(f"the MJPEG server exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    poll_for(listening, 20, "the MJPEG server listening", every=0.05)
    return proc


# --- CPU


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of a process (and its waited-for children) in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15 if children else 13]) / TICK


def machine_busy() -> float:
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields[:3]) + sum(fields[5:8])) / TICK
