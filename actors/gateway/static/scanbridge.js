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
 * A page that must work before Scanbridge is installed hosts this client itself (the one
 * file dist/scanbridge.js, made from these modules) and asks for the service first:
 * const {url} = await ensureService({installUrl: "https://your.app/get-scanbridge"});
 * const session = await connect({url});
 *
 * This file holds the entry points (status, connect) and re-exports the rest of the API
 * from the modules under /scanbridge/, which are its parts: import this file only.
 * errors.js (ScanbridgeError), http.js (requests), locate.js (which port answers, and
 * whether the service is new enough), prompt.js (ensureService's dialog), storage.js (the
 * tab's session), events.js (the event WebSocket), session.js and pages.js (Session),
 * registry.js (the jobs a session follows), jobs.js (TrackedJob: what every job shares),
 * scan.js, upload.js, recognition.js and camera.js (the jobs and the live view), states.js
 * (job states), types.js and job-types.js (the typedefs).
 *
 * @module scanbridge
 */

import { ScanbridgeError } from "./scanbridge/errors.js";
import { API, DEFAULT_URL, baseOf, request } from "./scanbridge/http.js";
import { DEFAULT_URLS, atFirstAnswer, locate } from "./scanbridge/locate.js";
import { Session, openSession } from "./scanbridge/session.js";
import { loadStored, saveStored } from "./scanbridge/storage.js";

/** @typedef {import("./scanbridge/storage.js").StoredSession} StoredSession */

export * from "./scanbridge/types.js";
export * from "./scanbridge/job-types.js";
export { DEFAULT_URL, DEFAULT_URLS, ScanbridgeError, Session };
export { ensureService } from "./scanbridge/prompt.js";
export { ScanJob } from "./scanbridge/scan.js";
export { UploadJob } from "./scanbridge/upload.js";
export { BarcodeJob, OcrJob, RecognitionJob } from "./scanbridge/recognition.js";
export { LiveView } from "./scanbridge/camera.js";

/**
 * The service's status (no session needed): version, API level, actors, allowed origins.
 * @param {string} [url]    the service's base URL
 * @returns {Promise<import("./scanbridge/types.js").ServiceStatus>}
 */
export async function status(url = DEFAULT_URL) {
  return request(baseOf(url), "GET", `${API}/status`);
}

/**
 * Open a session (or, with `reuse`, take back this tab's session after a reload), at the
 * first of the service's URLs that answers.
 * @param {object} [options]
 * @param {string|string[]} [options.url]  the service's base URL, or URLs to try in order
 *                                       (default DEFAULT_URLS: its four default ports)
 * @param {string} [options.installUrl]  where to get Scanbridge: in `not_running` and
 *                                       `too_old` errors' details, for the page to show
 * @param {string} [options.minVersion]  the oldest service version this page works with
 * @param {boolean} [options.reuse]      keep `{id, token}` in sessionStorage and reuse it
 * @param {string} [options.storageKey]  the sessionStorage key
 * @param {boolean} [options.events]     open the event WebSocket (scan jobs then learn
 *                                       their pages from events; without it they poll)
 * @param {object} [options.meta]        stored with a new session (free-form)
 * @returns {Promise<Session>}
 * @throws {ScanbridgeError} `not_running` when nothing answers at any URL, `too_old`
 *   when the service is older than `minVersion`, `origin_not_allowed` (naming `scanbridge
 *   allow ORIGIN`) when it refuses this page, `unreachable` when something answers that
 *   the browser does not let this page read
 */
export async function connect({url, installUrl, minVersion, reuse = true,
  storageKey = "scanbridge.session", events = true, meta} = {}) {
  const stored = reuse ? loadStored(storageKey) : null;
  // Only a minimum version costs a status request first; else the session's own request
  // finds the port, so a connect() is the one or two requests it always was.
  const where = minVersion === undefined ? url
    : (await locate({url, installUrl, minVersion})).url;
  const record = await atFirstAnswer(where, (base) => openAt(base, stored, meta),
    {installUrl, first: stored?.url});
  if (reuse) saveStored(storageKey, record);
  return openSession({url: record.url, id: record.id, token: record.token,
    storageKey: reuse ? storageKey : null, events, seq: record.seq ?? 0,
    epoch: record.epoch ?? null});
}

/**
 * The tab's stored session when the service at `base` still has it, else a new one.
 * @param {string} base
 * @param {StoredSession|null} stored
 * @param {object|undefined} meta
 * @returns {Promise<StoredSession>}
 */
async function openAt(base, stored, meta) {
  if (stored && stored.url === base) {
    try {
      await request(base, "GET", `${API}/sessions/${encodeURIComponent(stored.id)}`,
        {token: stored.token});
      return stored;
    } catch (error) {
      if (!(error instanceof ScanbridgeError) || ![401, 403, 404].includes(error.status)) {
        throw error;
      }
    }
  }
  const opened = await request(base, "POST", `${API}/sessions`,
    {json: meta === undefined ? {} : {meta}});
  return {url: base, id: opened.id, token: opened.token, seq: 0};
}
