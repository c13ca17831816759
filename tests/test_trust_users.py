"""The certificate helper as root with ``[certhelper] firefox_users``: a user's own files
cannot turn root's work in their profiles against the rest of the system.

A real unprivileged user (``useradd``, home in a temp folder) gets a clean Firefox profile
(``firefox-esr -CreateProfile``, run as that user) and hostile ones: ``cert9.db``,
``key4.db`` and ``pkcs11.txt`` as symlinks to a root-owned 0600 canary file; a profile
whose ``pkcs11.txt`` alone is such a link (``certutil`` as root succeeds there, and the
files it made used to be chowned to the user through the link); a process of the user
swapping ``pkcs11.txt`` between a regular file and that link while the helper works; a
``profiles.ini`` entry naming a root-owned folder; and a ``profiles.ini`` that is a link
to a root-only file naming a profile. Afterwards the canary has its owner, mode and
content, the root folders hold nothing new, nothing was learnt from the root-only file,
and the clean profile trusts the CA with files owned by the user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.service import Service
from tests.support.stack import poll_for

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (useradd, setuid)")]

FIREFOX = shutil.which("firefox-esr")
USER_PYTHON = "/usr/bin/python3"  # the system's: the user may not reach the test's venv
TRUSTED_WITHIN = 20.0  # seconds for the helper to trust the clean profile (loaded cores)
REFRESHES = 40  # helper passes while the user's process swaps pkcs11.txt

# Runs as the user: swaps pkcs11.txt between a regular file and a link to the canary
# (each step an atomic rename) until killed.
SWAPPER = """
import os, sys
folder, canary = sys.argv[1], sys.argv[2]
target, link, plain = (os.path.join(folder, n) for n in ("pkcs11.txt", ".link", ".plain"))
while True:
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(canary, link)
    os.replace(link, target)
    with open(plain, "w") as f:
        f.write("library=\\nname=NSS Internal PKCS #11 Module\\n")
    os.replace(plain, target)
"""


def run_as(user: pwd.struct_passwd, argv: list[str], **kwargs):
    return subprocess.run(argv, user=user.pw_uid, group=user.pw_gid, cwd=user.pw_dir,
                          env={"HOME": user.pw_dir, "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=60, **kwargs)


def snapshot(path: Path) -> tuple:
    st = path.lstat()
    return st.st_uid, st.st_gid, st.st_mode, path.read_bytes()


@pytest.fixture(scope="module")
def user():
    """A throwaway user whose home is a fresh folder in /tmp (reachable by them)."""
    name = f"sbt{os.getpid() % 100000}{os.urandom(2).hex()}"
    home = Path(tempfile.mkdtemp(prefix="sb-user-", dir="/tmp"))
    done = subprocess.run(["useradd", "-M", "-U", "-d", str(home), "-s", "/usr/sbin/nologin",
                           name], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        shutil.rmtree(home)
        pytest.skip(f"useradd failed: {done.stderr.strip()}")
    try:
        entry = pwd.getpwnam(name)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        yield entry
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def planted(user, tmp_path_factory) -> dict:
    """The clean profile, the hostile ones, the canary and root's folders."""
    if FIREFOX is None or not os.path.exists(USER_PYTHON):
        pytest.skip(f"no firefox-esr or {USER_PYTHON}")
    home = Path(user.pw_dir)
    root_side = tmp_path_factory.mktemp("root-side")
    canary = root_side / "canary"
    canary.write_bytes(b"root's secret " + os.urandom(16).hex().encode())
    canary.chmod(0o600)
    root_folder = root_side / "root-folder"  # a folder only root may write
    root_folder.mkdir(mode=0o755)
    secret_ini = root_side / "secret.ini"
    leaked = root_side / "leaked-profile"
    leaked.mkdir()
    secret_ini.write_text(f"[Profile0]\nName=x\nIsRelative=0\nPath={leaked}\n")
    secret_ini.chmod(0o600)

    clean = home / "clean-profile"
    done = run_as(user, [FIREFOX, "--headless", "-CreateProfile", f"clean {clean}"])
    assert done.returncode == 0, done.stderr
    assert clean.is_dir() and clean.stat().st_uid == user.pw_uid

    mozilla = home / ".mozilla" / "firefox"
    links, pkcs, race = mozilla / "links.default", mozilla / "pkcs.default", \
        mozilla / "race.default"
    script = [f"import os; os.makedirs({str(mozilla)!r})"]
    for profile in (links, pkcs, race):
        script += [f"os.mkdir({str(profile)!r})",
                   f"open({str(profile / 'prefs.js')!r}, 'w').close()"]
    for name in ("cert9.db", "key4.db", "pkcs11.txt"):
        script.append(f"os.symlink({str(canary)!r}, {str(links / name)!r})")
    script.append(f"os.symlink({str(canary)!r}, {str(pkcs / 'pkcs11.txt')!r})")
    ini = f"[Profile0]\nName=outside\nIsRelative=0\nPath={root_folder}\n"
    script.append(f"open({str(mozilla / 'profiles.ini')!r}, 'w').write({ini!r})")
    snap = home / "snap" / "firefox" / "common" / ".mozilla" / "firefox"
    script += [f"os.makedirs({str(snap)!r})",
               f"os.symlink({str(secret_ini)!r}, {str(snap / 'profiles.ini')!r})"]
    done = run_as(user, [USER_PYTHON, "-c", "\n".join(script)])
    assert done.returncode == 0, done.stderr
    return {"home": home, "clean": clean, "links": links, "pkcs": pkcs, "race": race,
            "canary": canary, "canary_was": snapshot(canary), "root_folder": root_folder,
            "leaked": leaked}


