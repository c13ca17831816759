/**
 * scanbridge.js: the browser client of the Scanbridge service (an ES module, no build step,
 * no dependencies). Served by the service itself at `/scanbridge.js`.
 *
 * @example
 * import { connect } from "http://127.0.0.1:18625/scanbridge.js";
 *
 * const session = await connect();                  // reuses this tab's session on reload
 * const [scanner] = await session.listSources();
 * const job = session.scan({ source: scanner.id, pages: 3,
 *                            options: { resolution: 150, mode: "color" } });
 * for await (const image of job) {                  // one ImageInfo per stored page
 *   const img = new Image();
 *   img.src = session.thumbnailUrl(image);          // token and etag are in the URL
 *   document.body.append(img);
 * }
 * const file = await session.save({ format: "pdf", filename: "scan" });  // a File (Blob + name)
 * session.on("buffer.changed", () => refresh());    // events over one WebSocket
 * const upload = session.upload({url: "https://your.app/receive", format: "pdf",
 *   onProgress: ({percent}) => bar.value = percent});  // the service sends it, with retries
 * const {result} = await upload.done;               // {status, body}: the receiver's answer
 * const ocr = session.ocr({lang: "eng", output: "pdf"});   // text recognition, a job too
 * const {text} = await ocr.done;
 * link.href = ocr.fileUrl("pdf", {download: true});  // the searchable PDF
 * const {pages} = await session.barcodes({formats: ["qr"]}).done;  // codes with corners
 * const view = session.liveView(img, {source: "camera:doc", fps: 15});  // a camera, live
 * await session.capture({source: "camera:doc", frames: 1, document: true}).done;
 * view.stop();                                      // the camera is released
 *
 * The page's origin must be allowed by the computer's administrator:
 * `scanbridge allow https://your.app`. See docs/js-client.md.
 *
 * @module scanbridge
 */

// --- types -----------------------------------------------------------------------------

/**
 * A scanner (or, later, a camera) the service can use.
 * @typedef {object} Source
 * @property {string} id        stable id to pass to {@link Session#scan}, e.g. "test:0"
 * @property {string} type      "scanner"
 * @property {string} device    the driver's device name
 * @property {string} vendor
 * @property {string} model
 * @property {string} kind      e.g. "flatbed scanner", "sheetfed scanner", "virtual device"
 * @property {string} backend   the driver (SANE backend), e.g. "test", "airscan"
 * @property {boolean} busy     a scan job uses it now
 */

/**
 * A range constraint of an option.
 * @typedef {object} OptionRange
 * @property {number} min
 * @property {number} max
 * @property {number} step      0 when any value in the range is allowed
 */

/**
 * What an option accepts: a range, a list of values, or anything of its type (null).
 * @typedef {{range: OptionRange} | {values: Array<string|number>} | null} OptionConstraint
 */

/**
 * One device option, as a form needs it.
 * @typedef {object} OptionDescriptor
 * @property {string} name          the device's option name, e.g. "resolution", "tl-x"
 * @property {string} title
 * @property {string} description
 * @property {string} group         the option group's title ("" for none)
 * @property {"bool"|"int"|"fixed"|"string"|"button"|"unknown"} type
 * @property {"none"|"pixel"|"bit"|"mm"|"dpi"|"percent"|"microsecond"} unit
 * @property {OptionConstraint} constraint
 * @property {*} value              the value now (null when not readable or inactive)
 * @property {*} [default]          the device's value when first opened
 * @property {boolean} active       false when other settings make it irrelevant
 * @property {boolean} settable     software may set it
 * @property {boolean} readable
 * @property {boolean} automatic
 * @property {boolean} advanced
 * @property {boolean} emulated
 * @property {number} index
 * @property {number} [array]       number of values, for array options (shown, not settable)
 */

/**
 * A friendly option name that works on every device (`resolution`, `mode`, `source`,
 * `page_size`, `area`, `depth`, `adf`, `duplex`, `brightness`, `contrast`).
 * Which fields are present depends on the alias.
 * @typedef {object} OptionAlias
 * @property {string} [option]                  the device option it sets
 * @property {string} [type]                    "int", "fixed", "bool", ...
 * @property {OptionConstraint} [constraint]    for numeric aliases (resolution, depth, ...)
 * @property {string[]} [values]                accepted names: mode ["color", "gray",
 *                                              "lineart"], source ["flatbed", "adf",
 *                                              "duplex"], page_size ["max", "A4", ...]
 * @property {string[]} [device_values]         the device's own values behind them
 * @property {string} [unit]                    area: "mm"
 * @property {number} [width]                   area: the largest width (mm)
 * @property {number} [height]                  area: the largest height (mm)
 */

/**
 * The options of a source.
 * @typedef {object} SourceOptions
 * @property {string} source
 * @property {boolean} busy                     a job uses the device (the options are its)
 * @property {string} [job]                     that job's id
 * @property {OptionDescriptor[]} options
 * @property {Object<string, OptionAlias>} aliases
 */

/**
 * Values to scan with: aliases and/or the device's own option names.
 * @typedef {object} ScanSettings
 * @property {number} [resolution]              dpi
 * @property {"color"|"gray"|"lineart"} [mode]
 * @property {"flatbed"|"adf"|"duplex"} [source]
 * @property {string} [page_size]               "A4", "Letter", ..., "max"
 * @property {{left?: number, top?: number, width?: number, height?: number}} [area]  mm
 * @property {number} [depth]
 * @property {number} [brightness]
 * @property {number} [contrast]
 */

/**
 * One page (image) of the session's buffer.
 * @typedef {object} ImageInfo
 * @property {string} id
 * @property {number} index                     position in the page order (0-based)
 * @property {number} width                     pixels
 * @property {number} height                    pixels
 * @property {[number, number]} dpi
 * @property {"bw"|"gray"|"color"} mode
 * @property {number} bit_depth
 * @property {"jpeg"|"png"|"tiff"} format       how it is stored
 * @property {number} bytes
 * @property {string} source                    the source id, or "" (imported)
 * @property {number} created                   Unix time (seconds)
 * @property {string[]} tags
 * @property {number} edits                     number of edits (undo goes back one)
 * @property {object} meta
 * @property {string} etag                      changes with every edit
 * @property {object[]} [history]               only from {@link Session#imageInfo}
 */

/**
 * A scan job's record.
 * @typedef {object} Job
 * @property {string} job                       the job id
 * @property {"queued"|"running"|"done"|"failed"|"cancelled"} state
 * @property {number} pages                     pages stored so far
 * @property {string[]} images                  their image ids
 * @property {number|null} [progress]           percent of the current page
 * @property {{code: string, message: string}|null} [error]
 * @property {object} [settings]                the device values applied (POST answer)
 */

/**
 * Progress of a scan, as `onProgress` gets it.
 * @typedef {object} Progress
 * @property {number} page                      the page being read (1-based)
 * @property {number|null} percent              of that page (100 once it is stored)
 * @property {number} pages                     pages stored so far
 */

/**
 * How far an upload is, as `onProgress` gets it: bytes of the request body (the multipart
 * framing included) sent to the receiver by the current attempt.
 * @typedef {object} UploadProgress
 * @property {number} sent
 * @property {number} total
 * @property {number} percent                   0-100 (100 once the job is done)
 * @property {number} [attempt]                 the attempt sending (1-based), from events
 */

/**
 * An upload attempt failed and another one is scheduled, as `onRetry` gets it.
 * @typedef {object} UploadRetry
 * @property {number} attempt                   the attempt that failed (1-based)
 * @property {number} delay                     seconds until the next one
 * @property {{code: string, message: string, status?: number}} error   why it failed
 */

/**
 * The receiver's answer to a finished upload (what other services call the response string).
 * @typedef {object} UploadResult
 * @property {number} status                    its HTTP status
 * @property {string} body                      its body as text (the first MiB)
 */

/**
 * An upload job's record, as the service keeps it.
 * @typedef {object} UploadRecord
 * @property {string} job                       the job id
 * @property {string} session
 * @property {"queued"|"running"|"done"|"failed"|"cancelled"} state
 * @property {UploadProgress} progress
 * @property {number} attempts                  attempts made so far
 * @property {string} url                       the receiver
 * @property {"POST"|"PUT"} method
 * @property {"pdf"|"tiff"|"jpeg"|"png"|"zip"} format
 * @property {{name: string, bytes: number}[]} files   what is sent (rendered at submit)
 * @property {string} [idempotency_key]         the same in every attempt's header
 * @property {number} [created]                 Unix time (seconds)
 * @property {number} [updated]
 * @property {number} [next_attempt]            Unix time of the next attempt (a retry waits)
 * @property {UploadResult} [result]            the receiver's answer (also of a refusal)
 * @property {{code: string, message: string, status?: number}} [error]
 */

/**
 * What to upload, and where: see {@link Session#upload}.
 * @typedef {object} UploadRequest
 * @property {string} url                       the receiver: this page's origin, or a
 *                                              prefix in user_config.ini [access] upload_targets
 * @property {string[]} [images]                image ids, in this order (default: all pages)
 * @property {"pdf"|"tiff"|"jpeg"|"png"|"zip"} [format]   default "pdf"; jpeg/png: one file
 *                                              per page; zip: one zip of pages
 * @property {"jpeg"|"png"} [pageFormat]        the pages of a zip (default "jpeg")
 * @property {"POST"|"PUT"} [method]            POST: multipart/form-data (default); PUT:
 *                                              the one file as the body
 * @property {Object<string, string>} [fields]  form fields sent with the file(s) (POST)
 * @property {Object<string, string>} [headers] extra request headers (not the framing ones)
 * @property {string} [filename]                the file name without extension (default "scan")
 * @property {string} [fieldName]               the form field of the file(s) (default "file")
 * @property {{user: string, password?: string}} [auth]   basic auth for the receiver
 * @property {string} [title]                   PDF metadata, also author, subject, keywords
 * @property {string} [author]
 * @property {string} [subject]
 * @property {string[]} [keywords]
 * @property {boolean} [pdfa]
 * @property {"auto"|"jpeg"|"lossless"} [compression]
 * @property {number} [quality]                 JPEG quality 1-100
 * @property {(progress: UploadProgress) => void} [onProgress]
 * @property {(retry: UploadRetry) => void} [onRetry]   an attempt failed; another follows
 * @property {AbortSignal} [signal]             aborting cancels the job
 */

/**
 * What an OCR job makes besides the result's text: "words" (each page's words with boxes,
 * in the result), "hocr" (an hOCR document), "pdf" (a searchable PDF). "text" is always made.
 * @typedef {"text"|"words"|"hocr"|"pdf"} OcrOutput
 */

