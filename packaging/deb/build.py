"""Build ``dist/scanbridge_VERSION_ARCH.deb`` from the wheel and the wheels it needs.

    python3 packaging/deb/build.py [--version 0.2.1] [--wheel dist/scanbridge-...whl]

``make deb`` runs it after ``make wheel``. The package carries wheels only:
``/opt/scanbridge/wheels/`` holds the Scanbridge wheel and every dependency's (python-sane
built from its source here), and the postinst makes ``/opt/scanbridge/venv`` from them
with Debian's ``python3 -m venv`` and ``pip install --no-index``: nothing is fetched at
install time, and the compiled wheels match the ``python3`` the package depends on.

Dependency wheels are kept in ``cache/wheels/`` across builds. A build first collects
them from there alone; only when something is missing (the first build, a new
requirement) does pip reach the index, filling the cache for the next build. Files are
owned by root in the archive (``dpkg-deb --root-owner-group``); the configuration's group
is the service's, set by the postinst with ``dpkg-statoverride``.

Every failure is one line on stderr and exit status 1 (2 for bad usage).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PACKAGE = "scanbridge"
# The interpreter the package's venv is made with: its wheels must fit it.
TARGET_PYTHON = "/usr/bin/python3"
# debian/control's fields that do not change between builds.
MAINTAINER = "Scanbridge maintainers <maintainers@users.noreply.b-seed-cf0e4402.example>"
SUMMARY = "local service that lets web pages use this computer's scanners"
DESCRIPTION = """\
Scanbridge lets a web page on an allowed origin drive the scanners (SANE) and
cameras (V4L2) of the computer it runs on, over HTTP, HTTPS and WebSocket on
127.0.0.1. Scanned pages are kept in a crash-safe buffer, edited, saved as PDF,
TIFF or images, read for barcodes and text (Tesseract), and uploaded to the
page's server through a persistent queue.
.
This package runs it as the system service scanbridge.service under its own
account for the desktop users of the group scanbridge-users, and trusts its
local certificate authority system-wide (the CA store, and the Firefox and
Chromium enterprise policies)."""
# Packages of system-packages.txt the package depends on ("run" lines), and what it
# needs besides: adduser for the account and groups its postinst makes.
EXTRA_DEPENDS = ("adduser",)
# The shipped user_config.ini says "owner"; the system service serves a group instead.
LOCAL_USERS = "local_users = @scanbridge-users"
CONFFILES = ("DSConfiguration.ini", "service.ini", "user_config.ini")
WHEEL_NAME = re.compile(r"scanbridge-(?P<version>[^-]+)-py3-none-any\.whl$")


class BuildError(Exception):
    """A step that failed; ``str()`` is the one line shown."""


def run(argv: list[str], env: dict | None = None, quiet: bool = True) -> str:
    done = subprocess.run(argv, env=env, text=True, capture_output=quiet)
    if done.returncode != 0:
        lines = ((done.stderr or "") + (done.stdout or "")).strip().splitlines()
        reason = next((line for line in reversed(lines) if "error" in line.lower()),
                      lines[-1] if lines else f"exit status {done.returncode}")
        raise BuildError(f"{' '.join(argv[:3])}...: {reason.strip()}")
    return done.stdout or ""


def source_version() -> str:
    text = (ROOT / "broker" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"$', text, re.M).group(1)


def find_wheel(version: str, given: str | None) -> Path:
    if given:
        wheel = Path(given)
    else:
        wheel = ROOT / "dist" / f"{PACKAGE}-{version}-py3-none-any.whl"
    if not wheel.is_file():
        raise BuildError(f"no wheel {wheel} (make wheel VERSION={version} builds it)")
    if not WHEEL_NAME.search(wheel.name):
        raise BuildError(f"{wheel.name} is not a Scanbridge wheel")
    return wheel


def run_depends() -> list[str]:
    """The ``run`` packages of system-packages.txt, the one list of what Scanbridge needs
    from Debian (``build`` ones only build the wheels; ``test`` ones only the tests)."""
    names = []
    for line in (ROOT / "system-packages.txt").read_text(encoding="utf-8").splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[1] == "run":
            names.append(fields[0])
    return names


def python_bounds(python: Path) -> tuple[str, str]:
    """This minor version and the next: compiled wheels (cp311) load in no other."""
    out = run([str(python), "-c", "import sys; print(*sys.version_info[:2])"]).split()
    major, minor = int(out[0]), int(out[1])
    return f"{major}.{minor}", f"{major}.{minor + 1}"


def build_python(cache: Path) -> Path:
    """A venv of the target interpreter whose pip collects and builds the wheels (the
    target's own pip may be absent or refuse to run outside a venv)."""
    venv = cache / "deb" / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        if not Path(TARGET_PYTHON).exists():
            raise BuildError(f"{TARGET_PYTHON} is missing (apt install python3 python3-venv)")
        run([TARGET_PYTHON, "-m", "venv", str(venv)])
    return python


def isolated_pip_env() -> dict:
    """pip without this machine's configuration: only the folders given are read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def collect_wheels(python: Path, wheel: Path, wheels: Path, out: Path) -> bool:
    """Copy the wheel and every wheel it needs into ``out``; returns whether the index
    was used (the cache lacked something)."""
    offline = [str(python), "-m", "pip", "wheel", "--quiet", "--no-index",
               "--find-links", str(wheels), "--wheel-dir", str(out), str(wheel)]
    try:
        run(offline, env=isolated_pip_env())
        return False
    except BuildError:
        pass
    # The index (this machine's pip configuration applies); sdists such as python-sane
    # are built into wheels here, which needs build-essential headers (system-packages.txt
    # "build" lines).
    run([str(python), "-m", "pip", "wheel", "--quiet", "--find-links", str(wheels),
         "--wheel-dir", str(wheels), str(wheel)])
    for own in wheels.glob(f"{PACKAGE}-*.whl"):  # the cache is for dependencies
        own.unlink()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run(offline, env=isolated_pip_env())
    return True


def user_config() -> str:
    """The shipped user_config.ini with the system service's ``local_users``."""
    text = (ROOT / "ini" / "user_config.ini").read_text(encoding="utf-8")
    text, count = re.subn(r"^local_users = .*$", LOCAL_USERS, text, flags=re.M)
    if count != 1:
        raise BuildError("ini/user_config.ini has no single 'local_users =' line")
    return text


def changelog(version: str, when: float) -> bytes:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            text=True, capture_output=True).stdout.strip() or "unknown"
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(when))
    text = (f"{PACKAGE} ({version}) unstable; urgency=medium\n\n"
            f"  * Built from the Scanbridge source at commit {commit}.\n\n"
            f" -- {maintainer()}  {date}\n")
    return gzip.compress(text.encode(), compresslevel=9, mtime=int(when))


