"""The uploader actor: takes upload jobs, renders their documents, delivers them.

``submit`` checks the request (targets.py), renders the document into ``upload/<job>/``
through the buffer, and only then acknowledges the job: from that moment it survives
crashes and restarts (jobs.py). ``workers`` sender threads take due jobs from the queue
and make attempts (delivery.py); a failed attempt that may succeed later is retried after
an exponential backoff with jitter (or the receiver's Retry-After), up to
``max_attempts``. Each job ends ``done``, ``failed`` or ``cancelled``; its files are then
removed and its record kept ``job_keep`` seconds for status queries.
"""

from __future__ import annotations

import errno
import random
import re
import shutil
import socket
import threading
import time
import uuid
import zipfile
from typing import Any

from broker.actor import Actor, operation
from broker.logs import mask_url
from broker.procutil import atomic_write, atomic_write_with
from broker.protocol import Error
from common.jobs import FINAL_STATES, JobOperations, JobState

from . import delivery, targets
from .jobs import UploadJobs

RENDER_TIMEOUT = 600.0  # seconds the buffer may take to render a large document
JOB_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex: the name of a job's folder
CANCEL_WAIT = 3.0  # seconds cancel waits for a running attempt to stop before answering
PROGRESS_EVERY = 0.25  # seconds between two upload.progress events of one job
DOCUMENT_OPTIONS = ("title", "author", "subject", "keywords", "pdfa", "compression",
                    "quality", "tiff_compression", "order")
EXTENSIONS = {"pdf": "pdf", "tiff": "tif", "jpeg": "jpg", "png": "png", "zip": "zip"}
MEDIA_TYPES = {"pdf": "application/pdf", "tiff": "image/tiff", "jpeg": "image/jpeg",
               "png": "image/png", "zip": "application/zip"}


