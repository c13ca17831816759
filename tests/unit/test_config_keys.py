"""Each kind of key in the config schema, parsed through its SCHEMA entry: what it accepts,
how it normalises, and the reason it gives for what it refuses. Rules between keys and the
rendering of defaults follow. (Whole files, line numbers and the home: test_config.py.)
"""

from __future__ import annotations

import pytest

from broker.config import (SCHEMA, ConfigError, CurveClient, Home, load, path_escape,
                           render_defaults)

KEY = "a" * 40  # a valid Z85 public key
OTHER = "b" * 40


def parse(section: str, key: str, raw: str, name: str = "DSConfiguration.ini"):
    return SCHEMA[name][section][key].parse(raw)


def refusal(section: str, key: str, raw: str, name: str = "DSConfiguration.ini") -> str:
    with pytest.raises(ValueError) as caught:
        parse(section, key, raw, name)
    return str(caught.value)


# --- numbers


@pytest.mark.parametrize("raw, value", [("0.05", 0.05), ("60", 60.0), ("1e1", 10.0)])
def test_a_float_key_takes_any_number_notation_within_its_range(raw, value):
    assert parse("heartbeat", "interval", raw) == value


@pytest.mark.parametrize("raw, reason", [
    ("nan", "nan is out of range 0.05..60"),  # NaN compares false: never in range
    ("inf", "inf is out of range 0.05..60"),
    ("60.001", "60.001 is out of range 0.05..60"),
    ("", "'' is not a number"),
    ("1,5", "'1,5' is not a number"),
])
def test_a_float_key_refuses_nan_infinity_and_what_is_not_a_number(raw, reason):
    assert refusal("heartbeat", "interval", raw) == reason


@pytest.mark.parametrize("raw, reason", [
    ("1.5", "'1.5' is not a whole number"),
    ("1e3", "'1e3' is not a whole number"),
    ("1", "1 is out of range 2..100"),
    ("101", "101 is out of range 2..100"),
])
def test_an_int_key_refuses_fractions_and_values_out_of_range(raw, reason):
    assert refusal("heartbeat", "liveness", raw) == reason


def test_an_int_key_takes_its_bounds_and_surrounding_spaces_of_the_number():
    assert parse("heartbeat", "liveness", "2") == 2
    assert parse("heartbeat", "liveness", "100") == 100
    assert parse("heartbeat", "liveness", " 7") == 7  # int() strips


# --- words


@pytest.mark.parametrize("raw, value", [
    ("true", True), ("Yes", True), ("ON", True), ("1", True),
    ("false", False), ("no", False), ("Off", False), ("0", False)])
def test_a_bool_key_takes_the_usual_spellings_in_any_case(raw, value):
    assert parse("camera", "v4l2", raw) is value


@pytest.mark.parametrize("raw", ["2", "y", "enabled", ""])
def test_a_bool_key_refuses_anything_else(raw):
    assert refusal("camera", "v4l2", raw) == f"{raw!r} is not true or false"


def test_a_choice_key_is_case_insensitive_and_lists_the_choices_it_refuses():
    assert parse("log", "level", "WARNING") == "warning"
    assert refusal("barcode", "engine", "zxing-cpp") == \
        "'zxing-cpp' is not one of zxing, zbar"


@pytest.mark.parametrize("raw, value", [("eng", "eng"), ("deu + eng", "deu+eng"),
                                        ("chi_sim+eng", "chi_sim+eng")])
def test_ocr_languages_are_joined_by_plus_without_spaces(raw, value):
    assert parse("ocr", "default_lang", raw) == value


@pytest.mark.parametrize("raw", ["eng+", "../eng", "eng;deu"])
def test_ocr_languages_refuse_empty_names_and_paths(raw):
    assert "is not a Tesseract language list" in refusal("ocr", "default_lang", raw)


# --- lists


def test_a_list_key_splits_on_commas_and_spaces_and_refuses_a_value_twice():
    assert parse("ports", "http", "1, 2 3,,4") == [1, 2, 3, 4]
    assert parse("ports", "https", "") == []  # may be empty
    assert refusal("ports", "http", " , ") == "needs at least one value"
    assert refusal("network", "bind", "127.0.0.1, 127.0.0.1") == "lists a value twice"