@pytest.fixture(scope="module")
def service(user, planted, tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("svc") / "home",
                  extra_ini=f"[certhelper]\nfirefox_users = {user.pw_name}\n")
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def nickname(svc: Service) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    ca = x509.load_pem_x509_certificate((svc.home / "cert" / "ca.pem").read_bytes())
    return ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def refresh(svc: Service) -> dict:
    with svc.client() as client:
        return client.call("certhelper", "refresh", timeout=60)


@pytest.fixture(scope="module")
def raced(user, planted, service) -> dict:
    """The helper's passes while a process of the user swaps pkcs11.txt under it."""
    swapper = subprocess.Popen([USER_PYTHON, "-c", SWAPPER, str(planted["race"]),
                                str(planted["canary"])], user=user.pw_uid,
                               group=user.pw_gid, cwd=user.pw_dir,
                               stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(REFRESHES):
            refresh(service)
        assert swapper.poll() is None, swapper.stderr.read()
    finally:
        swapper.kill()
        swapper.wait(timeout=10)
    return refresh(service)


def test_the_clean_profile_of_the_user_trusts_the_ca_with_files_the_user_owns(
        user, planted, service):
    clean, name = planted["clean"], nickname(service)
    poll_for(lambda: run_as(user, ["certutil", "-L", "-d", f"sql:{clean}", "-n", name])
             .returncode == 0, TRUSTED_WITHIN, "the CA in the user's clean profile", every=0.2)
    listing = run_as(user, ["certutil", "-L", "-d", f"sql:{clean}"]).stdout
    assert any(line.startswith(name) and line.split()[-1] == "C,," for line in
               listing.splitlines()), listing
    for file in ("cert9.db", "key4.db", "pkcs11.txt"):
        st = (clean / file).stat()
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid), file


def test_links_and_a_swapping_link_to_a_root_file_leave_it_untouched(user, planted, raced):
    assert snapshot(planted["canary"]) == planted["canary_was"]
    for profile in ("links", "pkcs", "race"):
        for path in planted[profile].iterdir():  # links stay links; the rest is the user's
            assert path.is_symlink() or path.lstat().st_uid == user.pw_uid, path


def test_a_profile_of_links_is_reported_and_one_the_user_may_write_is_trusted(planted, raced):
    profiles = {p["path"]: p for p in raced["profiles"]}
    links = profiles[str(planted["links"])]
    assert links["trusted"] is False and links["error"], links
    # pkcs11.txt, a link to a file the user cannot read, does not keep certutil, run as
    # the user, from writing the user's own cert9.db.
    assert profiles[str(planted["pkcs"])]["trusted"] is True


def test_a_profile_path_naming_a_root_folder_gets_no_files(planted, raced):
    assert list(planted["root_folder"].iterdir()) == []
    assert str(planted["root_folder"]) not in {p["path"] for p in raced["profiles"]}


def test_a_profiles_ini_linked_to_a_root_only_file_is_not_read(planted, raced):
    assert str(planted["leaked"]) not in {p["path"] for p in raced["profiles"]}
    assert list(planted["leaked"].iterdir()) == []


def test_scanbridge_untrust_and_trust_as_root_work_as_the_user_too(user, planted, raced,
                                                                   service):
    clean, name = planted["clean"], nickname(service)
    label = f"firefox {clean} (user {user.pw_name})"
    done = service.cli("untrust", "--no-system")
    assert f"removed from: {label}" in done.stdout, done.stdout
    assert run_as(user, ["certutil", "-L", "-d", f"sql:{clean}", "-n", name]).returncode != 0
    done = service.cli("trust", "--no-system")
    assert f"trusted: {label}" in done.stdout, done.stdout
    assert f"failed: firefox {planted['links']} (user {user.pw_name})" in done.stdout
    assert done.returncode == 1  # the profile of links
    assert run_as(user, ["certutil", "-L", "-d", f"sql:{clean}", "-n", name]).returncode == 0
    assert snapshot(planted["canary"]) == planted["canary_was"]
    assert list(planted["root_folder"].iterdir()) == []
