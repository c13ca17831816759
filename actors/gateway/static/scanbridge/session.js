/**
 * Session: the page's session on the service. Its pages are handled by SessionPages
 * (pages.js), which it extends; here are the devices, the jobs it starts (scans, captures,
 * uploads, OCR, barcodes) and follows through its events, the listeners, and its end.
 * @module scanbridge/session
 */

import { LiveView, captureFrames } from "./camera.js";
import { ScanbridgeError, reportError } from "./errors.js";
import { EventSocket } from "./events.js";
import { API, sessionCall, sessionPath } from "./http.js";
import { SessionLink, tracked } from "./jobs.js";
import { SessionPages } from "./pages.js";
import { BarcodeJob, OcrJob } from "./recognition.js";
import { SessionJobs } from "./registry.js";
import { ScanJob } from "./scan.js";
import { saveStored } from "./storage.js";
import { UploadJob } from "./upload.js";

/** @typedef {import("./types.js").Source} Source */
/** @typedef {import("./types.js").SourceOptions} SourceOptions */
/** @typedef {import("./types.js").ScanSettings} ScanSettings */
/** @typedef {import("./types.js").ImageInfo} ImageInfo */
/** @typedef {import("./types.js").Job} Job */
/** @typedef {import("./types.js").Progress} Progress */
/** @typedef {import("./types.js").ScanbridgeEvent} ScanbridgeEvent */
/** @typedef {import("./types.js").EventCallback} EventCallback */
/** @typedef {import("./types.js").SessionRecord} SessionRecord */
/** @typedef {import("./types.js").LiveViewOptions} LiveViewOptions */
/** @typedef {import("./types.js").CaptureRequest} CaptureRequest */
/** @typedef {import("./job-types.js").UploadRequest} UploadRequest */
/** @typedef {import("./job-types.js").UploadRecord} UploadRecord */
/** @typedef {import("./job-types.js").OcrLanguages} OcrLanguages */
/** @typedef {import("./job-types.js").OcrOutput} OcrOutput */
/** @typedef {import("./job-types.js").OcrResult} OcrResult */
/** @typedef {import("./job-types.js").BarcodeResult} BarcodeResult */
/** @typedef {import("./job-types.js").RecognitionProgress} RecognitionProgress */
/**
 * @template R
 * @typedef {import("./job-types.js").RecognitionRecord<R>} RecognitionRecord
 */
/** @typedef {import("./http.js").RequestOptions} RequestOptions */
/** @typedef {import("./jobs.js").TrackedJob<any, any, any, any>} AnyJob */

/** Set while connect() makes a Session: the constructor refuses other callers. */
let opening = false;

/**
 * Make a Session (connect() does, once it has the session's id and token).
 * @param {ConstructorParameters<typeof Session>[0]} init
 * @returns {Session}
 */
export function openSession(init) {
  opening = true;
  try {
    return new Session(init);
  } finally {
    opening = false;
  }
}

/**
 * A session: its pages (images) on the service, scans into them, edits, documents, and
 * events. Get one with {@link connect}.
 */
export class Session extends SessionPages {
  /** @type {boolean} close() was called or the service closed the session */ closed = false;

  #path;
  #storageKey;
  #link;
  /** @type {EventSocket|null} */ #events = null;
  /** @type {Map<string, Set<EventCallback>>} */ #listeners = new Map();
  #jobs = new SessionJobs();

  /**
   * Use {@link connect}.
   * @param {{url: string, id: string, token: string, storageKey: string|null,
   *          events: boolean, seq: number, epoch: string|null}} init
   */
  constructor(init) {
    if (!opening) throw new TypeError("use connect() to get a Session");
    super(init);
    this.#path = sessionPath(this);
    this.#storageKey = init.storageKey;
    this.#link = new SessionLink(this, {eventsLive: () => this.#events?.live ?? false,
      forget: (jobId) => this.#jobs.forget(jobId)});
    if (init.events && typeof WebSocket === "function") {
      const ws = new URL(`${this.url}${this.#path}/events`);
      ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
      this.#events = new EventSocket({url: ws.href, token: this.token, seq: init.seq,
        epoch: init.epoch, deliver: (event) => this.#dispatch(event),
        sessionGone: () => this.#gone(), remember: (seq, epoch) => this.#remember(seq, epoch)});
      this.#events.start();
    }
  }

