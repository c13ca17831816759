/**
 * The session's event WebSocket: reconnects with backoff, passes `since` and `epoch`, drops
 * duplicates. A Session owns one; not part of the API.
 * @module scanbridge/events
 */

import { reportError } from "./errors.js";

/** @typedef {import("./types.js").ScanbridgeEvent} ScanbridgeEvent */

const BACKOFF_FIRST = 500;  // ms before the first reconnect of the event socket
const BACKOFF_MAX = 10000;  // ms, the longest wait between two reconnects
const CHECK_AFTER = 2;      // failed socket attempts in a row before checking the session
const SESSION_GONE = 4000;  // WebSocket close code: the session was closed

export class EventSocket {
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
      reportError(error);  // a bad URL or CSP: retrying will not help, but do not hot-loop
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
