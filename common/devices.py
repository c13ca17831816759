"""Which actor serves a device: the scanner or the camera (the source id says)."""

from __future__ import annotations


def device_service(source: object) -> str:
    """The actor a source id belongs to: ``camera:...`` ids are cameras, others scanners."""
    return "camera" if isinstance(source, str) and source.startswith("camera:") else "scanner"