  /** True while the event socket is connected (a hello arrived). */
  get eventsConnected() {
    return this.#events?.live ?? false;
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {RequestOptions} [options]
   */
  #call(method, path, options = {}) {
    return sessionCall(this, method, path, options);
  }

  // --- sources

  /**
   * The scanners, then the cameras (`type` "camera": a {@link CameraSource}). The first call
   * may take seconds (the scanner module starts on demand).
   * @param {{refresh?: boolean, signal?: AbortSignal}} [options]  refresh: probe the devices again
   * @returns {Promise<Source[]>}
   */
  async listSources({refresh = false, signal} = {}) {
    // A rescan and a device's options need the session (token and id: the id names it to
    // a service restarted since it opened).
    return this.#call("GET", `${API}/sources`,
      {query: {refresh: refresh ? "true" : null, session: this.id}, signal});
  }

  /**
   * A source's options (descriptors of the device's options, and the aliases it supports;
   * for a camera, a {@link CameraOptions}).
   * @param {string} sourceId
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<SourceOptions>}
   */
  async getOptions(sourceId, {signal} = {}) {
    return this.#call("GET", `${API}/sources/${encodeURIComponent(sourceId)}/options`,
      {query: {session: this.id}, signal});
  }

  // --- cameras

  /**
   * Show a camera's live view in an `<img>`; `stop()` the {@link LiveView} to let it go.
   * @param {HTMLImageElement} element
   * @param {LiveViewOptions} options
   * @returns {LiveView}
   */
  liveView(element, options) {
    return new LiveView(this.#link, element, options);
  }

  /**
   * Capture frames of a camera into the session (JPEG frames kept as they come): a
   * {@link ScanJob} like a scan's, one page per frame.
   * @param {CaptureRequest} request
   * @returns {ScanJob}
   */
  capture(request) {
    return captureFrames(this, request);
  }

  // --- scans

  /**
   * Start a scan job into this session. Answers at once with a {@link ScanJob}: iterate it
   * (`for await`) for its pages, await `job.done` for its end.
   * @param {object} request
   * @param {string} request.source              a {@link Source} id
   * @param {ScanSettings & Object<string, unknown>} [request.options]
   * @param {number} [request.pages]             pages to scan (default 1)
   * @param {boolean} [request.batch]            until the feeder is empty (needs source "adf")
   * @param {(image: ImageInfo) => void} [request.onPage]
   * @param {(progress: Progress) => void} [request.onProgress]
   * @param {AbortSignal} [request.signal]       aborting cancels the job
   * @returns {ScanJob}
   */
  scan({source, options, pages, batch = false, onPage, onProgress, signal} = /** @type {any} */ ({})) {
    const job = new ScanJob(this.#link, {batch: Boolean(batch), onPage, onProgress});
    if (signal?.aborted) {
      tracked.fail(job, new ScanbridgeError("aborted", "the scan was aborted before it started"));
      return job;
    }
    /** @type {Object<string, unknown>} */
    const body = {source};
    if (options !== undefined && options !== null) body.options = options;
    if (batch) body.batch = true;
    else if (pages !== undefined && pages !== null) body.pages = pages;
    this.#launch(`${this.#path}/scans`, body, job, "scan", signal);
    return job;
  }

  /**
   * The session's scan jobs (running and finished).
   * @returns {Promise<Job[]>}
   */
  async jobs() {
    return this.#call("GET", `${this.#path}/scans`);
  }

  /**
   * Start a job: POST its request; the session then follows it (see registry.js).
   * @param {string} path
   * @param {Object<string, unknown>} body
   * @param {AnyJob} job
   * @param {string} family       the topic family of its events
   * @param {AbortSignal} [signal]  aborting it cancels the job
   */
  #launch(path, body, job, family, signal) {
    this.#jobs.launch(() => this.#call("POST", path, {json: body}), job, family, signal);
  }

  // --- uploads

  /**
   * Send images to a web server. The service renders the document before it answers (later
   * edits do not change what is sent), then delivers it from its persistent queue: streamed,
   * retried on network errors, 5xx and 429 with backoff (a restart of the service does not
   * lose it), every attempt with the same `Idempotency-Key` header so the receiver can keep
   * the document once. Answers at once with an {@link UploadJob}: await `job.done` for the
   * receiver's answer. The target must be on this page's origin or allowed in the
   * computer's user_config.ini ([access] upload_targets); else `done` rejects with
   * `upload_target_not_allowed` (403).
   * @param {UploadRequest} request
   * @returns {UploadJob}
   */
  upload({url, images, format, pageFormat, method, fields, headers, filename, fieldName, auth,
    onProgress, onRetry, signal, ...pdfOptions} = /** @type {any} */ ({})) {
    const job = new UploadJob(this.#link, {onProgress, onRetry});
    if (signal?.aborted) {
      tracked.fail(job, new ScanbridgeError("aborted",
        "the upload was aborted before it started"));
      return job;
    }
    let target;
    try {
      target = new URL(String(url ?? ""), globalThis.location?.href).href;
    } catch {
      target = null;
    }
    if (!url || target === null || !/^https?:$/.test(new URL(target).protocol)) {
      tracked.fail(job, new ScanbridgeError("invalid_argument",
        `upload() needs the receiver's http(s) url, not ${JSON.stringify(url ?? null)}`));
      return job;
    }
    /** @type {Object<string, unknown>} */
    const body = {url: target};
    const given = {images, format, page_format: pageFormat, method, fields, headers, filename,
      field_name: fieldName, auth, ...pdfOptions};
    for (const [key, value] of Object.entries(given)) {
      if (value !== undefined && value !== null) body[key] = value;
    }
    this.#launch(`${this.#path}/uploads`, body, job, "upload", signal);
    return job;
  }

  /**
   * The session's upload jobs (queued, running and finished ones), oldest first.
   * @returns {Promise<UploadRecord[]>}
   */
  async uploads() {
    return this.#call("GET", `${this.#path}/uploads`);
  }

  // --- OCR and barcodes

  /**
   * The languages OCR can read, and the default one.
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<OcrLanguages>}
   */
  async ocrLanguages({signal} = {}) {
    return this.#call("GET", `${API}/ocr/languages`, {signal});
  }

  /**
   * Read the text of pages (Tesseract on the service's OCR workers, a page per worker at a
   * time). Answers at once with an {@link OcrJob}: await `job.done` for the
   * {@link OcrResult}; `job.fileUrl("pdf")` links the searchable PDF once it is done.
   * @param {object} [request]
   * @param {string[]} [request.images]          image ids (default: all pages, in page order)
   * @param {string|string[]} [request.lang]     "eng", "deu+eng" or ["deu", "eng"]
   *                                             (default: the service's default)
   * @param {OcrOutput|OcrOutput[]} [request.output]   what to make besides the text:
   *                                             "words" (in the result), "hocr", "pdf"
   * @param {boolean} [request.rotate]           find each page's orientation and read it
   *                                             upright (default: the service's setting)
   * @param {number} [request.timeout]           seconds for the whole job (default 3600)
   * @param {(progress: RecognitionProgress) => void} [request.onProgress]
   * @param {AbortSignal} [request.signal]       aborting cancels the job
   * @returns {OcrJob}
   */
  ocr({images, lang, output, rotate, timeout, onProgress, signal} = {}) {
    const job = new OcrJob(this.#link, {onProgress});
    this.#recognize(job, "ocr", {images, lang, output, rotate, timeout}, signal);
    return job;
  }

  /**
   * Find barcodes and QR codes on pages. Answers at once with a {@link BarcodeJob}: await
   * `job.done` for the {@link BarcodeResult} (corners in page pixels).
   * @param {object} [request]
   * @param {string[]} [request.images]          image ids (default: all pages, in page order)
   * @param {string[]} [request.formats]         only these, e.g. ["qr", "code128"] (default all)
   * @param {{left: number, top: number, width: number, height: number}} [request.region]
   *                                             only this box of each page, in pixels
   * @param {"zxing"|"zbar"} [request.engine]    default: the service's setting
   * @param {number} [request.timeout]           seconds for the whole job (default 3600)
   * @param {(progress: RecognitionProgress) => void} [request.onProgress]
   * @param {AbortSignal} [request.signal]       aborting cancels the job
   * @returns {BarcodeJob}
   */
  barcodes({images, formats, region, engine, timeout, onProgress, signal} = {}) {
    const job = new BarcodeJob(this.#link, {onProgress});
    this.#recognize(job, "barcodes", {images, formats, region, engine, timeout}, signal);
    return job;
  }

  /**
   * @param {OcrJob|BarcodeJob} job
   * @param {"ocr"|"barcodes"} kind
   * @param {Object<string, unknown>} given
   * @param {AbortSignal} [signal]
   */
  #recognize(job, kind, given, signal) {
    if (signal?.aborted) {
      tracked.fail(job, new ScanbridgeError("aborted",
        "the job was aborted before it started"));
      return;
    }
    /** @type {Object<string, unknown>} */
    const body = {};
    for (const [key, value] of Object.entries(given)) {
      if (value !== undefined && value !== null) body[key] = value;
    }
    this.#launch(`${this.#path}/${kind}`, body, job, kind === "ocr" ? "ocr" : "barcode",
      signal);
  }

  /**
   * The session's OCR jobs (running and finished ones; finished ones are kept an hour).
   * @returns {Promise<RecognitionRecord<OcrResult>[]>}
   */
  async ocrJobs() {
    return this.#call("GET", `${this.#path}/ocr`);
  }

  /**
   * The session's barcode jobs (running and finished ones).
   * @returns {Promise<RecognitionRecord<BarcodeResult>[]>}
   */
  async barcodeJobs() {
    return this.#call("GET", `${this.#path}/barcodes`);
  }

  /**
   * The session's record on the service.
   * @returns {Promise<SessionRecord>}
   */
  async info() {
    return this.#call("GET", this.#path);
  }

  // --- events

  /**
   * Listen to the session's events.
   * @param {string} topic          e.g. "scan.page", "buffer.changed", "events.lost";
   *                                "scan.*" for a family; "*" for all
   * @param {EventCallback} callback
   * @returns {() => void}          call it to stop listening
   */
  on(topic, callback) {
    if (typeof callback !== "function") throw new TypeError("on(topic, callback): callback " +
      "must be a function");
    let set = this.#listeners.get(topic);
    if (!set) this.#listeners.set(topic, set = new Set());
    set.add(callback);
    return () => {
      set.delete(callback);
      if (set.size === 0 && this.#listeners.get(topic) === set) this.#listeners.delete(topic);
    };
  }

  /** @param {ScanbridgeEvent} event */
  #dispatch(event) {
    const family = event.topic.slice(0, Math.max(0, event.topic.indexOf(".")));
    const jobId = ["scan", "upload", "ocr", "barcode"].includes(family) ? event.data?.job
      : undefined;
    if (typeof jobId === "string") this.#jobs.deliver(family, jobId, event);
    if (event.topic === "events.lost") this.#jobs.syncAll();
    if (event.topic === "session.closed") this.#ended();
    for (const key of [event.topic, family ? `${family}.*` : null, "*"]) {
      if (key === null) continue;
      for (const callback of [...(this.#listeners.get(key) ?? [])]) {
        try {
          callback(event);
        } catch (error) {
          reportError(error);
        }
      }
    }
  }

  /** @returns {Promise<boolean>} the session is known to be gone */
  async #gone() {
    try {
      await this.#call("GET", this.#path);
      return false;
    } catch (error) {
      return error instanceof ScanbridgeError && [401, 403, 404].includes(error.status);
    }
  }

  /** @param {number} seq @param {string|null} epoch */
  #remember(seq, epoch) {
    if (this.#storageKey === null || this.closed) return;
    saveStored(this.#storageKey, {url: this.url, id: this.id, token: this.token, seq,
      epoch: epoch ?? undefined});
  }

  /** The session ended (closed here or by the service): stop everything. */
  #ended() {
    if (this.closed) return;
    this.closed = true;
    this.#events?.stop();
    if (this.#storageKey !== null) saveStored(this.#storageKey, null);
    const error = new ScanbridgeError("session_closed", "the session was closed");
    this.#jobs.failAll(error);
  }

  /**
   * Close the session: its images are deleted on the service, the event socket stops, and
   * sessionStorage forgets it. A session that is gone already is not an error.
   * @returns {Promise<void>}
   */
  async close() {
    const wasClosed = this.closed;
    this.#ended();
    if (wasClosed) return;
    try {
      await this.#call("DELETE", this.#path);
    } catch (error) {
      if (!(error instanceof ScanbridgeError) || ![401, 403, 404].includes(error.status)) {
        throw error;
      }
    }
  }
}
