"""``scanbridge trust`` / ``untrust`` / ``ca`` and the certificate checks of ``doctor``.

``trust`` puts the local CA into the invoking user's Chromium database (``~/.pki/nssdb``)
and Firefox profiles, the configured users' Firefox profiles it may write, and, as root,
the system store. ``untrust`` takes it out of the same places and leaves a marker in
``cert/`` that stops the certificate helper from putting it back; ``trust`` removes it.
``--system`` (root) works on what serves every user instead: the system store and the
browsers' enterprise policies; the package of a system service runs it, and leaves the
marker alone (it is about the helper's work in profiles). ``ca`` makes the CA now, as the
service's user, when the service never ran, and names it.
"""

from __future__ import annotations

import argparse
import os
import ssl
import socket
from pathlib import Path
from typing import Iterator

from broker import config as configlib
from broker import logs
from broker.procutil import atomic_write
from common import certs
from common.certs import CertError, CertFiles
from common.commands import EXIT_USAGE, Check, command, doctor_check, fail, load_config

from . import trust
from .keeper import Keeper
from .trust import Store, TrustError


def build(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--no-system", action="store_true",
                       help="leave the system store alone (as root it is changed too)")
    which.add_argument("--system", action="store_true",
                       help="only what serves every user: the system store and the "
                            "Firefox and Chromium enterprise policies (as root)")


def stores(cfg: configlib.Config, system: bool, only_system: bool = False) -> list[Store]:
    """This user's Chromium DB and Firefox profiles, the configured users' profiles; with
    ``only_system``, the system store and the browsers' policies instead."""
    if only_system:
        return trust.system_stores(_nickname(cfg.home))
    me = trust.home_user(Path.home())
    found = [trust.chromium_store(me, Path.home())]
    found += [Store("firefox", profile, me)
              for profile in trust.firefox_profiles(Path.home(), me)]
    for store in trust.firefox_stores(cfg.certhelper.firefox_users):
        if store not in found and (os.geteuid() == 0 or store.user == me):
            found.append(store)
    if system and os.geteuid() == 0:
        found.append(Store("system", trust.system_anchor(_nickname(cfg.home)), "root"))
    return found


def _ca_pem(home: configlib.Home) -> bytes:
    return CertFiles(home.cert).ca.read_bytes()


def _nickname(home: configlib.Home) -> str:
    try:
        return certs.common_name(certs.parse_chain(_ca_pem(home), "ca.pem")[0])
    except (OSError, CertError):
        return certs.CA_NAME_PREFIX


def _former_nicknames(files: CertFiles) -> list[str]:
    """Names of CAs replaced earlier (``ca.pem.bad-*``): untrust removes those too."""
    names = []
    for path in files.folder.glob("ca.pem.bad-*"):
        try:
            names.append(certs.common_name(certs.parse_chain(path.read_bytes(), path.name)[0]))
        except (OSError, CertError):
            continue
    return names


def ensure_ca(home: configlib.Home, cfg: configlib.Config) -> None:
    """Make the CA now if the certificate helper has not (the service never ran)."""
    files = CertFiles(home.cert)
    if files.ca.exists():
        return
    try:
        home.ensure()
    except OSError as exc:
        fail(f"cannot prepare {home.root}: {exc}")
    outcome = Keeper(home.cert, cfg.certhelper.server_days, cfg.certhelper.renew_days,
                     logs.Log("certhelper")).refresh()
    if outcome.problem:
        fail(outcome.problem)


def _system_only(home: configlib.Home, opts: argparse.Namespace) -> bool:
    """``--system``: root only, and on a CA the service's user made (root would own it).
    Callers such as ``install --user`` pass a namespace without it."""
    if not getattr(opts, "system", False):
        return False
    if os.geteuid() != 0:
        fail("--system changes system-wide files: run it as root", EXIT_USAGE)
    if not CertFiles(home.cert).ca.exists():
        fail(f"no local CA in {home.cert} yet: run scanbridge ca as the service's user "
             "first (or start the service)")
    return True


