"""Every key of the three ini files, declared once: its default, its parser and its meaning.

A declarative table: ``config.load_file`` checks the files against it, ``render_defaults``
writes the shipped ini files from it and docs/configuration.md follows it. A new key is one
entry here (a new kind of value, one parser in ``config_values``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .config_values import (address, boolean, camera_sources, choice, curve_clients, endpoint,
                            integer, list_of, local_users, number, ocr_languages, parse_origin,
                            parse_upload_target, pem_file, program, tcp_port, text, user)


@dataclass(frozen=True)
class Key:
    default: str  # the value as written in the shipped ini file
    parse: Callable[[str], Any]
    doc: str  # one line for docs/configuration.md


# file -> section -> key -> Key. A key named "*_suffix" matches any "<program>_suffix".
SCHEMA: dict[str, dict[str, dict[str, Key]]] = {
    "DSConfiguration.ini": {
        # Keys above the first [section], as the commercial service writes them; read into
        # the [access] namespace (config.access).
        "": {
            "Access-Control-Allow-Origin": Key(
                "", list_of(parse_origin),
                "web origins allowed to use the service, as the commercial service's "
                "DSConfiguration.ini lists them (user_config.ini allowed_origins adds more)"),
        },
        "ports": {
            "http": Key("18622,18625", list_of(tcp_port, allow_empty=False),
                        "HTTP ports the gateway listens on"),
            "https": Key("18623,18626", list_of(tcp_port),
                         "HTTPS ports the gateway listens on (certificate: cert/, see "
                         "[certhelper]); empty = none"),
        },
        "gateway": {
            "session_close_delay": Key("30", number(0, 86400),
                                       "seconds a session lives on after its last event "
                                       "socket closed (a reload reconnects in time); 0 = "
                                       "until session_expiry"),
            "event_backlog": Key("1000", integer(10, 1000000),
                                 "events kept per session for a socket that reconnects "
                                 "with ?since="),
            "idle_timeout": Key("15", number(1, 3600),
                                "seconds a connection may idle, or take to send its "
                                "request headers, before it is closed"),
            "body_timeout": Key("120", number(1, 86400),
                                "seconds a request body may take to arrive"),
            "max_json_kb": Key("1024", integer(1, 65536), "largest JSON request body"),
            "max_sockets_per_session": Key("16", integer(1, 1000),
                                           "event sockets one session may hold open"),
            "max_sessions": Key("500", integer(1, 1000000),
                                "sessions open through the gateway at once (closed and "
                                "expired ones free their place)"),
            "max_sessions_per_origin": Key("100", integer(1, 1000000),
                                           "sessions one web origin may hold open (local "
                                           "programs sending no Origin count as one)"),
            "max_viewers": Key("16", integer(1, 10000), "camera live views served at once"),
        },
        "certhelper": {
            "server_days": Key("397", integer(2, 397),
                               "days a server certificate of the local CA is valid "
                               "(browsers accept at most 397)"),
            "renew_days": Key("30", integer(1, 396),
                              "days before expiry the server certificate is renewed "
                              "(fewer than server_days)"),
            "check_interval": Key("3600", number(1, 86400),
                                  "seconds between checks of expiry and Firefox profiles "
                                  "(file changes are acted on at once)"),
            "firefox_trust": Key("true", boolean,
                                 "put the local CA into Firefox profiles, new ones "
                                 "included (scanbridge untrust stops it)"),
            "firefox_users": Key("", list_of(user),
                                 "users whose Firefox profiles trust the local CA; "
                                 "empty = the user the service runs as"),
        },
        "uploader": {
            "workers": Key("2", integer(1, 32), "uploads sent at once"),
            "max_attempts": Key("10", integer(1, 1000),
                                "attempts per upload before it fails (connection errors, "
                                "timeouts, 5xx and 429 are retried; other 4xx are not)"),
            "backoff_first": Key("1", number(0.01, 3600),
                                 "seconds before the first retry; doubled each attempt, "
                                 "with jitter"),
            "backoff_max": Key("300", number(0.01, 86400),
                               "longest wait between two attempts (also caps Retry-After)"),
            "connect_timeout": Key("10", number(0.1, 600),
                                   "seconds to connect to the receiver"),
            "timeout": Key("60", number(0.1, 3600),
                           "seconds one write to the receiver, or the wait for its "
                           "answer, may block before the attempt fails"),
            "chunk_kb": Key("256", integer(4, 65536), "size of the pieces the body is sent in"),
            "max_redirects": Key("3", integer(0, 20),
                                 "307/308 redirects followed, to the same origin only"),
            "ca_bundle": Key("", pem_file,
                             "PEM file of CAs trusted for HTTPS receivers instead of the "
                             "system's (verification is always on)"),
            "job_keep": Key("86400", number(0, 366 * 86400),
                            "seconds a finished job's state stays queryable"),
        },
        "barcode": {
            "engine": Key("zxing", choice("zxing", "zbar"),
                          "barcode engine: zxing (zxing-cpp, every format) or zbar (pyzbar: "
                          "linear formats and QR)"),
        },
        "ocr": {
            "ocr_workers": Key("0", integer(0, 256),
                               "OCR worker processes on this machine, load-balanced by the "
                               "broker; 0 = one per core"),
            "default_lang": Key("eng", ocr_languages,
                                "language(s) when a request names none, e.g. eng or deu+eng "
                                "(installed: tesseract-ocr-* packages)"),
            "auto_rotate": Key("true", boolean,
                               "detect each page's orientation and read it upright (a "
                               "request's rotate overrides)"),
        },
        "camera": {
            "sources": Key("", camera_sources,
                           "named camera sources, name=URL-or-file, comma-separated: an MJPEG "
                           "camera (http://...), an RTSP stream (rtsp://...) or a video file "
                           "(played in a loop, paced at its frame rate)"),
            "v4l2": Key("true", boolean, "list the machine's V4L2 cameras (/dev/video*)"),
            "max_fps": Key("30", number(1, 120),
                           "highest live-view frame rate sent to one viewer (?fps= asks less)"),
            "jpeg_quality": Key("90", integer(50, 100),
                                "JPEG quality of frames from sources that do not send JPEG "
                                "(JPEG frames are kept as they come)"),
            "release_after": Key("2", number(0.2, 600),
                                 "seconds a camera stays open after its last viewer or "
                                 "capture left"),
        },
        "network": {
            "bind": Key("127.0.0.1, ::1", list_of(address, allow_empty=False),
                        "addresses the gateway binds; keep loopback unless you know why"),
        },
        "log": {
            "level": Key("info", choice("debug", "info", "warning", "error"),
                         "lowest level written to logs/<program>.log "
                         "(supervisor.conf sets their rotation)"),
        },
        "heartbeat": {
            "interval": Key("1.0", number(0.05, 60), "seconds between heartbeats, both ways"),
            "liveness": Key("3", integer(2, 100),
                            "missed heartbeats after which a peer counts as dead"),
        },
        "broker": {
            "request_timeout": Key("30", number(0.1, 86400),
                                   "default seconds a request may wait and run"),
            "spin_us": Key("500", integer(0, 100000),
                           "microseconds the broker keeps polling after traffic before it "
                           "sleeps: lower latency in bursts; 0 = never spin"),
            "tcp_endpoint": Key("", endpoint,
                                "optional CURVE-secured endpoint for remote actors, "
                                "e.g. tcp://0.0.0.0:18640; empty = none"),
            "curve_clients": Key("", curve_clients,
                                 "remote actors allowed on tcp_endpoint: KEY[:service,...] "
                                 "(Z85 public key; the services it may serve, default ocr; "
                                 "client lets it send requests too), separated by spaces"),
            "tcp_max_message_mb": Key("256", integer(1, 2047),
                                      "MB a message from tcp_endpoint may have (one frame or "
                                      "all together); a peer sending more is dropped"),
        },
        "monitor": {
            "hang_dump_wait": Key("1.0", number(0.1, 30),
                                  "seconds to wait for a hung actor's stack dump"),
            "dump_count": Key("50", integer(1, 100000), "dump files kept (oldest removed first)"),
            "dump_total_mb": Key("100", integer(1, 100000), "total size of dumps/ kept"),
            "watchdog": Key("15", number(1, 3600),
                            "seconds the monitor's own loop may stall before it dumps its "
                            "stacks and exits, so supervisord restarts it"),
            "log_lines": Key("200", integer(10, 100000),
                             "last log lines of the actor written into a crash dump"),
        },
        "ondemand": {
            "programs": Key("scanner, camera", list_of(program),
                            "programs started when needed (a session is open or a request "
                            "waits) and stopped when idle"),
            "idle_stop": Key("60", number(0, 86400),
                             "seconds an on-demand program may stay idle before it stops"),
            "*_idle_stop": Key("60", number(0, 86400),
                               "the same for one program, e.g. scanner_idle_stop"),
        },
        "limits": {
            "max_body_mb": Key("64", integer(1, 4096), "largest HTTP request body accepted"),
            "max_image_megapixels": Key("200", integer(1, 4000),
                                        "largest image accepted (width x height, "
                                        "decompression-bomb guard)"),
            "max_import_mb": Key("512", integer(1, 65536), "largest file accepted for import"),
            "max_pdf_pages": Key("2000", integer(1, 1000000),
                                 "most pages accepted in one imported PDF or TIFF"),
        },
        "buffer": {
            "buffer_memory_limit": Key("512", integer(16, 1048576),
                                       "MB of decoded images the buffer keeps in memory "
                                       "(least recently used are dropped; disk holds all)"),
            "disk_cache_limit": Key("10240", integer(1, 1 << 30),
                                    "MB the buffer may use in cache/ (pages, edits, "
                                    "encodings); over it adds fail with disk_full"),
            "session_expiry": Key("86400", number(1, 366 * 86400),
                                  "seconds a session unused by any page is kept before "
                                  "its images are removed"),
            "blank_threshold": Key("0.1", number(0, 100),
                                   "percent of ink pixels under which a page counts as "
                                   "blank"),
            "import_dpi": Key("200", integer(10, 1200),
                              "resolution at which imported PDF pages are rasterised"),
            "png_compression": Key("1", integer(0, 9),
                                   "zlib level of losslessly stored pages "
                                   "(1 = fast, 9 = small; 0 = uncompressed TIFF, the "
                                   "fastest and largest)"),
            "threads": Key("3", integer(1, 64), "requests the buffer works on at once"),
        },
        "scanner": {
            "test_scanners": Key("true", boolean, "list the embedded SANE test scanners "
                                 "(test:0, test:1; configured in ini/sane.d/)"),
            "system_scanners": Key("true", boolean, "list the scanners of this system's SANE "
                                   "backends (USB, network/eSCL)"),
            "max_pages": Key("5000", integer(1, 1000000),
                             "most pages one scan job may read (guards a feeder that "
                             "never reports empty)"),
            "pages_in_flight": Key("2", integer(1, 16),
                                   "pages of one job the buffer compresses and writes at "
                                   "once (they are listed in scan order)"),
        },
    },
    "service.ini": {
        "service": {
            "name": Key("scanbridge", program, "short name used in logs and unit names"),
            "display_name": Key("Scanbridge", text, "name shown on the welcome page"),
        },
    },
    "user_config.ini": {
        "access": {
            "allowed_origins": Key("", list_of(parse_origin),
                                   "web origins allowed to use the service "
                                   "(add with: scanbridge allow ORIGIN)"),
            "upload_targets": Key("", list_of(parse_upload_target),
                                  "URLs (an origin, or an origin and a path prefix) "
                                  "uploads may go to besides the page's own origin"),
            "local_users": Key("owner", local_users,
                               "local accounts that may use the service: owner (the "
                               "account it runs as), any, or user names and @groups"),
        },
    },
}