class Uploader(JobOperations, Actor):
    service = "uploader"
    capacity = 4  # submits render while status queries still answer at once
    tick_interval = 60.0

    def on_start(self) -> None:
        self.settings = self.cfg.uploader
        self.folder = self.home.upload
        self.job_table = UploadJobs(self.folder)
        stale, requeued = self.job_table.recover()
        swept = self._sweep()
        if stale or requeued or swept:
            self.log.info("upload queue recovered", requeued=requeued,
                          dropped_unfinished=len(stale), folders_removed=swept)
        self.tls = delivery.tls_context(self.settings.ca_bundle)
        self.allowed = targets.AllowedTargets(self.cfg, self.log)
        self.wake = threading.Condition()
        self.cancels: set[str] = set()
        self.live: dict[str, Any] = {}  # job -> the connection of its running attempt
        self.stopping = False
        self.senders = [threading.Thread(target=self._sender, name=f"upload-{n}", daemon=True)
                        for n in range(self.settings.workers)]
        for thread in self.senders:
            thread.start()

    def on_stop(self) -> None:
        with self.wake:
            self.stopping = True
            self.wake.notify_all()
        for thread in self.senders:
            thread.join(timeout=2)

    def on_tick(self) -> None:
        self.job_table.expired(time.time() - self.settings.job_keep)
        self._sweep()

    def _sweep(self) -> int:
        """Remove the job folders no unfinished job needs: left by a kill between a job's
        end and its folder's removal, by a submit that never answered, or written by the
        buffer for a render the uploader gave up before a restart. Folders are listed
        before the jobs are read, and a submit records its job before it makes its folder:
        a folder being filled now always has its job in the set."""
        folders = [path for path in self.folder.iterdir()
                   if path.is_dir() and JOB_ID.fullmatch(path.name)]
        needed = self.job_table.unfinished()
        removed = [path for path in folders if path.name not in needed]
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)
        return len(removed)

    # --- operations

    @operation
    def submit(self, session: str, url: str, images: Any = None, origin: str | None = None,
               method: str = "POST", format: str = "pdf", page_format: str = "jpeg",
               fields: Any = None, headers: Any = None, filename: str | None = None,
               field_name: str | None = None, auth: Any = None, **options: Any) -> dict:
        """Accept an upload job: check, render into upload/<job>/, queue; answer the job."""
        unknown = set(options) - set(DOCUMENT_OPTIONS)
        if unknown:
            raise Error("invalid_argument", f"unknown upload options: {', '.join(sorted(unknown))}")
        try:
            request = targets.check_request(
                {"url": url, "method": method, "format": format, "page_format": page_format,
                 "fields": fields, "headers": headers, "filename": filename,
                 "field_name": field_name, "auth": auth},
                origin, self.allowed.current())
        except Error as exc:
            if exc.code == "upload_target_not_allowed":
                self.log.warning("refused upload target", url=mask_url(str(url))[:200],
                                 origin=origin, session=session)
            raise
        job = uuid.uuid4().hex
        self.job_table.create(job, session, request, key=str(uuid.uuid4()))
        try:
            files = self._render(job, session, images, request, options)
        except BaseException as exc:
            self.job_table.remove(job)
            shutil.rmtree(self.folder / job, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise Error("disk_full", f"no room in {self.folder} for the document "
                                         f"({exc.strerror})") from None
            raise
        self.job_table.queue(job, files)
        self.log.info("upload accepted", job=job, session=session,
                      url=mask_url(request["url"]), files=len(files),
                      bytes=sum(f["bytes"] for f in files))
        self.publish("upload.queued", {"session": session, "job": job})
        with self.wake:
            self.wake.notify()
        return public(self.job_table.get(job))

    # --- job, jobs, cancel (common.jobs.JobOperations)

    def job_view(self, record: dict) -> dict:
        return public(record)

    def job_cancel(self, record: dict) -> dict:
        """A queued job ends now; a running attempt is stopped and ends the job itself."""
        job = record["id"]
        self.cancels.add(job)
        self.log.info("upload cancelled", job=job, state=record["state"])
        if self.job_table.finish(job, JobState.CANCELLED, {"code": "cancelled",
                                                           "message": "cancelled"},
                                 only_from=(JobState.QUEUED,)):
            self._ended(self.job_table.get(job))
        # The attempt's socket is shut down so that a send or a wait for the answer stops
        # now, not at the timeout.
        conn = self.live.get(job)
        if conn is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except (OSError, AttributeError):
                pass
        end = time.monotonic() + CANCEL_WAIT
        while self.job_table.get(job)["state"] not in FINAL_STATES and time.monotonic() < end:
            time.sleep(0.02)
        return public(self.job_table.get(job))

    @operation
    def status(self) -> dict:
        """Jobs per state."""
        return {"jobs": self.job_table.counts(), "workers": len(self.senders)}

    # --- rendering

    def _render(self, job: str, session: str, images: Any, request: dict,
                options: dict) -> list[dict]:
        kind, stem = request["format"], request["filename"].rsplit(".", 1)[0] or "scan"
        folder = self.folder / job
        folder.mkdir(parents=True, exist_ok=True)
        args = {"session": session, "images": images, **options}
        if kind in ("pdf", "tiff"):
            name = f"{stem}.{EXTENSIONS[kind]}"
            saved = self.client().call("buffer", "save", {**args, "format": kind,
                                                            "dest": f"{job}/{name}"},
                                        timeout=RENDER_TIMEOUT)
            return [{"path": saved["path"], "name": name, "media_type": MEDIA_TYPES[kind],
                     "bytes": saved["bytes"]}]
        page_kind = request["page_format"] if kind == "zip" else kind
        ids = images if images is not None else \
            [page["id"] for page in self.client().call("buffer", "list", {"session": session})]
        if not isinstance(ids, list) or not ids:
            raise Error("conflict" if isinstance(ids, list) else "invalid_argument",
                        "there are no images to upload" if isinstance(ids, list) else
                        "images must be a list of image ids")
        if request["method"] == "PUT" and kind != "zip" and len(ids) > 1:
            raise Error("invalid_argument", "PUT sends one file: choose pdf, tiff or zip for "
                                            "several pages")
        extension = EXTENSIONS[page_kind]
        names = [f"{stem}.{extension}"] if len(ids) == 1 else \
            [f"{stem}-{n:03d}.{extension}" for n in range(1, len(ids) + 1)]
        quality = {"quality": options["quality"]} if "quality" in options else {}

        def page(image) -> bytes:  # one at a time: memory stays one page, whatever the count
            reply = self.client().request("buffer", "save", {
                "session": session, "images": [image], "format": page_kind, **quality},
                timeout=RENDER_TIMEOUT)
            return reply.blobs[0].bytes
        if kind == "zip":
            name = f"{stem}.zip"

            def write(out) -> None:
                with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
                    for page_name, image in zip(names, ids, strict=True):
                        archive.writestr(page_name, page(image))
            size = atomic_write_with(folder / name, write, 0o600)
            return [{"path": str(folder / name), "name": name,
                     "media_type": MEDIA_TYPES["zip"], "bytes": size}]
        files = []
        for page_name, image in zip(names, ids, strict=True):
            data = page(image)
            atomic_write(folder / page_name, data, mode=0o600)
            files.append({"path": str(folder / page_name), "name": page_name,
                          "media_type": MEDIA_TYPES[kind], "bytes": len(data)})
        return files

    # --- sending

    def _sender(self) -> None:
        while True:
            with self.wake:
                if self.stopping:
                    return
                record = self.job_table.take(time.time())
                if record is None:
                    due = self.job_table.next_due()
                    wait = 30.0 if due is None else min(30.0, max(0.05, due - time.time()))
                    self.wake.wait(wait)
                    continue
            try:
                self._deliver(record)
            except Exception as exc:  # a bug must not kill the sender; attempts still count
                self.log.exception("upload attempt crashed", job=record["id"])
                self._settle(record, delivery.Outcome(
                    "retry", code="internal", message=f"the attempt crashed: {exc!r}"))

    def _deliver(self, record: dict) -> None:
        job, session = record["id"], record["session"]
        settings = delivery.Settings(self.settings.connect_timeout, self.settings.timeout,
                                     self.settings.chunk_kb * 1024, self.tls)
        last = [0.0]

        def progress(sent: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY or sent == total:
                last[0] = now
                self.job_table.progress(job, sent, total)
                self.publish("upload.progress", {"session": session, "job": job,
                                                 "sent": sent, "total": total,
                                                 "attempt": record["attempts"]})

        url = record["request"]["url"]
        for _ in range(self.settings.max_redirects + 1):
            try:
                outcome = delivery.attempt(record, url, settings, progress,
                                           lambda: job in self.cancels,
                                           lambda conn: self.live.__setitem__(job, conn))
            finally:
                self.live.pop(job, None)
            if outcome.kind != "redirect":
                break
            self.log.info("upload redirected", job=job, to=mask_url(outcome.location))
            try:  # a redirect must stay on a target the job could have named itself
                targets.check_url(outcome.location, record["request"].get("origin"),
                                  self.allowed.current())
            except Error as exc:
                outcome = delivery.Outcome("fail", outcome.status, outcome.body,
                                           code="upload_redirect_refused",
                                           message=f"redirected to a target not allowed: "
                                                   f"{exc.message}")
                break
            url = outcome.location
        else:
            outcome = delivery.Outcome("fail", outcome.status, outcome.body,
                                       code="upload_redirect_refused",
                                       message="too many redirects")
        self._settle(record, outcome)

    def _settle(self, record: dict, outcome: delivery.Outcome) -> None:
        job, attempts = record["id"], record["attempts"]
        result = {"status": outcome.status, "body": outcome.body} \
            if outcome.status is not None else None
        error = {"code": outcome.code, "message": outcome.message,
                 **({"status": outcome.status} if outcome.status else {})}
        if outcome.kind == "done":
            self.job_table.finish(job, JobState.DONE, result=result,
                                  only_from=(JobState.RUNNING,))
            self.log.info("upload done", job=job, status=outcome.status, attempts=attempts)
        elif outcome.kind == "cancelled" or job in self.cancels:
            self.job_table.finish(job, JobState.CANCELLED, {"code": "cancelled",
                                                            "message": "cancelled"})
        elif outcome.kind == "retry" and attempts < self.settings.max_attempts:
            delay = self._backoff(attempts)
            if outcome.retry_after is not None:
                delay = min(max(delay, outcome.retry_after), self.settings.backoff_max)
            if self.job_table.retry(job, time.time() + delay, error):
                self.log.warning("upload attempt failed; retrying", job=job, attempt=attempts,
                                 delay=round(delay, 2), reason=outcome.message)
                self.publish("upload.retry", {"session": record["session"], "job": job,
                                              "attempt": attempts, "delay": delay,
                                              "error": error})
            return
        else:
            if outcome.kind == "retry":
                error = {**error, "message": f"{outcome.message} (gave up after "
                                             f"{attempts} attempts)"}
            self.job_table.finish(job, JobState.FAILED, error, result=result,
                                  only_from=(JobState.RUNNING,))
            self.log.error("upload failed", job=job, attempts=attempts, **error)
        self._ended(self.job_table.get(job))

    def _backoff(self, attempts: int) -> float:
        """Exponential with equal jitter (half to all of it), so clients do not retry in
        step."""
        ceiling = min(self.settings.backoff_max,
                      self.settings.backoff_first * 2 ** max(0, attempts - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _ended(self, record: dict | None) -> None:
        if record is None:
            return
        job = record["id"]
        self.cancels.discard(job)
        shutil.rmtree(self.folder / job, ignore_errors=True)
        body = {"session": record["session"], "job": job, "state": record["state"]}
        if record["state"] == JobState.DONE:
            self.publish("upload.done", {**body, **(record["result"] or {})})
        else:
            self.publish("upload.error", {**body, **(record["result"] or {}),
                                          **(record["error"] or {})})
        with self.wake:
            self.wake.notify()


def public(record: dict) -> dict:
    """A job as callers see it (no file paths, no password, no query values: a signed
    URL's signature stays with the page that sent it)."""
    request = record["request"]
    total, sent = record["total"], record["sent"]
    answer = {"job": record["id"], "session": record["session"], "state": record["state"],
              "progress": {"sent": sent if record["state"] != JobState.DONE else total,
                           "total": total,
                           "percent": 100.0 if record["state"] == JobState.DONE or not total
                           else round(100.0 * sent / total, 1)},
              "attempts": record["attempts"], "url": mask_url(request["url"]),
              "method": request["method"], "format": request["format"],
              "files": [{"name": f["name"], "bytes": f["bytes"]} for f in record["files"]],
              "idempotency_key": record["idempotency_key"],
              "created": record["created"], "updated": record["updated"]}
    if record["state"] == JobState.QUEUED and record["next_at"] > time.time():
        answer["next_attempt"] = record["next_at"]
    if record["result"]:
        answer["result"] = record["result"]
    if record["error"] and record["state"] != JobState.DONE:
        answer["error"] = record["error"]
    return answer
