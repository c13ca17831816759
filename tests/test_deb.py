"""The Debian package, installed, run, upgraded, removed and purged on this machine.

``make deb`` builds the package twice per run (this version and the next: the wheels of
the dependencies come from cache/wheels/, so only a first run downloads), lintian judges
it, and the steps below run in order on one machine, each needing the ones before:

1. ``dpkg -i``: the account (groups scanner, video), scanbridge-users, the home, the
   conffiles (root:scanbridge 0640), the venv, the local CA trusted by the system store
   and the Firefox and Chromium policies (an administrator's Firefox policy kept), the
   unit enabled; both units pass ``systemd-analyze verify``.
2. The service started as the unit says (PID 1 is not systemd here: User=, Environment=
   and ExecStart= read from the installed unit), with local edits of both ini files
   (free ports: the default ones may be taken on a developer's machine; an upload
   target nobody answers yet). HTTPS verifies against the system store and in fresh
   Firefox and Chromium profiles; two pages are scanned, one is turned, and an upload
   is queued.
3. ``dpkg -i`` of the next version over the running service: the prerm stops it, the
   edits of the ini files stay, and once started again it is the new version with the
   same pages, the turn undoable, and the queued upload delivered when its receiver
   comes up.
4. ``dpkg -r`` keeps the home and the account; ``dpkg -P`` removes them, and everything
   the package touched is as it was before the test (also after a failure: the module's
   teardown purges).

Runs only as root (CI does), and never over a Scanbridge installed on the machine.
"""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pymupdf
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

import broker
from tests.support import deb
from tests.support.browser import chromium
from tests.support.https_browsers import FIREFOX, Firefox
from tests.support.receiver import Receiver
from tests.support.stack import free_port, poll_for
from tests.support.web import Api, WebSession

pytestmark = [
    pytest.mark.timeout(deb.BUILD_SECONDS + 300),
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a Debian package: needs root "
                                                 "(CI runs as root)"),
    pytest.mark.skipif(not os.path.exists("/usr/bin/dpkg-deb"), reason="no dpkg-deb"),
]

OLD = broker.__version__
NEW = deb.bump(OLD)
ADMIN_POLICY = {"policies": {"DisableTelemetry": True}}  # an administrator's own
APP = "https://app.example"  # an origin allowed by the local edit


class Machine:
    """The state the ordered steps share; ``needs(step)`` skips after a failed one."""

    def __init__(self, tmp: Path, say):
        self.tmp, self.say = tmp, say
        self.done: set[str] = set()
        self.service = deb.UnitService(tmp / "service.log")
        self.ports = [free_port() for _ in range(4)]  # http, http, https, https
        self.refusing = free_port()  # the upload target: nothing listens until step 3
        self.api = Api(None, port=self.ports[1])

    def needs(self, *steps: str) -> None:
        missing = [s for s in steps if s not in self.done]
        if missing:
            pytest.skip(f"an earlier step did not pass: {', '.join(missing)}")


@pytest.fixture(scope="module")
def say(request):
    """Notes the numbers (build, dpkg and start times); pytest's output shows them when
    the module ends, also without -s."""
    lines: list[str] = []
    yield lines.append
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    if reporter and lines:
        with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
            reporter.write_line("")
            for line in lines:
                reporter.write_line(f"test_deb: {line}")


@pytest.fixture(scope="module")
def debs(say) -> dict[str, Path]:
    packages = {}
    for version in (OLD, NEW):
        path, seconds, fetched = deb.build(version)
        packages[version] = path
        say(f"make deb VERSION={version}: {seconds:.1f} s "
            f"({'cold: dependencies fetched' if fetched else 'warm: cache/wheels'}), "
            f"{path.stat().st_size / (1 << 20):.1f} MiB")
    yield packages
    for name in (f"scanbridge_{NEW}_", f"scanbridge-{NEW}-"):  # the made-up version's files
        for path in (deb.ROOT / "dist").glob(f"{name}*"):
            path.unlink()


@pytest.fixture(scope="module")
def machine(debs, tmp_path_factory, say):
    if deb.installed() or deb.getent("passwd", deb.ACCOUNT) or deb.STATE.exists():
        pytest.skip("Scanbridge is installed on this machine (package, account or "
                    f"{deb.STATE}): this test installs and purges its own")
    state = Machine(tmp_path_factory.mktemp("deb"), say)
    admin_policy = not deb.FIREFOX_POLICIES.exists()
    try:
        if admin_policy:  # so that the merge into an administrator's file is tested
            deb.FIREFOX_POLICIES.parent.mkdir(parents=True, exist_ok=True)
            deb.FIREFOX_POLICIES.write_text(json.dumps(ADMIN_POLICY))
        state.found = deb.footprint()
        yield state
    finally:
        state.service.stop()
        deb.purge_leftovers()
        if admin_policy:
            deb.FIREFOX_POLICIES.unlink(missing_ok=True)
            for folder in (deb.FIREFOX_POLICIES.parent, deb.FIREFOX_POLICIES.parent.parent):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()


