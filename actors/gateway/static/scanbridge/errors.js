/**
 * The one error class of the client, and how callbacks' errors are reported.
 * @module scanbridge/errors
 */

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

/** @param {unknown} error @returns {ScanbridgeError} the error, as a ScanbridgeError */
export function asScanbridgeError(error) {
  return error instanceof ScanbridgeError ? error
    : new ScanbridgeError("internal", String(error), {cause: error});
}

/**
 * An error of the page's own code (a callback, a listener): reported like an uncaught one,
 * not passed on into the client.
 * @param {unknown} error
 */
export function reportError(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error(error);
}

/**
 * Call a page's callback (if it gave one); what it throws is reported, not passed on.
 * @template T
 * @param {((value: T) => void)|undefined} callback
 * @param {T} value
 */
export function notify(callback, value) {
  if (!callback) return;
  try {
    callback(value);
  } catch (error) {
    reportError(error);
  }
}
