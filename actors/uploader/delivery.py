"""One attempt at sending a job's files: streamed from disk, in constant memory.

The body is written with ``http.client`` straight from the files in ``upload/<job>/`` in
``chunk`` pieces (a multipart form for POST, the file itself for PUT), with its length
known up front, so no part of it is ever held whole in memory. Every attempt carries the
job's ``Idempotency-Key``. The outcome says what to do next:

- ``done``: a 2xx answer;
- ``retry``: a connection error or timeout, 5xx or 429 (with its Retry-After);
- ``fail``: any other 4xx, a certificate that does not verify, a redirect to another
  origin (or one that would turn the POST into a GET and drop the document);
- ``redirect``: a 307/308 to the same origin, to be attempted at once;
- ``cancelled``: the job was cancelled while sending.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import os
import secrets
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin, urlsplit

from broker import __version__

from .targets import origin_of

MAX_RESPONSE = 1 << 20  # bytes of the receiver's answer kept (what DWT calls its "response string")


@dataclass
class Outcome:
    kind: str  # done | retry | fail | redirect | cancelled
    status: int | None = None
    body: str = ""
    code: str = ""
    message: str = ""
    retry_after: float | None = None
    location: str = ""


@dataclass
class Settings:
    connect_timeout: float
    timeout: float
    chunk: int
    tls: ssl.SSLContext


def tls_context(ca_bundle: str) -> ssl.SSLContext:
    """Verification always on; ``ca_bundle`` replaces the system's CAs when given."""
    context = ssl.create_default_context(cafile=ca_bundle or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _disposition(name: str, filename: str | None = None) -> str:
    text = f'form-data; name="{name}"'
    return text + (f'; filename="{filename}"' if filename is not None else "")


def body_segments(job: dict) -> tuple[list, str]:
    """(segments: bytes or (Path, size), content type) of the request body."""
    request, files = job["request"], job["files"]
    folder_files = [(Path(f["path"]), f["bytes"], f["name"], f["media_type"]) for f in files]
    if request["method"] == "PUT":
        path, size, _, media_type = folder_files[0]
        return [(path, size)], media_type
    boundary = f"scanbridge-{secrets.token_hex(16)}"
    segments: list = []
    for name, value in request["fields"].items():
        segments.append(f"--{boundary}\r\nContent-Disposition: {_disposition(name)}\r\n\r\n"
                        .encode() + value.encode() + b"\r\n")
    for path, size, name, media_type in folder_files:
        segments.append(f"--{boundary}\r\nContent-Disposition: "
                        f"{_disposition(request['field_name'], name)}\r\n"
                        f"Content-Type: {media_type}\r\n\r\n".encode())
        segments.append((path, size))
        segments.append(b"\r\n")
    segments.append(f"--{boundary}--\r\n".encode())
    return segments, f"multipart/form-data; boundary={boundary}"


def _length(segments: list) -> int:
    return sum(len(s) if isinstance(s, bytes) else s[1] for s in segments)


def retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def attempt(job: dict, url: str, settings: Settings, progress: Callable[[int, int], None],
            cancelled: Callable[[], bool],
            connected: Callable[[object], None] = lambda conn: None) -> Outcome:
    """``connected(conn)`` gets the connection: a cancel shuts its socket down, which
    ends a send or a wait for the answer at once."""
    request = job["request"]
    parts = urlsplit(url)
    segments, content_type = body_segments(job)
    total = _length(segments)
    headers = {"Content-Type": content_type, "Content-Length": str(total),
               "Idempotency-Key": job["idempotency_key"],
               "User-Agent": f"Scanbridge/{__version__}", "Accept": "*/*",
               "X-Scanbridge-Job": job["id"]}
    auth = request.get("auth")
    if auth:
        pair = f"{auth['user']}:{auth.get('password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    # A page's header replaces ours of the same name, whatever its case (a second copy
    # makes receivers refuse the request).
    given = {name.lower() for name in request["headers"]}
    headers = {name: value for name, value in headers.items() if name.lower() not in given}
    headers.update(request["headers"])
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, port, context=settings.tls,
                                           timeout=settings.connect_timeout)
    else:
        conn = http.client.HTTPConnection(parts.hostname, port,
                                          timeout=settings.connect_timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        try:
            conn.connect()
            conn.sock.settimeout(settings.timeout)
            connected(conn)
            conn.putrequest(request["method"], path, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            sent = _send(conn, segments, settings.chunk, total, progress, cancelled)
            if sent is None:
                return Outcome("cancelled", code="cancelled", message="cancelled while sending")
        except ssl.SSLCertVerificationError as exc:
            return Outcome("fail", code="upload_tls_error",
                           message=f"the certificate of {parts.hostname} does not verify: "
                                   f"{exc.verify_message}")
        except (OSError, http.client.HTTPException) as exc:
            if cancelled():
                return Outcome("cancelled", code="cancelled", message="cancelled while sending")
            # The receiver may have answered (e.g. 413) and closed before taking it all.
            early = _early_answer(conn)
            if early is not None:
                return _judge(early, url)
            return Outcome("retry", code="upload_failed", message=_describe(exc, "sending"))
        try:
            response = conn.getresponse()
            answer = (response.status, response.read(MAX_RESPONSE), response.headers)
        except (OSError, http.client.HTTPException) as exc:
            if cancelled():
                return Outcome("cancelled", code="cancelled",
                               message="cancelled while waiting for the answer")
            return Outcome("retry", code="upload_failed",
                           message=_describe(exc, "waiting for the answer"))
        return _judge(answer, url)
    finally:
        conn.close()


def _send(conn, segments: list, chunk: int, total: int, progress, cancelled) -> int | None:
    sent = 0
    for segment in segments:
        if isinstance(segment, bytes):
            conn.send(segment)
            sent += len(segment)
            continue
        path, size = segment
        with open(path, "rb", buffering=0) as source:
            os.posix_fadvise(source.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            while True:
                if cancelled():
                    return None
                block = source.read(chunk)
                if not block:
                    break
                conn.send(block)
                sent += len(block)
                progress(sent, total)
    progress(sent, total)
    return sent


def _early_answer(conn) -> tuple | None:
    try:
        if conn.sock is None:
            return None
        conn.sock.settimeout(2)
        response = conn.getresponse()
        return response.status, response.read(MAX_RESPONSE), response.headers
    except (OSError, http.client.HTTPException, AttributeError):
        return None


def _describe(exc: BaseException, when: str) -> str:
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"timed out {when}"
    return f"{type(exc).__name__} {when}: {exc}"


def _judge(answer: tuple, url: str) -> Outcome:
    status, raw, headers = answer
    body = raw.decode("utf-8", "replace")
    if 200 <= status < 300:
        return Outcome("done", status, body)
    if status in (307, 308) and headers.get("Location"):
        target = urljoin(url, headers["Location"])
        try:
            same = origin_of(target) == origin_of(url)
        except Exception:
            same = False
        if same:
            return Outcome("redirect", status, body, location=target)
        return Outcome("fail", status, body, code="upload_redirect_refused",
                       message=f"the receiver redirected to another origin ({target[:200]})")
    if 300 <= status < 400:
        return Outcome("fail", status, body, code="upload_redirect_refused",
                       message=f"the receiver answered {status}, a redirect that would drop "
                               "the document (only 307/308 to the same origin are followed)")
    if status == 429 or status >= 500:
        return Outcome("retry", status, body, code="upload_failed",
                       message=f"the receiver answered {status}",
                       retry_after=retry_after(headers.get("Retry-After")))
    return Outcome("fail", status, body, code="upload_rejected",
                   message=f"the receiver refused the upload: {status}")
