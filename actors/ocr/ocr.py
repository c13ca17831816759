"""The OCR actor: one page per request, the page travelling as a blob.

Pages come as blobs, never as paths, so a worker on another machine (``scanbridge worker
ocr``) does the same work as a local one. Requests are idempotent: when a worker dies
mid-page the broker gives the page to another. Spreading a document's pages over the
workers, progress and cancel are the caller's (the gateway's OCR jobs, the CLI).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Annotated, Any

from PIL import Image

from broker import config as configlib
from broker.actor import Actor, operation
from broker.protocol import Error
from common import images

from . import engine as engines

MIN_SIDE = 16  # pixels: smaller images hold no readable text


class Ocr(Actor):
    service = "ocr"
    capacity = 1  # Tesseract uses one core per page; more pages = more workers

    def __init__(self, cfg: configlib.Config):
        super().__init__(cfg)
        self.max_pixels = cfg.limits.max_image_megapixels * 1_000_000
        self.engine: engines.Engine | None = None  # loads libtesseract, reads tessdata: at start
        self.worker = {"host": socket.gethostname(), "pid": os.getpid()}

    def on_start(self) -> None:
        Image.MAX_IMAGE_PIXELS = self.max_pixels
        self.engine = engines.Engine()
        if not self.engine.languages:
            self.log.error("no Tesseract language installed", tessdata=str(self.engine.folder))
        self.log.info("ocr worker ready", languages=self.engine.languages,
                      tesseract=self.engine.version(), tessdata=str(self.engine.folder))

    def on_stop(self) -> None:
        for api in self.engine.apis.values():
            api.End()

    @operation
    def languages(self) -> dict:
        """The installed languages, the default, and the Tesseract version."""
        return {"installed": self.engine.languages, "default": self.cfg.ocr.default_lang,
                "tesseract": self.engine.version(), "worker": self.worker}

    @operation
    def check(self, lang: Any = None) -> dict:
        """The language set a request would use (``a+b``), or invalid_option; before pages
        are sent, so a bad language fails the request and not its job."""
        return {**self.languages(),
                "lang": engines.check_languages(lang or self.cfg.ocr.default_lang,
                                                self.engine.languages)}

    @operation
    def page(self, blobs=(), lang: Any = None, rotate: bool | None = None, hocr: bool = False,
             index: Annotated[int, "a page number from 0"] = 0) -> dict:
        """Text, words with boxes and confidences (and hOCR) of one page image."""
        if len(blobs) != 1:
            raise Error("invalid_argument", "give the page as one blob")
        lang = engines.check_languages(lang or self.cfg.ocr.default_lang, self.engine.languages)
        rotate = self.cfg.ocr.auto_rotate if rotate is None else rotate
        if index < 0:
            raise Error("invalid_argument", "index must be a page number from 0")
        started = time.perf_counter()
        self.log.info("page started", index=index, lang=lang, bytes=len(blobs[0]))
        with images.decode(bytes(blobs[0]), self.max_pixels, "the page") as image:
            dpi = image.info.get("dpi")
            gray = images.grayscale(image)
            width, height = gray.size
            rotation, confidence = (self.engine.orientation(gray) if rotate else (0, 0.0))
            turned = engines.upright(gray, rotation)
            if dpi:
                turned.info["dpi"] = dpi
            if min(turned.size) < MIN_SIDE:
                found = {"text": "", "words": [],
                         "hocr": engines.empty_hocr(index, turned.size) if hocr else None}
            else:
                found = self.engine.recognise(turned, lang, index if hocr else None)
        result = {"index": index, "lang": lang, "rotation": rotation,
                  "orientation_confidence": confidence, "width": width, "height": height,
                  "text": found["text"], "words": found["words"],
                  "seconds": round(time.perf_counter() - started, 3), "worker": self.worker}
        if hocr:
            result["hocr"] = found["hocr"]
        self.log.info("page done", index=index, words=len(found["words"]),
                      rotation=rotation, seconds=result["seconds"])
        return result
