/**
 * TrackedJob: what every job the service keeps a record of has in common (a scan or a
 * capture, an upload, OCR, barcodes). `started` resolves with the POST's answer; the record
 * is then followed through the session's events about the job, or a poll every 2 s while
 * the event socket is down; the job settles once (`done` resolves, or rejects with a
 * ScanbridgeError) and its session forgets it. A closed session fails it with
 * `session_closed`.
 *
 * A kind of job (ScanJob, UploadJob, RecognitionJob) says how it differs in the JobKind it
 * gives the constructor. Two callers reach past the public API, through the `tracked`
 * functions of this module (not re-exported by /scanbridge.js): the Session (the POST
 * answered, an event of the job, events were lost, the session ended) and the kinds (a
 * request to the job's URL, a record to take in or note, the end, a progress report).
 * @module scanbridge/jobs
 */

import { ScanbridgeError, asScanbridgeError, notify } from "./errors.js";
import { sessionCall, sessionPath } from "./http.js";
import { JobState, STARTING, isFinal } from "./states.js";

/** @typedef {import("./types.js").ScanbridgeEvent} ScanbridgeEvent */
/** @typedef {import("./states.js").JobStateName} JobStateName */
/** @typedef {import("./session.js").Session} Session */
/** @typedef {import("./http.js").RequestOptions} RequestOptions */

const POLL_EVERY = 2000;  // ms between two polls of a job while the event socket is down

/**
 * @template T
 * @typedef {{promise: Promise<T>, resolve: (value: T) => void,
 *   reject: (error: unknown) => void}} Deferred
 */

/**
 * A promise with its resolve and reject, for a job's `started` and `done`. Not awaiting a
 * job is legal, so no unhandled-rejection report is made for it.
 * @template T
 * @returns {Deferred<T>}
 */
export function deferred() {
  /** @type {(value: T) => void} */ let resolve = () => {};
  /** @type {(error: unknown) => void} */ let reject = () => {};
  const promise = /** @type {Promise<T>} */ (new Promise((yes, no) => {
    resolve = yes;
    reject = no;
  }));
  promise.catch(() => {});
  return {promise, resolve, reject};
}

/** @param {number} sent @param {number} total @returns {number} percent, one decimal */
export function percentOf(sent, total) {
  return total > 0 ? Math.round(1000 * sent / total) / 10 : 0;
}

/**
 * What the jobs (and live views) of a Session may use of it. The Session makes one and
 * gives it to everything it starts; a job made without one is refused.
 */
export class SessionLink {
  /** @type {Session} */ session;
  /** @type {string} the session's API path */ path;
  /** @type {() => boolean} */ #eventsLive;
  /** @type {(jobId: string) => void} */ #forget;

  /**
   * @param {Session} session
   * @param {{eventsLive: () => boolean, forget: (jobId: string) => void}} parts
   */
  constructor(session, {eventsLive, forget}) {
    this.session = session;
    this.path = sessionPath(session);
    this.#eventsLive = eventsLive;
    this.#forget = forget;
  }

  /** @param {string} method @param {string} path @param {RequestOptions} [options] */
  call(method, path, options) {
    return sessionCall(this.session, method, path, options);
  }

  /** @returns {boolean} the event socket is connected */
  eventsLive() {
    return this.#eventsLive();
  }

  /** The job ended: the session stops following it. @param {string} jobId */
  forget(jobId) {
    this.#forget(jobId);
  }
}

/**
 * Wait for a job's POST to answer (a cancel before it does waits for it).
 * @param {{started: Promise<unknown>}} job
 * @returns {Promise<boolean>} false: the job never started
 */
export async function hasStarted(job) {
  try {
    await job.started;
    return true;
  } catch {
    return false;
  }
}

/**
 * @param {unknown} link
 * @param {string} misuse   what to say to a page that calls the constructor itself
 * @returns {SessionLink}
 */
export function checkLink(link, misuse) {
  if (!(link instanceof SessionLink)) throw new TypeError(misuse);
  return link;
}

/**
 * @typedef {object} TrackedRecord
 * @property {string} job
 * @property {JobStateName} state
 * @property {{code: string, message: string}|null} [error]
 */