def test_addresses_are_normalised_so_two_spellings_of_one_address_are_one_value():
    assert parse("network", "bind", "[::1]") == ["::1"]
    assert refusal("network", "bind", "::1, 0:0:0:0:0:0:0:1") == "lists a value twice"


@pytest.mark.parametrize("raw, value", [
    ("owner", ["owner"]), ("any", ["any"]), ("owner, alice, @scanner", ["owner", "alice",
                                                                       "@scanner"]),
    ("machine$", ["machine$"])])
def test_local_users_takes_owner_any_names_and_groups(raw, value):
    assert parse("access", "local_users", raw, "user_config.ini") == value


@pytest.mark.parametrize("raw, reason", [
    ("", "needs at least one value"),
    ("any, alice", "any already lets every account in; list nothing else"),
    ("@", "'' is not a user name"),
    ("al ice;rm", "'ice;rm' is not a user name"),
    ("-root", "'-root' is not a user name"),
])
def test_local_users_refuses_an_empty_list_any_with_others_and_bad_names(raw, reason):
    assert refusal("access", "local_users", raw, "user_config.ini") == reason


# --- endpoints, keys and CURVE rights


@pytest.mark.parametrize("raw", ["", "tcp://0.0.0.0:18640", "tcp://[::]:1", "tcp://host:65535"])
def test_a_tcp_endpoint_is_empty_or_tcp_host_port(raw):
    assert parse("broker", "tcp_endpoint", raw) == raw


@pytest.mark.parametrize("raw", ["ipc:///tmp/x", "tcp://0.0.0.0", "tcp://0.0.0.0:0",
                                 "tcp://[::1:1", "tcp://*:18640/x"])
def test_a_tcp_endpoint_refuses_other_transports_and_ports(raw):
    assert "is not an endpoint like" in refusal("broker", "tcp_endpoint", raw)


def test_curve_clients_read_keys_with_their_services_and_client_right():
    entries = parse("broker", "curve_clients", f"{KEY} {OTHER}:ocr,barcode, client")
    assert entries == [CurveClient(KEY, ("ocr",), False),  # a bare key serves ocr
                       CurveClient(OTHER, ("ocr", "barcode"), True)]
    only_client = parse("broker", "curve_clients", f"{KEY}:client")
    assert only_client == [CurveClient(KEY, (), True)]


@pytest.mark.parametrize("raw, reason", [
    ("ocr", "'ocr' follows no KEY:service (write KEY:service,service)"),
    (f"{KEY}x", f"'{KEY}x' is not KEY or KEY:service,..."),
    (f"{KEY}:", "aaaaaaaa...: name a service or client after ':'"),
    (f"{KEY}:buffer", "aaaaaaaa...: buffer is a local service; no remote key may serve it"),
    (f"{KEY}:Bad-Name", "aaaaaaaa...: 'Bad-Name' is not a service name"),
    (f"{KEY} {KEY}:ocr", "aaaaaaaa... is listed twice"),
    ("a" * 39 + "~", f"{'a' * 39 + '~'!r} is not a 40-character Z85 CURVE public key"),
])
def test_curve_clients_refuse_stray_names_local_services_and_a_key_twice(raw, reason):
    assert refusal("broker", "curve_clients", raw) == reason


def test_a_pem_file_key_is_empty_or_an_existing_file(tmp_path):
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    assert parse("uploader", "ca_bundle", str(pem)) == str(pem)
    assert parse("uploader", "ca_bundle", "") == ""
    assert "is not a file" in refusal("uploader", "ca_bundle", str(tmp_path))


# --- camera sources


def test_camera_sources_keep_urls_and_paths_and_turn_file_urls_into_paths():
    assert parse("camera", "sources",
                 "desk=http://cam.local/mjpeg, door = rtsp://10.0.0.2/s, "
                 "film=/videos/a b.mp4, clip=file:///videos/c%20d.avi") == {
        "desk": "http://cam.local/mjpeg", "door": "rtsp://10.0.0.2/s",
        "film": "/videos/a b.mp4", "clip": "/videos/c d.avi"}


