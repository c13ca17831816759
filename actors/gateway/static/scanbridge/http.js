/**
 * HTTP to the service: one request function that turns every non-2xx answer into a
 * ScanbridgeError, the diagnosis of a request that got no answer (service down, or this
 * page's origin refused), and the small helpers of URLs, file names and content types.
 * @module scanbridge/http
 */

import { ScanbridgeError } from "./errors.js";

// A page served over HTTPS talks to the HTTPS port: Chromium's Local Network Access needs a
// secure context, and some setups block mixed content even towards loopback.
export const DEFAULT_URL = globalThis.location?.protocol === "https:"
  ? "https://127.0.0.1:18626" : "http://127.0.0.1:18625";
export const API = "/api/v1";
const PROBE_TIMEOUT = 3000; // ms the "is the service there at all?" probe may take
const IMPORT_TYPES = new Set(["image/jpeg", "image/png", "image/tiff", "image/bmp",
  "image/x-ms-bmp", "image/gif", "application/pdf", "application/octet-stream"]);
/** @type {Record<string, string>} */
const EXTENSION_TYPES = {jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png",
  tif: "image/tiff", tiff: "image/tiff", bmp: "image/bmp", gif: "image/gif",
  pdf: "application/pdf"};

/** @param {string} url @returns {string} the origin-and-path form without trailing "/" */
export function baseOf(url) {
  let parsed;
  try {
    parsed = new URL(url, globalThis.location?.href);
  } catch {
    throw new ScanbridgeError("invalid_argument", `not a URL: ${url}`);
  }
  return parsed.href.replace(/\/+$/, "");
}

/** @param {string} etag @returns {string} the etag without its quotes */
export function bareEtag(etag) {
  return String(etag).replace(/^W\//, "").replace(/"/g, "");
}

/** @param {string|{id: string}} image @returns {string} */
export function idOf(image) {
  return typeof image === "string" ? image : image?.id;
}

/**
 * An error answer as a ScanbridgeError.
 * @param {Response} response
 * @returns {Promise<ScanbridgeError>}
 */
export async function errorOf(response) {
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
export async function networkError(base, cause) {
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
export async function request(base, method, path, {token, query, json, body, headers, signal,
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
export function dispositionName(header) {
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
export function importType(file) {
  const own = (file.type || "").toLowerCase();
  if (IMPORT_TYPES.has(own)) return own;
  const name = /** @type {File} */ (file).name ?? "";
  const extension = name.includes(".") ? (name.split(".").pop() ?? "").toLowerCase() : "";
  return EXTENSION_TYPES[extension] ?? "application/octet-stream";
}

/**
 * A session's API path.
 * @param {{id: string}} session
 * @returns {string}
 */
export function sessionPath(session) {
  return `${API}/sessions/${encodeURIComponent(session.id)}`;
}

/**
 * A request of the session's, with its token.
 * @param {{url: string, token: string}} session
 * @param {string} method
 * @param {string} path
 * @param {RequestOptions} [options]
 * @returns {Promise<any>}
 */
export function sessionCall(session, method, path, options = {}) {
  return request(session.url, method, path, {token: session.token, ...options});
}
