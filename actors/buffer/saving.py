"""The buffer's ``save``: pages as one PDF or TIFF (``documents``; searchable with
``textlayer``), or each as an image, answered as blobs or written to a file."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Callable

from broker.actor import Result, operation
from broker.procutil import atomic_write_with
from broker.protocol import Error

from . import checks, documents, imaging, textlayer
from .pagefiles import DISK_ERRORS, new_id
from .reading import ReadOperations

OUTPUT_KEEP = 900.0  # seconds a saved document stays in cache/buffer/out/


class SaveOperations(ReadOperations):  # a save of images in another format reads them by get
    @operation
    def save(self, session: str, images: Any = None, format: str = "pdf", order: str = "given",
             title: str = "", author: str = "", subject: str = "", keywords: Any = None,
             pdfa: bool = False, compression: str = "auto", quality: int = 85,
             tiff_compression: str = "lzw", output: str = "blob",
             dest: str | None = None, text_layers: Any = None) -> Result:
        """Save images as one PDF or TIFF, or each as jpeg|png|bmp|gif|tiff (one blob each).

        A PDF or TIFF can go to a file instead of a blob: ``output: "file"`` writes it under
        cache/buffer/out/ (removed after OUTPUT_KEEP s; for the gateway to stream), ``dest``
        durably under upload/ (for the uploader). Either way the result has its ``path``.
        ``text_layers`` (PDF only, one per page) makes it searchable: see textlayer.py.
        """
        for name, value in (("title", title), ("author", author), ("subject", subject)):
            if len(value) > 1000:
                raise Error("invalid_argument", f"{name} must be text of up to 1000 characters")
        try:
            keywords = checks.tags(keywords)
        except Error:
            raise Error("invalid_argument", "keywords must be a list of strings of 1..64 "
                        "characters") from None
        rows = self._selection(session, images, order)
        if not rows:
            raise Error("conflict", "there are no images to save")
        quality = checks.quality(quality)
        kind = {"tif": "tiff", "jpg": "jpeg"}.get(str(format).lower(), str(format).lower())
        if kind not in ("pdf", "tiff") and kind not in imaging.OUTPUT:
            raise Error("invalid_argument", f"format {format!r} is not one of pdf, tiff, "
                                            "jpeg, png, bmp, gif")
        if output not in ("blob", "file"):
            raise Error("invalid_argument", "output must be blob or file")
        ids = [row["id"] for row in rows]
        if kind not in ("pdf", "tiff"):
            if dest is not None or output == "file":
                raise Error("invalid_argument", "a file output takes one document (pdf or tiff)")
            blobs = [self.get(session, image, kind, quality).blobs[0] for image in ids]
            fmt = imaging.OUTPUT[kind]
            return Result({"format": fmt.lower(), "media_type": imaging.MEDIA_TYPE[fmt],
                           "pages": len(blobs), "bytes": [len(b) for b in blobs],
                           "images": ids}, blobs)
        pages = [self._page(row) for row in rows]
        progress = self._progress(session, len(pages))
        if text_layers is not None:
            if kind != "pdf":
                raise Error("invalid_argument", "text_layers are for PDF documents")
            text_layers = textlayer.check_layers(text_layers, len(pages))

        def write(out) -> None:
            if kind == "pdf":
                images_only = io.BytesIO() if text_layers is not None else out
                documents.write_pdf(pages, images_only, title=title, author=author,
                                    subject=subject, keywords=keywords, pdfa=pdfa,
                                    compression=compression, quality=quality,
                                    icc_folder=self.store.root, progress=progress)
                if text_layers is not None:
                    textlayer.add(images_only.getvalue(), text_layers, out)
            else:
                documents.write_tiff(pages, out, compression=tiff_compression,
                                     quality=quality, progress=progress)
        meta = {"format": kind, "media_type": "application/pdf" if kind == "pdf" else
                "image/tiff", "pages": len(pages), "images": ids}
        target = self._target(dest, output, kind)
        if target is None:
            out = io.BytesIO()
            write(out)
            return Result({**meta, "bytes": out.tell()}, [out.getbuffer()])
        try:
            size = atomic_write_with(target, write, 0o600, durable=dest is not None)
        except OSError as exc:
            if exc.errno in DISK_ERRORS:
                raise Error("disk_full", f"the disk is full ({exc.strerror})") from None
            raise
        return Result({**meta, "bytes": size, "path": str(target)})

    def _target(self, dest: Any, output: str, kind: str) -> Path | None:
        if dest is not None:
            target = (self.home.upload / str(dest)).resolve()
            if self.home.upload.resolve() not in target.parents:
                raise Error("invalid_argument", "dest must be a file name inside upload/")
            target.parent.mkdir(parents=True, exist_ok=True)
            return target
        if output == "file":
            return self.outputs / f"{new_id(16)}.{'pdf' if kind == 'pdf' else 'tif'}"
        return None

    def _page(self, row) -> documents.Page:
        return documents.Page(self.store.path(row["file"]), row["format"], row["mode"],
                              (row["dpi_x"], row["dpi_y"]), lambda: self._decode(row))

    def _progress(self, session: str, total: int) -> Callable[[int], None]:
        def report(done: int) -> None:
            if total > 1:
                self.publish("buffer.save", {"session": session, "done": done, "total": total})
        return report

    def _remove_old_outputs(self) -> None:
        for path in self.outputs.iterdir():
            try:
                if path.stat().st_mtime < time.time() - OUTPUT_KEEP:
                    path.unlink()
            except FileNotFoundError:
                pass
