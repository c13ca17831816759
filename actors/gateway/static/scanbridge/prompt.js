/**
 * ensureService(): when Scanbridge does not answer (or is too old), a small modal dialog
 * offers its download and waits until it answers, like a commercial scanning service's
 * installer prompt. Touches the document only when called (a page may import the client
 * and never need the dialog).
 * @module scanbridge/prompt
 */

import { ScanbridgeError } from "./errors.js";
import { locate } from "./locate.js";

/** @typedef {import("./types.js").LocatedService} LocatedService */
/** @typedef {import("./types.js").PromptLabels} PromptLabels */

const MIN_POLL_MS = 250;  // a faster poll only loads the service while it starts

/** @type {Required<PromptLabels>} */
const PROMPT_LABELS = Object.freeze({
  title: "Scanbridge is needed",
  notRunning: "This page uses Scanbridge to reach the scanners of this computer. Install " +
    "it (or start it, if it is installed); this page goes on by itself once it runs.",
  tooOld: "This page needs Scanbridge {minVersion} or newer; this computer has {version}. " +
    "Install the new version; this page goes on by itself once it runs.",
  download: "Download Scanbridge",
  cancel: "Cancel",
  waiting: "Waiting for Scanbridge to start…",
  waitingNewer: "Scanbridge {version} is running; waiting for {minVersion} or newer…",
});

let prompts = 0;  // for the ids aria-labelledby and aria-describedby name

/**
 * @typedef {object} EnsureOptions
 * @property {string} installUrl             the download link of the dialog
 * @property {string|string[]} [url]         as connect()'s
 * @property {string} [minVersion]           as connect()'s
 * @property {number} [pollMs]               how often the dialog asks again (default 2000)
 * @property {AbortSignal} [signal]          aborting closes the dialog (error `aborted`)
 * @property {PromptLabels} [labels]         the dialog's texts, e.g. translated
 */

/**
 * Resolves once the service answers this page (and is at least `minVersion`): at once
 * when it does, else after a modal dialog offered `installUrl` and saw it start.
 * @param {EnsureOptions} options
 * @returns {Promise<LocatedService>} its status and `url`: pass that to connect()
 * @throws {ScanbridgeError} `cancelled` (the user closed the dialog), `aborted`,
 *   `origin_not_allowed` (it runs but refuses this page: installing does not help),
 *   `unreachable` (something answers that the browser does not let this page read),
 *   `invalid_argument`
 */
export async function ensureService({installUrl, url, minVersion, pollMs = 2000, signal,
  labels = {}}) {
  if (typeof installUrl !== "string" || installUrl === "") {
    throw new ScanbridgeError("invalid_argument", "ensureService needs an installUrl");
  }
  const where = {url, installUrl, minVersion};
  /** @type {ScanbridgeError} */
  let first;
  try {
    return await locate({...where, signal});
  } catch (error) {
    if (!(error instanceof ScanbridgeError) || !["not_running", "too_old"].includes(error.code)) {
      throw error;
    }
    first = error;
  }
  if (signal?.aborted) throw aborted(signal);
  const every = Math.max(MIN_POLL_MS, Number(pollMs) || 0);
  const prompt = new Prompt({...PROMPT_LABELS, ...labels}, installUrl);
  const stop = new AbortController();
  return new Promise((resolve, reject) => {
    let done = false;
    /** @param {ScanbridgeError|null} error @param {LocatedService} [found] */
    const finish = (error, found) => {
      if (done) return;
      done = true;
      stop.abort();
      signal?.removeEventListener("abort", onAbort);
      prompt.close();
      if (error) reject(error);
      else resolve(/** @type {LocatedService} */ (found));
    };
    const onAbort = () => finish(aborted(/** @type {AbortSignal} */ (signal)));
    signal?.addEventListener("abort", onAbort, {once: true});
    prompt.open(first, () => finish(new ScanbridgeError("cancelled",
      "the Scanbridge dialog was closed before the service answered")));
    (async () => {
      while (!done) {
        await new Promise((wake) => setTimeout(wake, every));
        if (done) return;
        try {
          finish(null, await locate({...where, signal: stop.signal}));
        } catch (error) {
          if (done) return;
          // While it installs or starts, a port may answer before the API does.
          if (error instanceof ScanbridgeError
              && ["not_running", "too_old", "unreachable"].includes(error.code)) {
            prompt.show(error);
          } else {
            finish(error instanceof ScanbridgeError ? error
              : new ScanbridgeError("internal", String(error), {cause: error}));
          }
        }
      }
    })();
  });
}

/** @param {AbortSignal} signal @returns {ScanbridgeError} */
function aborted(signal) {
  return new ScanbridgeError("aborted", "ensureService was aborted", {cause: signal.reason});
}

/** The dialog: a heading, why, the download link, a live status line, a Cancel button. */
class Prompt {
  /** @param {Required<PromptLabels>} labels @param {string} installUrl */
  constructor(labels, installUrl) {
    this.labels = labels;
    const id = `scanbridge-prompt-${++prompts}`;
    /** @type {Element|null} where the focus goes back to */
    this.before = null;
    this.dialog = element("dialog", {className: "scanbridge-prompt"});
    this.dialog.setAttribute("aria-modal", "true");
    this.dialog.setAttribute("aria-labelledby", `${id}-title`);
    this.dialog.setAttribute("aria-describedby", `${id}-why`);
    this.dialog.style.maxWidth = "30rem";
    this.why = element("p", {id: `${id}-why`});
    this.link = element("a", {href: installUrl, target: "_blank", rel: "noopener",
      textContent: labels.download});
    this.line = element("p", {className: "scanbridge-prompt-status"});
    this.line.setAttribute("role", "status");
    this.line.setAttribute("aria-live", "polite");
    this.cancel = element("button", {type: "button", textContent: labels.cancel});
    const heading = element("h2", {id: `${id}-title`, textContent: labels.title});
    heading.style.marginTop = "0";  // a browser's default top margin doubles the padding
    this.dialog.append(heading, this.why, element("p", {}, [this.link]), this.line, this.cancel);
  }

  /** @param {ScanbridgeError} error why it opens @param {() => void} onCancel */
  open(error, onCancel) {
    this.show(error);
    // Escape fires "cancel"; a browser may close the dialog anyway, hence "close" too.
    this.dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      onCancel();
    });
    this.dialog.addEventListener("close", onCancel);
    this.cancel.addEventListener("click", onCancel);
    this.before = document.activeElement;
    document.body.append(this.dialog);
    this.dialog.showModal();
    this.link.focus();
  }

  /** @param {ScanbridgeError} error what the last look found */
  show(error) {
    const {version = "", minVersion = ""} =
      /** @type {{version?: string, minVersion?: string}} */ (error.details);
    /** @param {string} text */
    const fill = (text) => text.replaceAll("{version}", version)
      .replaceAll("{minVersion}", minVersion);
    const old = error.code === "too_old";
    this.why.textContent = fill(old ? this.labels.tooOld : this.labels.notRunning);
    this.line.textContent = old ? fill(this.labels.waitingNewer)
      : error.code === "not_running" ? this.labels.waiting : error.message;
  }

  close() {
    if (this.dialog.open) this.dialog.close();
    this.dialog.remove();
    if (this.before instanceof HTMLElement && this.before.isConnected) this.before.focus();
  }
}

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Partial<HTMLElementTagNameMap[K]>} properties
 * @param {Node[]} [children]
 * @returns {HTMLElementTagNameMap[K]}
 */
function element(tag, properties, children = []) {
  const made = Object.assign(document.createElement(tag), properties);
  made.append(...children);
  return made;
}
