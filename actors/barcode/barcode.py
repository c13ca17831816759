"""The barcode actor: reads barcodes on a session's pages, or on an image given as a blob.

Pages are read from the buffer's stored file (``locate``), decoded here with Pillow, so
the buffer does no work for it. Results list, per page, every symbol found with its
format, text, raw bytes (base64) and corners in page pixels. A blank or tiny page gives
an empty list, not an error; a blob that is not an image gives ``invalid_image``; one over
``max_image_megapixels`` gives ``too_large``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from PIL import Image

from broker import config as configlib
from broker.actor import Actor, operation
from broker.protocol import Error
from common import images as images_lib

from . import engines

MIN_SIDE = 8  # pixels: smaller images hold no readable symbol
ImageIds = Annotated[list[str], "a list of image ids"]


class Barcode(Actor):
    service = "barcode"
    capacity = 2  # zxing-cpp releases the GIL: two pages at once use two cores

    def __init__(self, cfg: configlib.Config):
        super().__init__(cfg)
        self.engine = cfg.barcode.engine
        self.max_pixels = cfg.limits.max_image_megapixels * 1_000_000

    def on_start(self) -> None:
        Image.MAX_IMAGE_PIXELS = self.max_pixels  # Pillow's own bomb check, at our limit

    def _engine(self, engine: Any) -> str:
        engine = self.engine if engine is None else engine
        if engine not in engines.ENGINES:
            raise Error("invalid_argument", f"engine must be one of {', '.join(engines.ENGINES)}")
        return engine

    @operation
    def check(self, formats: Any = None, region: Any = None, engine: Any = None) -> dict:
        """Check a read's options before pages are sent: the formats it will look for."""
        engine = self._engine(engine)
        engines.check_region(region)
        return {"engine": engine, "formats": engines.check_formats(formats, engine)}

    @operation
    def read(self, session: str, images: ImageIds | None = None, formats: Any = None,
             region: Any = None, engine: Any = None) -> dict:
        """Barcodes on the session's pages (all, or ``images``), in page order."""
        engine = self._engine(engine)
        names = engines.check_formats(formats, engine)
        client = self.client()
        listed = client.call("buffer", "list", {"session": session})
        if images is not None:
            known = {page["id"]: page for page in listed}
            missing = [i for i in images if i not in known]
            if missing:
                raise Error("not_found", f"no image {missing[0]!r} in this session")
            chosen = set(images)
            listed = [page for page in listed if page["id"] in chosen]  # in page order
        started = time.perf_counter()
        pages = []
        for number, page in enumerate(listed, 1):
            if self.call is not None:
                self.call.check()
            where = client.call("buffer", "locate", {"session": session, "image": page["id"]})
            with images_lib.decode(where["path"], self.max_pixels, "the stored page") as image:
                found = self._read(image, names, region, engine)
            pages.append({"image": page["id"], "index": page.get("index", number - 1),
                          "barcodes": found})
            if len(listed) > 1:  # the gateway's jobs ask page by page and report themselves
                self.publish("barcode.progress", {"session": session, "done": number,
                                                  "total": len(listed)})
        return {"engine": engine, "pages": pages,
                "seconds": round(time.perf_counter() - started, 3)}

    @operation
    def decode(self, blobs=(), formats: Any = None, region: Any = None,
               engine: Any = None) -> dict:
        """Barcodes on each image given as a blob (JPEG, PNG, TIFF, BMP)."""
        engine = self._engine(engine)
        names = engines.check_formats(formats, engine)
        if not blobs:
            raise Error("invalid_argument", "give the image as a blob")
        pages = []
        for number, blob in enumerate(blobs):
            with images_lib.decode(bytes(blob), self.max_pixels) as image:
                pages.append({"index": number,
                              "barcodes": self._read(image, names, region, engine)})
        return {"engine": engine, "pages": pages}

    def _read(self, image: Image.Image, names: list[str], region: Any,
              engine: str) -> list[dict]:
        part, left, top = engines.crop(image, region)
        if part.width < MIN_SIDE or part.height < MIN_SIDE:
            return []
        return engines.shifted(engines.read(part, names, engine), left, top)