def maintainer() -> str:
    """DEBFULLNAME and DEBEMAIL, as Debian tools read them, else the project's."""
    name, email = os.environ.get("DEBFULLNAME"), os.environ.get("DEBEMAIL")
    return f"{name} <{email}>" if name and email else MAINTAINER


def put(stage: Path, path: str, data: bytes | str, mode: int = 0o644) -> Path:
    target = stage / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.encode() if isinstance(data, str) else data)
    target.chmod(mode)
    return target


def control(version: str, arch: str, depends: list[str], size_kb: int) -> str:
    description = "\n".join(f" {line}" if line else " ." for line in DESCRIPTION.splitlines())
    return (f"Package: {PACKAGE}\nVersion: {version}\nArchitecture: {arch}\n"
            f"Maintainer: {maintainer()}\nInstalled-Size: {size_kb}\n"
            f"Depends: {', '.join(depends)}\nSection: graphics\nPriority: optional\n"
            f"Description: {SUMMARY}\n{description}\n")


def stage_tree(stage: Path, version: str, when: float) -> None:
    """Everything but the wheels and DEBIAN/: wrapper, units, configuration, docs."""
    put(stage, "/usr/bin/scanbridge", (HERE / "scanbridge.sh").read_bytes(), 0o755)
    put(stage, "/lib/systemd/system/scanbridge.service",
        (HERE / "scanbridge.service").read_bytes())
    put(stage, "/usr/lib/systemd/user/scanbridge.service", user_unit())
    for name in CONFFILES:
        text = user_config() if name == "user_config.ini" else \
            (ROOT / "ini" / name).read_text(encoding="utf-8")
        put(stage, f"/etc/scanbridge/{name}", text)
    doc = "/usr/share/doc/scanbridge"
    put(stage, f"{doc}/copyright", (HERE / "copyright").read_bytes())
    put(stage, f"{doc}/changelog.gz", changelog(version, when))
    put(stage, "/usr/share/man/man1/scanbridge.1.gz",
        gzip.compress((HERE / "scanbridge.1").read_bytes(), compresslevel=9, mtime=int(when)))
    put(stage, "/usr/share/lintian/overrides/scanbridge",
        (HERE / "lintian-overrides").read_bytes())