def test_the_package_passes_lintian(debs):
    if not os.path.exists("/usr/bin/lintian"):
        pytest.skip("no lintian (system-packages.txt: test)")
    done = deb.run(["lintian", "--info", "--pedantic", "--fail-on",
                    "error,warning,info,pedantic", debs[OLD]], "lintian", timeout=300,
                   check=False)
    tags = [line for line in done.stdout.splitlines() if line[:2] in ("E:", "W:", "I:", "P:")]
    assert done.returncode == 0 and not tags, "\n".join(tags) or done.stderr


def test_install_makes_the_account_home_configuration_venv_and_trust(machine, debs):
    start = time.monotonic()
    deb.dpkg("--install", debs[OLD])
    machine.say(f"dpkg -i (first install): {time.monotonic() - start:.1f} s")
    machine.done.add("installed")

    account = pwd.getpwnam(deb.ACCOUNT)
    assert account.pw_uid < 1000 and account.pw_dir == str(deb.STATE)
    assert account.pw_shell == "/usr/sbin/nologin"
    groups = {g.gr_name for g in grp.getgrall() if deb.ACCOUNT in g.gr_mem}
    assert {"scanner", "video"} <= groups
    assert grp.getgrnam(deb.USERS_GROUP).gr_gid < 1000
    home = deb.STATE.stat()
    assert (home.st_uid, oct(home.st_mode & 0o777)) == (account.pw_uid, "0o700")

    conffiles = deb.run(["dpkg-query", "-W", "-f=${Conffiles}", deb.PACKAGE], "dpkg-query")
    assert sorted(line.split()[0] for line in conffiles.stdout.strip().splitlines()) == \
        sorted(f"{deb.CONFIG}/{name}" for name in deb.INI_FILES)
    for name in deb.INI_FILES:
        info = (deb.CONFIG / name).stat()
        assert (info.st_uid, grp.getgrgid(info.st_gid).gr_name, oct(info.st_mode & 0o777)) \
            == (0, deb.ACCOUNT, "0o640"), name
    assert "\nlocal_users = @scanbridge-users\n" in (deb.CONFIG / "user_config.ini").read_text()

    version = deb.run([deb.COMMAND, "--version"], "scanbridge --version")
    assert version.stdout.strip() == f"scanbridge {OLD}"
    # The compiled wheels load in Debian's python3, which the venv is made from.
    deb.run([deb.OPT / "venv/bin/python", "-c", "import sane, tesserocr, cv2, pymupdf, "
             "zxingcpp, re2, zmq, pikepdf"], "importing the compiled dependencies")
    made_from = dict(line.split(" = ", 1) for line in
                     (deb.OPT / "venv/pyvenv.cfg").read_text().splitlines() if " = " in line)
    assert made_from["home"] == "/usr/bin"

    ca_pem = (deb.STATE / "cert" / "ca.pem").read_bytes()
    assert (deb.STATE / "cert" / "ca_key.pem").stat().st_uid == account.pw_uid
    ca = x509.load_pem_x509_certificate(ca_pem)
    (anchor,) = deb.ANCHORS.glob("scanbridge*.crt")
    assert anchor.read_bytes() == ca_pem and anchor.stat().st_mode & 0o004
    assert (deb.LINKS / anchor.with_suffix(".pem").name).resolve() == anchor
    policies = json.loads(deb.FIREFOX_POLICIES.read_text())
    assert policies["policies"]["Certificates"]["Install"] == [str(anchor)]
    assert policies["policies"]["DisableTelemetry"] is True  # the administrator's stays
    der = base64.b64encode(ca.public_bytes(serialization.Encoding.DER)).decode()
    assert json.loads(deb.CHROMIUM_POLICY.read_text()) == {"CACertificates": [der]}
    assert deb.WANTS.resolve() == deb.SYSTEM_UNIT.resolve()
    machine.ca_pem = ca_pem


