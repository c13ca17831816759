/**
 * Cameras: LiveView (a camera's MJPEG stream in an `<img>`) and the capture of frames as a
 * session's pages (a ScanJob, like a scan).
 * @module scanbridge/camera
 */

import { ScanbridgeError, notify } from "./errors.js";
import { API, errorOf, networkError } from "./http.js";
import { checkLink, deferred } from "./jobs.js";

/** @typedef {import("./types.js").LiveViewOptions} LiveViewOptions */
/** @typedef {import("./types.js").CaptureRequest} CaptureRequest */
/** @typedef {import("./scan.js").ScanJob} ScanJob */
/** @typedef {import("./session.js").Session} Session */
/** @typedef {import("./jobs.js").SessionLink} SessionLink */

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
  /** @type {import("./jobs.js").Deferred<{width: number, height: number}>} */
  #started = deferred();  // first: the public promises come from these two
  /** @type {import("./jobs.js").Deferred<void>} */ #ended = deferred();

  /** @type {string} the camera's id */ source;
  /** @type {string} the stream's URL (the session's token is in it) */ url;
  /** @type {HTMLImageElement} */ element;
  /** @type {"starting"|"live"|"stopped"|"failed"} */ state = "starting";
  /** @type {ScanbridgeError|null} why the view ended (what `ended` rejects with) */ error = null;
  /** @type {Promise<{width: number, height: number}>} the first frame is shown */
  started = this.#started.promise;
  /** @type {Promise<void>} resolves once stopped; rejects when the view failed */
  ended = this.#ended.promise;

  #session;
  #onError;
  /** @type {Array<() => void>} */ #undo = [];

  /**
   * Use {@link Session#liveView}.
   * @param {SessionLink} link
   * @param {HTMLImageElement} element
   * @param {LiveViewOptions} options
   */
  constructor(link, element, {source, fps, resolution, onError}) {
    const session = checkLink(link, "use session.liveView() to start a LiveView").session;
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
      this.#started.resolve({width: element.naturalWidth, height: element.naturalHeight});
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
    this.#started.reject(error);
    this.#ended.reject(error);
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
    if (wasStarting) this.#started.reject(new ScanbridgeError("aborted", "the view was stopped"));
    this.#ended.resolve();
  }
}

/**
 * @param {Session} session
 * @param {CaptureRequest} request
 * @returns {ScanJob}
 */
export function captureFrames(session, {source, frames = 1, interval, document, resolution, onPage,
  onProgress, signal} = /** @type {any} */ ({})) {
  /** @type {Object<string, unknown>} */
  const options = {};
  if (interval !== undefined && interval !== null) options.interval = interval;
  if (document !== undefined && document !== null) options.document = Boolean(document);
  if (resolution) options.resolution = resolution;
  return session.scan({source, pages: frames, options, onPage, onProgress, signal});
}
