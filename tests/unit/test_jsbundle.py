"""The JS client as one file for web apps to host (``scanbridge/jsbundle.py``, ``make js``)
and the ``package.json`` that describes it: the package's version is the service's, it
points at the bundle, and the bundler refuses the module forms it cannot join into one
scope instead of writing a bundle that breaks in the browser.

That the bundle has the client's exports and touches no network when imported is checked
with Node in tests/test_client_bundle.py; that its types hold, with tsc in
tests/test_client_types.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from broker import __version__
from scanbridge import jsbundle

ROOT = Path(__file__).resolve().parents[2]


def test_package_json_has_the_service_version_and_publishes_the_bundle():
    package = json.loads((ROOT / "package.json").read_text())
    assert package["version"] == __version__, "package.json's version is broker.__version__"
    assert package["type"] == "module"
    assert package["exports"]["."] == "./dist/scanbridge.js"
    assert package["files"] == ["dist/scanbridge.js"]
    assert "scanbridge.jsbundle" in package["scripts"]["prepack"]


def test_the_bundle_is_one_module_with_the_entry_exports_and_no_imports(tmp_path):
    assert jsbundle.main([str(tmp_path / "out" / "scanbridge.js")]) == 0
    text = (tmp_path / "out" / "scanbridge.js").read_text()
    assert text.startswith(f"// scanbridge.js {__version__}:")
    assert not re.search(r"^\s*import\s", text, re.M), "an import statement is left"
    assert not re.search(r'import\("\.', text), "a JSDoc type still names another file"
    # Every module of the client is in it, each once.
    static = jsbundle.ENTRY.parent
    names = [f"scanbridge/{p.name}" for p in sorted((static / "scanbridge").glob("*.js"))]
    for name in [*names, "scanbridge.js"]:
        assert text.count(f"\n// --- {name}\n") == 1, name
    exported = set()
    for listed in re.findall(r"^export\s*\{([^}]*)\};", text, re.M):
        exported |= {n.strip() for n in listed.split(",")}
    exported |= set(re.findall(r"^export\s+(?:async\s+)?function\s+(\w+)", text, re.M))
    assert {"connect", "status", "ensureService", "ScanbridgeError", "Session", "ScanJob",
            "DEFAULT_URL", "DEFAULT_URLS"} <= exported


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder / "entry.js"


@pytest.mark.parametrize("files, says", [
    ({"entry.js": '/** e */\nimport { a } from "./a.js";\nimport { b } from "./b.js";\n',
      "a.js": "export const a = 1;\nconst shared = 2;\n",
      "b.js": "export const b = 1;\nfunction shared() {}\n"}, "both declare shared"),
    ({"entry.js": '/** e */\nimport { a as c } from "./a.js";\n',
      "a.js": "export const a = 1;\n"}, "renaming imports"),
    ({"entry.js": '/** e */\nimport * as a from "./a.js";\n',
      "a.js": "export const a = 1;\n"}, "only `import { a, b }"),
    ({"entry.js": '/** e */\nimport { a } from "https://cdn.example/a.js";\n'},
     "only relative modules"),
    ({"entry.js": '/** e */\nimport { a } from "./missing.js";\n'}, "no module"),
])
def test_the_bundler_refuses_what_one_scope_would_break(tmp_path, files, says):
    with pytest.raises(jsbundle.BundleError, match=re.escape(says)):
        jsbundle.bundle(write(tmp_path, files))


def test_dependencies_come_first_and_only_the_entry_exports(tmp_path):
    entry = write(tmp_path, {
        "entry.js": '/** the entry */\nimport { b } from "./b.js";\n'
                    'export * from "./a.js";\nexport { c } from "./c.js";\n'
                    "export function e() { return b; }\n",
        "a.js": 'import { c } from "./c.js";\nexport const a = c;\nexport {};\n',
        "b.js": "/** @typedef {import(\"./a.js\").T} T */\nexport const b = 2;\n",
        "c.js": "/** @typedef {{x: number}} T */\nexport class c {}\n"})
    text = jsbundle.bundle(entry)
    order = [m for m in re.findall(r"^// --- (\S+)$", text, re.M)]
    assert order == ["b.js", "c.js", "a.js", "entry.js"]
    assert "export { a };" in text and "export { c };" in text
    assert "export function e()" in text
    assert not re.search(r"^export (const|class)", text, re.M)
    assert text.count("@typedef") == 1, "b.js's alias of T is dropped"