@command("trust", "make browsers and this system trust the local CA (HTTPS without "
                  "warnings)", build)
def cmd_trust(home: configlib.Home, opts: argparse.Namespace) -> int:
    cfg = load_config(home)
    only_system = _system_only(home, opts)
    files = CertFiles(home.cert)
    if not only_system:
        ensure_ca(home, cfg)
        files.untrusted.unlink(missing_ok=True)
    nickname = _nickname(home)
    pem = _ca_pem(home)
    failed = 0
    for store in stores(cfg, system=not opts.no_system, only_system=only_system):
        try:
            if trust.has_ca(store, nickname, pem):
                print(f"already trusted: {store.label}")
                continue
            trust.add_ca(store, nickname, files.ca)
            print(f"trusted: {store.label}")
        except (TrustError, OSError) as exc:
            print(f"failed: {store.label}: {exc}")
            failed += 1
    print(f"CA: {nickname} ({files.ca}); restart the browsers that are open")
    return 1 if failed else 0


@command("untrust", "remove the local CA from browsers and the system store, and stop "
                    "adding it", build)
def cmd_untrust(home: configlib.Home, opts: argparse.Namespace) -> int:
    cfg = load_config(home)
    files = CertFiles(home.cert)
    only_system = getattr(opts, "system", False)
    if only_system and os.geteuid() != 0:
        fail("--system changes system-wide files: run it as root", EXIT_USAGE)
    try:
        if not only_system:
            atomic_write(files.untrusted, b"scanbridge untrust: Firefox profiles are left "
                                          b"alone until scanbridge trust\n", mode=0o600)
    except OSError as exc:
        fail(f"cannot write {files.untrusted}: {exc.strerror}")
    nicknames = [_nickname(home), *_former_nicknames(files)]
    failed = 0
    for store in stores(cfg, system=not opts.no_system, only_system=only_system):
        try:
            removed = False
            for nickname in nicknames:
                removed |= trust.remove_ca(store, nickname)
            print(f"{'removed from' if removed else 'not in'}: {store.label}")
        except (TrustError, OSError) as exc:
            print(f"failed: {store.label}: {exc}")
            failed += 1
    return 1 if failed else 0


@command("ca", "make the local CA now if the service never ran, and name it")
def cmd_ca(home: configlib.Home, opts: argparse.Namespace) -> int:
    ensure_ca(home, load_config(home))
    files = CertFiles(home.cert)
    try:
        ca = certs.parse_chain(_ca_pem(home), "ca.pem")[0]
    except (OSError, CertError) as exc:
        fail(f"cannot read the local CA: {exc}")
    print(f"CA: {certs.common_name(ca)} ({files.ca}), SHA-256 {certs.fingerprint(ca)}")
    return 0


# --- doctor

@doctor_check("certificates")
def doctor_checks(home: configlib.Home, cfg: configlib.Config | None) -> Iterator[Check]:
    files = CertFiles(home.cert)
    yield from _check_files(files, cfg)
    if cfg is not None:
        yield from _check_https_ports(files, cfg)
        yield from _check_trust(home, cfg, files)


