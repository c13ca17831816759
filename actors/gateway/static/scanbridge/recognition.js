/**
 * OcrJob and BarcodeJob, and the RecognitionJob they share: pages read by the service's
 * OCR workers or its barcode reader.
 * @module scanbridge/recognition
 */

import { ScanbridgeError } from "./errors.js";
import { TrackedJob, checkLink, percentOf, tracked } from "./jobs.js";
import { JobState } from "./states.js";

/**
 * @template R
 * @typedef {import("./job-types.js").RecognitionRecord<R>} RecognitionRecord
 */
/** @typedef {import("./job-types.js").RecognitionProgress} RecognitionProgress */
/** @typedef {import("./job-types.js").OcrResult} OcrResult */
/** @typedef {import("./job-types.js").BarcodeResult} BarcodeResult */
/** @typedef {import("./jobs.js").SessionLink} SessionLink */

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
   * @param {SessionLink} link
   * @param {"ocr"|"barcodes"} kind
   * @param {{onProgress?: (progress: RecognitionProgress) => void}} options
   */
  constructor(link, kind, {onProgress}) {
    super(checkLink(link, `use session.${kind}() to start this job`), {
      collection: kind, noun: "job", failedCode: "failed", onProgress,
      onEvent: (what, data) => this.#event(what, data),
      update: (record) => {
        const progress = record.progress;
        if (progress && progress.done > 0) this.#progress(progress);
      },
      complete: (record) => {
        const total = record.progress?.total ?? 0;
        if (this.progress?.done !== total) this.#progress({done: total, total});
      },
      details: (record) => ({job: record.job, progress: record.progress}),
      outcome: (record) => {
        this.result = /** @type {R} */ (record?.result);
        return /** @type {R} */ (this.result);
      },
    });
  }

  /** @param {string} what @param {any} data  ocr.* or barcode.* of this job */
  #event(what, data) {
    const record = /** @type {RecognitionRecord<R>} */ (this.record);
    if (what === "progress") {
      const progress = {done: Number(data.done), total: Number(data.total)};
      tracked.note(this, {...record, state: JobState.RUNNING, progress});
      this.#progress({...progress, image: data.image, index: data.index});
    } else if (what === JobState.DONE || what === JobState.FAILED
        || what === JobState.CANCELLED) {
      tracked.finish(this, {...record, state: what, ...(data.error ? {error: data.error} : {})},
        what === JobState.DONE);
    }
  }

  /** @param {{done: number, total: number, image?: string, index?: number}} progress */
  #progress({done, total, image, index}) {
    if (this.progress && !(done > this.progress.done)) return;  // told already
    /** @type {RecognitionProgress} */
    const progress = {done, total, percent: percentOf(done, total)};
    if (image !== undefined) progress.image = image;
    if (index !== undefined) progress.index = index;
    tracked.report(this, progress);
  }

  /**
   * The service's record of the job now (`GET`); the job takes it in (an end included).
   * Before the POST answered, it waits for it.
   * @returns {Promise<RecognitionRecord<R>>}
   */
  async refresh() {
    if (this.id === null) await this.started;
    const record = await tracked.request(this, "GET");
    tracked.absorb(this, record);
    return record;
  }
}

/**
 * Text recognition of pages (see {@link Session#ocr}); `done` resolves with the
 * {@link OcrResult}.
 * @extends {RecognitionJob<OcrResult>}
 */
export class OcrJob extends RecognitionJob {
  #link;

  /**
   * Use {@link Session#ocr}.
   * @param {SessionLink} link
   * @param {{onProgress?: (progress: RecognitionProgress) => void}} options
   */
  constructor(link, options) {
    super(link, "ocr", options);
    this.#link = link;
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
    const session = this.#link.session;
    const url = new URL(`${session.url}${this.#link.path}/ocr/` +
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
   * @param {SessionLink} link
   * @param {{onProgress?: (progress: RecognitionProgress) => void}} options
   */
  constructor(link, options) {
    super(link, "barcodes", options);
  }
}

