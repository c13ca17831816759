"""HTTPS in Firefox trusting the local CA, with no option to ignore certificate errors.

Firefox (``firefox-esr``, headless, driven through Marionette) keeps its own NSS database
per profile. A profile created while the service runs is trusted by the certificate
helper within seconds, and Firefox on it loads the welcome page over HTTPS. After
``scanbridge untrust`` the profile no longer holds the CA, the certificate helper does not
put it back, and Firefox stops at its certificate error page (``SEC_ERROR_UNKNOWN_ISSUER``)
until ``scanbridge trust``.

Every browser runs with ``HOME`` = the service's user home (a temp folder), and is closed
(its process group killed if need be) when its test ends, whatever happened.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.https_browsers import (FIREFOX, TRUSTED_WITHIN, Firefox, ca_cert, ca_name,
                                          certhelper_status, certutil_list, served_cert, sha256,
                                          trust_flags, welcome_https_text)
from tests.support.https_browsers import service  # fixtures
from tests.support.service import Service
from tests.support.stack import poll_for

pytestmark = pytest.mark.timeout(120)


# --- Firefox


@contextlib.contextmanager
def firefox(profile: Path, service: Service):
    browser = Firefox(profile, service.user_home, profile.parent / "firefox.log")
    try:
        yield browser
    finally:
        browser.close()


def colon_hex(digest: str) -> str:
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2)).upper()


def assert_welcome_over_https(browser: Firefox, service: Service, url: str) -> None:
    m = browser.marionette
    m.navigate(url)
    assert m.get_url() == url
    assert m.title == "Scanbridge"
    text = m.execute_script("return document.getElementById('https').textContent")
    assert text.startswith(welcome_https_text(service)), text
    got = browser.certificate()
    leaf, ca = served_cert(service), ca_cert(service)
    assert got == {"sha256": colon_hex(sha256(leaf)), "issuer": ca_name(service),
                   "chain": [colon_hex(sha256(leaf)), colon_hex(sha256(ca))]}, got


@pytest.fixture(scope="module")
def firefox_profile(service, tmp_path_factory) -> dict:
    """A Firefox profile created (``-CreateProfile``) while the service runs; how long the
    certificate helper took to trust it."""
    if FIREFOX is None:
        pytest.skip("no firefox-esr")
    profile = tmp_path_factory.mktemp("firefox") / "profile"
    nickname = ca_name(service)
    roots = service.user_home / ".config" / "mozilla" / "firefox"
    assert not (roots / "profiles.ini").exists()
    assert not profile.exists()
    start = time.monotonic()
    done = subprocess.run([FIREFOX, "--headless", "-CreateProfile", f"scanbridge-test {profile}"],
                          env={**os.environ, "HOME": str(service.user_home)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"Path={profile}" in (roots / "profiles.ini").read_text()
    poll_for(lambda: certutil_list(profile, nickname).returncode == 0, TRUSTED_WITHIN,
             f"the local CA in the new profile {profile}", every=0.1)
    return {"path": profile, "trusted_in": time.monotonic() - start}


def test_a_firefox_profile_created_while_the_service_runs_is_trusted_within_seconds(
        firefox_profile, service):
    profile, nickname = firefox_profile["path"], ca_name(service)
    assert firefox_profile["trusted_in"] < TRUSTED_WITHIN
    assert trust_flags(profile, nickname) == "C,,", certutil_list(profile).stdout
    # The certificate in the profile is the CA's own.
    pem = subprocess.run(["certutil", "-L", "-d", f"sql:{profile}", "-n", nickname, "-a"],
                         capture_output=True, text=True, timeout=30).stdout
    assert x509.load_pem_x509_certificate(pem.encode()) == ca_cert(service)
    logged = [r for r in service.log_records("certhelper")
              if r.get("msg") == "the local CA is now trusted in a Firefox profile"
              and r.get("profile") == str(profile)]
    assert len(logged) == 1, logged
    status = certhelper_status(service)
    assert status["firefox_trust"] is True
    assert status["profiles"] == [
        {"path": str(profile), "user": logged[0]["user"], "trusted": True, "error": ""}], \
        status["profiles"]


def test_a_profile_made_in_firefox_s_own_folder_is_trusted_too(firefox_profile, service):
    # Without a folder, -CreateProfile makes <salt>.NAME in the profiles root, listed in
    # profiles.ini by a relative path: Firefox's usual layout.
    roots = service.user_home / ".config" / "mozilla" / "firefox"
    done = subprocess.run([FIREFOX, "--headless", "-CreateProfile", "scanbridge-second"],
                          env={**os.environ, "HOME": str(service.user_home)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listing = configparser.RawConfigParser()
    listing.read(roots / "profiles.ini")
    [section] = [s for s in listing.sections() if listing.get(s, "Name", fallback="") ==
                 "scanbridge-second"]
    assert listing.get(section, "IsRelative") == "1"
    second = roots / listing.get(section, "Path")
    assert second.is_dir()
    poll_for(lambda: trust_flags(second, ca_name(service)) == "C,,", TRUSTED_WITHIN,
             f"the local CA in the new profile {second}", every=0.1)
    status = certhelper_status(service)
    trusted = {p["path"]: p["trusted"] for p in status["profiles"]}
    assert trusted == {str(firefox_profile["path"]): True, str(second): True}, status


def test_firefox_on_a_profile_created_while_the_service_runs_loads_the_welcome_page_over_https(
        firefox_profile, service):
    with firefox(firefox_profile["path"], service) as browser:
        assert browser.started_in < 30, browser.started_in
        assert_welcome_over_https(browser, service,
                                  f"https://127.0.0.1:{service.https_ports[1]}/")
        assert_welcome_over_https(browser, service,
                                  f"https://localhost:{service.https_ports[0]}/")


def test_untrust_takes_the_ca_out_of_the_firefox_profile_and_the_certhelper_leaves_it_out(
        firefox_profile, service, tmp_path):
    profile, nickname = firefox_profile["path"], ca_name(service)
    later = tmp_path / "profile-made-while-untrusted"
    try:
        done = service.cli("untrust", "--no-system", check=True)
        assert f"removed from: firefox {profile}" in done.stdout, done.stdout
        assert (service.home / "cert" / "untrusted").exists()
        assert certutil_list(profile, nickname).returncode != 0
        assert trust_flags(profile, nickname) is None
        status = certhelper_status(service, "refresh")
        assert certutil_list(profile, nickname).returncode != 0
        assert status["firefox_trust"] is False, status
        # A profile created now is left alone too.
        done = subprocess.run([FIREFOX, "--headless", "-CreateProfile", f"untrusted {later}"],
                              env={**os.environ, "HOME": str(service.user_home)},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        # File events (the untrusted marker, profiles.ini, cert9.db) are acted on after a
        # short quiet time: still out a while later.
        time.sleep(1.5)
        assert certutil_list(profile, nickname).returncode != 0
        assert certutil_list(later, nickname).returncode != 0
        status = certhelper_status(service)
        entries = {p["path"]: p for p in status["profiles"]}
        assert str(later) in entries, status["profiles"]
        assert not entries[str(later)].get("trusted"), entries[str(later)]
        assert not entries[str(profile)].get("trusted"), \
            f"the certhelper reports the profile as trusting the CA after untrust: " \
            f"{entries[str(profile)]}"
    finally:
        service.cli("trust", "--no-system", check=True)
    # trust puts the CA back in both, and the certhelper reports them trusted again.
    assert trust_flags(profile, nickname) == "C,,"
    assert trust_flags(later, nickname) == "C,,"
    poll_for(lambda: {p["path"]: p.get("trusted") for p in certhelper_status(service)["profiles"]
                      if p["path"] in (str(profile), str(later))}
             == {str(profile): True, str(later): True}, 10,
             "the certhelper's status: both profiles trusted", every=0.2)
    assert certhelper_status(service)["firefox_trust"] is True


def test_firefox_on_an_untrusted_profile_stops_at_the_certificate_error_until_trust(
        firefox_profile, service):
    from marionette_driver.errors import InsecureCertificateException
    profile, nickname = firefox_profile["path"], ca_name(service)
    url = f"https://127.0.0.1:{service.https_ports[1]}/"
    try:
        service.cli("untrust", "--no-system", check=True)
        certhelper_status(service, "refresh")
        assert certutil_list(profile, nickname).returncode != 0
        with firefox(profile, service) as browser:
            m = browser.marionette
            with pytest.raises(InsecureCertificateException):
                m.navigate(url)
            # Firefox's certificate error page, for an unknown issuer, instead of the page
            # (its title is localised once the page has loaded).
            poll_for(lambda: m.title == "Warning: Security Risk", 10,
                     "the title of Firefox's certificate error page")
            assert m.execute_script("return document.documentURI").startswith(
                "about:certerror?e=nssBadCert&u=" + url.replace(":", "%3A"))
            assert m.execute_script(
                "return document.getFailedCertSecurityInfo().errorCodeString") == \
                "SEC_ERROR_UNKNOWN_ISSUER"
            assert m.execute_script("return document.getElementById('https')") is None
    finally:
        service.cli("trust", "--no-system", check=True)
    # trust puts the CA back, and the same profile loads the page again.
    assert trust_flags(profile, nickname) == "C,,"
    with firefox(profile, service) as browser:
        assert_welcome_over_https(browser, service, url)
