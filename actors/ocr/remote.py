"""One remote OCR worker process: an OCR actor whose broker connection is a CURVE tcp
endpoint instead of the local ipc socket. ``scanbridge worker ocr`` (commands.py) makes
its key pair and runs and restarts these::

    python -m actors.ocr.remote ENDPOINT SERVER_KEY KEYFILE
"""

from __future__ import annotations

import sys
from pathlib import Path

from broker import curve
from broker.runtime import main as actor_main
from broker.client import CurveKeys


def main() -> None:
    """One remote worker process: ``python -m actors.ocr.remote ENDPOINT SERVER_KEY KEYFILE``."""
    from .ocr import Ocr
    endpoint, server, secret_file = sys.argv[1:4]
    keys = CurveKeys(server.encode(), curve.read_key(Path(secret_file).with_suffix(".pub")),
                     curve.read_key(Path(secret_file)))
    actor_main(Ocr, endpoint=endpoint, curve=keys, program="ocr-remote")


if __name__ == "__main__":
    main()