def test_both_units_pass_systemd_analyze_verify(machine, tmp_path):
    machine.needs("installed")
    system = deb.run(["systemd-analyze", "verify", deb.SYSTEM_UNIT], "verify", check=False)
    assert system.returncode == 0 and system.stderr == "", system.stderr
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    user = deb.run(["systemd-analyze", "--user", "verify", deb.USER_UNIT], "verify",
                   check=False, env={**deb.ADMIN_ENV, "XDG_RUNTIME_DIR": str(runtime)})
    assert user.returncode == 0 and user.stderr == "", user.stderr
    unit = deb.parse_unit(deb.SYSTEM_UNIT)
    assert unit["ExecStart"] == f"{deb.COMMAND} run" and unit["User"] == deb.ACCOUNT
    assert unit["Environment"] == {"SCANBRIDGE_HOME": str(deb.STATE),
                                   "SCANBRIDGE_CONFIG": str(deb.CONFIG)}
    assert f"ExecStart={deb.COMMAND} run\n" in deb.USER_UNIT.read_text()


def test_the_service_runs_as_its_unit_says_scans_and_queues_an_upload(machine):
    machine.needs("installed")
    http, https = machine.ports[:2], machine.ports[2:]
    machine.edits = {
        "DSConfiguration.ini": deb.set_keys(deb.CONFIG / "DSConfiguration.ini", {
            "ports": {"http": f"{http[0]},{http[1]}", "https": f"{https[0]},{https[1]}"},
            "uploader": {"backoff_first": "0.2", "backoff_max": "1", "max_attempts": "1000"},
            "scanner": {"system_scanners": "false"}, "ocr": {"ocr_workers": "1"}}),
        "user_config.ini": deb.set_keys(deb.CONFIG / "user_config.ini", {
            "access": {"upload_targets": f"http://127.0.0.1:{machine.refusing}/in/"}})}
    # The documented way to allow an origin keeps the file the service's to read.
    deb.run(["env", f"SCANBRIDGE_CONFIG={deb.CONFIG}", deb.COMMAND, "allow", APP],
            "scanbridge allow", env={**deb.ADMIN_ENV, "HOME": str(machine.tmp)})
    info = (deb.CONFIG / "user_config.ini").stat()
    assert (info.st_uid, grp.getgrgid(info.st_gid).gr_name, oct(info.st_mode & 0o777)) == \
        (0, deb.ACCOUNT, "0o640")
    machine.edits["user_config.ini"] = (deb.CONFIG / "user_config.ini").read_text()
    assert f"allowed_origins = {APP}\n" in machine.edits["user_config.ini"]
    start = time.monotonic()
    machine.service.start()
    status = machine.service.wait_ready(http[1])
    machine.say(f"service start (as the unit runs it) until every program runs: "
                f"{time.monotonic() - start:.1f} s")
    assert status["version"] == OLD
    owner = os.stat(f"/proc/{machine.service.proc.pid}").st_uid
    assert pwd.getpwuid(owner).pw_name == deb.ACCOUNT
    assert not (deb.STATE / "ini").exists()  # the configuration is /etc/scanbridge's
    # The command as the service's account works on the system service (the wrapper).
    doctor = deb.run(["runuser", "-u", deb.ACCOUNT, "--", deb.COMMAND, "doctor"], "doctor",
                     check=False, cwd="/")
    assert doctor.returncode == 0 and "no problems found" in doctor.stdout, doctor.stdout

    # HTTPS verifies against the system store (what curl, Python... read).
    context = ssl.create_default_context(cafile=str(deb.BUNDLE))
    poll_for(lambda: _https_answers(context, https[1]), 20, "HTTPS with the system store")

    session = WebSession(machine.api)
    job = machine.api.scan(session.id, session.token, pages=2)
    assert job["state"] == "done", job
    images = session.get("/images").json()
    assert len(images) == 2
    turned = session.post(f"/images/{images[0]['id']}/ops", json=[{"op": "rotate",
                                                                    "angle": 90}])
    assert turned.status == 200, turned.body
    machine.pages = session.get("/images").json()
    assert (machine.pages[0]["width"], machine.pages[0]["height"]) == \
        (images[0]["height"], images[0]["width"])
    queued = session.post("/uploads", json={"url": f"http://127.0.0.1:{machine.refusing}/in/x",
                                            "format": "pdf", "filename": "kept"})
    assert queued.status == 202, queued.body
    machine.job = queued.json()["job"]
    poll_for(lambda: session.get(f"/uploads/{machine.job}").json().get("attempts", 0) >= 1,
             20, "a first attempt refused")
    assert session.get(f"/uploads/{machine.job}").json()["state"] in ("queued", "running")
    machine.session = session
    machine.done.add("running")


