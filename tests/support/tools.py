"""Programs some tests need that the project does not install (Node, TypeScript)."""

from __future__ import annotations

import os
import shutil

import pytest


def tool(variable: str, name: str) -> str:
    """The program named by the environment ``variable``, else ``name`` on the PATH; the
    test is skipped without either."""
    found = os.environ.get(variable) or shutil.which(name)
    if not found:
        pytest.skip(f"no {name} (set {variable} to one)")
    return found
