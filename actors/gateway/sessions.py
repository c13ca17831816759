"""Sessions as web pages hold them: a token per session, and a close timer that starts
when the page's last event socket closes.

The buffer owns sessions (their pages, expiry); the gateway adds a token. Only the
token's SHA-256 is kept, in the buffer's session ``meta``, so tokens outlive a gateway
restart and a leaked database does not hand out working tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from broker.client import AsyncClient
from broker.protocol import Error

from .caps import too_many

TOKEN_BYTES = 32  # 256 bits
RECOUNT_EVERY = 1.0  # seconds between two counts of the buffer's sessions at a cap


@dataclass
class Holder:
    """What the gateway knows of one session."""
    id: str
    token_hash: str
    origin: str


def token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.query.get("token") or None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Sessions:
    def __init__(self, broker: AsyncClient, close_delay: float, log, max_open: int = 0,
                 max_per_origin: int = 0):
        self.broker = broker
        self.close_delay = close_delay
        self.log = log
        self.known: dict[str, Holder] = {}
        # Token hash -> the id of the first session in ``known`` with it. Two sessions share
        # a hash only when one was opened at the buffer with a copied meta.
        self.by_token: dict[str, str] = {}
        self.sockets: dict[str, int] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.max_open, self.max_per_origin = max_open, max_per_origin
        # Open sessions of this gateway -> origin; None until read from the buffer.
        self.opened: dict[str, str] | None = None
        self.counted = 0.0
        self.opening = asyncio.Lock()  # a count and the session it admits, one at a time

    async def create(self, origin: str, meta: dict | None = None) -> dict:
        async with self.opening:
            await self._admit(origin)
            token = secrets.token_urlsafe(TOKEN_BYTES)
            gateway_meta = {"token_sha256": digest(token), "origin": origin}
            opened = await self.broker.call("buffer", "open_session", {
                "meta": {**(meta or {}), "gateway": gateway_meta}})
            holder = Holder(opened["session"], gateway_meta["token_sha256"], origin)
            self._remember(holder)
            self.opened[holder.id] = origin
        self.log.info("session opened", session=holder.id, origin=origin or None)
        return {"id": holder.id, "token": token, "created": opened["created"],
                "expires_after": opened["expires_after"], "close_delay": self.close_delay}

    async def _admit(self, origin: str) -> None:
        """Raise ``too_many`` when this gateway's sessions, or the origin's, are at their cap.

        Counted here; at a cap counted again from the buffer (at most once a second), which
        also knows sessions opened before a restart and closes whose event was missed.
        """
        if self.opened is None or (self._refusal(origin) is not None
                                   and time.monotonic() - self.counted >= RECOUNT_EVERY):
            listed = await self.broker.call("buffer", "sessions")
            self.counted = time.monotonic()
            self.opened = {s["session"]: str(s["meta"]["gateway"].get("origin") or "")
                           for s in listed
                           if isinstance((s.get("meta") or {}).get("gateway"), dict)}
        refusal = self._refusal(origin)
        if refusal is not None:
            self.log.warning("session refused", origin=origin or None, error=refusal.message)
            raise refusal

    def _refusal(self, origin: str) -> Error | None:
        count = len(self.opened)
        if self.max_open and count >= self.max_open:
            return too_many("sessions", count, self.max_open, "close sessions that are no "
                            "longer used (DELETE /api/v1/sessions/{id}) before opening another")
        mine = sum(1 for other in self.opened.values() if other == origin)
        if self.max_per_origin and mine >= self.max_per_origin:
            who = f"the web origin {origin}" if origin else "local programs (no Origin)"
            return too_many(f"sessions of {who}", mine, self.max_per_origin, "close sessions "
                            "that are no longer used (DELETE /api/v1/sessions/{id}) before "
                            "opening another")
        return None

    async def check(self, request: web.Request, sid: str) -> Holder:
        """The session ``sid`` if the request holds its token (and comes from its origin).

        Raises:
            Error: ``unauthorized`` (no token), ``forbidden`` (a wrong token, another
            origin), ``not_found`` (no such session: closed or expired).
        """
        token = token_of(request)
        if token is None:
            raise Error("unauthorized", "this needs the session's token: send "
                        "'Authorization: Bearer TOKEN' (or ?token=TOKEN in a URL)")
        holder = self.known.get(sid) or await self._learn(sid)
        if not hmac.compare_digest(holder.token_hash, digest(token)):
            raise Error("forbidden", f"the token is not the one of session {sid}")
        origin = request.headers.get("Origin")
        if origin is not None and holder.origin and origin != holder.origin:
            raise Error("forbidden", f"session {sid} belongs to another web origin")
        return holder

    async def of_request(self, request: web.Request) -> Holder:
        """The session whose token the request holds, for what is not under a session's path
        but uses a device (options, a rescan, a live view): ``?session=SID`` names it, else
        the token is looked up among the sessions this gateway has seen.

        Raises:
            Error: as ``check``; ``unauthorized`` also for a token of no session known here.
        """
        sid = request.query.get("session")
        if sid:
            return await self.check(request, sid)
        token = token_of(request)
        if token is None:
            raise Error("unauthorized", "this uses a device, which needs a session: send "
                        "'Authorization: Bearer TOKEN' (or ?session=SID&token=TOKEN in a URL)")
        # A lookup by hash, not compare_digest: what its time can tell is how much of a
        # SHA-256 matched, and that does not lead back to a token.
        sid = self.by_token.get(digest(token))
        if sid is not None:
            return await self.check(request, sid)
        raise Error("unauthorized", "no session known here has this token (one opened "
                    "before the service restarted needs ?session=SID too)")

    async def _learn(self, sid: str) -> Holder:
        """A session opened before this gateway started: its token hash from the buffer."""
        if not 1 <= len(sid) <= 64:
            raise Error("not_found", f"no session {sid!r}")
        info = await self.broker.call("buffer", "session", {"session": sid})
        gateway_meta = (info.get("meta") or {}).get("gateway")
        if not isinstance(gateway_meta, dict) or not gateway_meta.get("token_sha256"):
            raise Error("forbidden", f"session {sid} was not opened through the web gateway")
        holder = Holder(sid, str(gateway_meta["token_sha256"]),
                        str(gateway_meta.get("origin") or ""))
        self._remember(holder)
        return holder

    def _remember(self, holder: Holder) -> None:
        old = self.known.get(holder.id)
        # Learned twice while the buffer's meta was rewritten in between: the newer hash.
        if old is not None and old.token_hash != holder.token_hash:
            self._drop_token(old)
        self.known[holder.id] = holder
        self.by_token.setdefault(holder.token_hash, holder.id)

    def _drop_token(self, holder: Holder) -> None:
        """Unmap ``holder``'s hash; the next session in ``known`` with it takes over, so the
        earliest known one answers whichever of them goes first."""
        if self.by_token.get(holder.token_hash) != holder.id:
            return
        del self.by_token[holder.token_hash]
        for other in self.known.values():
            if other.token_hash == holder.token_hash and other.id != holder.id:
                self.by_token[other.token_hash] = other.id
                return

    async def info(self, holder: Holder) -> dict:
        info = await self.broker.call("buffer", "session", {"session": holder.id})
        return {"id": holder.id, "created": info["created"], "used": info["used"],
                "images": info["images"], "origin": holder.origin or None,
                "sockets": self.sockets.get(holder.id, 0), "close_delay": self.close_delay}

    async def close(self, sid: str, why: str) -> dict:
        self._stop_timer(sid)
        closed = await self.broker.call("buffer", "close_session", {"session": sid})
        self.forget(sid)
        self.log.info("session closed", session=sid, why=why, removed=closed["removed"])
        return {"id": sid, "removed": closed["removed"]}

    def forget(self, sid: str) -> None:
        """The session is gone (closed here, or the buffer closed or expired it)."""
        holder = self.known.pop(sid, None)
        if holder is not None:
            self._drop_token(holder)
        self.sockets.pop(sid, None)
        if self.opened is not None:
            self.opened.pop(sid, None)
        self._stop_timer(sid)

    # --- event sockets keep a session alive

    def socket_opened(self, sid: str) -> None:
        self.sockets[sid] = self.sockets.get(sid, 0) + 1
        self._stop_timer(sid)

    def socket_closed(self, sid: str) -> None:
        left = self.sockets.get(sid, 0) - 1
        if left > 0:
            self.sockets[sid] = left
            return
        self.sockets.pop(sid, None)
        if self.close_delay > 0 and sid in self.known:
            loop = asyncio.get_running_loop()
            self.timers[sid] = loop.call_later(self.close_delay, self._expire, sid)

    def _expire(self, sid: str) -> None:
        self.timers.pop(sid, None)
        if self.sockets.get(sid):
            return
        asyncio.get_running_loop().create_task(self._close_quietly(sid))

    async def _close_quietly(self, sid: str) -> None:
        try:
            await self.close(sid, f"no event socket for {self.close_delay:g} s")
        except Error as exc:
            if exc.code != "not_found":
                self.log.warning("session not closed", session=sid, error=exc.message)

    def _stop_timer(self, sid: str) -> None:
        timer = self.timers.pop(sid, None)
        if timer is not None:
            timer.cancel()