def _https_answers(context: ssl.SSLContext, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/api/v1/status",
                                    context=context, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_browsers_of_any_user_trust_the_service_through_the_policies(machine):
    machine.needs("running")
    url = f"https://127.0.0.1:{machine.ports[3]}/"
    ca = x509.load_pem_x509_certificate(machine.ca_pem)
    ca_name = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    if FIREFOX:  # a fresh profile: only the policy can have put the CA there
        folder = machine.tmp / "firefox"
        (folder / "profile").mkdir(parents=True)
        (folder / "home").mkdir()
        browser = Firefox(folder / "profile", folder / "home", folder / "firefox.log")
        try:
            browser.marionette.navigate(url)
            assert browser.marionette.title == "Scanbridge"
            assert browser.certificate()["issuer"] == ca_name
        finally:
            browser.close()
    browsers = chromium()
    browser = next(browsers)
    try:
        page = browser.new_context().new_page()
        assert page.goto(url).status == 200 and page.title() == "Scanbridge"
    finally:
        browsers.close()


def test_an_upgrade_over_the_running_service_keeps_pages_edits_and_the_queued_upload(
        machine, debs):
    machine.needs("running")
    start = time.monotonic()
    deb.dpkg("--install", debs[NEW])
    machine.say(f"dpkg -i (upgrade {OLD} -> {NEW}, over the running service): "
                f"{time.monotonic() - start:.1f} s")
    assert machine.service.exited(timeout=5) is not None, "the prerm did not stop the service"
    for name, text in machine.edits.items():  # local edits of conffiles survive
        assert (deb.CONFIG / name).read_text() == text, name
    machine.service.start()
    status = machine.service.wait_ready(machine.ports[1])
    assert status["version"] == NEW
    allowed = Api(None, origin=APP, port=machine.ports[1]).get("/api/v1/status")
    assert allowed.status == 200 and allowed.headers["Access-Control-Allow-Origin"] == APP

    session = machine.session
    pages = session.get("/images").json()
    assert [(p["id"], p["width"], p["height"]) for p in pages] == \
        [(p["id"], p["width"], p["height"]) for p in machine.pages]
    undone = session.post(f"/images/{pages[0]['id']}/undo")
    assert undone.status == 200, undone.body
    first = session.get("/images").json()[0]
    assert (first["width"], first["height"]) == (pages[0]["height"], pages[0]["width"])

    job = session.get(f"/uploads/{machine.job}").json()
    assert job["state"] in ("queued", "running"), job
    with Receiver(port=machine.refusing) as receiver:
        receiver.wait_for(lambda: receiver.documents, 30, "the queued upload")
        (document,) = receiver.documents.values()
    (part,) = document.files
    assert part.filename == "kept.pdf"
    assert pymupdf.open(stream=part.data, filetype="pdf").page_count == 2
    poll_for(lambda: session.get(f"/uploads/{machine.job}").json()["state"] == "done", 10,
             "the job done")
    machine.service.stop()
    machine.done.add("upgraded")


def test_remove_keeps_the_home_and_the_account_and_takes_the_trust_out(machine):
    machine.needs("installed")
    machine.service.stop()
    start = time.monotonic()
    deb.dpkg("--remove", deb.PACKAGE)
    machine.say(f"dpkg -r: {time.monotonic() - start:.1f} s")
    assert deb.getent("passwd", deb.ACCOUNT)
    assert (deb.STATE / "cert" / "ca.pem").read_bytes() == machine.ca_pem
    if "upgraded" in machine.done:
        assert any((deb.STATE / "cache" / "buffer" / "files").iterdir())
    assert not deb.OPT.exists() and not deb.COMMAND.exists()
    assert all((deb.CONFIG / name).exists() for name in deb.INI_FILES)  # conffiles stay
    assert deb.MASK.resolve() == Path("/dev/null")  # as debhelper leaves a removed unit
    after = deb.footprint()
    for key in ("anchors", "links", "bundle has a Scanbridge CA", "java", "firefox policies"):
        assert after[key] == machine.found[key], key
    assert not deb.CHROMIUM_POLICY.exists()
    machine.done.add("removed")


def test_purge_removes_the_home_and_the_account_and_leaves_the_machine_as_found(machine):
    machine.needs("removed")
    start = time.monotonic()
    deb.dpkg("--purge", deb.PACKAGE)
    machine.say(f"dpkg -P: {time.monotonic() - start:.1f} s")
    assert not deb.installed()
    assert deb.footprint() == machine.found
    assert subprocess.run(["dpkg-query", "-W", deb.PACKAGE], capture_output=True).returncode
