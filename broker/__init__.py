"""Scanbridge's messaging core: wire protocol, broker, actor runtime, client, config, logs.

Imports nothing of ``common``, ``actors`` or the CLI (``scanbridge``): they build on it.
"""

__version__ = "0.1.0"
