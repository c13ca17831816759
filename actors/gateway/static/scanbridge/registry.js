/**
 * The jobs a Session follows: each by its id, with the family of its events' topics
 * ("scan" for scan.*), and the events of jobs whose POST has not answered yet, kept for
 * them (a job's first events may come before the answer that names it).
 * @module scanbridge/registry
 */

import { tracked } from "./jobs.js";

/** @typedef {import("./types.js").ScanbridgeEvent} ScanbridgeEvent */
/** @typedef {import("./jobs.js").TrackedJob<any, any, any, any>} AnyJob */

const UNCLAIMED_MAX = 1000; // events kept for jobs whose POST has not answered yet

export class SessionJobs {
  /** @type {Map<string, {job: AnyJob, family: string}>} */ #jobs = new Map();
  /** @type {Map<string, ScanbridgeEvent[]>} events of jobs whose POST has not answered */
  #unclaimed = new Map();
  #unclaimedCount = 0;
  #starting = 0;  // job POSTs (scan, upload, OCR, barcodes) not answered yet

  /**
   * Start a job: POST its request, then hand it its record and the events that came
   * before the answer; aborting `signal` cancels it.
   * @param {() => Promise<any>} post   sends the POST; its answer is the job's record
   * @param {AnyJob} job
   * @param {string} family             the topic family of the job's events
   * @param {AbortSignal} [signal]
   */
  launch(post, job, family, signal) {
    this.#starting += 1;
    (async () => {
      try {
        const record = await post();
        this.#jobs.set(record.job, {job, family});
        tracked.attach(job, record);
        for (const event of this.#claim(record.job)) tracked.event(job, event);
      } catch (error) {
        tracked.fail(job, error);
      } finally {
        this.#startedOne();
      }
    })();
    signal?.addEventListener("abort", () => {
      job.cancel().catch(() => {});
    }, {once: true});
  }

  /**
   * An event about a job: to the job, or kept for it while a POST has not answered.
   * @param {string} family
   * @param {string} jobId
   * @param {ScanbridgeEvent} event
   */
  deliver(family, jobId, event) {
    const known = this.#jobs.get(jobId);
    if (known && known.family === family) {
      tracked.event(known.job, event);
    } else if (this.#starting > 0 && this.#unclaimedCount < UNCLAIMED_MAX) {
      const list = this.#unclaimed.get(jobId) ?? [];
      list.push(event);
      this.#unclaimed.set(jobId, list);
      this.#unclaimedCount += 1;
    }
  }

  /** Events were lost: every job reads its record again. */
  syncAll() {
    for (const {job} of this.#jobs.values()) tracked.sync(job);
  }

  /** The session ended: every job fails with `error`. @param {unknown} error */
  failAll(error) {
    for (const {job} of [...this.#jobs.values()]) tracked.fail(job, error);
    this.#jobs.clear();
  }

  /** A job ended. @param {string} jobId */
  forget(jobId) {
    this.#jobs.delete(jobId);
  }

  /**
   * The events of a job that came before its POST answered (they are handed over once).
   * @param {string} jobId
   * @returns {ScanbridgeEvent[]}
   */
  #claim(jobId) {
    const early = this.#unclaimed.get(jobId) ?? [];
    this.#unclaimed.delete(jobId);
    this.#unclaimedCount -= early.length;
    return early;
  }

  /** A job's POST answered (or failed): with none left, no event needs keeping. */
  #startedOne() {
    this.#starting -= 1;
    if (this.#starting === 0) {
      this.#unclaimed.clear();
      this.#unclaimedCount = 0;
    }
  }
}
