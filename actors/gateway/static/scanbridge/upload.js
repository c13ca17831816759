/**
 * UploadJob: the service sends the session's pages to a web server, with retries.
 * @module scanbridge/upload
 */

import { notify } from "./errors.js";
import { TrackedJob, checkLink, percentOf, tracked } from "./jobs.js";
import { JobState } from "./states.js";

/** @typedef {import("./job-types.js").UploadRecord} UploadRecord */
/** @typedef {import("./job-types.js").UploadProgress} UploadProgress */
/** @typedef {import("./job-types.js").UploadRetry} UploadRetry */
/** @typedef {import("./job-types.js").UploadResult} UploadResult */
/** @typedef {import("./jobs.js").SessionLink} SessionLink */

/**
 * An upload on its way to a web server (see {@link Session#upload}). `done` resolves with
 * the final {@link UploadRecord} (state "done"; `result` is the receiver's `{status,
 * body}`) or rejects with a {@link ScanbridgeError}: the POST's error
 * (`upload_target_not_allowed`, `invalid_argument`, `conflict` with no pages, ...) or the
 * job's (`upload_rejected`: the receiver answered another 4xx, not retried;
 * `upload_failed`: every attempt failed; `upload_tls_error`; `upload_redirect_refused`;
 * `cancelled`), whose `details` has `job`, `attempts`, `status` (the receiver's) and
 * `result` (the receiver's answer, when there was one). `result` is the receiver's answer
 * once there is one. `cancel()` ends a queued job (or one waiting for a retry) at once, a
 * running one between two chunks of its body.
 * @extends {TrackedJob<UploadRecord, UploadProgress, UploadResult, UploadRecord>}
 */
export class UploadJob extends TrackedJob {
  #onRetry;
  #retried = 0;      // the last failed attempt reported to onRetry

  /**
   * Use {@link Session#upload}.
   * @param {SessionLink} link
   * @param {{onProgress?: (progress: UploadProgress) => void,
   *          onRetry?: (retry: UploadRetry) => void}} options
   */
  constructor(link, {onProgress, onRetry}) {
    super(checkLink(link, "use session.upload() to start an UploadJob"), {
      collection: "uploads", noun: "upload", failedCode: "upload_failed", onProgress,
      onEvent: (what, data) => this.#event(what, data),
      take: (record) => {
        if (record.result) this.result = record.result;
      },
      update: (record) => this.#update(record),
      complete: (record) => this.#complete(record),
      details: (record) => ({job: record.job, attempts: record.attempts,
        result: record.result ?? null}),
    });
    this.#onRetry = onRetry;
  }

  /** @param {string} what @param {any} data  upload.* of this job */
  #event(what, data) {
    const record = /** @type {UploadRecord} */ (this.record);
    switch (what) {
      case "progress":
        tracked.note(this, {...record, state: JobState.RUNNING});
        tracked.report(this, {sent: data.sent, total: data.total,
          percent: percentOf(data.sent, data.total), attempt: data.attempt});
        break;
      case "retry":
        tracked.note(this, {...record, state: JobState.QUEUED, attempts: data.attempt,
          error: data.error, next_attempt: Date.now() / 1000 + Number(data.delay || 0)});
        this.#retry({attempt: data.attempt, delay: Number(data.delay || 0), error: data.error});
        break;
      case "done":
        tracked.finish(this, {...record, state: JobState.DONE, error: undefined,
          result: {status: data.status, body: data.body ?? ""},
          progress: {sent: record.progress?.total ?? 0,
            total: record.progress?.total ?? 0, percent: 100}});
        break;
      case "error": {
        const {code, message, status} = data;
        tracked.finish(this, {...record, state: data.state ?? JobState.FAILED,
          error: {code, message, ...(status ? {status} : {})}});
        break;
      }
      default:
        break;
    }
  }

  /** @param {UploadRetry} retry */
  #retry(retry) {
    if (!(retry.attempt > this.#retried)) return;  // told already (by an event or a poll)
    this.#retried = retry.attempt;
    notify(this.#onRetry, retry);
  }

  /** @param {UploadRecord} record  one of the job still under way */
  #update(record) {
    if (record.state === JobState.QUEUED && record.attempts > 0 && record.error) {
      this.#retry({attempt: record.attempts, error: record.error,
        delay: Math.max(0, (record.next_attempt ?? 0) - Date.now() / 1000)});
    }
    const progress = record.progress;
    if (record.state === JobState.RUNNING && progress && (progress.sent !== this.progress?.sent
        || progress.total !== this.progress?.total)) {
      tracked.report(this, {sent: progress.sent, total: progress.total,
        percent: progress.percent, attempt: record.attempts});
    }
  }

  /** @param {UploadRecord} record  the job is done: its last progress */
  #complete(record) {
    const progress = record.progress ?? {sent: 0, total: 0, percent: 100};
    if (this.progress?.percent !== 100) {
      tracked.report(this, {sent: progress.total, total: progress.total, percent: 100,
        attempt: record.attempts});
    }
  }
}
