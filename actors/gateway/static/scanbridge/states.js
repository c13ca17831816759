/**
 * The states of a job on the service (a scan or capture, an upload, OCR, barcodes), as its
 * records and events name them. Every job class reads them from here.
 * @module scanbridge/states
 */

/** A job's states on the service. */
export const JobState = Object.freeze({
  QUEUED: "queued",        // accepted, waiting for its device, worker or turn
  RUNNING: "running",
  DONE: "done",
  FAILED: "failed",
  CANCELLED: "cancelled",
});

/** @typedef {typeof JobState[keyof typeof JobState]} JobStateName */

/** The states a job never leaves. */
export const FINAL_STATES = Object.freeze([JobState.DONE, JobState.FAILED, JobState.CANCELLED]);

/** A job object's state before the service answered its POST (not a service state). */
export const STARTING = "starting";

/** @param {unknown} state @returns {boolean} the job has ended */
export function isFinal(state) {
  return /** @type {readonly unknown[]} */ (FINAL_STATES).includes(state);
}
