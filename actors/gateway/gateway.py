"""The gateway actor: runs the aiohttp server on its own event-loop thread.

The actor runtime keeps the broker connection on the main thread; the liveness probe
checks that the event loop still turns, so a blocked loop is reported as a hang and the
monitor restarts the gateway.
"""

from __future__ import annotations

import asyncio
import errno
import threading
import time

from aiohttp import web

from broker.actor import Actor, operation

from . import malformed
from .app import make_app
from .shared import STATE
from .tls import POLL, Tls

STARTUP_SECONDS = 15.0
PULSE = 0.25  # seconds between two liveness marks of the event loop


class Gateway(Actor):
    service = "gateway"
    subscriptions = ("cert.changed",)

    def on_start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pulse = time.monotonic()
        self.urls: list[str] = []
        self.tls = Tls(self.home.cert, self.log)
        self.https_pending = list(self.cfg.ports.https)  # ports not listening yet
        self.https_error = ""
        self.cert_lock = asyncio.Lock()  # the poll and an event may both ask at once
        self.failure: BaseException | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="gateway-loop", daemon=True)
        self.thread.start()
        if not self.ready.wait(STARTUP_SECONDS):
            raise RuntimeError("the HTTP server did not start in time")
        if self.failure is not None:
            raise self.failure

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            # keepalive_timeout also bounds a connection that never completes a request.
            app = make_app(self.cfg, self.log)
            app[STATE].tls = self.tls
            self.runner = web.AppRunner(app, handle_signals=False,
                                        access_log=None,
                                        keepalive_timeout=self.cfg.gateway.idle_timeout,
                                        shutdown_timeout=5.0)
            self.loop.run_until_complete(self.runner.setup())
            malformed.answer_in_json(self.runner)
            self.loop.run_until_complete(self._listen())
            self.loop.run_until_complete(self._check_certificate())
        except BaseException as exc:  # reported by on_start on the main thread
            self.failure = exc
            self.ready.set()
            return
        self.loop.call_soon(self._mark_alive)
        self.loop.call_later(POLL, self._poll_certificate)
        self.ready.set()
        self.loop.run_forever()

    async def _listen(self) -> None:
        for port in self.cfg.ports.http:
            await self._listen_port(port, None)
        self.log.info("listening", urls=self.urls)

    async def _listen_port(self, port: int, tls) -> None:
        bound = False
        for address in self.cfg.network.bind:
            host = f"[{address}]" if ":" in address else address
            url = f"{'https' if tls else 'http'}://{host}:{port}"
            if url in self.urls:  # bound at an earlier try of this port (HTTPS retries)
                bound = True
                continue
            site = web.TCPSite(self.runner, address, port, reuse_address=True,
                               ssl_context=tls)
            try:
                await site.start()
            except OSError as exc:
                if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    self.log.warning("address not available here; skipped",
                                     address=address, port=port)
                    continue
                raise OSError(exc.errno, f"cannot listen on {address} port {port}: "
                                         f"{exc.strerror} (is another program using "
                                         "it? see: scanbridge doctor)") from None
            bound = True
            self.urls.append(url)
        if not bound:
            raise OSError(errno.EADDRNOTAVAIL, f"no bind address works for port {port}")

    async def _check_certificate(self) -> None:
        """Load a new or changed certificate; start HTTPS once there is one.

        HTTPS problems (no certificate yet, a port in use) are logged and retried; they
        never take HTTP down.
        """
        async with self.cert_lock:
            self.tls.load()
            if self.tls.context is not None and self.https_pending:
                await self._listen_https()

    async def _listen_https(self) -> None:
        errors = []
        for port in list(self.https_pending):
            try:
                await self._listen_port(port, self.tls.context)
                self.https_pending.remove(port)
                self.tls.listening.append(port)
            except OSError as exc:
                errors.append(str(exc))
        error = "; ".join(errors)
        if error and error != self.https_error:
            self.log.error("HTTPS ports not served; retrying", ports=self.https_pending,
                           error=error)
        self.https_error = self.tls.port_error = error
        if not self.https_pending:
            self.log.info("listening", urls=[u for u in self.urls if u.startswith("https")])

    def _poll_certificate(self) -> None:
        self.loop.create_task(self._check_certificate())
        self.loop.call_later(POLL, self._poll_certificate)

    def on_event(self, topic: str, body: dict) -> None:
        if topic == "cert.changed" and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self._check_certificate(), self.loop)

    def _mark_alive(self) -> None:
        self.pulse = time.monotonic()
        self.loop.call_later(PULSE, self._mark_alive)

    def alive(self) -> bool:
        expiry = self.cfg.heartbeat.interval * self.cfg.heartbeat.liveness
        return time.monotonic() - self.pulse < max(expiry, 4 * PULSE)

    def on_stop(self) -> None:
        if not self.loop.is_running():
            return
        # Stop taking connections, let running requests finish, then stop the loop.
        done = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
        try:
            done.result(timeout=8)
        except Exception as exc:
            self.log.warning("HTTP server did not stop cleanly", error=repr(exc))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=2)

    @operation
    def listening(self) -> list:
        """The URLs this gateway serves."""
        return self.urls
