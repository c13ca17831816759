"""``python -m scanbridge.jsbundle [OUT]``: scanbridge.js and its modules as one file.

The service serves ``/scanbridge.js``, which imports its parts from ``/scanbridge/``. A page
that must work while the service is missing (to offer its download: ``ensureService``)
cannot load the client from it, so it hosts the client itself, and one file is what a web
app copies or gets from npm (``package.json``). This writes that file,
``dist/scanbridge.js`` by default (``make js``; npm's ``prepack`` runs it too): a single ES
module with the same exports, made without npm and without a JavaScript parser.

How: the modules are concatenated in the order the browser evaluates them (depth first,
an import before its importer), their import lines dropped and, but for the entry's,
their ``export`` keywords, so they share one scope. That is sound because the client keeps
to a few forms, which this checks and refuses otherwise: named imports of relative modules
without renaming (``import { a, b } from "./x.js"``), and no two modules declaring the same
top-level name. JSDoc ``import("./x.js").T`` types become plain ``T`` (one file now), so the
bundle keeps its types; ``tsc`` checks it (tests/test_client_types.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "actors" / "gateway" / "static" / "scanbridge.js"
DEFAULT_OUT = Path("dist") / "scanbridge.js"

IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"([^"]+)";[ \t]*\n', re.M)
EXPORT_FROM = re.compile(r'^export\s*(\*|\{[^}]*\})\s*from\s*"([^"]+)";[ \t]*\n', re.M)
EXPORT_LIST = re.compile(r"^export\s*\{([^}]*)\};[^\n]*\n", re.M)
OTHER_IMPORT = re.compile(r"^import\b", re.M)
DECLARED = re.compile(r"^(export\s+)?(?:async\s+)?(?:function\*?|class|const|let|var)\s+([\w$]+)",
                      re.M)
JSDOC = re.compile(r"/\*\*.*?\*/", re.S)
TYPE_IMPORT = re.compile(r'import\("\.{1,2}/[^"]+\.js"\)\.')
# A typedef that only names another module's type (`@typedef {import("./x.js").T} T`,
# perhaps generic): in one file it would name itself.
ALIAS = re.compile(r'@typedef\s*\{import\("[^"]+"\)\.([\w$]+)(?:<[^}]*>)?\}\s+\1\s*'
                   r'(?:\*/|\n)')
TAG = re.compile(r"@(\w+)")


class BundleError(Exception):
    """The modules use a form this bundler does not handle."""


class Module:
    def __init__(self, path: Path, root: Path):
        self.path = path
        self.text = path.read_text()
        self.name = path.relative_to(root).as_posix()
        self.deps: list[Path] = []  # in source order, imports and re-exports alike
        for match in sorted([*IMPORT.finditer(self.text), *EXPORT_FROM.finditer(self.text)],
                            key=lambda m: m.start()):
            self.deps.append(self.resolve(match.group(2)))
        for match in IMPORT.finditer(self.text):
            if " as " in match.group(1):
                raise BundleError(f"{self.name}: renaming imports is not handled: "
                                  f"{match.group(0).strip()}")
        stray = len(OTHER_IMPORT.findall(self.text)) - len(IMPORT.findall(self.text))
        if stray:
            raise BundleError(f"{self.name}: only `import {{ a, b }} from \"./x.js\";` is "
                              "handled (one statement a line)")

    def resolve(self, spec: str) -> Path:
        if not spec.startswith("./") and not spec.startswith("../"):
            raise BundleError(f"{self.name}: imports {spec}: only relative modules are bundled")
        return (self.path.parent / spec).resolve()

    def exports(self) -> list[str]:
        """The names it exports at run time (typedef-only modules: none)."""
        names = [m.group(2) for m in DECLARED.finditer(self.text) if m.group(1)]
        for match in EXPORT_LIST.finditer(self.text):
            names += [n.strip() for n in match.group(1).split(",") if n.strip()]
        return names


def ordered(entry: Path) -> list[Module]:
    """The modules in the order the browser evaluates them (a module after its imports)."""
    done: dict[Path, Module] = {}
    visiting: set[Path] = set()
    root = entry.resolve().parent

    def visit(path: Path) -> None:
        if path in done or path in visiting:  # a cycle evaluates like this too
            return
        visiting.add(path)
        if not path.is_relative_to(root) or not path.is_file():
            raise BundleError(f"no module {path} (the entry's folder holds them all)")
        module = Module(path, root)
        for dep in module.deps:
            visit(dep)
        visiting.discard(path)
        done[path] = module

    visit(entry.resolve())
    return list(done.values())


def body(module: Module, modules: dict[Path, Module], entry: bool) -> str:
    """The module's text for the bundle: imports dropped, exports as the bundle needs."""
    text = IMPORT.sub("", module.text)

    def re_export(match: re.Match) -> str:
        if not entry:
            raise BundleError(f"{module.name}: only the entry may re-export")
        names = (modules[module.resolve(match.group(2))].exports() if match.group(1) == "*"
                 else [n.strip() for n in match.group(1)[1:-1].split(",") if n.strip()])
        return f"export {{ {', '.join(names)} }};\n" if names else ""
    text = EXPORT_FROM.sub(re_export, text)
    if not entry:
        text = EXPORT_LIST.sub("", text)
        text = re.sub(r"^export\s+", "", text, flags=re.M)
    return text


