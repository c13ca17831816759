"""The client's JSDoc types hold under ``tsc --checkJs --strict``: scanbridge.js and every
module under scanbridge/ it imports.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.stack import ROOT

pytestmark = pytest.mark.timeout(120)


# --- the client's types


def test_scanbridge_js_passes_tsc_strict(tmp_path):
    """The client's JSDoc types hold under ``tsc --checkJs --strict``: scanbridge.js and
    every module under scanbridge/ it imports (TypeScript from ``SCANBRIDGE_TSC`` or the
    PATH; skipped without it)."""
    tsc = os.environ.get("SCANBRIDGE_TSC") or shutil.which("tsc")
    if not tsc:
        pytest.skip("no tsc (set SCANBRIDGE_TSC to a TypeScript compiler)")
    static = ROOT / "actors" / "gateway" / "static"
    shutil.copy(static / "scanbridge.js", tmp_path)
    shutil.copytree(static / "scanbridge", tmp_path / "scanbridge")
    modules = sorted(f"scanbridge/{path.name}" for path in (static / "scanbridge").glob("*.js"))
    done = subprocess.run([tsc, "--checkJs", "--allowJs", "--strict", "--noEmit",
                           "--target", "es2022", "--module", "es2022",
                           "--lib", "es2022,dom,dom.iterable", "scanbridge.js", *modules],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