/**
 * How far an OCR or barcode job is, as `onProgress` gets it: pages read of the job's pages.
 * @typedef {object} RecognitionProgress
 * @property {number} done                      pages read so far
 * @property {number} total                     pages of the job
 * @property {number} percent                   0-100, one decimal
 * @property {string} [image]                   the page just read (from events)
 * @property {number} [index]                   its place in the job's pages (0-based)
 */

/**
 * One word of an OCR page (`output` "words").
 * @typedef {object} OcrWord
 * @property {string} text
 * @property {number} conf                      0-100
 * @property {[number, number, number, number]} box   [x0, y0, x1, y1] in pixels of the
 *                                              page turned upright (see `rotation`)
 * @property {number} line
 * @property {number} block
 */

/**
 * One page of an OCR result.
 * @typedef {object} OcrPage
 * @property {string} image                     the image id
 * @property {number} index                     its place in the job's pages (0-based)
 * @property {string} text
 * @property {0|90|180|270} rotation            degrees clockwise turned to read it upright
 * @property {number} orientation_confidence
 * @property {number} width                     pixels of the image as stored
 * @property {number} height
 * @property {number|null} confidence           the words' mean confidence (null: no words)
 * @property {number} seconds
 * @property {{host: string, pid: number}} worker
 * @property {OcrWord[]} [words]                with `output` "words"
 */

/**
 * What an OCR job found ({@link OcrJob#done}).
 * @typedef {object} OcrResult
 * @property {string} lang                      e.g. "eng", "deu+eng"
 * @property {string} text                      every page's text, joined by "\f"
 * @property {OcrPage[]} pages
 * @property {{text: string, hocr?: string, pdf?: string}} files   API paths of the outputs
 *                                              (use {@link OcrJob#fileUrl} for a link)
 */

/**
 * One barcode or QR code found on a page.
 * @typedef {object} Barcode
 * @property {string} format                    e.g. "qr", "datamatrix", "code128", "ean13"
 * @property {string} text
 * @property {string} raw                       the bytes, base64
 * @property {Array<[number, number]>} points   its four corners in pixels of the page
 * @property {string} engine                    "zxing" or "zbar"
 */

/**
 * What a barcode job found ({@link BarcodeJob#done}).
 * @typedef {object} BarcodeResult
 * @property {string} engine
 * @property {number} count                     codes found on all pages
 * @property {{image: string, index: number, barcodes: Barcode[]}[]} pages
 */

/**
 * An OCR or barcode job's record, as the service keeps it.
 * @template R
 * @typedef {object} RecognitionRecord
 * @property {string} job                       the job id
 * @property {"ocr"|"barcodes"} kind
 * @property {string} session
 * @property {"queued"|"running"|"done"|"failed"|"cancelled"} state
 * @property {{done: number, total: number}} progress   pages read of the job's pages
 * @property {number} created                   Unix time (seconds)
 * @property {number|null} finished
 * @property {R} [result]                       once done
 * @property {{code: string, message: string}} [error]
 */

/**
 * The languages OCR can read ({@link Session#ocrLanguages}).
 * @typedef {object} OcrLanguages
 * @property {string[]} installed               e.g. ["deu", "eng", "fra"]
 * @property {string} default                   used when a job names none
 * @property {string} tesseract                 Tesseract's version
 * @property {object} [worker]                  the worker that answered
 */

/**
 * An event of the session. Server topics: `scan.progress`, `scan.page`, `scan.done`,
 * `scan.error`, `buffer.changed`, `buffer.import`, `buffer.save`, `upload.queued`,
 * `upload.progress`, `upload.retry`, `upload.done`, `upload.error`, `ocr.progress`,
 * `ocr.done`, `ocr.failed`, `ocr.cancelled`, `barcode.progress`, `barcode.done`,
 * `barcode.failed`, `barcode.cancelled`, `camera.error` (a live view ended: {source, code,
 * message}), `session.closed`.
 * Made by this client (seq = the last seq seen): `events.connected`,
 * `events.disconnected`, `events.lost`.
 * @typedef {object} ScanbridgeEvent
 * @property {number} seq
 * @property {string} topic
 * @property {Object<string, any>} data
 * @property {number} time                      Unix time (seconds)
 */

/**
 * @callback EventCallback
 * @param {ScanbridgeEvent} event
 * @returns {void}
 */

/**
 * One image edit. Crop boxes are in pixels of the current image, right/bottom exclusive;
 * rotate angles are degrees clockwise.
 * @typedef {{op: "rotate", angle: number} | {op: "flip"} | {op: "mirror"} | {op: "invert"}
 *   | {op: "crop", left: number, top: number, right: number, bottom: number}
 *   | {op: "resize", width?: number, height?: number}
 *   | {op: "bitdepth", mode: "bw"|"gray"|"color"}
 *   | {op: "brightness", value: number} | {op: "contrast", value: number}} EditOp
 */

/**
 * What {@link status} answers.
 * @typedef {object} ServiceStatus
 * @property {string} name
 * @property {string} display_name
 * @property {string} version
 * @property {number} time
 * @property {Object<string, {state: string, pid?: number, uptime?: number, ondemand?: boolean}>} actors
 * @property {object} services
 * @property {string[]} origins                 the allowed web origins
 */

/**
 * @typedef {object} SessionRecord
 * @property {string} id
 * @property {number} created
 * @property {number} used
 * @property {number} images
 * @property {string|null} origin
 */

// --- constants and helpers -------------------------------------------------------------

// A page served over HTTPS talks to the HTTPS port: Chromium's Local Network Access needs a
// secure context, and some setups block mixed content even towards loopback.
export const DEFAULT_URL = globalThis.location?.protocol === "https:"
  ? "https://127.0.0.1:18626" : "http://127.0.0.1:18625";
const API = "/api/v1";
const BACKOFF_FIRST = 500;  // ms before the first reconnect of the event socket
const BACKOFF_MAX = 10000;  // ms, the longest wait between two reconnects
const CHECK_AFTER = 2;      // failed socket attempts in a row before checking the session
const POLL_EVERY = 2000;    // ms between two job polls while the event socket is down
const UNCLAIMED_MAX = 1000; // events kept for jobs whose POST has not answered yet
const PROBE_TIMEOUT = 3000; // ms the "is the service there at all?" probe may take
const SESSION_GONE = 4000;  // WebSocket close code: the session was closed
const IMPORT_TYPES = new Set(["image/jpeg", "image/png", "image/tiff", "image/bmp",
  "image/x-ms-bmp", "image/gif", "application/pdf", "application/octet-stream"]);
/** @type {Record<string, string>} */
const EXTENSION_TYPES = {jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png",
  tif: "image/tiff", tiff: "image/tiff", bmp: "image/bmp", gif: "image/gif",
  pdf: "application/pdf"};
const TERMINAL = new Set(["done", "failed", "cancelled"]);

/** Proves a constructor call comes from this module (connect(), Session#scan). */
const INTERNAL = Symbol("scanbridge.internal");

/**
 * What a ScanJob, UploadJob, OcrJob or BarcodeJob may use of its Session.
 * @typedef {object} SessionInternal
 * @property {(method: string, path: string, options?: RequestOptions) => Promise<any>} call
 * @property {string} path                      the session's API path
 * @property {() => boolean} eventsLive
 * @property {(jobId: string) => void} forget
 */

/**
 * What a Session may do to its ScanJobs.
 * @typedef {object} JobInternal
 * @property {(record: Job) => void} attach
 * @property {(event: ScanbridgeEvent) => void} event
 * @property {(error: unknown) => void} fail
 * @property {() => void} sync
 */

/**
 * What a Session may do to its upload, OCR and barcode jobs.
 * @typedef {object} TrackedInternal
 * @property {(record: UploadRecord|RecognitionRecord<any>) => void} attach
 * @property {(event: ScanbridgeEvent) => void} event
 * @property {(error: unknown) => void} fail
 * @property {() => void} sync
 */

/** What Sessions and jobs share with each other, out of the API's sight. */
/** @type {WeakMap<Session, SessionInternal>} */
const sessionParts = new WeakMap();
/** @type {WeakMap<ScanJob, JobInternal>} */
const jobParts = new WeakMap();
/** @type {WeakMap<TrackedJob<any, any, any, any>, TrackedInternal>} */
const trackedParts = new WeakMap();

/** @param {Session} session @returns {SessionInternal} */
function partsOf(session) {
  return /** @type {SessionInternal} */ (sessionParts.get(session));
}

/** @param {ScanJob} job @returns {JobInternal} */
function jobPartsOf(job) {
  return /** @type {JobInternal} */ (jobParts.get(job));
}

/** @param {UploadJob|RecognitionJob<any>} job @returns {TrackedInternal} */
function trackedPartsOf(job) {
  return /** @type {TrackedInternal} */ (trackedParts.get(job));
}

/**
 * Every failure of this client: an error answer of the service (with its `code`), a
 * network failure (`unreachable`), a page whose origin the service refuses
 * (`origin_not_allowed`), a failed scan or upload job (the job's error code).
 */
export class ScanbridgeError extends Error {
  /**
   * @param {string} code         stable code, e.g. "not_found", "device_busy", "unreachable"
   * @param {string} message      for people
   * @param {{status?: number, details?: object, cause?: unknown}} [more]
   */
  constructor(code, message, {status = 0, details = {}, cause} = {}) {
    super(message, cause === undefined ? undefined : {cause});
    this.name = "ScanbridgeError";
    /** @type {string} the service's code, or `http_<status>`, `unreachable`, `aborted`, ... */
    this.code = code;
    /** @type {number} the HTTP status (0 when the error did not come from an HTTP answer) */
    this.status = status;
    /** @type {object} extra fields of the error (e.g. `allowed`, `option`, `job`, `pages`) */
    this.details = details;
  }
}

/** @param {string} url @returns {string} the origin-and-path form without trailing "/" */
function baseOf(url) {
  let parsed;
  try {
    parsed = new URL(url, globalThis.location?.href);
  } catch {
    throw new ScanbridgeError("invalid_argument", `not a URL: ${url}`);
  }
  return parsed.href.replace(/\/+$/, "");
}

