"""The buffer's operations that read pages: the list, one page's info and file, the page
encoded as asked (``get``), thumbnails, and which pages are blank. Encodings are made on
demand into the derived cache."""

from __future__ import annotations

from typing import Any

from PIL import Image

from broker.actor import Result, operation
from broker.protocol import Error

from . import checks, imaging
from .core import BufferCore
from .store import describe

THUMBNAIL_SIZE = 200


class ReadOperations(BufferCore):
    @operation(name="list")
    def list_images(self, session: str, tags: Any = None, match: str = "any") -> list:
        """The session's images in order; ``tags`` filters (``match`` any|all)."""
        self._touch(session)
        wanted = set(checks.tags(tags))
        if match not in ("any", "all"):
            raise Error("invalid_argument", "match must be any or all")
        found = [describe(row) for row in self.store.images(session)]
        if not wanted:
            return found
        test = wanted.issubset if match == "all" else (lambda t: bool(wanted & t))
        return [info for info in found if test(set(info["tags"]))]

    @operation
    def info(self, session: str, image: str) -> dict:
        """One image with its edit history."""
        row = self._row(session, image)
        return {**describe(row), "history": self.store.history(image)}

    @operation
    def locate(self, session: str, image: str) -> dict:
        """Where the stored file is (for serving it as it is)."""
        row = self._row(session, image)
        return {"path": str(self.store.path(row["file"])), "format": row["format"].lower(),
                "media_type": imaging.MEDIA_TYPE[row["format"]], "bytes": row["bytes"],
                "etag": describe(row)["etag"]}

    @operation
    def get(self, session: str, image: str, format: str | None = None, quality: int = 85,
            width: int | None = None, height: int | None = None) -> Result:
        """The image as jpeg|png|tiff|bmp|gif, optionally shrunk to fit width x height."""
        row = self._row(session, image)
        fmt = imaging.OUTPUT.get(format.lower() if isinstance(format, str) else "",
                                 row["format"] if format is None else None)
        if fmt is None:
            raise Error("invalid_argument", f"format {format!r} is not one of "
                                            "jpeg, png, tiff, bmp, gif")
        quality = checks.quality(quality)
        width, height = checks.box(width, "width"), checks.box(height, "height")
        fits = (width or row["width"]) >= row["width"] and (height or row["height"]) >= row[
            "height"]
        if fmt == row["format"] and fits:
            data = self.store.path(row["file"]).read_bytes()
        else:
            stem = row["file"].split(".")[0]
            dpi = (row["dpi_x"], row["dpi_y"])
            name = (f"{stem}.{fmt.lower()}.{width or 0}x{height or 0}.q{quality}."
                    f"{round(dpi[0])}x{round(dpi[1])}.{imaging.EXTENSION[fmt]}")

            def make(out):
                shown = imaging.fit(self._decode(row), width, height)
                scale = shown.width / row["width"]
                imaging.encode(shown, fmt, out, (dpi[0] * scale, dpi[1] * scale), quality)
            data = self._derived(name, make)
        return Result({"id": image, "format": fmt.lower(), "media_type": imaging.MEDIA_TYPE[fmt],
                       "bytes": len(data), "etag": describe(row)["etag"]}, [data])

    @operation
    def thumbnail(self, session: str, image: str, size: int = THUMBNAIL_SIZE) -> Result:
        """A JPEG that fits in size x size (made once, then served from the cache)."""
        row = self._row(session, image)
        size = checks.box(size, "size")
        name = f"{row['file'].split('.')[0]}.thumb{size}.jpg"

        def make(out):
            source = self._decoded_or_draft(row, size)
            imaging.encode(imaging.fit(source, size, size), "JPEG", out, (72, 72), 80)
        data = self._derived(name, make)
        return Result({"id": image, "format": "jpeg", "media_type": "image/jpeg",
                       "bytes": len(data), "etag": describe(row)["etag"]}, [data])

    def _decoded_or_draft(self, row, size: int) -> Image.Image:
        cached = self.decoded.get(row["file"])
        if cached is not None:
            return cached
        draft = imaging.thumbnail_source(str(self.store.path(row["file"])), size)
        return imaging.upright(imaging.load_checked(draft, "stored page"))

    @operation
    def blank(self, session: str, images: Any = None, threshold: float | None = None) -> list:
        """Which pages are blank: ink percent under ``threshold`` (ini blank_threshold)."""
        limit = self.cfg.buffer.blank_threshold if threshold is None else threshold
        if not 0 <= limit <= 100:
            raise Error("invalid_argument", "threshold must be a percentage 0..100")
        results = []
        for row in self._selection(session, images):
            ink = imaging.ink_percent(self._decode(row))
            results.append({"id": row["id"], "blank": ink < limit, "ink": ink})
        return results
