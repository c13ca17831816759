"""Wire protocol: frame constants, the msgpack codec and the stable error codes.

Every message is a list of ZeroMQ frames. Peers use DEALER sockets, the broker a ROUTER
(which adds the peer's routing id in front on receipt)::

    client -> broker   [empty][CLIENT][REQUEST][header][blob]*
    broker -> client   [empty][CLIENT][REPLY][header][blob]*
    worker -> broker   [empty][WORKER][READY][header]
                       [empty][WORKER][REPLY][envelope][header][blob]*
                       [empty][WORKER][HEARTBEAT]
                       [empty][WORKER][DISCONNECT]
    broker -> worker   [empty][WORKER][REQUEST][envelope][header][blob]*
                       [empty][WORKER][HEARTBEAT]
                       [empty][WORKER][DISCONNECT]

The *envelope* is an opaque frame the broker puts in front of a request and the worker
echoes back with its reply (like the client address in Majordomo), so the broker forwards
the client's header and blobs byte for byte and never re-encodes them.

Request header: ``{id, service, op, args, deadline, idempotent}`` (``deadline`` is an
absolute UNIX time). Reply header: ``{id, ok: True, result}`` or
``{id, ok: False, error: {code, message}}``. READY header: ``{service, pid, host,
capacity, version}``. Blobs (images, files) are raw frames, never inside msgpack.

Events go over the XSUB/XPUB pair as ``[topic][msgpack body]``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import msgpack
import zmq
from zmq.backend import Socket as _RawSocket

CLIENT = b"SBC1"  # client <-> broker
WORKER = b"SBW1"  # worker <-> broker

READY = b"\x01"
REQUEST = b"\x02"
REPLY = b"\x03"
HEARTBEAT = b"\x04"
DISCONNECT = b"\x05"

COMMAND_NAMES = {
    READY: "READY",
    REQUEST: "REQUEST",
    REPLY: "REPLY",
    HEARTBEAT: "HEARTBEAT",
    DISCONNECT: "DISCONNECT",
}

BROKER_SERVICE = "broker"  # answered by the broker itself (registry, ping)

# Event topics published by the core.
ACTOR_STATE = "actor.state"  # {service, worker, pid, host, state: ready|stopped|dead|hung}
SERVICE_WANTED = "service.wanted"  # {service}: a request waits for a service with no worker
SESSION_OPENED = "session.opened"  # {session}: the buffer opened a new session
SESSION_CLOSED = "session.closed"  # {session, reason: closed|expired}

DEFAULT_TIMEOUT = 30.0  # seconds a request may wait and run when the caller sets none
MAX_WAIT = 24 * 3600.0  # no request waits longer than a day, whatever its deadline says


_send = _RawSocket.send
_recv = _RawSocket.recv
_SNDMORE = int(zmq.SNDMORE)
NOBLOCK = int(zmq.NOBLOCK)  # a plain int: enum arithmetic costs more than the send


def send_frames(sock: zmq.Socket, frames: list, flags: int = 0) -> None:
    """Send a multipart message, zero-copy for large frames.

    Three times cheaper than ``send_multipart`` for small messages: it skips pyzmq's
    per-frame flag arithmetic on enums, which dominates a broker's per-message cost.
    """
    for frame in frames[:-1]:
        _send(sock, frame, flags | _SNDMORE, False)
    _send(sock, frames[-1], flags, False)


def recv_frames(sock: zmq.Socket, flags: int = 0) -> list[zmq.Frame]:
    """Receive a multipart message as zmq.Frame objects (no copy of large blobs)."""
    frame = _recv(sock, flags, False)
    frames = [frame]
    while frame.more:
        frame = _recv(sock, flags, False)
        frames.append(frame)
    return frames


def deadline_of(header: dict, default_timeout: float) -> float:
    """The request's deadline as a UNIX time: its own if sane, else now + default.

    A hostile or broken header (NaN, infinity, a bool, a string) never yields a request
    that waits forever; no deadline lies more than ``MAX_WAIT`` ahead.
    """
    now = time.time()
    deadline = header.get("deadline")
    if (not isinstance(deadline, (int, float)) or isinstance(deadline, bool)
            or not math.isfinite(deadline)):
        return now + default_timeout
    return min(deadline, now + MAX_WAIT)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes | memoryview) -> Any:
    # No limits are passed because msgpack already bounds every length a frame declares
    # (strings, arrays, maps) by the frame's own size: a hostile frame cannot make the
    # decoder allocate more than it sent. Map keys are not restricted to str and bytes
    # (strict_map_key=False); a key Python cannot hash fails the decode like any bad frame.
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class Error(Exception):
    """An error with a stable code; the runtime turns it into an error reply.

    Args:
        code: one of ``ERRORS`` (a stable, documented identifier).
        message: a sentence for humans.
        details: extra fields that travel with the error (e.g. ``allowed`` values).
    """

    def __init__(self, code: str, message: str, **details: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_wire(self) -> dict:
        return {"code": self.code, "message": self.message, **self.details}

    @classmethod
    def from_wire(cls, error: dict) -> "Error":
        error = dict(error)
        code = str(error.pop("code", "internal"))
        message = str(error.pop("message", code))
        return cls(code, message, **error)

    def __repr__(self) -> str:
        return f"Error({self.code!r}, {self.message!r})"


# code -> (HTTP status, meaning). The one place that maps error codes to HTTP statuses.
ERRORS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "the request is malformed"),
    "invalid_argument": (400, "an argument is missing, unknown or has a bad value"),
    "invalid_option": (422, "a device option value is not allowed"),
    "unauthorized": (401, "a session token is missing or wrong"),
    "forbidden": (403, "the origin or host is not allowed"),
    "other_user": (403, "the connection comes from a local account that may not use the "
                        "service ([access] local_users)"),
    "not_found": (404, "no such resource"),
    "method_not_allowed": (405, "the resource does not take this HTTP method"),
    "request_timeout": (408, "the request body did not arrive in time"),
    "unknown_op": (404, "the service has no such operation"),
    "conflict": (409, "the resource is in a state that does not allow this"),
    "busy": (409, "the device or resource is busy"),
    "too_large": (413, "the body or image is over the configured limit"),
    "too_many": (429, "too many sessions, viewers or sockets are open; close some first"),
    "unsupported_media": (415, "the content type is not supported"),
    "invalid_image": (422, "the file is not a readable image or PDF of a supported type"),
    "password_required": (422, "the PDF is encrypted and needs a password"),
    "wrong_password": (422, "the password does not open the PDF"),
    "disk_full": (507, "the disk-cache limit is reached or the disk is full; nothing was "
                       "written"),
    "timeout": (504, "the deadline passed before the work was done"),
    "actor_died": (502, "the actor handling the request died; it was not retried"),
    "bad_gateway": (502, "an actor answered with what the gateway does not trust (a file "
                         "outside the buffer's folder); nothing was served"),
    "not_available": (503, "the service is not available"),
    "shutting_down": (503, "the actor is stopping and takes no new work"),
    "internal": (500, "an unexpected error; see the actor's log"),
    # Scanner statuses (SANE): a scan job's error, or the answer to starting one.
    "device_busy": (409, "the device is busy with another job or program"),
    "device_gone": (404, "the device is no longer connected"),
    "feeder_empty": (409, "the document feeder has no paper"),
    "jammed": (409, "the document feeder is jammed"),
    "cover_open": (409, "the scanner cover is open"),
    "io_error": (503, "the device reported an I/O error"),
    "no_memory": (503, "the device or its driver ran out of memory"),
    "access_denied": (403, "the system denied access to the device"),
    # Uploads: refusing a target, and how an upload job can end badly.
    "upload_target_not_allowed": (403, "the upload target is neither the page's origin nor "
                                       "in the upload allowlist"),
    "upload_rejected": (502, "the receiver refused the upload (a 4xx answer); not retried"),
    "upload_failed": (502, "the upload failed on every attempt (network errors, 5xx, 429)"),
    "upload_tls_error": (502, "the receiver's TLS certificate did not verify"),
    "upload_redirect_refused": (502, "the receiver redirected to another origin, or in a "
                                     "way that would drop the document"),
    "cancelled": (409, "the job was cancelled"),
}


def http_status(code: str) -> int:
    return ERRORS.get(code, (500, ""))[0]


def error_reply(request_id: Any, code: str, message: str, **details: Any) -> dict:
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message, **details}}
