"""The certificate helper actor: HTTPS certificates, and Firefox's trust in them.

Two jobs, both driven by file events (watchdog) and by a timer:

- keep ``cert/`` right (``keeper.Keeper``) and publish ``cert.changed`` when the served
  pair changes, so the gateway loads it without a restart;
- put the local CA into every Firefox profile of the configured users, including
  profiles created while the service runs (their folders are watched), unless the
  operator ran ``scanbridge untrust``.

File events only mark work as due; it runs on the actor's tick once they stopped for
``QUIET`` seconds, so a profile being created or a certificate being copied is read once,
complete.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from broker.actor import Actor, operation
from common import certs

from . import trust
from .keeper import Keeper, Outcome

QUIET = 0.3  # seconds without file events before acting on them
RETRY = 30.0  # seconds between attempts while something is wrong
IGNORED_EVENTS = ("opened", "closed_no_write")  # our own reads must not wake us


class _Marker(FileSystemEventHandler):
    def __init__(self, helper: "CertHelper"):
        self.helper = helper

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in IGNORED_EVENTS:
            return
        if Path(event.src_path).name.startswith(".") and \
                Path(event.src_path).parent == self.helper.files.folder:
            return  # our own temp and lock files
        self.helper.mark_due()


class CertHelper(Actor):
    service = "certhelper"
    tick_interval = 0.1

    def on_start(self) -> None:
        cfg = self.cfg.certhelper
        self.files = certs.CertFiles(self.home.cert)
        self.keeper = Keeper(self.home.cert, cfg.server_days, cfg.renew_days, self.log)
        self.outcome = Outcome()
        self.profiles: dict[str, dict] = {}  # path -> {user, trusted, error}
        self.due_lock = threading.Lock()
        self.due_at: float | None = time.monotonic()
        self.next_check = 0.0
        self.watched: set[Path] = set()
        self.observer = Observer()
        self.observer.daemon = True
        self.observer.start()
        self._refresh()

    def on_stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=2)

    def mark_due(self) -> None:
        """From watchdog's thread: something changed; act once it is quiet."""
        with self.due_lock:
            self.due_at = time.monotonic() + QUIET

    def on_tick(self) -> None:
        now = time.monotonic()
        with self.due_lock:
            due = self.due_at is not None and now >= self.due_at
            if due:
                self.due_at = None
        if due or now >= self.next_check:
            self._refresh()

    def _refresh(self) -> None:
        outcome = self.keeper.refresh()
        if outcome.changed:
            self.publish("cert.changed", {"source": outcome.source, **outcome.active})
        self.outcome = outcome
        trouble = bool(outcome.problem)
        if outcome.ca:
            install = self.cfg.certhelper.firefox_trust and not self._untrusted()
            trouble |= self._firefox(outcome.ca["subject"], install)
        self._watch()
        interval = self.cfg.certhelper.check_interval
        if trouble:
            interval = min(RETRY, interval)
        if outcome.active:  # an operator's certificate is replaced the second it expires
            left = (dt.datetime.fromisoformat(outcome.active["not_after"]) -
                    certs.now()).total_seconds()
            interval = min(interval, max(left + 1, 1))
        self.next_check = time.monotonic() + interval

    def _untrusted(self) -> bool:
        """``scanbridge untrust`` ran (an unreadable cert/ counts as not: no CA anyway)."""
        try:
            return self.files.untrusted.exists()
        except OSError:
            return False

    def _firefox(self, nickname: str, install: bool) -> bool:
        """Note each profile's trust, adding the CA where it lacks when ``install``.

        True when some profile could not be read or changed.
        """
        failed = False
        seen = {}
        for store in trust.firefox_stores(self.cfg.certhelper.firefox_users):
            key = str(store.path)
            state = self.profiles.get(key, {"user": store.user, "error": ""})
            try:
                trusted = trust.has_ca(store, nickname)
                if not trusted and install:
                    trust.add_ca(store, nickname, self.files.ca)
                    trusted = True
                    self.log.info("the local CA is now trusted in a Firefox profile",
                                  profile=key, user=store.user)
                state.update(trusted=trusted, error="")
            except (trust.TrustError, OSError) as exc:
                failed = True
                if state.get("error") != str(exc):
                    self.log.error("cannot make a Firefox profile trust the local CA",
                                   profile=key, user=store.user, error=str(exc))
                state.update(trusted=False, error=str(exc))
            seen[key] = state
        self.profiles = seen
        return failed

    def _watch(self) -> None:
        """Watch the cert folder and, per user, each Firefox root or its closest parent."""
        wanted = {self.files.folder}
        for _, home in trust.homes(self.cfg.certhelper.firefox_users):
            for root in trust.firefox_roots(home):
                folder = root
                while not folder.is_dir() and folder != home and folder != folder.parent:
                    folder = folder.parent
                if folder.is_dir():
                    wanted.add(folder)
            wanted.update(Path(p) for p in self.profiles)  # a profile's cert9.db removed
        if wanted == self.watched:
            return
        self.observer.unschedule_all()
        watched = set()
        for folder in wanted:
            try:
                self.observer.schedule(_Marker(self), str(folder), recursive=False)
                watched.add(folder)
            except OSError as exc:  # e.g. inotify limits; the timer still checks
                self.log.warning("cannot watch a folder", folder=str(folder), error=str(exc))
        self.watched = watched if len(watched) == len(wanted) else set()

    @operation
    def status(self) -> dict:
        """The CA, the served certificate, the operator's, and Firefox profiles' trust."""
        out = self.outcome
        return {"ca": out.ca, "active": out.active and {"source": out.source, **out.active},
                "operator": out.operator, "problem": out.problem,
                "firefox_trust": bool(self.cfg.certhelper.firefox_trust)
                and not self._untrusted(),
                "profiles": [{"path": path, **state} for path, state in self.profiles.items()]}

    @operation
    def refresh(self) -> dict:
        """Check the certificates and the profiles now, instead of at the next event."""
        self._refresh()
        return self.status()
