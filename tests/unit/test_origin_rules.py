"""Who may use the gateway and where uploads may go, as pure rules: the loopback Host
names, the origin allowlist and its re-reading, the CORS answers, the public paths, and the
upload target checks (actors/gateway/security.py, actors/uploader/targets.py). The same
rules over HTTP: tests/test_gateway_origins.py and tests/test_uploader_targets.py.
"""

from __future__ import annotations

import os

import pytest

from actors.gateway import security
from actors.gateway.security import (Allowlist, cors_headers, loopback_host, public,
                                     public_headers)
from actors.uploader.targets import AllowedTargets, check_pairs, check_request, check_url
from broker import config as configlib
from broker.protocol import Error


class Log:
    """Records what the rules log instead of writing it."""

    def __init__(self):
        self.records: list[tuple[str, str]] = []

    def info(self, msg, **fields):
        self.records.append(("info", msg))

    def error(self, msg, **fields):
        self.records.append(("error", msg))


def home_with(tmp_path, user_config: str = "", ds: str = "") -> configlib.Config:
    ini = tmp_path / "ini"
    ini.mkdir(exist_ok=True)
    (ini / "user_config.ini").write_text(user_config)
    (ini / "DSConfiguration.ini").write_text(
        ds or "[ports]\nhttp = 18622, 18625\nhttps = 18623\n")
    return configlib.load(configlib.Home(tmp_path))


def rewrite(path, text: str) -> None:
    """Change a file so that its stamp (mtime, size) changes whatever the clock did."""
    stamp = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))


def code_of(call, *args) -> str:
    with pytest.raises(Error) as caught:
        call(*args)
    return caught.value.code


# --- the Host header


@pytest.mark.parametrize("host", [
    "localhost", "LOCALHOST:18622", "localhost.", "app.localhost", "127.0.0.1",
    "127.0.0.1:18622", "127.255.0.9", "[::1]", "[::1]:18622"])
def test_loopback_names_with_or_without_a_port_are_this_machine(host):
    assert loopback_host(host)


@pytest.mark.parametrize("host", [
    "evil.example", "evil.example:18622", "localhost.evil.example", "127.0.0.1.evil.example",
    "0.0.0.0", "192.168.1.2:18622", "[::1", "", "2130706433",
    "127.1", "localhost:18622:1"])
def test_every_other_host_is_not_this_machine(host):
    assert not loopback_host(host)


# --- public paths


@pytest.mark.parametrize("method, path, expected", [
    ("GET", "/scanbridge.js", True), ("HEAD", "/scanbridge.js", True),
    ("OPTIONS", "/api/v1/origin", True), ("POST", "/api/v1/origin", False),
    ("GET", "/scanbridge.js/", False), ("GET", "/api/v1/sources", False),
    ("GET", "/scanbridge/session.js", True), ("POST", "/scanbridge/session.js", False),
    ("GET", "/", False)])
def test_only_reads_of_the_client_module_and_the_origin_probe_are_public(method, path,
                                                                          expected):
    assert public(method, path) is expected


def test_a_public_answer_lets_any_origin_read_it_but_without_credentials():
    assert public_headers() == {"Access-Control-Allow-Origin": "*"}
    preflight = public_headers({"Access-Control-Request-Private-Network": "true"})
    assert preflight["Access-Control-Allow-Methods"] == "GET"
    assert preflight["Access-Control-Allow-Private-Network"] == "true"
    assert "Access-Control-Allow-Credentials" not in preflight


# --- CORS answers of allowed origins


def test_an_allowed_origin_gets_its_own_name_back_and_vary_origin():
    headers = cors_headers("https://app.example.com")
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert headers["Vary"] == "Origin"
    assert "X-Scanbridge-Parts" in headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Methods" not in headers


@pytest.mark.parametrize("asked, granted", [("true", True), ("TRUE", True), ("false", False),
                                            ("", False), (None, False)])
def test_private_network_access_is_granted_only_to_a_preflight_that_asks(asked, granted):
    request = {} if asked is None else {"Access-Control-Request-Private-Network": asked}
    headers = cors_headers("https://app.example.com", request)
    assert headers["Access-Control-Allow-Methods"] == "GET, POST, PUT, DELETE"
    assert "X-Scanbridge-Password" in headers["Access-Control-Allow-Headers"]
    assert ("Access-Control-Allow-Private-Network" in headers) is granted


# --- the allowlist


def test_the_service_s_own_pages_are_allowed_on_every_loopback_name_and_port(tmp_path):
    allow = Allowlist(home_with(tmp_path), Log())
    for origin in ("http://127.0.0.1:18622", "http://localhost:18625", "http://[::1]:18622",
                   "https://localhost:18623"):
        assert allow.allows(origin) and allow.same_service(origin), origin
    for origin in ("http://localhost:18623", "https://localhost:18622", "http://localhost",
                   "http://127.0.0.2:18622", "null"):
        assert not allow.allows(origin), origin


def test_origins_from_both_files_are_allowed_once_in_order(tmp_path):
    cfg = home_with(tmp_path, "[access]\nallowed_origins = https://a.example, https://b.example\n",
                    "Access-Control-Allow-Origin = https://b.example, http://c.example:8080\n"
                    "[ports]\nhttp = 18622\n")
    allow = Allowlist(cfg, Log())
    assert allow.origins() == ["https://a.example", "https://b.example", "http://c.example:8080"]
    assert allow.allows("http://c.example:8080") and not allow.same_service("https://a.example")
    assert not allow.allows("http://c.example")  # another port is another origin
    assert not allow.allows("https://a.example.evil.example")


