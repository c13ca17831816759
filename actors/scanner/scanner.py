"""The scanner actor: SANE devices as sources, their options, and scan jobs.

Requests are answered on actor threads; a scan job runs on its own threads (see
``scanjob``), so ``scan`` answers at once with the job and heartbeats never wait for a
device. One job per device at a time: a second one gets ``device_busy``.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Any

from broker.actor import Actor, operation
from broker.protocol import Error
from common.jobs import JobOperations, ScanJobs

from . import devices as devicelib
from .options import SOURCE_PATTERNS, Settings
from .scanjob import Context, ScanJob, Stagers

PROGRAM = "scanner"  # our supervisord program: held by the monitor while a job runs
STOP_WAIT = 6.0  # seconds a stopping scanner waits for its jobs to end (under DRAIN)


class Scanner(JobOperations, Actor):
    service = "scanner"
    capacity = 4  # options and job queries stay answered while a device is slow to open
    tick_interval = 3600.0

    def on_start(self) -> None:
        self.sane_dir, self.backends = devicelib.prepare_config(self.cfg)
        self.devices = devicelib.Devices(lambda: devicelib.write_config(self.cfg))
        self.job_table = ScanJobs(self.home.cache / "scanner")
        # device name -> its live job (None while a scan request opens the device)
        self.busy: dict[str, ScanJob | None] = {}
        self.busy_lock = threading.Lock()
        in_flight = self.cfg.scanner.pages_in_flight
        self.context = Context(self.client, self.devices,
                               Stagers(self.client, in_flight), in_flight,
                               self.publish, lambda job: self.job_table.page(job.id, job.images),
                               self._job_done, self.log)
        self.holds: queue.Queue = queue.Queue()
        threading.Thread(target=self._send_holds, name="holds", daemon=True).start()
        self.log.info("SANE ready", version=".".join(map(str, self.devices.version[1:])),
                      backends=len(self.backends), config=str(self.sane_dir))
        self._finish_orphans()
        # Listing devices can take seconds (network backends): warm the cache now.
        threading.Thread(target=self._warm, name="discover", daemon=True).start()

    def _warm(self) -> None:
        try:
            found = self.devices.listing()
            self.log.info("scanners found", sources=[s["id"] for s in found])
        except Exception as exc:
            self.log.warning("listing scanners failed", error=repr(exc))

    def _finish_orphans(self) -> None:
        """Jobs of a scanner process that died: failed with actor_died, holds released."""
        for job in self.fail_orphans("the scanner stopped during this job; pages stored "
                                     "before that ({pages}) are kept"):
            self.log.warning("job ended by a scanner restart", job=job["job"],
                             pages=job["pages"])
            self._monitor("release", job["job"])

    def on_stop(self) -> None:
        for job in self._live_jobs():
            job.fail(Error("shutting_down", "the scanner was stopped during this job; pages "
                           "stored before are kept"))
            job.interrupt()
        end = time.monotonic() + STOP_WAIT
        for job in self._live_jobs():
            job.finished.wait(max(0.0, end - time.monotonic()))
        self.job_table.close()

    def on_tick(self) -> None:
        self.job_table.prune()

    # --- helpers

    def _monitor(self, op: str, job: str) -> None:
        """Ask the monitor to keep us running while a job runs (on-demand life cycle).

        Sent from a thread of its own: a slow or restarting monitor never delays a scan."""
        if PROGRAM in self.cfg.ondemand.programs:
            self.holds.put((op, job))

    def _send_holds(self) -> None:
        client = self.client()
        while True:
            op, job = self.holds.get()
            try:
                client.call("monitor", op, {"program": PROGRAM, "holder": f"job:{job}"},
                            timeout=10)
            except Error as exc:
                self.log.warning(f"monitor {op} failed", job=job, error=exc.message)

    def _check_session(self, session: Any) -> None:
        if not isinstance(session, str) or not session:
            raise Error("invalid_argument", "session must be a session id")
        try:
            self.client().call("buffer", "session", {"session": session}, timeout=10)
        except Error as exc:
            if exc.code == "not_found":
                raise Error("not_found", f"no session {session}") from None
            raise

    def _job_done(self, job: ScanJob) -> None:
        self.job_table.finish(job.id, job.state, job.describe()["error"])
        with self.busy_lock:
            self.busy.pop(job.source["device"], None)
        self.devices.close(job.handle)
        self.log.info("scan job ended", job=job.id, state=job.state, pages=len(job.images),
                      code=job.failure.code if job.failure else None)
        self._monitor("release", job.id)

    def _live_jobs(self) -> list[ScanJob]:
        with self.busy_lock:
            return [job for job in self.busy.values() if job is not None]

    def _live(self, job: str) -> ScanJob | None:
        """The running job with this id."""
        return next((live for live in self._live_jobs() if live.id == job), None)

    def _settings(self, entry: dict, handle: Any) -> Settings:
        """The options of a just opened device, set back to its defaults."""
        settings = Settings(handle)
        defaults = self.devices.defaults.setdefault(entry["device"], settings.snapshot())
        settings.restore(defaults)
        return settings

    # --- operations

    @operation
    def sources(self, refresh: bool = False) -> list:
        """Scanners: [{id, type, device, vendor, model, kind, backend, busy}]."""
        listing = self.devices.listing(bool(refresh))
        return [{**entry, "busy": entry["device"] in self.busy} for entry in listing]

    @operation
    def options(self, source: str, values: dict | None = None) -> dict:
        """Typed descriptors of every option, plus aliases; ``values`` are tried first."""
        entry = self.devices.find(source)
        job = self.busy.get(entry["device"])
        if job is not None:  # the device is open for a job: show the options it uses
            return {"source": entry["id"], "busy": True, "job": job.id,
                    "options": list(job.settings.options.values()),
                    "aliases": job.settings.aliases()}
        handle = self.devices.open(entry)
        try:
            settings = self._settings(entry, handle)
            defaults = self.devices.defaults[entry["device"]]
            settings.apply(values)
            options = [{**e, "default": defaults.get(e["name"])}
                       for e in settings.options.values()]
            return {"source": entry["id"], "busy": False, "options": options,
                    "aliases": settings.aliases()}
        finally:
            self.devices.close(handle)

    @operation
    def scan(self, session: str, source: str, options: dict | None = None,
             pages: int | None = 1, batch: bool = False) -> dict:
        """Start a scan job into the session's buffer: ``pages`` pages, or ``batch`` until
        the feeder is empty. Answers at once with the job; events tell the rest."""
        limit = None if batch else (1 if pages is None else pages)
        if limit is not None and not 1 <= limit <= self.cfg.scanner.max_pages:
            raise Error("invalid_argument", f"pages must be 1..{self.cfg.scanner.max_pages}")
        self._check_session(session)
        entry = self.devices.find(source)
        with self.busy_lock:
            if entry["device"] in self.busy:
                other = self.busy[entry["device"]]
                raise Error("device_busy", f"{entry['id']} is scanning for another job"
                            + (f" ({other.id})" if other else ""))
            self.busy[entry["device"]] = None  # reserved while we open and set it up
        try:
            handle = self.devices.open(entry)
        except BaseException:
            with self.busy_lock:
                self.busy.pop(entry["device"], None)
            raise
        try:
            settings = self._settings(entry, handle)
            applied = settings.apply(options)
            if batch:
                self._check_feeder(settings)
            job_id = os.urandom(8).hex()
            job = ScanJob(job_id, session, entry, handle, settings,
                          limit or self.cfg.scanner.max_pages, batch, self.context)
            self.job_table.create(job_id, session, entry["id"],
                              {"options": options or {}, "pages": limit, "batch": batch})
        except BaseException:
            self.devices.close(handle)
            with self.busy_lock:
                self.busy.pop(entry["device"], None)
            raise
        with self.busy_lock:
            self.busy[entry["device"]] = job
        self._monitor("hold", job_id)
        self.log.info("scan job started", job=job_id, session=session, source=entry["id"],
                      pages=limit, batch=batch)
        job.start()
        return {**job.describe(), "settings": applied}

    @staticmethod
    def _check_feeder(settings: Settings) -> None:
        source = settings.options.get("source")
        if source is None or not source["active"]:
            return  # no source choice: a sheet-fed device, its feeder says when it is empty
        value = str(source["value"] or "")
        if not (SOURCE_PATTERNS["adf"].search(value) or SOURCE_PATTERNS["duplex"].search(value)):
            raise Error("invalid_option", f"batch scanning needs the document feeder; source "
                        f"is {value!r} (set source to adf)", option="source",
                        allowed=source["constraint"] or {})

    # --- job, jobs, cancel (common.jobs.JobOperations): a live job answers for itself

    def job_view(self, record: dict) -> dict:
        live = self._live(record["job"])
        return live.describe() if live else record

    def job_cancel(self, record: dict) -> dict:
        """Stop at once; pages already stored stay in the buffer."""
        live = self._live(record["job"])
        if live is None:
            return self.job_table.find(record["job"])  # it ended meanwhile
        live.cancel()
        live.finished.wait(5)
        return live.describe()
