"""Every repository path and module the docs name exists.

Files move between packages (``broker/`` keeps only the messaging core, helpers live in
``common/``, the CLI in ``scanbridge/``), and a doc that still names the old place sends a
newcomer to a file that is not there. Checked in ``docs/*.md`` and ``README.md``:

- paths under the project's folders (``broker/protocol.py``, ``actors/gateway/``,
  ``tests/unit/test_jobs.py``); ``<name>``, ``NAME`` or ``*`` in a path stands for any
  entry (``actors/<name>/``);
- dotted modules of the project's packages (``actors.ocr.remote``, ``python -m bench.scan``,
  ``scanbridge.main:main``, ``broker.logs.mask_url``): the module, and the name after it
  when there is one;
- bare file names (``store.py``) in a section whose heading names a folder or a file of
  it (``## The buffer (`actors/buffer/`)``): the file is in that folder, or in one the
  section named before it;
- the sections the map at the top of ``docs/architecture.md`` points to (``→ "The
  broker"``) are headings of that file.

Run-time paths (``cache/``, ``run/``, ``upload/`` ...) and URLs are not repository paths
and are left alone.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FOLDERS = ("broker", "common", "actors", "scanbridge", "tests", "bench", "docs", "ini",
           "packaging")
PACKAGES = ("broker", "common", "actors", "scanbridge", "tests", "bench")

# A path starts at one of FOLDERS, not inside a longer path or a URL (/scanbridge/x.js).
PATH = re.compile(r"(?<![\w./~$%%-])((?:%s)/[\w./<>*{}-]*)" % "|".join(FOLDERS))
# A dotted module, not inside a longer name or a string ("scanbridge.session" is a key).
MODULE = re.compile(r"(?<![\w./\"'-])((?:%s)(?:\.[A-Za-z_]\w*)+)(?::(\w+))?(?![\w/-])"
                    % "|".join(PACKAGES))
# ... nor a file name: scanbridge.js, cert/broker.key.
SUFFIXES = {"js", "py", "md", "ini", "conf", "key", "pub", "pem", "log", "db", "sqlite",
            "sock", "json", "txt", "png", "htm", "html"}
# Fenced code in these languages is not about the Python tree (scanbridge.connect()).
FOREIGN = {"js", "javascript", "ts", "typescript", "html", "json"}
HEADING = re.compile(r"^(#{1,6})\s")
BARE = re.compile(r"`([\w-]+\.py)`")
PLACEHOLDER = re.compile(r"<[^>]*>|\{[^}]*\}|\*|^[A-Z][A-Z_]*(?=\.|$)")


def where(doc: Path, number: int) -> str:
    return f"{doc.relative_to(ROOT) if doc.is_relative_to(ROOT) else doc.name}:{number}"


def exists(path: str) -> bool:
    """Whether ``path`` names a file or folder; placeholder segments match anything."""
    path = path.rstrip(".")  # the end of a sentence
    segments = [s for s in path.split("/") if s]
    if not any(PLACEHOLDER.search(s) for s in segments):
        return (ROOT / path).exists()
    return any(ROOT.glob("/".join(PLACEHOLDER.sub("*", s) for s in segments)))


def top_names(module: Path) -> set[str]:
    """What a module defines or imports at its top level."""
    names: set[str] = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def module_exists(dotted: str) -> bool:
    """``a.b.c``: the longest prefix that is a module, and the next part a name of it."""
    parts = dotted.split(".")
    named = [i for i, part in enumerate(parts) if re.fullmatch(r"[A-Z][A-Z_]*", part)]
    if named:  # a placeholder (bench.NAME): the package before it
        return (ROOT.joinpath(*parts[:named[0]]) / "__init__.py").is_file()
    for cut in range(len(parts), 1, -1):
        base = ROOT.joinpath(*parts[:cut])
        for file in (base.with_suffix(".py"), base / "__init__.py"):
            if file.is_file():
                rest = parts[cut:]
                return not rest or rest[0] in top_names(file) or (
                    file.name == "__init__.py" and (base / f"{rest[0]}.py").is_file())
    return False


def folder_of(path: str) -> str:
    """The folder a repository path names: itself, or a file's parent."""
    path = path.rstrip(".")
    return path.rstrip("/") if path.endswith("/") else path.rpartition("/")[0]