@pytest.mark.parametrize("raw, reason", [
    ("a=ftp://h/x", "camera 'a': ftp: is not a camera source"),
    ("a=concat:x.avi|y.avi", "camera 'a': concat: is not a camera source"),
    ("a=file://otherhost/x.avi", "camera 'a': a file:// URL names a file of this machine"),
    ("a=http:///stream", "camera 'a': the http:// URL has no host"),
    ("a=", "'a=' is not name=URL-or-file"),
])
def test_camera_sources_refuse_other_schemes_remote_files_and_hostless_urls(raw, reason):
    assert refusal("camera", "sources", raw).startswith(reason)


# --- origins and upload targets


@pytest.mark.parametrize("raw, value", [
    ("https://files.example.com", "https://files.example.com"),
    ("HTTPS://Files.Example.com:443/in/", "https://files.example.com/in/"),
    ("http://[::1]:8080/a/b", "http://[::1]:8080/a/b"),
])
def test_an_upload_target_is_an_origin_with_an_optional_path(raw, value):
    assert parse("access", "upload_targets", raw, "user_config.ini") == [value]


@pytest.mark.parametrize("raw, reason", [
    ("https://h.example/in?x=1", "an upload target has no query, fragment or user"),
    ("https://u@h.example/in", "an upload target has no query, fragment or user"),
    ("https://h.example/in/..;/admin", "the path has the segment '..;' (a . or .. segment)"),
    ("https://h.example/in%2f..", "the path has the segment 'in%2f..' (an encoded / or \\)"),
    ("ftp://h.example/in", "is not an origin like https://app.example.com"),
])
def test_an_upload_target_refuses_queries_users_escaping_paths_and_other_schemes(raw, reason):
    assert reason in refusal("access", "upload_targets", raw, "user_config.ini")


@pytest.mark.parametrize("path", [
    "/in/../admin", "/in/./x", "/in/..;jsessionid=1/admin", "/in/%2e%2e/admin",
    "/in/%252e%252e/admin", "/in/%25252e%25252e/x",  # decoded until it stops changing
    "/in/..%2fadmin", "/in/..%5cadmin", "/in\\..\\admin", "/in/%u002e%u002e/admin",
    "/in/%ef%bc%8e%ef%bc%8e/admin",  # full-width dots: NFKC makes them ..
    "/in/%c0%ae%c0%ae/admin",  # overlong UTF-8 is not UTF-8
    "/in/. ./x", "/in/%20../x",
])
def test_path_escape_names_every_way_a_receiver_could_leave_the_folder(path):
    assert path_escape(path) is not None


@pytest.mark.parametrize("path", ["", "/", "/in/", "/in/a..b", "/in/.hidden", "/in/...x",
                                  "/in/a;b=c/d", "/in/%41%42", "/in/caf%c3%a9"])
def test_path_escape_lets_ordinary_paths_with_dots_and_escapes_through(path):
    assert path_escape(path) is None


# --- keys together, pattern keys


def test_an_https_port_that_is_also_an_http_port_is_reported_at_the_https_line(tmp_path):
    (tmp_path / "ini").mkdir()
    path = tmp_path / "ini" / "DSConfiguration.ini"
    path.write_text("[ports]\n; both\nhttp = 9000, 9001\nhttps = 9001\n")
    with pytest.raises(ConfigError) as caught:
        load(Home(tmp_path))
    assert str(caught.value) == f"{path}:4: https: port 9001 is also an HTTP port"


def test_renew_days_not_fewer_than_server_days_is_refused_even_when_only_one_is_written(
        tmp_path):
    (tmp_path / "ini").mkdir()
    path = tmp_path / "ini" / "DSConfiguration.ini"
    path.write_text("[certhelper]\nserver_days = 30\n")  # renew_days keeps its default, 30
    with pytest.raises(ConfigError) as caught:
        load(Home(tmp_path))
    assert str(caught.value) == (f"{path}:1: renew_days: 30 is not fewer than server_days "
                                 "(30): the certificate would be renewed all the time")


def test_render_defaults_writes_the_top_keys_first_and_pattern_keys_as_comments():
    text = render_defaults("DSConfiguration.ini")
    assert text.startswith("; web origins allowed")
    assert "\nAccess-Control-Allow-Origin =\n" in text  # an empty default: no trailing space
    assert text.index("Access-Control-Allow-Origin") < text.index("[ports]")
    assert "\n; <program>_idle_stop = 60  (the same for one program" in text
    assert "\n*_idle_stop" not in text and "\n_idle_stop" not in text