def _check_files(files: CertFiles, cfg) -> Iterator[Check]:
    ca = None
    try:
        ca = certs.read_pair(files.ca, files.ca_key)
        info = certs.describe(ca.leaf)
        yield "ok", f"local CA {info['subject']}, valid until {info['not_after'][:10]}", ""
    except CertError as exc:
        yield "warn", f"local CA: {exc}", "the certificate helper makes it " \
                                          "(scanbridge logs certhelper)"
    if _exists(files.server) or _exists(files.server_key):
        try:
            own = certs.read_pair(files.server, files.server_key)
            certs.check_validity(own.leaf, files.server.name)
            yield "ok", f"operator certificate {files.server} is valid", ""
        except CertError as exc:
            yield "FAIL", f"operator certificate rejected: {exc}", \
                f"replace {files.server} and {files.server_key} with a matching pair"
    for key in (files.ca_key, files.local_key, files.server_key, files.active):
        try:
            mode = key.stat().st_mode & 0o777
        except OSError:
            continue
        if mode & 0o077:
            yield "FAIL", f"{key} holds a private key and is readable by others (mode " \
                          f"{mode:o})", f"chmod 600 {key}"
    try:
        served = certs.read_active(files.active)
    except CertError as exc:
        yield "FAIL", f"HTTPS certificate: {exc}", "scanbridge logs certhelper"
        return
    info = certs.describe(served.leaf)
    what = f"HTTPS certificate {info['subject']} for {', '.join(info['names'])} " \
           f"expires {info['not_after'][:10]} ({info['days_left']} days)"
    renew = cfg.certhelper.renew_days if cfg else 30
    ours = ca is not None and certs.issued_by(served.leaf, ca.leaf)
    if info["days_left"] < 0:
        yield "FAIL", what, "scanbridge logs certhelper"
    elif info["days_left"] <= renew:
        yield "warn", what, "scanbridge logs certhelper (it renews its own)" if ours else \
            f"replace {files.server} and {files.server_key} before it expires"
    else:
        yield "ok", f"{what}, from {'the local CA' if ours else 'the operator'}", ""


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # an unreadable folder: reported by the home check
        return False


def _check_https_ports(files: CertFiles, cfg) -> Iterator[Check]:
    for port in cfg.ports.https:
        context = ssl.create_default_context()
        try:
            context.load_verify_locations(str(files.ca))
        except (OSError, ssl.SSLError):
            pass
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    yield "ok", f"port {port}: HTTPS answers ({tls.version()}), the " \
                                "certificate verifies", ""
        except ssl.SSLCertVerificationError as exc:
            yield "warn", f"port {port}: HTTPS answers but its certificate does not " \
                          f"verify against the local CA: {exc.verify_message}", \
                "fine for an operator certificate from a public CA; else see the log"
        except (OSError, ssl.SSLError) as exc:
            yield "warn", f"port {port}: no HTTPS ({exc.strerror or exc})", \
                "scanbridge start; scanbridge logs gateway"


def _check_trust(home: configlib.Home, cfg, files: CertFiles) -> Iterator[Check]:
    if not _exists(files.ca):
        return
    if _exists(files.untrusted):
        yield "warn", "browser trust was removed (scanbridge untrust)", "scanbridge trust"
    nickname = _nickname(home)
    pem = _ca_pem(home)
    if Path.home().resolve() == home.root:
        # A service account whose home is the service's (the Debian package's): it has no
        # browser of its own; its users' browsers trust the CA through system-wide places.
        found = trust.system_stores(nickname)
    else:
        found = stores(cfg, system=True)
        if os.geteuid() != 0:
            found.append(Store("system", trust.system_anchor(nickname), "root"))
    for store in found:
        try:
            trusted = trust.has_ca(store, nickname, pem)
        except (TrustError, OSError) as exc:
            yield "warn", f"{store.label}: cannot tell ({exc})", ""
            continue
        if trusted:
            yield "ok", f"{store.label} trusts the local CA", ""
        elif store.browser == "firefox" and cfg.certhelper.firefox_trust and \
                not _exists(files.untrusted):
            yield "warn", f"{store.label} does not trust the local CA yet", \
                "the certificate helper adds it within seconds; see scanbridge logs certhelper"
        else:
            yield "warn", f"{store.label} does not trust the local CA", \
                "scanbridge trust" if store.browser == "chromium" else \
                "sudo dpkg-reconfigure scanbridge" if Path.home().resolve() == home.root else \
                "sudo scanbridge trust"
    for user in cfg.certhelper.firefox_users:
        if not trust.homes([user]):
            yield "warn", f"firefox_users: no user {user!r} on this system", \
                "correct [certhelper] firefox_users"
