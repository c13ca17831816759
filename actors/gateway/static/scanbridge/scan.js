/**
 * ScanJob: a scan, or a camera's capture, into the session; its pages arrive in order.
 * @module scanbridge/scan
 */

import { ScanbridgeError, notify, reportError } from "./errors.js";
import { idOf } from "./http.js";
import { TrackedJob, checkLink, hasStarted, tracked } from "./jobs.js";
import { JobState, isFinal } from "./states.js";

/** @typedef {import("./types.js").Job} Job */
/** @typedef {import("./types.js").ImageInfo} ImageInfo */
/** @typedef {import("./types.js").Progress} Progress */
/** @typedef {import("./jobs.js").SessionLink} SessionLink */

/**
 * A running scan. `for await (const image of job)` yields each stored page's
 * {@link ImageInfo} in order (every iterator sees every page from the first; leaving the
 * loop early does not cancel the scan), and throws the job's error at the end if it
 * failed. `done` resolves with the final {@link Job} (state "done" or "cancelled") or
 * rejects with a {@link ScanbridgeError} (the job's code: "jammed", "feeder_empty",
 * "device_busy", ...; `details` has `job`, `pages` and `images` of the pages kept).
 * @extends {TrackedJob<Job, Progress, null, Job>}
 * @implements {AsyncIterable<ImageInfo>}
 */
export class ScanJob extends TrackedJob {
  /** @type {ImageInfo[]} the pages delivered so far, in order */ pages = [];

  #session;
  #batch;
  #onPage;
  #seen = new Set();           // image ids delivered or being delivered
  #chain = Promise.resolve();  // page deliveries, in order
  /** @type {Set<() => void>} */ #wakers = new Set();

  /**
   * Use {@link Session#scan}.
   * @param {SessionLink} link
   * @param {{batch: boolean, onPage?: (image: ImageInfo) => void,
   *          onProgress?: (progress: Progress) => void}} options
   */
  constructor(link, {batch, onPage, onProgress}) {
    super(checkLink(link, "use session.scan() to start a ScanJob"), {
      collection: "scans", noun: "scan", failedCode: "scan_failed", onProgress,
      merge: true,
      onEvent: (what, data) => this.#event(what, data),
      take: (record) => {
        for (const id of record.images ?? []) this.#page(id);
      },
      conclude: (record) => this.#conclude(record),
      later: (then) => {
        this.#chain = this.#chain.then(then);
      },
      settled: () => this.#wake(),
    });
    this.#session = link.session;
    this.#batch = batch;
    this.#onPage = onPage;
  }

  /** @param {string} what @param {any} data  scan.* of this job */
  #event(what, data) {
    switch (what) {
      case "progress":
        tracked.report(this, {page: data.page, percent: data.percent ?? null,
          pages: data.pages});
        break;
      case "page":
        this.#page(data.image, data.page);
        break;
      case "done":
        tracked.absorb(this, {...data, state: data.state ?? JobState.DONE, error: null});
        break;
      case "error":
        tracked.absorb(this, {...data, state: data.state ?? JobState.FAILED,
          error: data.error ?? {code: data.code, message: data.message}});
        break;
      default:
        break;
    }
  }

  /**
   * A stored page: delivered in order (its info comes with the event, or is fetched).
   * @param {string|ImageInfo} image
   * @param {number} [page]
   */
  #page(image, page) {
    const id = idOf(image);
    if (typeof id !== "string" || this.#seen.has(id)) return;
    this.#seen.add(id);
    const given = typeof image === "object" && image && image.etag ? image : null;
    this.#chain = this.#chain.then(async () => {
      let info = given;
      if (!info) {
        try {
          info = await this.#session.imageInfo(id);
        } catch (error) {
          if (error instanceof ScanbridgeError && error.code === "not_found") return;  // deleted
          reportError(error);
          return;
        }
      }
      this.pages.push(info);
      this.#wake();
      notify(this.#onPage, info);
      tracked.report(this, {page: page ?? this.pages.length, percent: 100,
        pages: this.pages.length});
    });
  }

  /**
   * A final record: the job ends once the pages on their way are delivered.
   * @param {Job} record
   */
  #conclude(record) {
    let error = null;
    const failure = record.error;
    if (record.state === JobState.FAILED && failure) {
      // A batch ends normally when the feeder runs empty (the service says so too).
      if (!(failure.code === "feeder_empty" && this.#batch && record.pages > 0)) {
        const {code, message, ...rest} = failure;
        error = new ScanbridgeError(String(code || "scan_failed"), String(message || code),
          {details: {...rest, job: record.job, pages: record.pages, images: record.images}});
      }
    }
    this.#chain = this.#chain.then(() => {
      const final = /** @type {Job} */ ({...this.record, state: error ? JobState.FAILED
        : (record.state === JobState.FAILED ? JobState.DONE : record.state)});
      tracked.note(this, final);
      tracked.settle(this, final, error);
    });
  }

  #wake() {
    const wakers = [...this.#wakers];
    this.#wakers.clear();
    for (const wake of wakers) wake();
  }

  /**
   * Cancel the job (pages already stored are kept). Before the POST answered, the cancel
   * waits for it. `done` then resolves with state "cancelled".
   * @returns {Promise<Job|null>}  the job record (null when the scan never started)
   */
  async cancel() {
    if (this.id === null && !(await hasStarted(this))) return null;
    if (isFinal(this.state)) return this.record;
    try {
      const record = await tracked.request(this, "DELETE");
      tracked.absorb(this, record);
      return record;
    } catch (error) {
      if (isFinal(this.state) || tracked.ending(this)) return this.record;  // it ended meanwhile
      throw error;
    }
  }

  /** @returns {AsyncIterator<ImageInfo>} */
  [Symbol.asyncIterator]() {
    let next = 0;
    return {
      next: async () => {
        for (;;) {
          if (next < this.pages.length) return {value: this.pages[next++], done: false};
          if (isFinal(this.state)) {
            if (this.error && next !== Infinity) {
              next = Infinity;
              throw this.error;
            }
            return {value: undefined, done: true};
          }
          await new Promise((resolve) => this.#wakers.add(() => resolve(undefined)));
        }
      },
      return: async () => {
        next = Infinity;
        return {value: undefined, done: true};
      },
    };
  }
}
