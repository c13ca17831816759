"""Browsers' enterprise policies that make every user's browser trust the local CA.

A system service cannot work in its users' Firefox profiles or Chromium databases (they
are the users' files, and its account may not read their homes), so ``scanbridge trust
--system`` makes the browsers trust the CA for every user through the policies their
administrators use:

- Firefox reads ``/etc/firefox/policies/policies.json`` (Mozilla's builds and Debian's
  firefox-esr alike; its ``SysConfD`` is ``/etc/firefox``). ``Certificates`` →
  ``Install`` lists certificate files, which Firefox adds to each profile as it starts:
  the entry is the world-readable copy in the system store. The file may hold an
  administrator's policies: the entry is merged into it and taken out again, and a file
  that is not the JSON object Firefox documents is left alone (an error, not a rewrite).
- Chromium (and Google Chrome, when installed) merges every ``*.json`` in
  ``/etc/chromium/policies/managed/`` (``/etc/opt/chrome/...``): Scanbridge owns its
  ``scanbridge.json``, whose ``CACertificates`` lists the CA in base64 DER.

Each is a ``Store`` of ``trust.py`` (browser ``firefox-policy`` or ``chromium-policy``);
``trust.add_ca``, ``has_ca`` and ``remove_ca`` hand them here.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.procutil import atomic_write
from common import certs
from common.certs import CertError

FIREFOX = Path("/etc/firefox/policies/policies.json")
CHROMIUM = Path("/etc/chromium/policies/managed/scanbridge.json")
CHROME = Path("/etc/opt/chrome/policies/managed/scanbridge.json")
KINDS = ("firefox-policy", "chromium-policy")
# Folders made for a policy are removed again when it leaves them empty, up to these.
KEEP = {FIREFOX: Path("/etc"), CHROMIUM: Path("/etc/chromium"),
        CHROME: Path("/etc/opt/chrome")}


class PolicyError(Exception):
    """A policy file that cannot be read or written; ``str()`` says which and why."""


def paths(kind: str) -> list[Path]:
    """The files of a kind that apply on this system (Chrome's only where it is installed;
    removal looks at every file that exists)."""
    if kind == "firefox-policy":
        return [FIREFOX]
    return [CHROMIUM] + ([CHROME] if CHROME.parent.parent.parent.is_dir() else [])


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise PolicyError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise PolicyError(f"{path} is not valid JSON ({exc}); left unchanged") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{path} is not a JSON object; left unchanged")
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write ``data``, or remove the file (and the folders it leaves empty) when it is
    empty; an existing file keeps its mode."""
    if not data:
        path.unlink(missing_ok=True)
        folder, stop = path.parent, KEEP.get(path, path.parent)
        while folder != stop and folder.is_relative_to(stop):
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent
        return
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644  # browsers read it as the desktop user
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), mode)


def _firefox_install(data: dict[str, Any], path: Path, create: bool) -> list | None:
    """``policies.Certificates.Install`` of Firefox's file (made when ``create``)."""
    node: Any = data
    for key, kind in (("policies", dict), ("Certificates", dict), ("Install", list)):
        if key not in node:
            if not create:
                return None
            node[key] = kind()
        node = node[key]
        if not isinstance(node, kind):
            raise PolicyError(f"{path}: {key} is not a JSON {kind.__name__} as Firefox "
                              "documents it; left unchanged")
    return node


def _prune(data: dict[str, Any]) -> None:
    """Drop the containers an entry's removal left empty."""
    policies = data.get("policies")
    certificates = policies.get("Certificates") if isinstance(policies, dict) else None
    if isinstance(certificates, dict) and certificates.get("Install") == []:
        del certificates["Install"]
    if certificates == {}:
        del policies["Certificates"]
    if policies == {}:
        del data["policies"]


def _der(pem: bytes) -> str:
    return base64.b64encode(certs.parse_chain(pem, "ca.pem")[0].public_bytes(
        serialization.Encoding.DER)).decode()


def _name(entry: Any) -> str | None:
    """The subject name of a base64 DER certificate of a Chromium policy."""
    try:
        return certs.common_name(x509.load_der_x509_certificate(base64.b64decode(entry)))
    except (TypeError, ValueError, CertError):
        return None


def _chromium_list(data: dict[str, Any], path: Path) -> list:
    entries = data.setdefault("CACertificates", [])
    if not isinstance(entries, list):
        raise PolicyError(f"{path}: CACertificates is not a list; left unchanged")
    return entries


def has(kind: str, nickname: str, pem: bytes | None, anchor: Path) -> bool:
    for path in paths(kind):
        data = _read(path)
        if kind == "firefox-policy":
            found = str(anchor) in (_firefox_install(data, path, create=False) or [])
        else:
            entries = _chromium_list(data, path)
            found = _der(pem) in entries if pem is not None else \
                any(_name(entry) == nickname for entry in entries)
        if not found:
            return False
    return True


def add(kind: str, pem: bytes, anchor: Path) -> None:
    """Trust the CA ``pem``; Firefox gets the path of its copy in the system store."""
    for path in paths(kind):
        data = _read(path)
        if kind == "firefox-policy":
            if not anchor.is_file():
                raise PolicyError(f"{anchor} is missing: Firefox installs the CA from "
                                  "the system store's copy (trust the system store first)")
            entries, entry = _firefox_install(data, path, create=True), str(anchor)
        else:
            entries, entry = _chromium_list(data, path), _der(pem)
        if entry not in entries:
            entries.append(entry)
            _write(path, data)


def remove(kind: str, nickname: str, anchor: Path) -> bool:
    """Take the CA named ``nickname`` out; False when no file held it."""
    removed = False
    for path in [FIREFOX] if kind == "firefox-policy" else [CHROMIUM, CHROME]:
        if not path.exists():
            continue
        data = _read(path)
        if kind == "firefox-policy":
            entries = _firefox_install(data, path, create=False) or []
            kept = [e for e in entries if e != str(anchor)]
        else:
            entries = _chromium_list(data, path)
            kept = [e for e in entries if _name(e) != nickname]
        if len(kept) == len(entries):
            continue
        entries[:] = kept
        if kind == "firefox-policy":
            _prune(data)
        elif not kept:
            del data["CACertificates"]
        _write(path, data)
        removed = True
    return removed
