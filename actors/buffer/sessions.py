"""The buffer's session operations: open (or reopen) and close a session, read them, and the
buffer's status; sessions unused for ``session_expiry`` are closed from the tick."""

from __future__ import annotations

from broker.actor import operation
from broker.protocol import SESSION_OPENED, Error

from .core import BufferCore

SESSION_ID = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


class SessionOperations(BufferCore):
    @operation
    def open_session(self, session: str | None = None, meta: dict | None = None) -> dict:
        """Open a session (or reopen it by id: its pages are still there)."""
        if session is not None and (not 8 <= len(session) <= 64
                                    or set(session) - set(SESSION_ID)):
            raise Error("invalid_argument", "session must be 8..64 letters, digits, _ or -")
        info, created = self.store.open_session(session, meta)
        self.publish(SESSION_OPENED, {"session": info["session"], "new": created})
        return {**info, "new": created, "expires_after": self.cfg.buffer.session_expiry}

    @operation
    def close_session(self, session: str) -> dict:
        """Close a session: its images and files are removed."""
        ids = self.store.close_session(session)
        self._closed(session, ids, "closed")
        return {"session": session, "removed": len(ids)}

    @operation
    def session(self, session: str) -> dict:
        """One session: created, last used, image count, meta."""
        return self.store.session(session)

    @operation
    def sessions(self) -> list:
        """All open sessions."""
        return self.store.sessions()

    @operation
    def status(self) -> dict:
        """Memory and disk use, session count."""
        return {"memory": self.decoded.stats(), "disk": self.store.disk_usage(),
                "sessions": len(self.store.sessions())}

    def _expire_sessions(self) -> None:
        for session in self.store.expired(self.cfg.buffer.session_expiry):
            ids = self.store.close_session(session)
            self.log.info("session expired", session=session, images=len(ids))
            self._closed(session, ids, "expired")
