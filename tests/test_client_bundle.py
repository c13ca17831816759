"""dist/scanbridge.js, the client as the one file web apps host, under Node: it exports
what the service's ``/scanbridge.js`` exports, and importing it touches no network and no
document (a page loads it while the service is not running); ``olderThan``, which decides
``too_old``, compares versions as dotted numbers.

Node from ``SCANBRIDGE_NODE`` or the PATH; skipped without it.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from scanbridge import jsbundle
from tests.support.stack import ROOT
from tests.support.tools import tool

pytestmark = pytest.mark.timeout(60)

STATIC = ROOT / "actors" / "gateway" / "static"

# Every way to reach the network, or the page, throws while the module is imported.
EXPORTS = """
const trap = (name) => () => { throw new Error(`${name} used while importing`); };
for (const name of ["fetch", "WebSocket", "XMLHttpRequest", "EventSource"]) {
  globalThis[name] = trap(name);
}
Object.defineProperty(globalThis, "document", {get: trap("document"), configurable: true});
const [bundle, modules] = await Promise.all(process.argv.slice(1).map((p) => import(p)));
const shape = (m) => Object.fromEntries(Object.keys(m).sort().map((k) => [k, typeof m[k]]));
console.log(JSON.stringify({bundle: shape(bundle), modules: shape(modules),
  urls: bundle.DEFAULT_URLS}));
"""

VERSIONS = """
const {olderThan} = await import(process.argv[1]);
const cases = JSON.parse(process.argv[2]);
console.log(JSON.stringify(cases.map(([a, b]) => olderThan(a, b))));
"""


@pytest.fixture(scope="module")
def node():
    return tool("SCANBRIDGE_NODE", "node")


def run(node: str, script: str, *args: str, cwd) -> object:
    done = subprocess.run([node, "--input-type=module", "-e", script, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_bundle_has_the_exports_of_scanbridge_js_and_imports_without_network(
        node, tmp_path):
    assert jsbundle.main([str(tmp_path / "dist" / "scanbridge.js")]) == 0
    (tmp_path / "dist" / "package.json").write_text('{"type": "module"}')
    seen = run(node, EXPORTS, str(tmp_path / "dist" / "scanbridge.js"),
               str(STATIC / "scanbridge.js"), cwd=tmp_path)
    assert seen["bundle"] == seen["modules"]
    assert {"connect": "function", "ensureService": "function", "status": "function",
            "ScanbridgeError": "function", "DEFAULT_URLS": "object"}.items() \
        <= seen["bundle"].items()
    assert seen["urls"] == ["http://127.0.0.1:18625", "http://127.0.0.1:18622",
                            "https://127.0.0.1:18626", "https://127.0.0.1:18623"]


def test_versions_compare_as_dotted_numbers(node, tmp_path):
    cases = [("0.1.0", "0.2"), ("0.9", "0.10"), ("0.10", "0.9"), ("1", "1.0.0"),
             ("1.0.0", "1"), ("1.2.0rc1", "1.2"), ("2.0", "10.0"), ("0.1.0", "0.1.0")]
    seen = run(node, VERSIONS, str(STATIC / "scanbridge" / "locate.js"), json.dumps(cases),
               cwd=tmp_path)
    assert seen == [True, True, False, False, False, False, True, False]