/**
 * How a kind of job differs; its class gives one to TrackedJob's constructor.
 * @template Rec, P, Out
 * @typedef {object} JobKind
 * @property {string} collection    the jobs' path under the session: "scans", "uploads", ...
 * @property {string} noun          names the job in an error without the service's message
 * @property {string} failedCode    the code of a failure without the service's error
 * @property {((progress: P) => void)|undefined} onProgress   the page's callback
 * @property {(what: string, data: any) => void} onEvent   an event of the running job (its
 *   topic after the family, e.g. "progress")
 * @property {boolean} [merge]      a record adds to the last one instead of replacing it
 *   (a scan's events carry part of its record)
 * @property {(record: Rec) => void} [take]      a whole record arrived (any state)
 * @property {(record: Rec) => void} [update]    a record of the job still under way
 * @property {(record: Rec) => void} [conclude]  a final record: settle the job (default:
 *   done resolves `done`, any other state rejects it)
 * @property {(record: Rec) => void} [complete]  the job is done: report its last progress
 * @property {(record: Rec) => Object<string, unknown>} [details]  of the job's error
 *   (default: the job id)
 * @property {(record: Rec) => Out} [outcome]    what `done` resolves with (default: the record)
 * @property {(then: () => void) => void} [later]  settle once what the job has on its way
 *   is delivered (a scan's pages; default: now)
 * @property {() => void} [settled]             the job has settled
 */

/** @typedef {TrackedJob<any, any, any, any>} AnyJob */

/**
 * The functions past the public API (see the module's comment). Set by TrackedJob itself,
 * which alone can reach its private parts.
 * @type {{
 *   attach: (job: AnyJob, record: any) => void,        // Session: the POST answered
 *   event: (job: AnyJob, event: ScanbridgeEvent) => void,  // Session: an event of the job
 *   sync: (job: AnyJob) => void,                       // Session: events were lost
 *   fail: (job: AnyJob, error: unknown) => void,       // Session: it could not start, or ended
 *   request: (job: AnyJob, method: string) => Promise<any>,  // kinds: the job's URL
 *   absorb: (job: AnyJob, record: any) => void,        // kinds: a whole record
 *   note: (job: AnyJob, record: any) => void,          // kinds: a record made from an event
 *   finish: (job: AnyJob, fallback: any, required?: boolean) => void,  // kinds: the end
 *   report: (job: AnyJob, progress: any) => void,      // kinds: progress, for onProgress
 *   settle: (job: AnyJob, record: any, error: ScanbridgeError|null) => void,  // kinds
 *   ending: (job: AnyJob) => boolean,                  // kinds: the end is known
 * }}
 */
export const tracked = /** @type {any} */ ({});

/**
 * A job the service keeps a record of; see the module's comment.
 * @template {TrackedRecord} Rec   the job's record
 * @template P                     its progress
 * @template Res                   its result
 * @template Out                   what `done` resolves with
 */
export class TrackedJob {
  /** @type {Deferred<Rec>} */ #started = deferred();  // first: the public promises come from
  /** @type {Deferred<Out>} */ #done = deferred();     // these two

  /** @type {string|null} the job id, once the service answered the POST */ id = null;
  /** @type {typeof STARTING|JobStateName} */ state = STARTING;
  /** @type {Rec|null} the latest job record */ record = null;
  /** @type {P|null} the last progress */ progress = null;
  /** @type {Res|null} the result, once there is one */ result = null;
  /** @type {ScanbridgeError|null} why the job failed (what `done` rejects with) */ error = null;
  /** @type {Promise<Rec>} resolves with the POST's answer (the job started) */
  started = this.#started.promise;
  /** @type {Promise<Out>} resolves when the job is done */ done = this.#done.promise;

  #link;
  #kind;
  #ending = false;   // the end is known (its record may still be on its way)
  #settled = false;
  /** @type {ReturnType<typeof setInterval>|null} */ #poll = null;
  #syncing = false;

  /**
   * @param {SessionLink} link
   * @param {JobKind<Rec, P, Out>} kind
   */
  constructor(link, kind) {
    this.#link = checkLink(link, "use a session's methods to start a job");
    this.#kind = kind;
  }

  static {
    tracked.attach = (job, record) => job.#attach(record);
    tracked.event = (job, event) => job.#event(event);
    tracked.fail = (job, error) => job.#fail(error);
    tracked.sync = (job) => void job.#sync();
    tracked.request = (job, method) => job.#request(method);
    tracked.absorb = (job, record) => job.#absorb(record);
    tracked.finish = (job, fallback, required) => job.#finish(fallback, required);
    tracked.report = (job, progress) => job.#report(progress);
    tracked.note = (job, record) => job.#note(record);
    tracked.settle = (job, record, error) => job.#settle(record, error);
    tracked.ending = (job) => job.#ending;
  }

