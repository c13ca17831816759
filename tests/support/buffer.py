"""The buffer actor object run in the test process, and test images made with Pillow."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

from actors.buffer.buffer import Buffer
from broker import config as configlib

from .stack import write_ini


class LocalBuffer:
    """A ``Buffer`` on a temp home: call its operations as methods (``lb.b.add(...)``).

    ``session`` is an open session id. ``restart()`` makes a new Buffer object on the same
    home, as a restarted actor would (the index and files stay).
    """

    def __init__(self, home: Path, ini: str = ""):
        self.home = home
        write_ini(home, "DSConfiguration.ini", ini)
        self.b = self._start()
        self.session = self.b.open_session()["session"]

    def _start(self) -> Buffer:
        cfg = configlib.load(configlib.Home(self.home))
        cfg.home.ensure()
        buffer = Buffer(cfg)
        buffer.on_start()
        return buffer

    def ini(self, text: str) -> None:
        """Restart with these DSConfiguration.ini lines (e.g. "[buffer]\\n...")."""
        self.b.on_stop()
        write_ini(self.home, "DSConfiguration.ini", text)
        self.b = self._start()

    def restart(self) -> None:
        self.b.on_stop()
        self.b = self._start()

    def close(self) -> None:
        self.b.on_stop()


def page(width: int = 400, height: int = 300, mode: str = "RGB", marker: bool = True,
         background="white") -> Image.Image:
    """A page with a black square marking its top-left corner (to check rotations)."""
    image = Image.new(mode, (width, height), background)
    if marker:
        ImageDraw.Draw(image).rectangle((0, 0, width // 10, height // 10), fill="black")
    return image


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()