def jsdoc(text: str, seen: set[str]) -> str:
    """Types within one file: aliases of other modules' typedefs dropped, ``import("./x.js").T``
    as ``T``, a typedef that two modules declare alike kept once."""
    def block(match: re.Match) -> str:
        comment = match.group(0)
        if ALIAS.search(comment) and set(TAG.findall(comment)) <= {"typedef", "template"}:
            return ""
        comment = TYPE_IMPORT.sub("", comment)
        if "@typedef" in comment and "@param" not in comment:
            if comment in seen:
                return ""
            seen.add(comment)
        return comment
    text = JSDOC.sub(block, text)
    return re.sub(r"^[ \t]*\n(?=[ \t]*\n)", "", text, flags=re.M)  # no runs of blank lines


def bundle(entry: Path = ENTRY) -> str:
    modules = ordered(entry)
    by_path = {m.path: m for m in modules}
    owners: dict[str, str] = {}
    for module in modules:
        for match in DECLARED.finditer(module.text):
            name = match.group(2)
            if name in owners:
                raise BundleError(f"{module.name} and {owners[name]} both declare {name}: "
                                  "rename one (the bundle is one scope)")
            owners[name] = module.name
    from broker import __version__
    source = entry.resolve()
    shown = source.relative_to(REPO) if source.is_relative_to(REPO) else source.name
    head, sep, rest = modules[-1].text.partition("*/\n")
    if not head.lstrip().startswith("/**") or not sep:
        raise BundleError(f"{modules[-1].name} must start with its JSDoc header")
    seen: set[str] = set()
    parts = [f"// scanbridge.js {__version__}: the browser client of Scanbridge, as one "
             f"file.\n// Generated by `python -m scanbridge.jsbundle` from {shown}"
             "\n// and its modules; do not edit.\n\n",
             head + sep]
    for module in modules:
        is_entry = module is modules[-1]
        text = body(module, by_path, is_entry)
        if is_entry:
            text = text.replace(head + sep, "", 1)
        parts.append(f"\n// --- {module.name}\n\n" + jsdoc(text, seen).strip("\n") + "\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python -m scanbridge.jsbundle [OUT]  (default dist/scanbridge.js)",
              file=sys.stderr)
        return 2
    out = Path(args[0]) if args else DEFAULT_OUT
    try:
        text = bundle()
    except BundleError as exc:
        print(f"scanbridge.jsbundle: {exc}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