def test_the_allowlist_follows_the_file_and_keeps_the_last_good_list_when_it_breaks(tmp_path):
    log = Log()
    allow = Allowlist(home_with(tmp_path, "[access]\nallowed_origins = https://a.example\n",
                                "[ports]\nhttp = 18622\n"), log)
    user_config = tmp_path / "ini" / "user_config.ini"

    def look_now():  # the files are looked at once a second at most
        allow.checked -= security.RELOAD_EVERY

    rewrite(user_config, "[access]\nallowed_origins = https://new.example\nlocal_users = any\n")
    assert allow.allows("https://a.example")  # not looked at yet: within the second
    look_now()
    assert allow.origins() == ["https://new.example"] and allow.local_users() == ["any"]
    assert ("info", "allowed origins changed") in log.records
    rewrite(user_config, "[access]\nallowed_origins = *\n")
    look_now()
    assert allow.origins() == ["https://new.example"]
    assert log.records[-1][0] == "error"
    user_config.unlink()
    look_now()
    assert allow.origins() == [] and allow.local_users() == ["owner"]


# --- upload targets


@pytest.mark.parametrize("url", [
    "https://page.example/upload", "https://page.example:443/x?y=1",
    "https://files.example/in", "https://files.example/in/", "https://files.example/in/a/b",
    "http://intranet.local:8080/", "http://intranet.local:8080/anything"])
def test_a_target_on_the_page_s_origin_or_under_an_allowed_prefix_is_taken(url):
    allowed = ["https://files.example/in", "http://intranet.local:8080"]
    assert check_url(url, "https://page.example", allowed) == url


@pytest.mark.parametrize("url", [
    "https://files.example/inbox",  # a prefix is whole segments
    "https://files.example/", "http://files.example/in/x",  # other scheme: other origin
    "https://files.example:8443/in/x", "https://page.example.evil/x",
    "https://files.example/in/../admin", "https://files.example/in/..;/admin",
    "https://files.example/in/%2e%2e/admin", "https://files.example/in/..%5cadmin",
    "https://page.example/a/%252e%252e/b"])
def test_any_other_target_or_a_path_that_could_escape_is_not_allowed(url):
    allowed = ["https://files.example/in", "http://intranet.local:8080"]
    assert code_of(check_url, url, "https://page.example", allowed) == \
        "upload_target_not_allowed"


def test_without_a_page_origin_only_the_listed_prefixes_are_targets():
    assert code_of(check_url, "https://page.example/x", None, []) == "upload_target_not_allowed"
    assert check_url("https://page.example/x", None, ["https://page.example"])


@pytest.mark.parametrize("url", [
    None, "", 5, "ftp://files.example/in", "https://user:pw@files.example/in",
    "https://files.example/in#part", "https://files.example/in/a b",
    "https://files.example/in\r\nX: y", "https://fïles.example/in", "//files.example/in",
    "https://files.example/" + "a" * 5000])
def test_a_url_that_is_not_plain_http_s_is_invalid_argument(url):
    assert code_of(check_url, url, "https://files.example", []) == "invalid_argument"


def test_headers_must_be_tokens_the_service_does_not_set_and_one_ascii_line():
    assert check_pairs({"X-Token": "abc", "Accept": "*/*"}, "headers", True) == {
        "X-Token": "abc", "Accept": "*/*"}
    for bad in ({"Content-Length": "1"}, {"host": "x"}, {"X-A": "a\r\nB: c"},
                {"X A": "x"}, {"X-A": "é"}, {"X-A": "1", "x-a": "2"}, {"X-A": 1},
                ["X-A"], {f"X-{n}": "v" for n in range(101)}):
        assert code_of(check_pairs, bad, "headers", True) == "invalid_argument", bad
    # Form fields may have any plain name, but no quotes or line breaks in it.
    assert check_pairs({"a b": "é\r\n"}, "fields", False) == {"a b": "é\r\n"}
    assert code_of(check_pairs, {'a"b': "x"}, "fields", False) == "invalid_argument"
    assert check_pairs(None, "fields", False) == {}


def test_an_upload_request_is_normalised_and_its_names_checked():
    request = check_request({"url": "https://page.example/u", "method": "put",
                             "format": "JPG", "page_format": "jpg"}, "https://page.example", [])
    assert (request["method"], request["format"], request["page_format"],
            request["filename"], request["field_name"]) == ("PUT", "jpeg", "jpeg", "scan",
                                                             "file")
    for body in ({"method": "GET"}, {"format": "bmp"}, {"page_format": "tiff"},
                 {"filename": "../x"}, {"field_name": 'a"b'}, {"auth": {"user": "a:b"}},
                 {"auth": {"user": "a", "token": "t"}}, {"auth": "a:b"}):
        assert code_of(check_request, {"url": "https://page.example/u", **body},
                       "https://page.example", []) == "invalid_argument", body


def test_upload_targets_follow_the_file_and_a_broken_file_keeps_the_last_list(tmp_path):
    log = Log()
    cfg = home_with(tmp_path, "[access]\nupload_targets = https://a.example/in\n")
    targets = AllowedTargets(cfg, log)
    assert targets.current() == ["https://a.example/in"]
    user_config = tmp_path / "ini" / "user_config.ini"
    rewrite(user_config, "[access]\nupload_targets = https://b.example\n")
    assert targets.current() == ["https://b.example"]
    rewrite(user_config, "[access]\nupload_targets = https://b.example/in/../x\n")
    assert targets.current() == ["https://b.example"]
    assert log.records == [("info", "upload targets changed"),
                           ("error", "upload targets not reloaded: the file is invalid; the "
                                     "previous list stays in force")]
