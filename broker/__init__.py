"""Scanbridge's messaging core: wire protocol, broker, actor runtime, client, config, logs.

Imports nothing of ``common``, ``actors`` or the CLI (``scanbridge``): they build on it.
"""

__version__ = "0.1.0"
# The HTTP API's level (GET /api/v1/status `api`): raised when v1 gains what a page may
# need to test for; a release that changes no endpoint keeps it, whatever its version.
API_LEVEL = 1
