"""Checks of arguments several of the buffer's operations take, beyond what their
annotations say (the runtime checks those): image ids, tags, a quality, a bounding box.

Each returns the value to use or raises ``invalid_argument``; called as ``checks.tags(...)``
because the operations' own parameters carry the same names.
"""

from __future__ import annotations

from typing import Any

from broker.protocol import Error


def ids(value: Any, name: str = "images") -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Error("invalid_argument", f"{name} must be a list of image ids")
    return value


def box(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Error("invalid_argument", f"{name} must be a whole number 1..65535")
    return value


def quality(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise Error("invalid_argument", "quality must be a whole number 1..100")
    return value


def tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t) <= 64
                                              for t in value):
        raise Error("invalid_argument", "tags must be a list of strings of 1..64 characters")
    return list(dict.fromkeys(value))
