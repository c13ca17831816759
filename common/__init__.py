"""Domain helpers shared by several actors: the job table, image checks, certificate files,
which actor owns a device, and the registry of CLI commands actors contribute.

May import ``broker``; never ``actors`` or the CLI (``scanbridge``).
"""