/** @param {string} etag @returns {string} the etag without its quotes */
function bareEtag(etag) {
  return String(etag).replace(/^W\//, "").replace(/"/g, "");
}

/** @param {unknown} error */
function report(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error(error);
}

/**
 * Call a page's callback (if it gave one); what it throws is reported, not passed on.
 * @template T
 * @param {((value: T) => void)|undefined} callback
 * @param {T} value
 */
function notify(callback, value) {
  if (!callback) return;
  try {
    callback(value);
  } catch (error) {
    report(error);
  }
}

/** @param {string|{id: string}} image @returns {string} */
function idOf(image) {
  return typeof image === "string" ? image : image?.id;
}

/**
 * An error answer as a ScanbridgeError.
 * @param {Response} response
 * @returns {Promise<ScanbridgeError>}
 */
async function errorOf(response) {
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    // not JSON: a proxy, or something that is not Scanbridge
  }
  const error = payload && typeof payload === "object" ? payload.error : null;
  if (error && typeof error === "object" && typeof error.code === "string") {
    const {code, message, ...details} = error;
    return new ScanbridgeError(code, String(message || code), {status: response.status,
      details});
  }
  return new ScanbridgeError(`http_${response.status}`,
    `HTTP ${response.status} ${response.statusText || ""}`.trim(), {status: response.status});
}

/**
 * A fetch that failed without an answer: the service is not running, or the browser
 * refused to show us its answer (origin not allowed: no CORS headers; Local Network Access
 * blocked). The service's public origin probe tells a refused origin apart; a no-cors
 * request (for a service without the probe) tells whether anything answers at all.
 * @param {string} base
 * @param {unknown} cause
 * @returns {Promise<ScanbridgeError>}
 */
async function networkError(base, cause) {
  const origin = globalThis.location?.origin ?? "";
  const access = await probe(`${base}${API}/origin`, "cors");
  if (access?.allowed === false) {
    return new ScanbridgeError("origin_not_allowed", String(access.message),
      {details: {url: base, origin: access.origin, command: access.command}, cause});
  }
  if (access?.allowed === true) {
    return new ScanbridgeError("unreachable", `Scanbridge at ${base} is running and allows ` +
      `this page's origin (${origin}), but the browser did not let this page read its ` +
      `answer: ${cause}`, {details: {url: base, origin, reason: "refused"}, cause});
  }
  if (await probe(`${base}${API}/status`, "no-cors")) {
    return new ScanbridgeError("unreachable", `Scanbridge at ${base} is running but the browser ` +
      `did not let this page read its answer: this page's origin (${origin}) is probably not ` +
      `allowed; an administrator of this computer can allow it with: scanbridge allow ${origin}`,
      {details: {url: base, origin, reason: "refused"}, cause});
  }
  return new ScanbridgeError("unreachable", `cannot reach Scanbridge at ${base}: the Scanbridge ` +
    "service may not be running on this computer (or the browser blocked local network " +
    "access for this page)", {details: {url: base, origin, reason: "no_answer"}, cause});
}

/**
 * @param {string} url
 * @param {RequestMode} mode
 * @returns {Promise<any>} the JSON answer ("cors"), true ("no-cors"), or null: no answer
 */
async function probe(url, mode) {
  try {
    const response = await fetch(url, {mode, credentials: "omit", cache: "no-store",
      signal: AbortSignal.timeout(PROBE_TIMEOUT)});
    return mode === "cors" ? await response.json() : true;
  } catch {
    return null;
  }
}

/**
 * @typedef {object} RequestOptions
 * @property {string} [token]
 * @property {Object<string, string|number|boolean|null|undefined>} [query]
 * @property {unknown} [json]                   sent as application/json
 * @property {BodyInit} [body]                  sent as it is (with `headers`' Content-Type)
 * @property {Object<string, string>} [headers]
 * @property {AbortSignal} [signal]
 * @property {boolean} [raw]                    answer the Response instead of its JSON
 */

/**
 * One HTTP request to the service; every non-2xx answer becomes a ScanbridgeError.
 * @param {string} base
 * @param {string} method
 * @param {string} path          from the root, e.g. "/api/v1/status"
 * @param {RequestOptions} [options]
 * @returns {Promise<any>}
 */
async function request(base, method, path, {token, query, json, body, headers, signal,
  raw = false} = {}) {
  const url = new URL(base + path);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") {
      url.searchParams.set(key, String(value));
    }
  }
  const sent = new Headers(headers);
  if (token) sent.set("Authorization", `Bearer ${token}`);
  if (json !== undefined) {
    body = JSON.stringify(json);
    sent.set("Content-Type", "application/json");
  }
  let response;
  try {
    response = await fetch(url, {method, headers: sent, body, signal, credentials: "omit",
      cache: "no-store"});
  } catch (error) {
    if (signal?.aborted || (error instanceof Error && error.name === "AbortError")) {
      throw new ScanbridgeError("aborted", "the request was aborted", {cause: error});
    }
    throw await networkError(base, error);
  }
  if (!response.ok) throw await errorOf(response);
  if (raw) return response;
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/**
 * The file name of a Content-Disposition header (RFC 6266: filename* first).
 * @param {string|null} header
 * @returns {string|null}
 */
function dispositionName(header) {
  if (!header) return null;
  const extended = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(header);
  if (extended) {
    try {
      return decodeURIComponent(extended[2].trim());
    } catch {
      // fall back to the plain name
    }
  }
  const plain = /filename\s*=\s*("((?:[^"\\]|\\.)*)"|[^;]+)/i.exec(header);
  if (!plain) return null;
  return (plain[2] !== undefined ? plain[2].replace(/\\(.)/g, "$1") : plain[1]).trim();
}

/**
 * The content type to import a file as: its own when the service takes it, else one from
 * its name, else application/octet-stream (the service then looks at the bytes).
 * @param {Blob} file
 * @returns {string}
 */
function importType(file) {
  const own = (file.type || "").toLowerCase();
  if (IMPORT_TYPES.has(own)) return own;
  const name = /** @type {File} */ (file).name ?? "";
  const extension = name.includes(".") ? (name.split(".").pop() ?? "").toLowerCase() : "";
  return EXTENSION_TYPES[extension] ?? "application/octet-stream";
}

// --- storage of the tab's session ------------------------------------------------------

/**
 * @typedef {object} StoredSession
 * @property {string} url
 * @property {string} id
 * @property {string} token
 * @property {string} [epoch]
 * @property {number} [seq]
 */

/** @param {string} key @returns {StoredSession|null} */
function loadStored(key) {
  try {
    const value = JSON.parse(globalThis.sessionStorage?.getItem(key) ?? "null");
    return value && typeof value.id === "string" && typeof value.token === "string"
      ? value : null;
  } catch {
    return null;  // no storage (sandboxed frame, privacy settings) or a bad value
  }
}

/** @param {string} key @param {StoredSession|null} value */
function saveStored(key, value) {
  try {
    if (value === null) globalThis.sessionStorage?.removeItem(key);
    else globalThis.sessionStorage?.setItem(key, JSON.stringify(value));
  } catch {
    // storage full or not available: the session just will not survive a reload
  }
}

// --- entry points ----------------------------------------------------------------------

/**
 * The service's status (no session needed): version, actors, allowed origins.
 * @param {string} [url]    the service's base URL
 * @returns {Promise<ServiceStatus>}
 */
export async function status(url = DEFAULT_URL) {
  return request(baseOf(url), "GET", `${API}/status`);
}

/**
 * Open a session (or, with `reuse`, take back this tab's session after a reload).
 * @param {object} [options]
 * @param {string} [options.url]         the service's base URL
 * @param {boolean} [options.reuse]      keep `{id, token}` in sessionStorage and reuse it
 * @param {string} [options.storageKey]  the sessionStorage key
 * @param {boolean} [options.events]     open the event WebSocket (scan jobs then learn
 *                                       their pages from events; without it they poll)
 * @param {object} [options.meta]        stored with a new session (free-form)
 * @returns {Promise<Session>}
 * @throws {ScanbridgeError} `unreachable` when the service does not answer,
 *   `origin_not_allowed` (naming `scanbridge allow ORIGIN`) when it refuses this page
 */
export async function connect({url = DEFAULT_URL, reuse = true,
  storageKey = "scanbridge.session", events = true, meta} = {}) {
  const base = baseOf(url);
  /** @type {StoredSession|null} */
  let record = null;
  const stored = reuse ? loadStored(storageKey) : null;
  if (stored && stored.url === base) {
    try {
      await request(base, "GET", `${API}/sessions/${encodeURIComponent(stored.id)}`,
        {token: stored.token});
      record = stored;
    } catch (error) {
      if (!(error instanceof ScanbridgeError) || ![401, 403, 404].includes(error.status)) {
        throw error;
      }
    }
  }
  if (record === null) {
    const opened = await request(base, "POST", `${API}/sessions`,
      {json: meta === undefined ? {} : {meta}});
    record = {url: base, id: opened.id, token: opened.token, seq: 0};
  }
  if (reuse) saveStored(storageKey, record);
  return new Session(INTERNAL, {url: base, id: record.id, token: record.token,
    storageKey: reuse ? storageKey : null, events, seq: record.seq ?? 0,
    epoch: record.epoch ?? null});
}

// --- events ----------------------------------------------------------------------------

/**
 * The session's event WebSocket: reconnects with backoff, passes `since` and `epoch`,
 * drops duplicates. Not exported: a Session owns one.
 */
class EventSocket {
  /**
   * @param {object} init
   * @param {string} init.url            the ws(s) URL without query
   * @param {string} init.token
   * @param {number} init.seq            the last seq seen (0: none)
   * @param {string|null} init.epoch
   * @param {(event: ScanbridgeEvent) => void} init.deliver
   * @param {() => Promise<boolean>} init.sessionGone   asks the service whether the session ended
   * @param {(seq: number, epoch: string|null) => void} init.remember
   */
  constructor({url, token, seq, epoch, deliver, sessionGone, remember}) {
    this.url = url;
    this.token = token;
    this.seq = seq;          // the last seq seen
    this.epoch = epoch;      // the gateway process the seqs belong to
    this.deliver = deliver;
    this.sessionGone = sessionGone;
    this.remember = remember;
    this.live = false;       // a hello arrived on the socket that is open now
    this.stopped = false;    // stop() was called: never reconnect
    this.backoff = BACKOFF_FIRST;
    this.failures = 0;       // attempts in a row that ended without a hello
    /** @type {WebSocket|null} */
    this.socket = null;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.timer = null;
  }

  start() {
    if (this.stopped || this.socket) return;
    const url = new URL(this.url);
    url.searchParams.set("token", this.token);
    url.searchParams.set("since", String(this.seq));
    if (this.epoch) url.searchParams.set("epoch", this.epoch);
    let socket;
    try {
      socket = new WebSocket(url.href);
    } catch (error) {
      report(error);  // a bad URL or CSP: retrying will not help, but do not hot-loop
      this.retry(null);
      return;
    }
    this.socket = socket;
    socket.addEventListener("message", (message) => {
      if (this.socket === socket) this.receive(message.data);
    });
    socket.addEventListener("close", (closed) => {
      if (this.socket !== socket) return;
      this.socket = null;
      const wasLive = this.live;
      this.live = false;
      if (this.stopped) return;
      if (closed.code === SESSION_GONE) {
        this.stopped = true;
        return;  // session.closed came before this close
      }
      this.synthetic("events.disconnected", {code: closed.code, reason: closed.reason,
        retry_in: this.backoff / 1000});
      this.retry(wasLive ? null : closed.code);
    });
  }