def user_unit() -> str:
    """The per-user unit: the template ``scanbridge install --user`` fills in, with this
    package's command and nothing to set (the user's own home is the default)."""
    text = (ROOT / "scanbridge" / "units" / "user" / "scanbridge.service").read_text(
        encoding="utf-8")
    text = text.replace("\nExecStart=@SCANBRIDGE@ ", "\nExecStart=/usr/bin/scanbridge ")
    return text.replace("\n@ENVIRONMENT@\n", "\n")


def stage_debian(stage: Path, version: str, arch: str, python: Path) -> None:
    low, high = python_bounds(python)
    depends = [f"python3 (>= {low}), python3 (<< {high})" if name == "python3" else name
               for name in run_depends()] + list(EXTRA_DEPENDS)
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    size_kb = sum((p.stat().st_size + 1023) // 1024 for p in files)
    debian = stage / "DEBIAN"
    debian.mkdir(mode=0o755)
    put(debian, "control", control(version, arch, depends, size_kb))
    put(debian, "conffiles", "".join(f"/etc/scanbridge/{name}\n" for name in CONFFILES))
    put(debian, "md5sums", "".join(
        f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(stage)}\n" for p in files))
    for script in ("postinst", "prerm", "postrm"):
        put(debian, script, (HERE / script).read_bytes(), 0o755)


def build(version: str, wheel: Path, out: Path, cache: Path) -> tuple[Path, bool]:
    arch = run(["dpkg", "--print-architecture"]).strip()
    stage = ROOT / "build" / "deb" / f"{PACKAGE}_{version}_{arch}"
    shutil.rmtree(stage, ignore_errors=True)
    wheels = stage / "opt" / "scanbridge" / "wheels"
    wheels.mkdir(parents=True)
    (cache / "wheels").mkdir(parents=True, exist_ok=True)
    python = build_python(cache)
    fetched = collect_wheels(python, wheel, cache / "wheels", wheels)
    for path in wheels.iterdir():
        path.chmod(0o644)
    when = float(os.environ.get("SOURCE_DATE_EPOCH") or commit_time())
    stage_tree(stage, version, when)
    stage_debian(stage, version, arch, python)
    for path in stage.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"{PACKAGE}_{version}_{arch}.deb"
    # Clamped mtimes: the same tree gives the same archive. gzip -1: the wheels are zip
    # files already (xz, dpkg's default, took ten minutes to save 0.1 %).
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(int(when))}
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(stage), str(deb)],
        env=env)
    shutil.rmtree(stage, ignore_errors=True)
    return deb, fetched


def commit_time() -> float:
    done = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"],
                          text=True, capture_output=True)
    return float(done.stdout.strip() or time.time())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--version", default="", help="default: broker.__version__")
    parser.add_argument("--wheel", help="default: dist/scanbridge-VERSION-py3-none-any.whl")
    parser.add_argument("--out", default=str(ROOT / "dist"))
    parser.add_argument("--cache", default=str(ROOT / "cache"),
                        help="dependency wheels are kept in CACHE/wheels between builds")
    opts = parser.parse_args(argv)
    version = opts.version or source_version()
    if not re.fullmatch(r"\d+(\.\d+){1,3}", version):
        print(f"build.py: --version {version!r}: want numbers like 0.2.1", file=sys.stderr)
        return 2
    start = time.monotonic()
    try:
        deb, fetched = build(version, find_wheel(version, opts.wheel), Path(opts.out),
                             Path(opts.cache))
    except (BuildError, OSError) as exc:
        print(f"make deb: {exc}", file=sys.stderr)
        return 1
    size = deb.stat().st_size / (1 << 20)
    print(f"built {deb.relative_to(ROOT) if deb.is_relative_to(ROOT) else deb} "
          f"({size:.1f} MiB) in {time.monotonic() - start:.1f} s"
          f"{' (dependency wheels fetched into the cache)' if fetched else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
