"""A local MJPEG camera for tests: ``multipart/x-mixed-replace`` of JPEG parts at /stream.

``MjpegServer(frames, fps)`` serves the given JPEG frames in a loop, ``fps`` a second, to
every client of ``http://127.0.0.1:PORT/stream`` (a thread per client). It counts the
clients streaming now (``open_clients``) and all connections it took (``connections``).
``stop()`` makes the camera vanish mid-stream: it closes every client's socket and the
listening one; ``start()`` again serves on the same port. With ``redirect=URL`` it answers
/stream with a 302 to that URL instead, as a camera moved elsewhere would. ``requests``
holds the headers of every request it took (who sent it credentials).
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .stack import free_port

BOUNDARY = "mjpegtestframe"


class MjpegServer:
    def __init__(self, frames: list[bytes], fps: float = 15.0, port: int | None = None,
                 boundary: str = BOUNDARY, redirect: str | None = None):
        if not frames:
            raise ValueError("an MJPEG server needs at least one frame")
        self.frames = list(frames)
        self.fps = fps
        self.port = port or free_port()
        self.boundary = boundary
        self.redirect = redirect
        self.requests: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.open_clients = 0
        self.connections = 0
        self.frames_sent = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> MjpegServer:
        if self._server is not None:
            return self
        self._stopping = threading.Event()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={
            "poll_interval": 0.05}, name=f"mjpeg-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """The camera vanishes: no more frames, every open stream cut, the port closed."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self.lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        end = time.monotonic() + 5
        while self.open_clients and time.monotonic() < end:
            time.sleep(0.01)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self
        stopping = self._stopping

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args) -> None:
                pass

            def do_GET(self) -> None:
                with owner.lock:
                    owner.requests.append(dict(self.headers))
                if self.path.split("?")[0] != "/stream":
                    self.send_error(404)
                    return
                if owner.redirect is not None:
                    self.send_response(302)
                    self.send_header("Location", owner.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with owner.lock:
                    owner.connections += 1
                    owner.open_clients += 1
                    owner._sockets.add(self.connection)
                try:
                    self._stream()
                except OSError:
                    pass  # the client left, or stop() cut the socket
                finally:
                    with owner.lock:
                        owner.open_clients -= 1
                        owner._sockets.discard(self.connection)
                    self.close_connection = True

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type",
                                 f"multipart/x-mixed-replace; boundary={owner.boundary}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                period = 1.0 / owner.fps
                due = time.monotonic()
                number = 0
                while not stopping.is_set():
                    jpeg = owner.frames[number % len(owner.frames)]
                    number += 1
                    self.wfile.write(
                        f"--{owner.boundary}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                    self.wfile.flush()
                    with owner.lock:
                        owner.frames_sent += 1
                    due += period
                    if stopping.wait(max(0.0, due - time.monotonic())):
                        break

        return Handler
