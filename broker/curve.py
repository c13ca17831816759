"""CURVE key pairs for the broker's tcp endpoint and for remote actors.

The broker's pair lives in ``cert/broker.key`` (secret, 0600) and ``cert/broker.pub``;
remote actors are allowed by listing their public key in ``[broker] curve_clients``.
"""

from __future__ import annotations

from pathlib import Path

import zmq

from .config import Home
from .procutil import atomic_write


def generate(secret_path: Path, public_path: Path) -> tuple[bytes, bytes]:
    """Create (or read) a key pair as Z85 text files; returns (public, secret)."""
    if secret_path.exists() and public_path.exists():
        return read_key(public_path), read_key(secret_path)
    public, secret = zmq.curve_keypair()
    secret_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(secret_path, secret + b"\n", 0o600)
    atomic_write(public_path, public + b"\n", 0o644)
    return public, secret


def read_key(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if len(key) != 40:
        raise ValueError(f"{path}: not a Z85 CURVE key")
    return key


def server_keys(home: Home) -> tuple[bytes, bytes]:
    return generate(home.cert / "broker.key", home.cert / "broker.pub")
