"""The buffer actor: per-session pages on disk, edited and saved on request.

``Buffer`` is its groups of operations (the table is in the package's docstring) on one
shared state (``core.BufferCore``): ``sessions``, ``adding``, ``reading``, ``editing`` and
``saving``; here is only its life: start-up, the tick and the stop.
"""

from __future__ import annotations

import ctypes

from PIL import Image

from .adding import AddOperations
from .editing import EditOperations
from .reading import ReadOperations
from .saving import SaveOperations
from .sessions import SessionOperations
from .store import Store


def release_freed_memory() -> None:
    """Make glibc give large freed blocks (decoded pages) back to the system.

    By default each thread keeps its own arena and the mmap threshold grows with use, so
    RSS stays at its peak long after pages were dropped. Measured in bench/buffer.py.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: blocks over 1 MB are mmapped
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


# The groups are listed last first: ``ops`` lists an actor's operations base class first,
# so in the order of the table.
class Buffer(SaveOperations, EditOperations, ReadOperations, AddOperations,
             SessionOperations):
    def on_start(self) -> None:
        release_freed_memory()
        Image.MAX_IMAGE_PIXELS = self.pixel_limit
        self.store = Store(self.home.buffer, self.cfg.buffer.disk_cache_limit << 20)
        self.outputs.mkdir(exist_ok=True)
        found = self.store.recover()
        self.log.info("buffer recovered", **found)
        self.on_tick()

    def on_stop(self) -> None:
        if self.store is not None:
            self.store.close()

    def on_tick(self) -> None:
        self._forget_stale_stages()
        self._remove_old_outputs()
        self._expire_sessions()
