"""Small images for tests, encoded in memory."""

from __future__ import annotations

import io

from PIL import Image


def png(width: int = 40, height: int = 30, color: str = "red") -> bytes:
    """A plain RGB PNG of one colour."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()
