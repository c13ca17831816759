"""The browsers' enterprise policies of ``scanbridge trust --system`` (policies.py): the
Firefox entry merged into an administrator's file and taken out again, a file that is
not the JSON Firefox documents left alone, Chromium's own file made and removed.

Pure and fast: the policy files live in tmp_path, the CAs are made in memory.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from actors.certhelper import policies
from actors.certhelper.authority import create_ca
from actors.certhelper.policies import PolicyError
from common import certs


@pytest.fixture
def etc(tmp_path, monkeypatch) -> Path:
    """``/etc`` in tmp_path: Firefox's, Chromium's and Chrome's files below it."""
    firefox = tmp_path / "firefox/policies/policies.json"
    chromium = tmp_path / "chromium/policies/managed/scanbridge.json"
    chrome = tmp_path / "opt/chrome/policies/managed/scanbridge.json"
    (tmp_path / "chromium").mkdir()
    monkeypatch.setattr(policies, "FIREFOX", firefox)
    monkeypatch.setattr(policies, "CHROMIUM", chromium)
    monkeypatch.setattr(policies, "CHROME", chrome)
    monkeypatch.setattr(policies, "KEEP", {firefox: tmp_path, chromium: tmp_path / "chromium",
                                           chrome: tmp_path / "opt/chrome"})
    return tmp_path


def ca() -> tuple[str, bytes]:
    pair = create_ca()
    return certs.common_name(pair.leaf), pair.chain_pem


def der(pem: bytes) -> str:
    cert = certs.parse_chain(pem, "ca.pem")[0]
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def test_the_firefox_entry_joins_an_administrators_policies_and_leaves_them_as_they_were(
        etc, tmp_path):
    anchor = tmp_path / "scanbridge-ca.crt"
    name, pem = ca()
    anchor.write_bytes(pem)
    admin = {"policies": {"DisableTelemetry": True,
                          "Certificates": {"Install": ["/etc/corp-ca.crt"],
                                           "ImportEnterpriseRoots": True}}}
    policies.FIREFOX.parent.mkdir(parents=True)
    policies.FIREFOX.write_text(json.dumps(admin))
    policies.FIREFOX.chmod(0o640)
    assert not policies.has("firefox-policy", name, pem, anchor)
    policies.add("firefox-policy", pem, anchor)
    policies.add("firefox-policy", pem, anchor)  # once only
    merged = json.loads(policies.FIREFOX.read_text())
    assert merged["policies"]["Certificates"]["Install"] == ["/etc/corp-ca.crt", str(anchor)]
    assert merged["policies"]["DisableTelemetry"] is True
    assert policies.FIREFOX.stat().st_mode & 0o777 == 0o640  # the administrator's mode
    assert policies.has("firefox-policy", name, pem, anchor)
    assert policies.remove("firefox-policy", name, anchor)
    assert json.loads(policies.FIREFOX.read_text()) == admin
    assert not policies.remove("firefox-policy", name, anchor)


def test_a_file_that_only_held_the_entry_goes_with_the_folders_made_for_it(etc, tmp_path):
    anchor = tmp_path / "scanbridge-ca.crt"
    name, pem = ca()
    anchor.write_bytes(pem)
    policies.add("firefox-policy", pem, anchor)
    assert policies.FIREFOX.stat().st_mode & 0o777 == 0o644  # browsers read it as users
    policies.remove("firefox-policy", name, anchor)
    assert not (etc / "firefox").exists()


@pytest.mark.parametrize("text, reason", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "is not a JSON object"),
    ('{"policies": {"Certificates": {"Install": "/etc/one.crt"}}}', "Install is not a JSON list"),
    ('{"policies": []}', "policies is not a JSON dict"),
])
def test_a_file_firefox_could_not_read_as_documented_is_left_unchanged(etc, tmp_path, text,
                                                                        reason):
    anchor = tmp_path / "scanbridge-ca.crt"
    anchor.write_bytes(ca()[1])
    policies.FIREFOX.parent.mkdir(parents=True)
    policies.FIREFOX.write_text(text)
    with pytest.raises(PolicyError, match=reason):
        policies.add("firefox-policy", anchor.read_bytes(), anchor)
    assert policies.FIREFOX.read_text() == text


def test_firefox_needs_the_system_stores_copy_first(etc, tmp_path):
    with pytest.raises(PolicyError, match="is missing: Firefox installs the CA"):
        policies.add("firefox-policy", ca()[1], tmp_path / "absent.crt")
    assert not policies.FIREFOX.exists()


def test_chromium_lists_each_ca_once_and_forgets_them_by_name(etc, tmp_path):
    (first_name, first), (second_name, second) = ca(), ca()
    anchor = tmp_path / "unused.crt"
    policies.add("chromium-policy", first, anchor)
    policies.add("chromium-policy", second, anchor)
    policies.add("chromium-policy", first, anchor)
    assert json.loads(policies.CHROMIUM.read_text()) == {"CACertificates": [der(first),
                                                                            der(second)]}
    assert not policies.CHROME.exists()  # Chrome is not installed here
    assert policies.has("chromium-policy", first_name, first, anchor)
    assert policies.remove("chromium-policy", first_name, anchor)
    assert not policies.has("chromium-policy", first_name, first, anchor)
    assert policies.remove("chromium-policy", second_name, anchor)
    assert not policies.CHROMIUM.exists() and not (etc / "chromium/policies").exists()
    assert (etc / "chromium").is_dir()  # Chromium's own folder stays


def test_chrome_gets_the_same_file_where_it_is_installed(etc, tmp_path):
    (etc / "opt/chrome").mkdir(parents=True)
    name, pem = ca()
    policies.add("chromium-policy", pem, tmp_path / "unused.crt")
    assert json.loads(policies.CHROME.read_text()) == {"CACertificates": [der(pem)]}
    assert policies.remove("chromium-policy", name, tmp_path / "unused.crt")
    assert not policies.CHROME.exists() and (etc / "opt/chrome").is_dir()
