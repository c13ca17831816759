/**
 * Finding the service before a session: which of its ports answers, whether it is new
 * enough, and, when none answers, why (`not_running`, `too_old`, `origin_not_allowed`).
 * connect() and ensureService() start here.
 * @module scanbridge/locate
 */

import { ScanbridgeError } from "./errors.js";
import { API, DEFAULT_URL, baseOf, request } from "./http.js";

/**
 * The service's base URLs a page tries in order when it names none: the service listens on
 * two HTTP ports (18625, 18622) and two HTTPS ports (18626, 18623), and an administrator
 * may have given one of each to another program. A page served over HTTPS tries HTTPS
 * first (see DEFAULT_URL); HTTP next, since a browser may let it reach loopback.
 */
export const DEFAULT_URLS = Object.freeze(DEFAULT_URL.startsWith("https:")
  ? ["https://127.0.0.1:18626", "https://127.0.0.1:18623",
    "http://127.0.0.1:18625", "http://127.0.0.1:18622"]
  : ["http://127.0.0.1:18625", "http://127.0.0.1:18622",
    "https://127.0.0.1:18626", "https://127.0.0.1:18623"]);

const DOTTED = /^\d+(\.\d+)*$/;

/**
 * @typedef {object} LocateOptions
 * @property {string|string[]} [url]     the service's base URL, or the URLs to try in order
 *                                       (default DEFAULT_URLS)
 * @property {string} [installUrl]       where the page's users get Scanbridge: carried
 *                                       by `not_running` and `too_old` errors
 * @property {string} [minVersion]       the oldest version the page works with, e.g. "0.2"
 * @property {AbortSignal} [signal]
 */

/**
 * The first of the URLs where Scanbridge answers this page, with its status.
 * @param {LocateOptions} [options]
 * @returns {Promise<import("./types.js").LocatedService>}
 * @throws {ScanbridgeError} `not_running` (nothing answers at any URL), `too_old`,
 *   `origin_not_allowed`, `unreachable` (something answers, but the browser does not let
 *   this page read it), `aborted`, `invalid_argument`
 */
export async function locate({url, installUrl, minVersion, signal} = {}) {
  if (minVersion !== undefined && !DOTTED.test(String(minVersion))) {
    throw new ScanbridgeError("invalid_argument",
      `minVersion must be dotted numbers such as "0.2", not ${JSON.stringify(minVersion)}`);
  }
  return atFirstAnswer(url, async (base) => {
    const status = await request(base, "GET", `${API}/status`, {signal});
    if (typeof status?.version !== "string") {
      throw new ScanbridgeError("unreachable", `${base} answers, but not as Scanbridge`,
        {details: {url: base, reason: "not_scanbridge"}});
    }
    if (minVersion !== undefined && olderThan(status.version, String(minVersion))) {
      throw new ScanbridgeError("too_old", `this page needs Scanbridge ${minVersion} or newer; ` +
        `this computer runs ${status.version}`, {details: {url: base, version: status.version,
        minVersion: String(minVersion), installUrl}});
    }
    return {...status, url: base};
  }, {installUrl});
}

/**
 * `attempt` at each URL in turn (`first` ahead, when it is one of them) until Scanbridge
 * answers it: a port where nothing answers, or another program, is passed over.
 * @template T
 * @param {string|string[]|undefined} url      the URL or URLs; undefined: DEFAULT_URLS
 * @param {(base: string) => Promise<T>} attempt
 * @param {{installUrl?: string, first?: string}} [more]
 * @returns {Promise<T>} what the first attempt that got an answer gave
 * @throws {ScanbridgeError} the attempt's error once Scanbridge answered; `not_running`
 *   when nothing answered anywhere; else the last port's `unreachable`
 */
export async function atFirstAnswer(url, attempt, {installUrl, first} = {}) {
  let urls = (url === undefined ? [...DEFAULT_URLS] : [url].flat()).map(baseOf);
  // The port of the tab's stored session first: another port would open a new session.
  if (first !== undefined && urls.includes(first)) {
    urls = [first, ...urls.filter((other) => other !== first)];
  }
  /** @type {ScanbridgeError|null} an answer that was not Scanbridge's, or not readable */
  let seen = null;
  for (const base of urls) {
    try {
      return await attempt(base);
    } catch (error) {
      if (!(error instanceof ScanbridgeError) || !nothingThere(error)) throw error;
      if (/** @type {{reason?: string}} */ (error.details).reason !== "no_answer") seen = error;
    }
  }
  if (seen) throw seen;
  const origin = globalThis.location?.origin ?? "";
  throw new ScanbridgeError("not_running", "Scanbridge is not running on this computer (or " +
    `not installed): nothing answers at ${urls.join(", ")}`,
    {details: {urls, origin, reason: "no_answer", installUrl}});
}

/**
 * @param {ScanbridgeError} error  of a request to one of the service's URLs
 * @returns {boolean} no Scanbridge answered there (nothing, or another program), so it
 *   may be on the next port; any other error is the service's own word, or the caller's
 */
function nothingThere(error) {
  return error.code === "unreachable" || error.code.startsWith("http_");
}

/**
 * Versions compared as dotted numbers ("0.10" is newer than "0.9"; "1" equals "1.0"); a
 * part's trailing letters (a pre-release, "1.2.0rc1") are not counted.
 * @param {string} version
 * @param {string} minimum
 * @returns {boolean} version < minimum
 */
export function olderThan(version, minimum) {
  const numbers = (/** @type {string} */ text) =>
    text.split(".").map((part) => Number.parseInt(part, 10) || 0);
  const have = numbers(version);
  const want = numbers(minimum);
  for (let i = 0; i < Math.max(have.length, want.length); i++) {
    const a = have[i] ?? 0;
    const b = want[i] ?? 0;
    if (a !== b) return a < b;
  }
  return false;
}
