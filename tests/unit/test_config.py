"""The ini files against SCHEMA: defaults, exact error lines, pattern keys, the home.

Pure and fast: files in tmp_path, no processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from broker import config as configlib
from broker import supervision
from broker.config import CHECKOUT, INI_FILES, SCHEMA, ConfigError, Home, load, load_file

DOCS = CHECKOUT / "docs" / "configuration.md"
DS_SECTIONS = ("[ports], [gateway], [certhelper], [uploader], [barcode], [ocr], [camera], "
               "[network], [log], "
               "[heartbeat], [broker], [monitor], [ondemand], [limits], [buffer], [scanner]")


def defaults(name: str) -> dict:
    """What load_file gives for a file that does not exist."""
    return load_file(Path("/nonexistent/scanbridge") / name, name)


def write(home: Path, name: str, text: str | bytes) -> Path:
    path = Home(home).ini / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def error_of(home: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load(Home(home))
    return str(caught.value)


# --- the shipped files and the docs follow SCHEMA

@pytest.mark.parametrize("name", INI_FILES)
def test_the_shipped_ini_file_loads_to_the_schema_defaults(name):
    assert load_file(CHECKOUT / "ini" / name, name) == defaults(name)


@pytest.mark.parametrize("name", INI_FILES)
def test_the_shipped_ini_file_is_its_header_comments_followed_by_render_defaults(name):
    text = (CHECKOUT / "ini" / name).read_text(encoding="utf-8")
    rendered = configlib.render_defaults(name)
    assert text.endswith(rendered)
    header = text[: len(text) - len(rendered)]
    assert all(not line.strip() or line.startswith(";") for line in header.splitlines())


@pytest.mark.parametrize("name", INI_FILES)
def test_render_defaults_loads_back_to_the_schema_defaults(tmp_path, name):
    path = write(tmp_path, name, configlib.render_defaults(name))
    assert load_file(path, name) == defaults(name)


def test_every_schema_key_is_described_in_docs_configuration_md():
    if not DOCS.exists():
        pytest.skip(f"{DOCS} is not written yet")
    text = DOCS.read_text(encoding="utf-8")
    missing = [f"{name} [{section}] {key}"
               for name, sections in SCHEMA.items()
               for section, keys in sections.items()
               for key in keys
               if key not in text and key.replace("*", "<program>") not in text]
    assert not missing, f"not in {DOCS}: {missing}"


def test_a_home_without_ini_files_has_all_defaults(tmp_path):
    cfg = load(Home(tmp_path))
    assert cfg.home.root == tmp_path.resolve()
    assert cfg.ports.http == [18622, 18625]
    assert cfg.ports.https == [18623, 18626]
    assert cfg.network.bind == ["127.0.0.1", "::1"]
    assert cfg.heartbeat.interval == 1.0 and cfg.heartbeat.liveness == 3
    assert cfg.broker.tcp_endpoint == "" and cfg.broker.curve_clients == []
    assert cfg.ondemand.programs == ["scanner", "camera"] and cfg.ondemand.idle_stop == 60.0
    assert cfg.service.name == "scanbridge" and cfg.service.display_name == "Scanbridge"
    assert cfg.access.allowed_origins == []
    # 0 OCR workers means one per core: what supervisord's numprocs gets
    assert cfg.ocr.ocr_workers == 0 and cfg.ocr_workers() == (os.cpu_count() or 1)
    assert supervision.environment(cfg.home, cfg)["SCANBRIDGE_OCR_WORKERS"] == \
        str(os.cpu_count() or 1)
    assert cfg.camera.sources == {} and cfg.camera.v4l2 is True


# --- good values

def test_values_are_parsed_and_the_keys_not_written_keep_their_defaults(tmp_path):
    write(tmp_path, "DSConfiguration.ini",
          "; a comment\n# another\n[ports]\nhttp = 1000, 1001\n\n[log]\nlevel: DEBUG\n"
          "[network]\nbind = [::1]\n")
    cfg = load(Home(tmp_path))
    assert cfg.ports.http == [1000, 1001]
    assert cfg.ports.https == [18623, 18626]
    assert cfg.log.level == "debug"
    assert cfg.network.bind == ["::1"]
    assert cfg.limits.max_body_mb == 64


def test_an_indented_line_continues_the_value_above(tmp_path):
    write(tmp_path, "DSConfiguration.ini", "[ports]\nhttp = 18622,\n    18625\n\t18630\n")
    write(tmp_path, "user_config.ini",
          "[access]\nallowed_origins =\n  https://a.example.com\n"
          "  ; a comment between continuation lines\n  http://localhost:3000\n")
    cfg = load(Home(tmp_path))
    assert cfg.ports.http == [18622, 18625, 18630]
    assert cfg.access.allowed_origins == ["https://a.example.com", "http://localhost:3000"]


def test_a_program_idle_stop_key_sets_that_program_only(tmp_path):
    write(tmp_path, "DSConfiguration.ini",
          "[ondemand]\nprograms = scanner, ocr\nscanner_idle_stop = 5\n")
    cfg = load(Home(tmp_path))
    assert cfg.idle_stop("scanner") == 5.0
    assert isinstance(cfg.idle_stop("scanner"), float)
    assert cfg.idle_stop("ocr") == 60.0
    assert cfg.idle_stop("camera") == 60.0


def test_the_general_idle_stop_is_the_default_of_every_program(tmp_path):
    write(tmp_path, "DSConfiguration.ini", "[ondemand]\nidle_stop = 7\nocr_idle_stop = 0\n")
    cfg = load(Home(tmp_path))
    assert cfg.idle_stop("scanner") == 7.0
    assert cfg.idle_stop("ocr") == 0.0


def test_origins_in_user_config_are_normalised(tmp_path):
    write(tmp_path, "user_config.ini",
          "[access]\nallowed_origins = HTTPS://App.Example.com:443/, http://[::1]:8080\n")
    assert load(Home(tmp_path)).access.allowed_origins == [
        "https://app.example.com", "http://[::1]:8080"]


# --- bad files: one exact line `file:line: key: reason`

DS = "DSConfiguration.ini"
BAD = [
    (DS, "[ports]\nhttp = 18622, abc\n", "2: http: 'abc' is not a whole number"),
    (DS, "[ports]\nhttp = 70000\n", "2: http: 70000 is out of range 1..65535"),
    (DS, "[ports]\nhttp = 0\n", "2: http: 0 is out of range 1..65535"),
    (DS, "[ports]\nhttp =\n", "2: http: needs at least one value"),
    (DS, "[ports]\nhttp = 18622, 18622\n", "2: http: lists a value twice"),
    (DS, "[heartbeat]\ninterval = fast\n", "2: interval: 'fast' is not a number"),
    (DS, "[heartbeat]\ninterval = 0.01\n", "2: interval: 0.01 is out of range 0.05..60"),
    (DS, "[log]\nlevel = loud\n", "2: level: 'loud' is not one of debug, info, warning, error"),
    (DS, "[network]\nbind = localhost\n", "2: bind: 'localhost' is not an IP address"),
    (DS, "[broker]\ntcp_endpoint = tcp://0.0.0.0:99999\n",
     "2: tcp_endpoint: 'tcp://0.0.0.0:99999' is not an endpoint like tcp://0.0.0.0:18640"),
    (DS, "[ondemand]\nscanner_idle_stop = -1\n",
     "2: scanner_idle_stop: -1 is out of range 0..86400"),
    (DS, "[ports]\nhttp = 1\nhttp = 2\n", "3: http: key written twice"),
    (DS, "[ondemand]\nocr_idle_stop = 1\nocr_idle_stop = 2\n",
     "3: ocr_idle_stop: key written twice"),
    (DS, "[ports]\nhttp = 1\n[log]\n[ports]\n", "4: [ports]: section written twice"),
    (DS, "[camera]\nsources = desk\n", "2: sources: 'desk' is not name=URL-or-file"),
    (DS, "[camera]\nsources = Desk Cam=/dev/video0\n",
     "2: sources: camera name 'Desk Cam': use a-z, 0-9, - and _ (up to 40)"),
    (DS, "[camera]\nsources = a=x.avi, a=y.avi\n", "2: sources: camera 'a' is listed twice"),
    (DS, "[ocr]\ndefault_lang = eng+de u\n",
     "2: default_lang: 'eng+de u' is not a Tesseract language list like eng or deu+eng"),
    (DS, "[ocr]\nocr_workers = -1\n", "2: ocr_workers: -1 is out of range 0..256"),
    (DS, "[ports]\nthis is not a setting\n", "2: this is not a setting: not 'key = value'"),
    (DS, "[ports\nhttp = 1\n", "1: [ports: section header lacks ']'"),
    ("service.ini", "[service]\nname = Scan Bridge\n",
     "2: name: 'Scan Bridge' is not a program name"),
    ("user_config.ini", "[access]\nallowed_origins = https://a.example.com, ftp://b.example.com\n",
     "2: allowed_origins: 'ftp://b.example.com' is not an origin like https://app.example.com"),
    ("user_config.ini", "[access]\nallowed_origins = https://a.example.com/app\n",
     "2: allowed_origins: 'https://a.example.com/app' is not an origin: it has a path, "
     "query or user"),
    ("user_config.ini", "[access]\nallowed_origins = https://a.com, HTTPS://A.com\n",
     "2: allowed_origins: lists a value twice"),
]


@pytest.mark.parametrize("name, text, where_and_reason", BAD)
def test_a_bad_file_raises_one_exact_file_line_key_reason_message(tmp_path, name, text,
                                                                    where_and_reason):
    path = write(tmp_path, name, text)
    assert error_of(tmp_path) == f"{path}:{where_and_reason}"


# --- lines read but not used: a warning each, the rest of the file applies

WARNED = [
    (DS, "[ports]\nhtpp = 1\n",
     "2: htpp: unknown key in [ports], not used (known: http, https)"),
    (DS, "[ondemand]\n_idle_stop = 5\n",
     "2: _idle_stop: unknown key in [ondemand], not used (known: programs, idle_stop, "
     "*_idle_stop)"),
    (DS, "[limits]\nscanner_idle_stop = 5\n",
     "2: scanner_idle_stop: unknown key in [limits], not used (known: max_body_mb, "
     "max_image_megapixels, max_import_mb, max_pdf_pages)"),
    (DS, "[gateway]\nhttp = 1\n", "2: http: unknown key in [gateway], not used (it is a key "
     "of [ports])"),
    (DS, "[port]\nhttp = 1\nhttps = 2\n",
     f"1: [port]: unknown section, not used (its keys neither; this file has {DS_SECTIONS})"),
    (DS, "http = 18622\n[ports]\n",
     "1: http: unknown key above the first [section], not used (it is a key of [ports])"),
    (DS, "bogus = 1\n", "1: bogus: unknown key above the first [section], not used (known: "
     "Access-Control-Allow-Origin)"),
    ("service.ini", "name = x\n[service]\n",
     "1: name: unknown key above the first [section], not used (it is a key of [service])"),
    ("service.ini", "bogus = x\n",
     "1: bogus: unknown key above the first [section], not used (keys belong in a [section])"),
    ("service.ini", "[access]\n",
     "1: [access]: unknown section, not used (its keys neither; this file has [service])"),
    ("user_config.ini", "[access]\nallowed_origin = https://a.example.com\n",
     "2: allowed_origin: unknown key in [access], not used (known: allowed_origins, "
     "upload_targets, local_users)"),
    # The commercial service's own keys (broker/config_unused.py says where they are named).
    (DS, "Server=192.168.8.221\n", "1: Server: a setting of the commercial service's "
     "DSConfiguration.ini, not used by Scanbridge ([network] bind sets the addresses "
     "Scanbridge listens on)"),
    (DS, "[log]\nLOGLEVEL = 14\n", "2: LOGLEVEL: a setting of the commercial service's "
     "DSConfiguration.ini, not used by Scanbridge ([log] level sets how much Scanbridge "
     "logs)"),
    (DS, "EnableWebSetup=TRUE\n", "1: EnableWebSetup: a setting of the commercial service's "
     "DSConfiguration.ini, not used by Scanbridge (Scanbridge has no setup page; these ini "
     "files are its settings (scanbridge doctor checks them))"),
]


@pytest.mark.parametrize("name, text, where_and_reason", WARNED)
def test_an_unknown_key_or_section_is_one_warning_and_not_a_refusal(tmp_path, name, text,
                                                                    where_and_reason):
    path = write(tmp_path, name, text)
    cfg = load(Home(tmp_path))
    assert [str(w) for w in cfg.warnings] == [f"{path}:{where_and_reason}"]
    assert cfg.warnings[0].path == path


def test_a_file_of_another_release_applies_its_known_keys_and_warns_of_the_rest(tmp_path):
    path = write(tmp_path, DS, "Server=0.0.0.0\n[ports]\nhttp = 18700\nold_key = 1\n"
                               "[retired]\nwhatever = 2\n[log]\nlevel = debug\n")
    cfg = load(Home(tmp_path))
    assert (cfg.ports.http, cfg.log.level) == ([18700], "debug")
    assert [(w.line, w.key) for w in cfg.warnings] == [(1, "Server"), (4, "old_key"),
                                                       (5, "[retired]")]
    assert all(str(w).startswith(f"{path}:") for w in cfg.warnings)
    assert load(Home(tmp_path / "empty")).warnings == []


def test_a_bad_value_is_still_refused_though_the_file_also_has_unknown_keys(tmp_path):
    path = write(tmp_path, DS, "[ports]\nold_key = 1\nhttp = 1x\n")
    assert error_of(tmp_path) == f"{path}:3: http: '1x' is not a whole number"


def test_load_file_adds_its_warnings_to_the_list_it_is_given(tmp_path):
    path = write(tmp_path, "service.ini", "[service]\nold = 1\n")
    assert load_file(path, "service.ini") == defaults("service.ini")  # none asked: none
    warnings: list = []
    load_file(path, "service.ini", warnings)
    assert [w.key for w in warnings] == ["old"]


def test_the_message_counts_lines_including_comments_and_blank_lines(tmp_path):
    path = write(tmp_path, DS, "; settings\n\n[ports]\n; the gateway\n\nhttp = 18622, abc\n")
    assert error_of(tmp_path) == f"{path}:6: http: 'abc' is not a whole number"


def test_a_bad_continued_value_is_reported_at_the_line_of_its_key(tmp_path):
    path = write(tmp_path, DS, "[ports]\nhttp = 18622,\n  abc\n")
    assert error_of(tmp_path) == f"{path}:2: http: 'abc' is not a whole number"


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = write(tmp_path, "service.ini", b"[service]\ndisplay_name = Caf\xe9\n")
    assert error_of(tmp_path) == f"{path}:1: (file): not UTF-8 text"


def test_an_unreadable_ini_path_is_a_config_error(tmp_path):
    path = Home(tmp_path).ini / "service.ini"
    path.mkdir(parents=True)  # a folder where the file should be
    assert error_of(tmp_path) == f"{path}:1: (file): cannot read: Is a directory"


def test_load_or_exit_prints_the_one_line_and_exits_78(tmp_path, capsys):
    path = write(tmp_path, DS, "[ports]\nhttp = 18622, abc\n")
    with pytest.raises(SystemExit) as caught:
        configlib.load_or_exit(Home(tmp_path))
    assert caught.value.code == 78
    assert capsys.readouterr().err == \
        f"scanbridge: configuration error: {path}:2: http: 'abc' is not a whole number\n"


# --- the home

def test_scanbridge_home_chooses_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANBRIDGE_HOME", str(tmp_path))
    write(tmp_path, "service.ini", "[service]\ndisplay_name = Elsewhere\n")
    home = Home()
    assert home.root == tmp_path.resolve()
    assert home.ini == tmp_path.resolve() / "ini"
    assert home.broker_endpoint == f"ipc://{tmp_path.resolve()}/run/broker.sock"
    assert load().service.display_name == "Elsewhere"


def test_an_explicit_root_wins_over_scanbridge_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANBRIDGE_HOME", str(tmp_path / "from-env"))
    assert Home(tmp_path / "given").root == (tmp_path / "given").resolve()


def test_without_scanbridge_home_the_home_is_the_checkout(monkeypatch):
    monkeypatch.delenv("SCANBRIDGE_HOME", raising=False)
    assert Home().root == CHECKOUT


def test_ensure_makes_every_folder_0700_even_if_it_existed(tmp_path):
    for name in ("run", "logs", "ini"):
        (tmp_path / name).mkdir(mode=0o755)
        (tmp_path / name).chmod(0o755)
    home = Home(tmp_path)
    home.ensure()
    for name in ("ini", "logs", "dumps", "run", "cert", "cache", "upload"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o700, name


# --- parse_origin

@pytest.mark.parametrize("raw, origin", [
    ("HTTPS://App.Example.com:443/", "https://app.example.com"),
    ("https://app.example.com", "https://app.example.com"),
    ("  https://app.example.com  ", "https://app.example.com"),
    ("http://app.example.com:80", "http://app.example.com"),
    ("http://app.example.com:443", "http://app.example.com:443"),
    ("https://app.example.com:8443/", "https://app.example.com:8443"),
    ("http://LOCALHOST:3000", "http://localhost:3000"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://[::1]:8080/", "http://[::1]:8080"),
])
def test_parse_origin_normalises_an_origin(raw, origin):
    assert configlib.parse_origin(raw) == origin


@pytest.mark.parametrize("raw", [
    "https://app.example.com/path",
    "https://app.example.com/app/",
    "https://app.example.com?x=1",
    "https://app.example.com/#top",
    "https://user@app.example.com",
    "https://user:secret@app.example.com",
    "ftp://app.example.com",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "app.example.com",
    "//app.example.com",
    "https://",
    "not-an-origin",
    "https://app.example.com:99999",
    "https://app.example.com:http",
])
def test_parse_origin_rejects_what_is_not_an_origin(raw):
    with pytest.raises(ValueError, match="origin|port"):
        configlib.parse_origin(raw)


@pytest.mark.parametrize("raw", ["https://:secret@app.example.com", "https://@app.example.com"])
def test_parse_origin_rejects_userinfo_with_an_empty_user_name(raw):
    with pytest.raises(ValueError):
        configlib.parse_origin(raw)


def test_parse_origin_rejects_port_zero():
    with pytest.raises(ValueError):
        configlib.parse_origin("https://app.example.com:0")


@pytest.mark.parametrize("raw", ["https://app.example.com;x", "https://app example.com"])
def test_parse_origin_rejects_a_host_with_characters_a_host_cannot_have(raw):
    with pytest.raises(ValueError):
        configlib.parse_origin(raw)


# --- the commercial service's Access-Control-Allow-Origin line

def test_an_access_control_allow_origin_line_above_the_sections_adds_origins(tmp_path):
    write(tmp_path, "DSConfiguration.ini",
          "Access-Control-Allow-Origin = https://Old.Example, http://intranet:8080\n"
          "[ports]\nhttp = 18622\n")
    write(tmp_path, "user_config.ini", "[access]\nallowed_origins = https://new.example\n")
    cfg = load(Home(tmp_path))
    assert cfg.access.allowed_origins == ["https://new.example"]
    assert getattr(cfg.access, "Access-Control-Allow-Origin") == [
        "https://old.example", "http://intranet:8080"]
    assert cfg.ports.http == [18622]


def test_a_wildcard_origin_is_refused_with_the_reason(tmp_path):
    path = write(tmp_path, "DSConfiguration.ini", "Access-Control-Allow-Origin = *\n")
    with pytest.raises(ConfigError) as caught:
        load_file(path, "DSConfiguration.ini")
    assert str(caught.value).startswith(f"{path}:1: Access-Control-Allow-Origin: '*' would "
                                        "let every web site use")


def test_other_keys_above_the_sections_are_not_used_and_warned_about(tmp_path):
    path = write(tmp_path, "service.ini", "name = x\n[service]\n")
    warnings: list = []
    assert load_file(path, "service.ini", warnings) == defaults("service.ini")
    assert [str(w) for w in warnings] == [f"{path}:1: name: unknown key above the first "
                                          "[section], not used (it is a key of [service])"]
