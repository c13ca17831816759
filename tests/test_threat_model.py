"""docs/security.md's threat-model table names the tests that replay each attack: every
module and test it names must exist, so the table cannot point at a test that was renamed
or removed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECURITY = ROOT / "docs" / "security.md"


def threat_rows() -> list[str]:
    text = SECURITY.read_text()
    section = text.split("## Threat model", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| attacker")]


def module_tests(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_test_the_threat_model_names_exists():
    rows = threat_rows()
    assert len(rows) >= 15
    named = 0
    for row in rows:
        cell = row.rstrip(" |").rsplit("|", 1)[1]
        module = None
        for match in re.finditer(r"`(?:(test_\w+\.py))?(?:::(test_\w+))?`?", cell):
            if match.group(1):
                module = ROOT / "tests" / match.group(1)
                assert module.is_file(), f"{row}: no {module.name}"
            if match.group(2):
                assert module is not None, row
                assert match.group(2) in module_tests(module), f"{module.name}::{match.group(2)}"
                named += 1
        assert module is not None, f"a row names no test module: {row}"
    assert named >= 15