def missing(doc: Path) -> list[str]:
    """``doc:line: what`` for every path, module or section file that does not exist."""
    found = []
    # heading level -> the folders its section has named (its heading's first), so a
    # bare ``store.py`` is looked for where the section is about.
    folders: dict[int, list[str]] = {}
    fenced = foreign = False
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            foreign = fenced and line.strip().strip("`").strip().lower() in FOREIGN
        if foreign:
            continue
        heading = None if fenced else HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            folders = {k: v for k, v in folders.items() if k < level}
            folders[level] = []
        named = folders[max(folders)] if folders else []
        for match in PATH.finditer(line):
            if not exists(match.group(1)):
                found.append(f"{where(doc, number)}: {match.group(1)}")
            elif folders and (heading or named):
                named.append(folder_of(match.group(1)))
        for match in MODULE.finditer(line):
            dotted = match.group(1)
            if dotted.rpartition(".")[2] in SUFFIXES:
                continue
            if match.group(2):
                dotted += "." + match.group(2)
            if not module_exists(dotted):
                found.append(f"{where(doc, number)}: {match.group(0)}")
        if heading:
            continue
        # The innermost section that names a folder; a subsection may only inherit.
        scope = next((folders[k] for k in sorted(folders, reverse=True) if folders[k]), [])
        for match in BARE.finditer(line):
            if scope and not any((ROOT / f / match.group(1)).is_file() for f in scope):
                found.append(f"{where(doc, number)}: {match.group(1)} "
                             f"(the section is about {scope[0]}/)")
    return found


def test_the_docs_name_only_paths_and_modules_that_exist():
    found = [line for doc in DOCS for line in missing(doc)]
    assert not found, "names in the docs that are not in the tree:\n" + "\n".join(found)


def test_the_check_tells_a_moved_file_from_one_that_is_there(tmp_path):
    # The rule above passes on a true doc; this shows it would not pass on a stale one.
    doc = tmp_path / "x.md"
    doc.write_text("## The core (`broker/`)\n\n"
                   "`broker/protocol.py`, `actors/<name>/`, `tests/unit/test_*.py`, "
                   "`python -m bench.scan`, `bench.NAME`, `scanbridge.main:main`, "
                   "`scanbridge.js`, `/scanbridge/http.js`, `cache/buffer/`, `runtime.py`.\n"
                   "`broker/jobstore.py`, `actors/scanner/command.py`, `broker.cli`, "
                   "`scanbridge.main:nothing`, `bench.nothing.NAME`, `cli.py`.\n"
                   "```\nbroker/cli.py\n```\n", encoding="utf-8")
    assert [line.split(": ", 1)[1] for line in missing(doc)] == [
        "broker/jobstore.py", "actors/scanner/command.py", "broker.cli",
        "scanbridge.main:nothing", "bench.nothing.NAME",
        "cli.py (the section is about broker/)", "broker/cli.py"]


def test_every_section_the_map_points_to_is_a_heading_of_architecture_md():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    headings = [line.lstrip("#").strip() for line in text.splitlines()
                if HEADING.match(line)]
    the_map = " ".join(text.split("\n## The map\n", 1)[1].split("\n## ", 1)[0].split())
    pointers = [name for arrow in re.findall(r"→([^;.]*)", the_map)
                for name in re.findall(r'"([^"]+)"', arrow)]
    assert len(pointers) > 10
    assert not [name for name in pointers if not any(h.startswith(name) for h in headings)]