  /** @param {string} method @returns {Promise<any>} the answer of the job's URL */
  #request(method) {
    return this.#link.call(method, `${this.#link.path}/${this.#kind.collection}/` +
      encodeURIComponent(String(this.id)));
  }

  /** The POST answered. @param {Rec} record */
  #attach(record) {
    this.id = record.job;
    if (this.#settled) return;
    this.#started.resolve(record);
    this.#poll = setInterval(() => {
      if (!this.#link.eventsLive()) void this.#sync();
    }, POLL_EVERY);
    this.#absorb(record);
  }

  /** @param {ScanbridgeEvent} event  one about this job */
  #event(event) {
    if (this.#ending || this.record === null) return;
    this.#kind.onEvent(event.topic.slice(event.topic.indexOf(".") + 1), event.data ?? {});
  }

  /**
   * A whole job record (from the POST, a poll, a refresh or a cancel).
   * @param {Rec} record
   */
  #absorb(record) {
    if (this.#ending) return;
    this.record = this.#kind.merge ? {...this.record, ...record} : record;
    this.#kind.take?.(record);
    if (isFinal(record.state)) {
      this.#ending = true;
      this.#stopPolling();
      this.#conclude(record);
      return;
    }
    this.state = record.state;
    this.#kind.update?.(record);
  }

  /**
   * The end, from an event: settle with the service's record of it, or with what the event
   * said when that cannot be read.
   * @param {Rec} fallback
   * @param {boolean} [required]  only the record will do (the result is only there): when
   *   it cannot be read, the job fails with that error
   */
  #finish(fallback, required = false) {
    this.#ending = true;
    this.#stopPolling();
    (async () => {
      let final = fallback;
      try {
        const record = await this.#request("GET");
        if (isFinal(record?.state)) final = record;
      } catch (error) {
        if (required) {
          this.#settle(fallback, asScanbridgeError(error));
          return;
        }  // else the event's data will do
      }
      this.#conclude(final);
    })();
  }

  /** @param {P} progress  keep it, and tell onProgress */
  #report(progress) {
    this.progress = progress;
    notify(this.#kind.onProgress, progress);
  }

  /**
   * A record made up from an event (the service's own is not needed yet): the job's record
   * and state now. It does not end the job.
   * @param {Rec} record
   */
  #note(record) {
    this.state = record.state;
    this.record = record;
  }

  /** Ask the service for the job's record (the event socket is down, or events were lost). */
  async #sync() {
    if (this.#ending || this.#syncing || this.id === null) return;
    this.#syncing = true;
    try {
      this.#absorb(await this.#request("GET"));
    } catch (error) {
      if (error instanceof ScanbridgeError && error.code === "not_found") this.#fail(error);
      // else: unreachable for now; the next poll tries again
    } finally {
      this.#syncing = false;
    }
  }

  /** @param {Rec} record  a final one */
  #conclude(record) {
    const kind = this.#kind;
    if (kind.conclude) {
      kind.conclude(record);
      return;
    }
    this.record = record;
    kind.take?.(record);
    if (record.state === JobState.DONE) {
      kind.complete?.(record);
      this.#settle(record, null);
      return;
    }
    const failure = record.error ?? (record.state === JobState.CANCELLED
      ? {code: "cancelled", message: `the ${kind.noun} was cancelled`}
      : {code: kind.failedCode, message: `the ${kind.noun} failed`});
    const {code, message, ...rest} = failure;
    const details = kind.details ? kind.details(record) : {job: record.job};
    this.#settle(record, new ScanbridgeError(String(code || kind.failedCode),
      String(message || code), {details: {...rest, ...details}}));
  }

  /** The job could not start, or its session ended. @param {unknown} error */
  #fail(error) {
    if (this.#ending) return;
    this.#ending = true;
    this.#stopPolling();
    const failure = asScanbridgeError(error);
    this.#started.reject(failure);
    const settle = () => this.#settle(null, failure);
    if (this.#kind.later) this.#kind.later(settle);
    else settle();
  }

  /** @param {Rec|null} record @param {ScanbridgeError|null} error */
  #settle(record, error) {
    if (this.#settled) return;
    this.#settled = true;
    this.#stopPolling();
    if (this.id !== null) this.#link.forget(this.id);
    if (error) {
      this.state = record?.state === JobState.CANCELLED ? JobState.CANCELLED : JobState.FAILED;
      this.error = error;
      this.#done.reject(error);
    } else {
      const final = /** @type {Rec} */ (record);
      this.state = final.state;  // done (a scan's also cancelled)
      this.#done.resolve(this.#kind.outcome ? this.#kind.outcome(final)
        : /** @type {Out} */ (/** @type {unknown} */ (final)));
    }
    this.#kind.settled?.();
  }

  #stopPolling() {
    if (this.#poll !== null) clearInterval(this.#poll);
    this.#poll = null;
  }

  /**
   * Cancel the job (`DELETE`); `done` then rejects with code "cancelled". A job that ended
   * already is left as it is. Before the POST answered, the cancel waits for it.
   * @returns {Promise<Rec|null>}  once the job has ended: its final record (state
   *   "cancelled", or "done" when it finished first); null when it never started
   */
  async cancel() {
    if (this.id === null && !(await hasStarted(this))) return null;
    if (!this.#ending) {
      try {
        this.#absorb(await this.#request("DELETE"));
      } catch (error) {
        if (!this.#ending) throw error;  // else it ended meanwhile
      }
    }
    await this.done.catch(() => {});
    return this.record;
  }
}
