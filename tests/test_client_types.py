"""The client's JSDoc types hold under ``tsc --checkJs --strict``: scanbridge.js and every
module under scanbridge/ it imports, and dist/scanbridge.js, the same as one file (where
two modules declaring one name, or a type left naming another file, would show).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from scanbridge import jsbundle
from tests.support.stack import ROOT
from tests.support.tools import tool

pytestmark = pytest.mark.timeout(120)

STATIC = ROOT / "actors" / "gateway" / "static"


@pytest.fixture(scope="module")
def tsc():
    """TypeScript from ``SCANBRIDGE_TSC`` or the PATH; skipped without it."""
    return tool("SCANBRIDGE_TSC", "tsc")


def check(tsc: str, folder, *files: str) -> None:
    done = subprocess.run([tsc, "--checkJs", "--allowJs", "--strict", "--noEmit",
                           "--target", "es2022", "--module", "es2022",
                           "--lib", "es2022,dom,dom.iterable", *files],
                          cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the client's types


def test_scanbridge_js_passes_tsc_strict(tsc, tmp_path):
    shutil.copy(STATIC / "scanbridge.js", tmp_path)
    shutil.copytree(STATIC / "scanbridge", tmp_path / "scanbridge")
    modules = sorted(f"scanbridge/{path.name}" for path in (STATIC / "scanbridge").glob("*.js"))
    check(tsc, tmp_path, "scanbridge.js", *modules)


def test_the_one_file_bundle_passes_tsc_strict(tsc, tmp_path):
    assert jsbundle.main([str(tmp_path / "scanbridge.js")]) == 0
    check(tsc, tmp_path, "scanbridge.js")
