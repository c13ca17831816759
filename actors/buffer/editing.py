"""The buffer's operations that change pages: ``edit`` (one undoable version per call),
``undo``, ``delete``, the order (``reorder``, ``move``) and ``tag``."""

from __future__ import annotations

from typing import Annotated, Any

from broker.actor import operation
from broker.protocol import Error

from . import checks, imaging
from .core import BufferCore
from .store import describe


class EditOperations(BufferCore):
    @operation
    def edit(self, session: str, ops: Any, image: str | None = None,
             images: Any = None) -> list:
        """Apply ``ops`` ([{op: rotate, angle: 90}, ...]) to images as one undoable edit."""
        imaging.check_ops(ops)
        targets = checks.ids(images) if images is not None else checks.ids(image, "image")
        results = []
        for target in targets:
            with self._lock(target):
                row = self._row(session, target)
                base = self._decode(row)
                edited, dpi = imaging.apply(base, (row["dpi_x"], row["dpi_y"]), ops,
                                            self.pixel_limit)
                if edited is base:  # only the DPI changed: keep sharing the file
                    page = {"file": row["file"], "format": row["format"], "width": row["width"],
                            "height": row["height"], "mode": row["mode"], "dpi": dpi,
                            "bytes": row["bytes"]}
                else:
                    page = self._write_pixels(edited, dpi)
                try:
                    self.store.add_version(session, target, row["seq"], page, ops)
                except BaseException:
                    if page["file"] != row["file"]:
                        self.store.remove_files([page["file"]])
                    raise
            results.append(describe(self.store.image(session, target)))
        self._changed(session, "modify", targets)
        return results

    @operation
    def undo(self, session: str, image: str) -> dict:
        """Undo the last edit of an image."""
        with self._lock(image):
            self._row(session, image)
            self.store.remove_files(self.store.undo(session, image))
        self._changed(session, "modify", [image])
        return describe(self.store.image(session, image))

    @operation
    def delete(self, session: str, images: Any) -> dict:
        """Delete images (their files go too)."""
        ids = checks.ids(images)
        self._touch(session)
        self.store.remove_files(self.store.delete(session, ids))
        with self._locks_lock:
            for image in ids:
                self._locks.pop(image, None)
        self._changed(session, "remove", ids)
        return {"deleted": ids}

    @operation
    def reorder(self, session: str, order: Any) -> list:
        """Set the page order: ``order`` lists every image id once."""
        self._touch(session)
        self.store.reorder(session, checks.ids(order, "order"))
        self._changed(session, "reorder", checks.ids(order, "order"))
        return [row["id"] for row in self.store.images(session)]

    @operation
    def move(self, session: str, images: Any,
             index: Annotated[int, "a whole number >= 0"]) -> list:
        """Move images (in the order given) so the first lands at ``index``."""
        moving = checks.ids(images)
        if index < 0:
            raise Error("invalid_argument", "index must be a whole number >= 0")
        self._touch(session)
        current = [row["id"] for row in self.store.images(session)]
        missing = [image for image in moving if image not in current]
        if missing or len(set(moving)) != len(moving):
            raise Error("not_found" if missing else "invalid_argument",
                        f"cannot move {missing or 'an image twice'} in session {session}")
        rest = [image for image in current if image not in set(moving)]
        order = rest[:index] + moving + rest[index:]
        self.store.reorder(session, order)
        self._changed(session, "reorder", order)
        return order

    @operation
    def tag(self, session: str, images: Any, add: Any = None, remove: Any = None) -> list:
        """Add and/or remove tags on images."""
        adding, removing = checks.tags(add), set(checks.tags(remove))
        results = []
        for image in checks.ids(images):
            with self._lock(image):
                row = self._row(session, image)
                tags = [t for t in describe(row)["tags"] if t not in removing]
                tags += [t for t in adding if t not in tags]
                self.store.set_tags(session, image, tags)
            results.append(describe(self.store.image(session, image)))
        self._changed(session, "modify", checks.ids(images))
        return results