  /** @param {number|null} failedCode   null when the socket had said hello */
  retry(failedCode) {
    if (this.stopped) return;
    if (failedCode === null) {
      this.failures = 0;
    } else {
      this.failures += 1;
    }
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX);
    this.timer = setTimeout(async () => {
      this.timer = null;
      if (this.stopped) return;
      if (this.failures >= CHECK_AFTER && await this.sessionGone()) {
        if (this.stopped) return;
        this.stopped = true;
        this.deliver({seq: this.seq, topic: "session.closed", time: Date.now() / 1000,
          data: {reason: "the session no longer exists", synthetic: true}});
        return;
      }
      this.start();
    }, wait);
  }

  /** @param {unknown} text */
  receive(text) {
    let message;
    try {
      message = JSON.parse(String(text));
    } catch {
      return;
    }
    if (!message || typeof message.topic !== "string" || typeof message.seq !== "number") return;
    if (message.topic === "hello") {
      this.hello(message);
      return;
    }
    if (message.seq <= this.seq) return;  // seen already (a replay overlapping live events)
    this.seq = message.seq;
    this.remember(this.seq, this.epoch);
    if (message.topic === "session.closed") this.stopped = true;
    this.deliver(message);
  }

  /** @param {ScanbridgeEvent} message */
  hello(message) {
    const data = message.data ?? {};
    // Another gateway process (or numbers that went back): its seqs start again from 1.
    if ((this.epoch && data.epoch !== this.epoch) || message.seq < this.seq) this.seq = 0;
    this.epoch = data.epoch ?? null;
    this.live = true;
    this.failures = 0;
    this.backoff = BACKOFF_FIRST;
    this.remember(this.seq, this.epoch);
    this.synthetic("events.connected", {epoch: this.epoch, replayed: data.replayed ?? 0,
      lost: Boolean(data.lost)});
    if (data.lost) {
      this.synthetic("events.lost", {reason: "events were missed while the connection " +
        "was down; read the image list again", epoch: this.epoch});
    }
  }

  /** @param {string} topic @param {object} data */
  synthetic(topic, data) {
    this.deliver({seq: this.seq, topic, data, time: Date.now() / 1000});
  }

  stop() {
    this.stopped = true;
    this.live = false;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= 1) {  // CONNECTING or OPEN
      try {
        socket.close(1000, "closed by the page");
      } catch {
        // already closing
      }
    }
  }
}

// --- session ---------------------------------------------------------------------------

/**
 * A session: its pages (images) on the service, scans into them, edits, documents, and
 * events. Get one with {@link connect}.
 */
export class Session {
  /** @type {string} */ id;
  /** @type {string} the secret of the session; also in image and thumbnail URLs */ token;
  /** @type {string} the service's base URL */ url;
  /** @type {boolean} close() was called or the service closed the session */ closed = false;

  #path;
  #storageKey;
  /** @type {EventSocket|null} */ #events = null;
  /** @type {Map<string, Set<EventCallback>>} */ #listeners = new Map();
  /** @type {Map<string, ScanJob>} */ #jobs = new Map();
  /** @type {Map<string, UploadJob>} */ #uploads = new Map();
  /** @type {Map<string, RecognitionJob<any>>} OCR and barcode jobs */ #recognitions = new Map();
  /** @type {Map<string, ScanbridgeEvent[]>} events of jobs whose POST has not answered */
  #unclaimed = new Map();
  #unclaimedCount = 0;
  #starting = 0;  // job POSTs (scan, upload, OCR, barcodes) not answered yet

