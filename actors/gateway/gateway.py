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

from .app import make_app

STARTUP_SECONDS = 15.0
PULSE = 0.25  # seconds between two liveness marks of the event loop


class Gateway(Actor):
    service = "gateway"

    def on_start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pulse = time.monotonic()
        self.urls: list[str] = []
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
            self.runner = web.AppRunner(make_app(self.cfg, self.log), handle_signals=False,
                                        access_log=None,
                                        keepalive_timeout=self.cfg.gateway.idle_timeout,
                                        shutdown_timeout=5.0)
            self.loop.run_until_complete(self.runner.setup())
            self.loop.run_until_complete(self._listen())
        except BaseException as exc:  # reported by on_start on the main thread
            self.failure = exc
            self.ready.set()
            return
        self.loop.call_soon(self._mark_alive)
        self.ready.set()
        self.loop.run_forever()

    async def _listen(self) -> None:
        for port in self.cfg.ports.http:
            bound = False
            for address in self.cfg.network.bind:
                site = web.TCPSite(self.runner, address, port, reuse_address=True)
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
                host = f"[{address}]" if ":" in address else address
                self.urls.append(f"http://{host}:{port}")
            if not bound:
                raise OSError(errno.EADDRNOTAVAIL, f"no bind address works for port {port}")
        self.log.info("listening", urls=self.urls)

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