  /**
   * Use {@link connect}.
   * @param {symbol} key
   * @param {{url: string, id: string, token: string, storageKey: string|null,
   *          events: boolean, seq: number, epoch: string|null}} init
   */
  constructor(key, init) {
    if (key !== INTERNAL) throw new TypeError("use connect() to get a Session");
    this.url = init.url;
    this.id = init.id;
    this.token = init.token;
    this.#path = `${API}/sessions/${encodeURIComponent(init.id)}`;
    this.#storageKey = init.storageKey;
    if (init.events && typeof WebSocket === "function") {
      const ws = new URL(`${this.url}${this.#path}/events`);
      ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
      this.#events = new EventSocket({url: ws.href, token: this.token, seq: init.seq,
        epoch: init.epoch, deliver: (event) => this.#dispatch(event),
        sessionGone: () => this.#gone(), remember: (seq, epoch) => this.#remember(seq, epoch)});
      this.#events.start();
    }
    sessionParts.set(this, {
      call: (method, path, options) => this.#call(method, path, options),
      path: this.#path,
      eventsLive: () => this.#events?.live ?? false,
      forget: (jobId) => {
        this.#jobs.delete(jobId);
        this.#uploads.delete(jobId);
        this.#recognitions.delete(jobId);
      },
    });
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
    return request(this.url, method, path, {token: this.token, ...options});
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
    return new LiveView(INTERNAL, this, element, options);
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
    const job = new ScanJob(INTERNAL, this, {batch: Boolean(batch), onPage, onProgress});
    if (signal?.aborted) {
      jobPartsOf(job).fail(new ScanbridgeError("aborted", "the scan was aborted before it started"));
      return job;
    }
    /** @type {Object<string, unknown>} */
    const body = {source};
    if (options !== undefined && options !== null) body.options = options;
    if (batch) body.batch = true;
    else if (pages !== undefined && pages !== null) body.pages = pages;
    this.#launch(`${this.#path}/scans`, body, job, jobPartsOf(job), this.#jobs, signal);
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
   * Start a job: POST its request, then hand it its record and the events that came
   * before the answer; aborting ``signal`` cancels it.
   * @template {{cancel: () => Promise<unknown>}} J
   * @param {string} path
   * @param {Object<string, unknown>} body
   * @param {J} job
   * @param {{attach: (record: any) => void, event: (event: ScanbridgeEvent) => void,
   *   fail: (error: unknown) => void}} parts
   * @param {Map<string, J>} registry
   * @param {AbortSignal} [signal]
   */
  #launch(path, body, job, parts, registry, signal) {
    this.#starting += 1;
    (async () => {
      try {
        const record = await this.#call("POST", path, {json: body});
        registry.set(record.job, job);
        parts.attach(record);
        for (const event of this.#claim(record.job)) parts.event(event);
      } catch (error) {
        parts.fail(error);
      } finally {
        this.#startedOne();
      }
    })();
    signal?.addEventListener("abort", () => {
      job.cancel().catch(() => {});
    }, {once: true});
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
    const job = new UploadJob(INTERNAL, this, {onProgress, onRetry});
    if (signal?.aborted) {
      trackedPartsOf(job).fail(new ScanbridgeError("aborted",
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
      trackedPartsOf(job).fail(new ScanbridgeError("invalid_argument",
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
    this.#launch(`${this.#path}/uploads`, body, job, trackedPartsOf(job), this.#uploads,
      signal);
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
    const job = new OcrJob(INTERNAL, this, {onProgress});
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
    const job = new BarcodeJob(INTERNAL, this, {onProgress});
    this.#recognize(job, "barcodes", {images, formats, region, engine, timeout}, signal);
    return job;
  }

  /**
   * @param {RecognitionJob<any>} job
   * @param {"ocr"|"barcodes"} kind
   * @param {Object<string, unknown>} given
   * @param {AbortSignal} [signal]
   */
  #recognize(job, kind, given, signal) {
    if (signal?.aborted) {
      trackedPartsOf(job).fail(new ScanbridgeError("aborted",
        "the job was aborted before it started"));
      return;
    }
    /** @type {Object<string, unknown>} */
    const body = {};
    for (const [key, value] of Object.entries(given)) {
      if (value !== undefined && value !== null) body[key] = value;
    }
    this.#launch(`${this.#path}/${kind}`, body, job, trackedPartsOf(job),
      this.#recognitions, signal);
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

  // --- images

  /**
   * The session's images in page order.
   * @returns {Promise<ImageInfo[]>}
   */
  async images() {
    return this.#call("GET", `${this.#path}/images`);
  }

  /**
   * One image's info, with its edit `history`.
   * @param {string} id
   * @returns {Promise<ImageInfo>}
   */
  async imageInfo(id) {
    return this.#call("GET", `${this.#path}/images/${encodeURIComponent(id)}/info`);
  }

  /**
   * The URL of an image, for `<img src>` or a download: the token is in the query, and with
   * the etag (`v=`) the browser may cache it for good (the URL changes with each edit).
   * @param {string|ImageInfo} image             an id, or an info (its etag is then used)
   * @param {{format?: "jpeg"|"png"|"tiff"|"bmp"|"gif", width?: number, height?: number,
   *          quality?: number, etag?: string}} [options]  without format: as stored
   * @returns {string}
   */
  imageUrl(image, {format, width, height, quality, etag} = {}) {
    const url = new URL(`${this.url}${this.#path}/images/${encodeURIComponent(idOf(image))}`);
    const params = {format, width, height, quality};
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    return this.#signed(url, etag ?? (typeof image === "object" ? image?.etag : undefined));
  }

  /**
   * The URL of an image's JPEG thumbnail (see {@link Session#imageUrl} for token and etag).
   * @param {string|ImageInfo} image
   * @param {{size?: number, etag?: string}} [options]  size: the longer side in pixels (200)
   * @returns {string}
   */
  thumbnailUrl(image, {size = 200, etag} = {}) {
    const url = new URL(
      `${this.url}${this.#path}/images/${encodeURIComponent(idOf(image))}/thumbnail`);
    url.searchParams.set("size", String(size));
    return this.#signed(url, etag ?? (typeof image === "object" ? image?.etag : undefined));
  }

  /** @param {URL} url @param {string|undefined} etag @returns {string} */
  #signed(url, etag) {
    if (etag) url.searchParams.set("v", bareEtag(etag));
    url.searchParams.set("token", this.token);
    return url.href;
  }

  /**
   * Edit an image: the ops apply in order, as one step (one undo takes them all back).
   * @param {string} id
   * @param {EditOp|EditOp[]} ops
   * @returns {Promise<ImageInfo>}  the new info (new etag)
   */
  async edit(id, ops) {
    return this.#call("POST", `${this.#path}/images/${encodeURIComponent(id)}/ops`,
      {json: Array.isArray(ops) ? ops : [ops]});
  }

  /**
   * @param {string} id
   * @param {number} angle          degrees clockwise (-90 turns left)
   * @returns {Promise<ImageInfo>}
   */
  rotate(id, angle) {
    return this.edit(id, [{op: "rotate", angle}]);
  }

  /** Upside down. @param {string} id @returns {Promise<ImageInfo>} */
  flip(id) {
    return this.edit(id, [{op: "flip"}]);
  }

  /** Left to right. @param {string} id @returns {Promise<ImageInfo>} */
  mirror(id) {
    return this.edit(id, [{op: "mirror"}]);
  }

  /**
   * Keep a box of the image, in pixels (right and bottom exclusive).
   * @param {string} id
   * @param {{left: number, top: number, right: number, bottom: number}} box
   * @returns {Promise<ImageInfo>}
   */
  crop(id, {left, top, right, bottom}) {
    return this.edit(id, [{op: "crop", left, top, right, bottom}]);
  }

  /**
   * Take back the image's last edit.
   * @param {string} id
   * @returns {Promise<ImageInfo>}
   */
  async undo(id) {
    return this.#call("POST", `${this.#path}/images/${encodeURIComponent(id)}/undo`);
  }

  /**
   * Set the page order.
   * @param {string[]} ids          every image id of the session, once
   * @returns {Promise<string[]>}   the order now
   */
  async reorder(ids) {
    return (await this.#call("PUT", `${this.#path}/order`, {json: {order: ids}})).order;
  }

  /**
   * Delete one image or several.
   * @param {string|string[]} ids
   * @returns {Promise<string[]>}   the deleted ids
   */
  async delete(ids) {
    if (typeof ids === "string") {
      return (await this.#call("DELETE",
        `${this.#path}/images/${encodeURIComponent(ids)}`)).deleted;
    }
    if (!Array.isArray(ids)) {
      throw new ScanbridgeError("invalid_argument", "delete() takes an image id or a list of " +
        "them (deleteAll() deletes every image)");
    }
    if (ids.length === 0) return [];
    return (await this.#call("DELETE", `${this.#path}/images`, {json: {images: ids}})).deleted;
  }

  /**
   * Delete every image of the session.
   * @returns {Promise<string[]>}   the deleted ids
   */
  async deleteAll() {
    return (await this.#call("DELETE", `${this.#path}/images`)).deleted;
  }

  /**
   * Make a document of the images. Several JPEG/PNG/BMP pages come as one zip; so do the
   * parts of a document split by separator barcodes (`split_by: "barcode"`): one PDF (or
   * TIFF) per part.
   * @param {object} [options]
   * @param {string[]} [options.images]   ids, in this order (default: all, in page order)
   * @param {"pdf"|"tiff"|"jpeg"|"png"|"bmp"|"gif"} [options.format]
   * @param {string} [options.filename]   the download name (its extension is set by format)
   * @param {string} [options.title]      PDF metadata, also author, subject, keywords
   * @param {string} [options.author]
   * @param {string} [options.subject]
   * @param {string} [options.keywords]
   * @param {boolean} [options.pdfa]
   * @param {"auto"|"jpeg"|"lossless"} [options.compression]
   * @param {number} [options.quality]
   * @param {"barcode"} [options.split_by]  a page with a separator barcode starts a new part
   * @param {{formats?: string[], pattern?: string, keep?: boolean}} [options.separator]
   *   which barcodes separate (formats; pattern: a regular expression their text must
   *   match); keep: the separator pages stay in the parts (default: dropped)
   * @param {AbortSignal} [options.signal]
   * @returns {Promise<File>}  a File: a Blob with `name` (from Content-Disposition) and `type`
   */
  async save({format = "pdf", signal, ...fields} = {}) {
    /** @type {Object<string, unknown>} */
    const body = {format};
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined) body[key] = value;
    }
    const response = await this.#call("POST", `${this.#path}/documents`,
      {json: body, signal, raw: true});
    const blob = await response.blob();
    /** @type {Record<string, string>} */
    const extensions = {jpeg: "jpg", tiff: "tif"};
    const zipped = (response.headers.get("Content-Type") ?? "").startsWith("application/zip");
    const fallback = `scan.${zipped ? "zip" : extensions[format] ?? format}`;
    const name = dispositionName(response.headers.get("Content-Disposition")) ?? fallback;
    return new File([blob], name, {type: blob.type || response.headers.get("Content-Type") || ""});
  }

  /**
   * Import a file (JPEG, PNG, TIFF, BMP, GIF or PDF); multi-page files give one image per page.
   * @param {Blob|File} file
   * @param {{password?: string, dpi?: number, index?: number, signal?: AbortSignal}} [options]
   *   password: of an encrypted PDF (sent in a header, not the URL); dpi: for pages that do
   *   not say; index: insert at this position (default: at the end)
   * @returns {Promise<ImageInfo[]>}
   */
  async import(file, {password, dpi, index, signal} = {}) {
    /** @type {Object<string, string>} */
    const headers = {"Content-Type": importType(file)};
    if (password) headers["X-Scanbridge-Password"] = password;
    const answer = await this.#call("POST", `${this.#path}/images`,
      {query: {dpi, index}, body: file, headers, signal});
    return answer.images;
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
    if (typeof jobId === "string") {
      const job = family === "scan" ? this.#jobs.get(jobId) : undefined;
      const upload = family === "upload" ? this.#uploads.get(jobId) : undefined;
      const recognition = family === "ocr" || family === "barcode"
        ? this.#recognitions.get(jobId) : undefined;
      if (job) {
        jobPartsOf(job).event(event);
      } else if (upload) {
        trackedPartsOf(upload).event(event);
      } else if (recognition) {
        trackedPartsOf(recognition).event(event);
      } else if (this.#starting > 0 && this.#unclaimedCount < UNCLAIMED_MAX) {
        // The job's POST has not answered yet: keep its events for it.
        const list = this.#unclaimed.get(jobId) ?? [];
        list.push(event);
        this.#unclaimed.set(jobId, list);
        this.#unclaimedCount += 1;
      }
    }
    if (event.topic === "events.lost") {
      for (const job of this.#jobs.values()) jobPartsOf(job).sync();
      for (const upload of this.#uploads.values()) trackedPartsOf(upload).sync();
      for (const job of this.#recognitions.values()) trackedPartsOf(job).sync();
    }
    if (event.topic === "session.closed") this.#ended();
    for (const key of [event.topic, family ? `${family}.*` : null, "*"]) {
      if (key === null) continue;
      for (const callback of [...(this.#listeners.get(key) ?? [])]) {
        try {
          callback(event);
        } catch (error) {
          report(error);
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
    for (const job of [...this.#jobs.values()]) jobPartsOf(job).fail(error);
    for (const upload of [...this.#uploads.values()]) trackedPartsOf(upload).fail(error);
    for (const job of [...this.#recognitions.values()]) trackedPartsOf(job).fail(error);
    this.#jobs.clear();
    this.#uploads.clear();
    this.#recognitions.clear();
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

// --- scan jobs -------------------------------------------------------------------------

/**
 * A promise with its resolve and reject, for a job's `started` and `done`. Not awaiting a
 * job is legal, so no unhandled-rejection report is made for it.
 * @template T
 * @returns {{promise: Promise<T>, resolve: (value: T) => void,
 *   reject: (error: unknown) => void}}
 */
function deferred() {
  /** @type {(value: T) => void} */ let resolve = () => {};
  /** @type {(error: unknown) => void} */ let reject = () => {};
  const promise = /** @type {Promise<T>} */ (new Promise((yes, no) => {
    resolve = yes;
    reject = no;
  }));
  promise.catch(() => {});
  return {promise, resolve, reject};
}

/** @param {unknown} error @returns {ScanbridgeError} the error, as a ScanbridgeError */
function asScanbridgeError(error) {
  return error instanceof ScanbridgeError ? error
    : new ScanbridgeError("internal", String(error), {cause: error});
}

/**
 * A running scan. `for await (const image of job)` yields each stored page's
 * {@link ImageInfo} in order (every iterator sees every page from the first; leaving the
 * loop early does not cancel the scan), and throws the job's error at the end if it
 * failed. `done` resolves with the final {@link Job} (state "done" or "cancelled") or
 * rejects with a {@link ScanbridgeError} (the job's code: "jammed", "feeder_empty",
 * "device_busy", ...; `details` has `job`, `pages` and `images` of the pages kept).
 * @implements {AsyncIterable<ImageInfo>}
 */
export class ScanJob {
  /** @type {string|null} the job id, once the service answered the POST */ id = null;
  /** @type {"starting"|"running"|"done"|"failed"|"cancelled"} */ state = "starting";
  /** @type {Job|null} the latest job record */ record = null;
  /** @type {Progress|null} */ progress = null;
  /** @type {ImageInfo[]} the pages delivered so far, in order */ pages = [];
  /** @type {Promise<Job>} resolves with the POST's answer (the job started) */ started;
  /** @type {Promise<Job>} resolves with the final job record */ done;

  #session;
  #batch;
  #onPage;
  #onProgress;
  #seen = new Set();           // image ids delivered or being delivered
  #chain = Promise.resolve();  // page deliveries, in order
  #ending = false;             // the end is known; pages may still be on their way
  #settled = false;
  /** @type {ScanbridgeError|null} */ #error = null;
  /** @type {Set<() => void>} */ #wakers = new Set();
  /** @type {ReturnType<typeof setInterval>|null} */ #poll = null;
  #syncing = false;
  /** @type {(job: Job) => void} */ #resolveStarted = () => {};
  /** @type {(error: unknown) => void} */ #rejectStarted = () => {};
  /** @type {(job: Job) => void} */ #resolveDone = () => {};
  /** @type {(error: unknown) => void} */ #rejectDone = () => {};

  /**
   * Use {@link Session#scan}.
   * @param {symbol} key
   * @param {Session} session
   * @param {{batch: boolean, onPage?: (image: ImageInfo) => void,
   *          onProgress?: (progress: Progress) => void}} options
   */
  constructor(key, session, {batch, onPage, onProgress}) {
    if (key !== INTERNAL) throw new TypeError("use session.scan() to start a ScanJob");
    this.#session = session;
    this.#batch = batch;
    this.#onPage = onPage;
    this.#onProgress = onProgress;
    const started = /** @type {ReturnType<typeof deferred<Job>>} */ (deferred());
    this.started = started.promise;
    this.#resolveStarted = started.resolve;
    this.#rejectStarted = started.reject;
    const done = /** @type {ReturnType<typeof deferred<Job>>} */ (deferred());
    this.done = done.promise;
    this.#resolveDone = done.resolve;
    this.#rejectDone = done.reject;
    jobParts.set(this, {
      attach: (record) => this.#attach(record),
      event: (event) => this.#event(event),
      fail: (error) => this.#fail(error),
      sync: () => void this.#sync(),
    });
  }

  /** @param {Job} record */
  #attach(record) {
    this.id = record.job;
    this.record = record;
    if (this.#settled) return;
    this.state = "running";
    this.#resolveStarted(record);
    this.#poll = setInterval(() => {
      if (!partsOf(this.#session).eventsLive()) void this.#sync();
    }, POLL_EVERY);
    this.#absorb(record);
  }

  /** @param {ScanbridgeEvent} event */
  #event(event) {
    if (this.#ending) return;
    const data = event.data ?? {};
    switch (event.topic) {
      case "scan.progress":
        this.#progress({page: data.page, percent: data.percent ?? null, pages: data.pages});
        break;
      case "scan.page":
        this.#page(data.image, data.page);
        break;
      case "scan.done":
        this.#absorb(/** @type {Job} */ ({...data, state: data.state ?? "done", error: null}));
        break;
      case "scan.error":
        this.#absorb(/** @type {Job} */ ({...data, state: data.state ?? "failed",
          error: data.error ?? {code: data.code, message: data.message}}));
        break;
      default:
        break;
    }
  }

  /** @param {Progress} progress */
  #progress(progress) {
    this.progress = progress;
    notify(this.#onProgress, progress);
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
          report(error);
          return;
        }
      }
      this.pages.push(info);
      this.#wake();
      notify(this.#onPage, info);
      this.#progress({page: page ?? this.pages.length, percent: 100, pages: this.pages.length});
    });
  }

  /**
   * A job record (from an event, a poll, the POST or a cancel): deliver the pages not seen
   * yet, then end the job if the record is final.
   * @param {Job} record
   */
  #absorb(record) {
    if (this.#ending) return;
    this.record = {...this.record, ...record};
    for (const id of record.images ?? []) this.#page(id);
    if (!TERMINAL.has(record.state)) return;
    this.#ending = true;
    this.#stopPolling();
    let error = null;
    const failure = record.error;
    if (record.state === "failed" && failure) {
      // A batch ends normally when the feeder runs empty (the service says so too).
      if (!(failure.code === "feeder_empty" && this.#batch && record.pages > 0)) {
        const {code, message, ...rest} = failure;
        error = new ScanbridgeError(String(code || "scan_failed"), String(message || code),
          {details: {...rest, job: record.job, pages: record.pages, images: record.images}});
      }
    }
    this.#chain = this.#chain.then(() => {
      const final = /** @type {Job} */ ({...this.record, state: error ? "failed"
        : (record.state === "failed" ? "done" : record.state)});
      this.record = final;
      this.#settle(final, error);
    });
  }

  /** Ask the service for the job's record (the event socket is down, or events were lost). */
  async #sync() {
    if (this.#ending || this.#syncing || this.id === null) return;
    this.#syncing = true;
    try {
      const session = partsOf(this.#session);
      this.#absorb(await session.call("GET",
        `${session.path}/scans/${encodeURIComponent(this.id)}`));
    } catch (error) {
      if (error instanceof ScanbridgeError && error.code === "not_found") {
        this.#fail(error);
      }  // else: unreachable for now; the next poll tries again
    } finally {
      this.#syncing = false;
    }
  }

  /** @param {unknown} error */
  #fail(error) {
    if (this.#ending) return;
    this.#ending = true;
    this.#stopPolling();
    const failure = asScanbridgeError(error);
    this.#rejectStarted(failure);
    this.#chain = this.#chain.then(() => this.#settle(null, failure));
  }

  /** @param {Job|null} record @param {ScanbridgeError|null} error */
  #settle(record, error) {
    if (this.#settled) return;
    this.#settled = true;
    this.#stopPolling();
    if (this.id !== null) partsOf(this.#session).forget(this.id);
    if (error) {
      this.state = "failed";
      this.#error = error;
      this.#rejectDone(error);
    } else {
      this.state = /** @type {any} */ (record?.state ?? "done");
      this.#resolveDone(/** @type {Job} */ (record));
    }
    this.#wake();
  }

  #stopPolling() {
    if (this.#poll !== null) clearInterval(this.#poll);
    this.#poll = null;
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
    if (this.id === null) {
      try {
        await this.started;
      } catch {
        return null;
      }
    }
    if (this.#settled) return this.record;
    const session = partsOf(this.#session);
    try {
      const record = await session.call("DELETE",
        `${session.path}/scans/${encodeURIComponent(/** @type {string} */ (this.id))}`);
      this.#absorb(record);
      return record;
    } catch (error) {
      if (this.#settled || this.#ending) return this.record;  // it ended meanwhile
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
          if (this.#settled) {
            if (this.#error && next !== Infinity) {
              next = Infinity;
              throw this.#error;
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

// --- jobs followed by their record (uploads, OCR, barcodes) ----------------------------

/** @param {number} sent @param {number} total @returns {number} percent, one decimal */
function percentOf(sent, total) {
  return total > 0 ? Math.round(1000 * sent / total) / 10 : 0;
}

/**
 * What a {@link TrackedJob} and its kinds ({@link UploadJob}, {@link RecognitionJob}) call
 * each other by: names only this module knows, so they stay out of the public API.
 * The base offers REQUEST, ABSORB, FINISH and REPORT; a kind overrides ON_EVENT, TAKE,
 * UPDATE, COMPLETE, DETAILS and OUTCOME where it differs.
 */
const REQUEST = Symbol("request");    // (method): a request to the job's URL
const ABSORB = Symbol("absorb");      // (record): take in a whole record (it may end the job)
const FINISH = Symbol("finish");      // (fallback, required): an event said the job ended
const REPORT = Symbol("report");      // (progress): keep it and tell onProgress
const ON_EVENT = Symbol("onEvent");   // (what, data): an event of the running job
const TAKE = Symbol("take");          // (record): a whole record arrived (any state)
const UPDATE = Symbol("update");      // (record): a record of the job still under way
const COMPLETE = Symbol("complete");  // (record): the job is done: the last progress
const DETAILS = Symbol("details");    // (record) -> the details of the job's error
const OUTCOME = Symbol("outcome");    // (record) -> what `done` resolves with

/**
 * @typedef {object} TrackedRecord
 * @property {string} job
 * @property {"queued"|"running"|"done"|"failed"|"cancelled"} state
 * @property {{code: string, message: string}} [error]
 */

/**
 * A job the service keeps a record of (an upload, OCR or barcodes): the lifecycle its kinds
 * share. `started` resolves with the POST's answer; the record is then followed through
 * the session's events about the job, or a poll every 2 s while the event socket is down;
 * the job settles once (`done` resolves, or rejects with a {@link ScanbridgeError}) and its
 * session forgets it. A closed session fails it with `session_closed`.
 * @template {TrackedRecord} Rec   the job's record
 * @template P                     its progress
 * @template Res                   its result
 * @template Out                   what `done` resolves with
 */
class TrackedJob {
  /** @type {string|null} the job id, once the service answered the POST */ id = null;
  /** @type {"starting"|"queued"|"running"|"done"|"failed"|"cancelled"} */ state = "starting";
  /** @type {Rec|null} the latest job record */ record = null;
  /** @type {P|null} the last progress */ progress = null;
  /** @type {Res|null} the result, once there is one */ result = null;
  /** @type {ScanbridgeError|null} why the job failed (what `done` rejects with) */ error = null;
  /** @type {Promise<Rec>} resolves with the POST's answer (the job is queued) */ started;
  /** @type {Promise<Out>} resolves when the job is done */ done;

  #session;
  #collection;
  #noun;
  #failedCode;
  #onProgress;
  #ending = false;   // the end is known (its record may still be on its way)
  #settled = false;
  /** @type {ReturnType<typeof setInterval>|null} */ #poll = null;
  #syncing = false;
  /** @type {(record: Rec) => void} */ #resolveStarted = () => {};
  /** @type {(error: unknown) => void} */ #rejectStarted = () => {};
  /** @type {(value: Out) => void} */ #resolveDone = () => {};
  /** @type {(error: unknown) => void} */ #rejectDone = () => {};

  /**
   * @param {Session} session
   * @param {{collection: string, noun: string, failedCode: string,
   *          onProgress?: (progress: P) => void}} kind  collection: the jobs' path under
   *   the session ("uploads", "ocr"); noun and failedCode: for an end without an error
   */
  constructor(session, {collection, noun, failedCode, onProgress}) {
    this.#session = session;
    this.#collection = collection;
    this.#noun = noun;
    this.#failedCode = failedCode;
    this.#onProgress = onProgress;
    const started = /** @type {ReturnType<typeof deferred<Rec>>} */ (deferred());
    this.started = started.promise;
    this.#resolveStarted = started.resolve;
    this.#rejectStarted = started.reject;
    const done = /** @type {ReturnType<typeof deferred<Out>>} */ (deferred());
    this.done = done.promise;
    this.#resolveDone = done.resolve;
    this.#rejectDone = done.reject;
    trackedParts.set(this, {
      attach: (record) => this.#attach(/** @type {Rec} */ (/** @type {unknown} */ (record))),
      event: (event) => this.#event(event),
      fail: (error) => this.#fail(error),
      sync: () => void this.#sync(),
    });
  }

  /** @param {string} method @returns {Promise<any>} the answer of the job's URL */
  [REQUEST](method) {
    const session = partsOf(this.#session);
    return session.call(method,
      `${session.path}/${this.#collection}/${encodeURIComponent(String(this.id))}`);
  }

  /** @param {Rec} record */
  #attach(record) {
    this.id = record.job;
    if (this.#settled) return;
    this.#resolveStarted(record);
    this.#poll = setInterval(() => {
      if (!partsOf(this.#session).eventsLive()) void this.#sync();
    }, POLL_EVERY);
    this[ABSORB](record);
  }

  /** @param {ScanbridgeEvent} event  one about this job */
  #event(event) {
    if (this.#ending || this.record === null) return;
    this[ON_EVENT](event.topic.slice(event.topic.indexOf(".") + 1), event.data ?? {});
  }

  /**
   * An event of the job (the part of its topic after the family, e.g. "progress").
   * @param {string} what
   * @param {any} data
   */
  [ON_EVENT](what, data) {}

  /**
   * The end, from an event: settle with the service's record of it, or with what the event
   * said when that cannot be read.
   * @param {Rec} fallback
   * @param {boolean} [required]  only the record will do (the result is only there): when
   *   it cannot be read, the job fails with that error
   */
  [FINISH](fallback, required = false) {
    this.#ending = true;
    this.#stopPolling();
    (async () => {
      let final = fallback;
      try {
        const record = await this[REQUEST]("GET");
        if (TERMINAL.has(record?.state)) final = record;
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
  [REPORT](progress) {
    this.progress = progress;
    notify(this.#onProgress, progress);
  }

  /**
   * A whole job record (from the POST, a poll, a refresh or a cancel).
   * @param {Rec} record
   */
  [ABSORB](record) {
    if (this.#ending) return;
    this.record = record;
    this[TAKE](record);
    if (TERMINAL.has(record.state)) {
      this.#ending = true;
      this.#stopPolling();
      this.#conclude(record);
      return;
    }
    this.state = record.state;
    this[UPDATE](record);
  }

  /** @param {Rec} record */
  [TAKE](record) {}

  /** @param {Rec} record  not a final one (its state is taken already) */
  [UPDATE](record) {}

  /** Ask the service for the job's record (the event socket is down, or events were lost). */
  async #sync() {
    if (this.#ending || this.#syncing || this.id === null) return;
    this.#syncing = true;
    try {
      this[ABSORB](await this[REQUEST]("GET"));
    } catch (error) {
      if (error instanceof ScanbridgeError && error.code === "not_found") this.#fail(error);
      // else: unreachable for now; the next poll tries again
    } finally {
      this.#syncing = false;
    }
  }

  /** @param {Rec} record  a final one */
  #conclude(record) {
    this.record = record;
    this[TAKE](record);
    if (record.state === "done") {
      this[COMPLETE](record);
      this.#settle(record, null);
      return;
    }
    const noun = this.#noun;
    const failure = record.error ?? (record.state === "cancelled"
      ? {code: "cancelled", message: `the ${noun} was cancelled`}
      : {code: this.#failedCode, message: `the ${noun} failed`});
    const {code, message, ...rest} = failure;
    this.#settle(record, new ScanbridgeError(String(code || this.#failedCode),
      String(message || code), {details: {...rest, ...this[DETAILS](record)}}));
  }

  /** @param {Rec} record  the job is done: report its last progress */
  [COMPLETE](record) {}

  /** @param {Rec} record @returns {Object<string, unknown>} */
  [DETAILS](record) {
    return {job: record.job};
  }

  /** @param {Rec} record @returns {Out} */
  [OUTCOME](record) {
    return /** @type {Out} */ (/** @type {unknown} */ (record));
  }

  /** The job could not start, or its session ended. @param {unknown} error */
  #fail(error) {
    if (this.#ending) return;
    this.#ending = true;
    this.#stopPolling();
    const failure = asScanbridgeError(error);
    this.#rejectStarted(failure);
    this.#settle(null, failure);
  }

  /** @param {Rec|null} record @param {ScanbridgeError|null} error */
  #settle(record, error) {
    if (this.#settled) return;
    this.#settled = true;
    this.#stopPolling();
    if (this.id !== null) partsOf(this.#session).forget(this.id);
    if (error) {
      this.state = record?.state === "cancelled" ? "cancelled" : "failed";
      this.error = error;
      this.#rejectDone(error);
    } else {
      this.state = "done";
      this.#resolveDone(this[OUTCOME](/** @type {Rec} */ (record)));
    }
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
    if (this.id === null) {
      try {
        await this.started;
      } catch {
        return null;
      }
    }
    if (!this.#ending) {
      try {
        this[ABSORB](await this[REQUEST]("DELETE"));
      } catch (error) {
        if (!this.#ending) throw error;  // else it ended meanwhile
      }
    }
    await this.done.catch(() => {});
    return this.record;
  }
}

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
   * @param {symbol} key
   * @param {Session} session
   * @param {{onProgress?: (progress: UploadProgress) => void,
   *          onRetry?: (retry: UploadRetry) => void}} options
   */
  constructor(key, session, {onProgress, onRetry}) {
    if (key !== INTERNAL) throw new TypeError("use session.upload() to start an UploadJob");
    super(session, {collection: "uploads", noun: "upload", failedCode: "upload_failed",
      onProgress});
    this.#onRetry = onRetry;
  }

  /** @param {string} what @param {any} data */
  [ON_EVENT](what, data) {
    const record = /** @type {UploadRecord} */ (this.record);
    switch (what) {
      case "progress":
        this.state = "running";
        this.record = {...record, state: "running"};
        this[REPORT]({sent: data.sent, total: data.total,
          percent: percentOf(data.sent, data.total), attempt: data.attempt});
        break;
      case "retry":
        this.state = "queued";
        this.record = {...record, state: "queued", attempts: data.attempt,
          error: data.error, next_attempt: Date.now() / 1000 + Number(data.delay || 0)};
        this.#retry({attempt: data.attempt, delay: Number(data.delay || 0), error: data.error});
        break;
      case "done":
        this[FINISH]({...record, state: "done", error: undefined,
          result: {status: data.status, body: data.body ?? ""},
          progress: {sent: record.progress?.total ?? 0,
            total: record.progress?.total ?? 0, percent: 100}});
        break;
      case "error": {
        const {code, message, status} = data;
        this[FINISH]({...record, state: data.state ?? "failed",
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

  /** @param {UploadRecord} record */
  [TAKE](record) {
    if (record.result) this.result = record.result;
  }

  /** @param {UploadRecord} record */
  [UPDATE](record) {
    if (record.state === "queued" && record.attempts > 0 && record.error) {
      this.#retry({attempt: record.attempts, error: record.error,
        delay: Math.max(0, (record.next_attempt ?? 0) - Date.now() / 1000)});
    }
    const progress = record.progress;
    if (record.state === "running" && progress && (progress.sent !== this.progress?.sent
        || progress.total !== this.progress?.total)) {
      this[REPORT]({sent: progress.sent, total: progress.total, percent: progress.percent,
        attempt: record.attempts});
    }
  }

  /** @param {UploadRecord} record */
  [COMPLETE](record) {
    const progress = record.progress ?? {sent: 0, total: 0, percent: 100};
    if (this.progress?.percent !== 100) {
      this[REPORT]({sent: progress.total, total: progress.total, percent: 100,
        attempt: record.attempts});
    }
  }

  /** @param {UploadRecord} record */
  [DETAILS](record) {
    return {job: record.job, attempts: record.attempts, result: record.result ?? null};
  }
}

// --- OCR and barcode jobs --------------------------------------------------------------

/**
 * An OCR or barcode job: the part {@link OcrJob} and {@link BarcodeJob} share. `done`
 * resolves with the job's result once every page is read, or rejects with a
 * {@link ScanbridgeError}: the POST's error (`invalid_option`: a language that is not
 * installed; `invalid_argument`; `not_found`: an unknown image; `conflict`: no pages;
 * `busy`: the session runs 8 jobs already) or the job's (`cancelled`, `timeout`,
 * `invalid_image`, `too_large`, ...), whose `details` has `job` and `progress`.
 * `cancel()` drops the pages being read.
 * @template R
 * @extends {TrackedJob<RecognitionRecord<R>, RecognitionProgress, R, R>}
 */
export class RecognitionJob extends TrackedJob {
  /**
   * Use {@link Session#ocr} or {@link Session#barcodes}.
   * @param {symbol} key
   * @param {Session} session
   * @param {"ocr"|"barcodes"} kind
   * @param {{onProgress?: (progress: RecognitionProgress) => void}} options
   */
  constructor(key, session, kind, {onProgress}) {
    if (key !== INTERNAL) throw new TypeError(`use session.${kind}() to start this job`);
    super(session, {collection: kind, noun: "job", failedCode: "failed", onProgress});
  }

  /** @param {string} what @param {any} data  ocr.* or barcode.* of this job */
  [ON_EVENT](what, data) {
    const record = /** @type {RecognitionRecord<R>} */ (this.record);
    if (what === "progress") {
      const progress = {done: Number(data.done), total: Number(data.total)};
      this.state = "running";
      this.record = {...record, state: "running", progress};
      this.#progress({...progress, image: data.image, index: data.index});
    } else if (what === "done" || what === "failed" || what === "cancelled") {
      this[FINISH]({...record, state: what, ...(data.error ? {error: data.error} : {})},
        what === "done");
    }
  }

  /** @param {{done: number, total: number, image?: string, index?: number}} progress */
  #progress({done, total, image, index}) {
    if (this.progress && !(done > this.progress.done)) return;  // told already
    /** @type {RecognitionProgress} */
    const progress = {done, total, percent: percentOf(done, total)};
    if (image !== undefined) progress.image = image;
    if (index !== undefined) progress.index = index;
    this[REPORT](progress);
  }

  /** @param {RecognitionRecord<R>} record */
  [UPDATE](record) {
    const progress = record.progress;
    if (progress && progress.done > 0) this.#progress(progress);
  }

  /** @param {RecognitionRecord<R>} record */
  [COMPLETE](record) {
    const total = record.progress?.total ?? 0;
    if (this.progress?.done !== total) this.#progress({done: total, total});
  }

  /** @param {RecognitionRecord<R>} record */
  [DETAILS](record) {
    return {job: record.job, progress: record.progress};
  }

  /** @param {RecognitionRecord<R>} record @returns {R} */
  [OUTCOME](record) {
    this.result = /** @type {R} */ (record?.result);
    return /** @type {R} */ (this.result);
  }

  /**
   * The service's record of the job now (`GET`); the job takes it in (an end included).
   * Before the POST answered, it waits for it.
   * @returns {Promise<RecognitionRecord<R>>}
   */
  async refresh() {
    if (this.id === null) await this.started;
    const record = await this[REQUEST]("GET");
    this[ABSORB](record);
    return record;
  }
}

/**
 * Text recognition of pages (see {@link Session#ocr}); `done` resolves with the
 * {@link OcrResult}.
 * @extends {RecognitionJob<OcrResult>}
 */
export class OcrJob extends RecognitionJob {
  #session;

  /**
   * Use {@link Session#ocr}.
   * @param {symbol} key
   * @param {Session} session
   * @param {{onProgress?: (progress: RecognitionProgress) => void}} options
   */
  constructor(key, session, options) {
    super(key, session, "ocr", options);
    this.#session = session;
  }

  /**
   * The URL of an output of the finished job, for `<a href>`, `<iframe src>` or `fetch`
   * (the token is in the query). "text": text/plain (pages split by form feeds); "hocr":
   * the hOCR document; "pdf": the searchable PDF (the pages as stored, with an invisible
   * text layer). hocr and pdf exist when the job's `output` asked for them.
   * @param {"text"|"hocr"|"pdf"} [output]
   * @param {{download?: boolean, filename?: string}} [options]  download: as an attachment
   *   named `filename` (without extension; default "ocr")
   * @returns {string}
   * @throws {ScanbridgeError} `conflict` before the service answered the POST;
   *   `invalid_argument` for another output
   */
  fileUrl(output = "text", {download = false, filename} = {}) {
    if (!["text", "hocr", "pdf"].includes(output)) {
      throw new ScanbridgeError("invalid_argument",
        `the outputs are text, hocr and pdf, not ${JSON.stringify(output)}`);
    }
    if (this.id === null) {
      throw new ScanbridgeError("conflict", "the job has not started yet (await job.started)");
    }
    const session = this.#session;
    const url = new URL(`${session.url}${partsOf(session).path}/ocr/` +
      `${encodeURIComponent(this.id)}/${output}`);
    if (download) url.searchParams.set("download", "1");
    if (download && filename) url.searchParams.set("filename", filename);
    url.searchParams.set("token", session.token);
    return url.href;
  }
}

/**
 * Barcodes and QR codes of pages (see {@link Session#barcodes}); `done` resolves with the
 * {@link BarcodeResult}.
 * @extends {RecognitionJob<BarcodeResult>}
 */
export class BarcodeJob extends RecognitionJob {
  /**
   * Use {@link Session#barcodes}.
   * @param {symbol} key
   * @param {Session} session
   * @param {{onProgress?: (progress: RecognitionProgress) => void}} options
   */
  constructor(key, session, options) {
    super(key, session, "barcodes", options);
  }
}

// --- cameras: live view and capture ----------------------------------------------------

/**
 * A camera the service can use: {@link Session#listSources} lists them after the
 * scanners, with `type` "camera".
 * @typedef {object} CameraSource
 * @property {string} id          "camera:NAME" (a named source of the ini), or the device's
 *                                stable "camera:<by-id name>", else "camera:videoN"
 * @property {"camera"} type
 * @property {string} name
 * @property {"v4l2"|"mjpeg"|"stream"|"file"} kind   a V4L2 device (webcam, document
 *                                camera), an MJPEG camera over HTTP, an RTSP stream, a video file
 * @property {string} device      /dev/videoN, or the URL (without its password) or file
 * @property {boolean} open       a live view or a capture has it open now
 */

/**
 * What a camera offers ({@link Session#getOptions} of a camera id).
 * @typedef {object} CameraOptions
 * @property {string} source
 * @property {string} kind
 * @property {string} size                      the frame size now, "WxH"
 * @property {number|null} fps                  the frame rate it sends
 * @property {{format: string, width: number, height: number, fps: number[]}[]} modes
 * @property {Object<string, number>} properties   adjustable ones (brightness, focus, ...)
 * @property {object[]} options                 resolution, interval, document and the properties
 */

/**
 * What {@link Session#liveView} takes.
 * @typedef {object} LiveViewOptions
 * @property {string} source                    a camera's id
 * @property {number} [fps]                     at most this many frames a second (the
 *                                              service's [camera] max_fps caps it)
 * @property {string} [resolution]              "WxH": one the camera offers (else the view
 *                                              ends with `invalid_option`)
 * @property {(error: ScanbridgeError) => void} [onError]   the view ended by an error
 */

/**
 * What {@link Session#capture} takes.
 * @typedef {object} CaptureRequest
 * @property {string} source                    a camera's id
 * @property {number} [frames]                  frames to capture, each a page (default 1)
 * @property {number} [interval]                seconds between two frames (default 0: the
 *                                              next new frame)
 * @property {boolean} [document]               document mode: find the page in the frame,
 *                                              straighten and crop it
 * @property {string} [resolution]              "WxH": one the camera offers
 * @property {(image: ImageInfo) => void} [onPage]
 * @property {(progress: Progress) => void} [onProgress]
 * @property {AbortSignal} [signal]             aborting cancels the capture
 */

let liveViews = 0;  // numbers each view's URL: a new view never comes from the image cache

/**
 * A camera's live view in an `<img>` (see {@link Session#liveView}): the element shows the
 * service's MJPEG stream (`multipart/x-mixed-replace`), newest frame first, at most `fps`
 * frames a second. The camera is opened once however many views there are, and released
 * when the last one stops. `stop()` clears the element's `src`, which ends the stream.
 * `started` resolves with the first frame's size; `ended` resolves once stopped, or rejects
 * with a {@link ScanbridgeError} when the view ended by itself: `not_found` (no such
 * source), `invalid_option` (a resolution it does not offer), `device_gone` (the camera
 * went away or cannot be opened; the stream ended cleanly and the session got a
 * `camera.error` event), `busy`, `session_closed`, `unreachable`.
 */
export class LiveView {
  /** @type {string} the camera's id */ source;
  /** @type {string} the stream's URL (the session's token is in it) */ url;
  /** @type {HTMLImageElement} */ element;
  /** @type {"starting"|"live"|"stopped"|"failed"} */ state = "starting";
  /** @type {ScanbridgeError|null} why the view ended (what `ended` rejects with) */ error = null;
  /** @type {Promise<{width: number, height: number}>} the first frame is shown */ started;
  /** @type {Promise<void>} resolves once stopped; rejects when the view failed */ ended;

  #session;
  #onError;
  /** @type {Array<() => void>} */ #undo = [];
  /** @type {(size: {width: number, height: number}) => void} */ #resolveStarted = () => {};
  /** @type {(error: unknown) => void} */ #rejectStarted = () => {};
  /** @type {() => void} */ #resolveEnded = () => {};
  /** @type {(error: unknown) => void} */ #rejectEnded = () => {};

  /**
   * Use {@link Session#liveView}.
   * @param {symbol} key
   * @param {Session} session
   * @param {HTMLImageElement} element
   * @param {LiveViewOptions} options
   */
  constructor(key, session, element, {source, fps, resolution, onError}) {
    if (key !== INTERNAL) throw new TypeError("use session.liveView() to start a LiveView");
    if (!element || typeof element.setAttribute !== "function") {
      throw new ScanbridgeError("invalid_argument", "liveView() needs an <img> element");
    }
    if (typeof source !== "string" || !source) {
      throw new ScanbridgeError("invalid_argument", "liveView() needs a camera's source id");
    }
    this.#session = session;
    this.#onError = onError;
    this.source = source;
    this.element = element;
    const started = /** @type {ReturnType<typeof deferred<{width: number, height: number}>>} */
      (deferred());
    this.started = started.promise;
    this.#resolveStarted = started.resolve;
    this.#rejectStarted = started.reject;
    const ended = /** @type {ReturnType<typeof deferred<void>>} */ (deferred());
    this.ended = ended.promise;
    this.#resolveEnded = ended.resolve;
    this.#rejectEnded = ended.reject;
    const url = new URL(`${session.url}${API}/sources/${encodeURIComponent(source)}/stream`);
    url.searchParams.set("session", session.id);
    url.searchParams.set("token", session.token);
    if (fps !== undefined && fps !== null) url.searchParams.set("fps", String(fps));
    if (resolution) url.searchParams.set("resolution", String(resolution));
    liveViews += 1;
    url.searchParams.set("view", `${Date.now().toString(36)}-${liveViews}`);
    this.url = url.href;
    if (session.closed) {
      this.#end(new ScanbridgeError("session_closed", "the session was closed"));
      return;
    }
    const loaded = () => {
      if (this.state !== "starting") return;
      this.state = "live";
      this.#resolveStarted({width: element.naturalWidth, height: element.naturalHeight});
    };
    const broken = () => {
      if (this.state === "starting" || this.state === "live") void this.#diagnose();
    };
    element.addEventListener("load", loaded);
    element.addEventListener("error", broken);
    this.#undo.push(() => {
      element.removeEventListener("load", loaded);
      element.removeEventListener("error", broken);
    });
    this.#undo.push(session.on("camera.error", (event) => {
      if (event.data?.source !== source) return;
      const {code, message, ...details} = event.data ?? {};
      this.#end(new ScanbridgeError(String(code || "device_gone"),
        String(message || "the camera went away"), {details}));
    }));
    this.#undo.push(session.on("session.closed", () => {
      this.#end(new ScanbridgeError("session_closed", "the session was closed"));
    }));
    element.src = this.url;
  }

  /**
   * The element could not show the stream: ask the service why (the error answer comes
   * before any frame), so `ended` rejects with its code.
   */
  async #diagnose() {
    const controller = new AbortController();
    /** @type {ScanbridgeError} */
    let error;
    try {
      const response = await fetch(this.url, {credentials: "omit", cache: "no-store",
        signal: controller.signal});
      error = response.ok
        ? new ScanbridgeError("live_view_failed", "the browser could not show the live view")
        : await errorOf(response);
    } catch (cause) {
      error = await networkError(this.#session.url, cause);
    } finally {
      controller.abort();  // a stream that works now is not needed: the camera is released
    }
    this.#end(error);
  }

  /** Stop and let go: the events, the element's stream. */
  #release() {
    for (const undo of this.#undo.splice(0)) undo();
    if (this.element.getAttribute("src") === this.url) this.element.removeAttribute("src");
  }

  /** The view ended by itself. @param {ScanbridgeError} error */
  #end(error) {
    if (this.state === "stopped" || this.state === "failed") return;
    this.state = "failed";
    this.error = error;
    this.#release();
    this.#rejectStarted(error);
    this.#rejectEnded(error);
    notify(this.#onError, error);
  }

  /**
   * Stop the view: the element's `src` is cleared (its last frame goes too), which ends the
   * stream; the camera closes once no other view or capture uses it. Stopping twice, or a
   * view that failed, is fine.
   */
  stop() {
    if (this.state === "stopped" || this.state === "failed") return;
    const wasStarting = this.state === "starting";
    this.state = "stopped";
    this.#release();
    if (wasStarting) this.#rejectStarted(new ScanbridgeError("aborted", "the view was stopped"));
    this.#resolveEnded();
  }
}

/**
 * @param {Session} session
 * @param {CaptureRequest} request
 * @returns {ScanJob}
 */
function captureFrames(session, {source, frames = 1, interval, document, resolution, onPage,
  onProgress, signal} = /** @type {any} */ ({})) {
  /** @type {Object<string, unknown>} */
  const options = {};
  if (interval !== undefined && interval !== null) options.interval = interval;
  if (document !== undefined && document !== null) options.document = Boolean(document);
  if (resolution) options.resolution = resolution;
  return session.scan({source, pages: frames, options, onPage, onProgress, signal});
}
