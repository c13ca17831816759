// The demo's shared parts: its elements, its state, the status line and the buttons' rules.
// Each panel is a module of its own (scan.js, pages.js, editing.js, importing.js, save.js,
// upload.js, recognition.js, camera.js); demo.js connects and starts them.

/** @typedef {import("/scanbridge.js").ImageInfo} ImageInfo */
/** @typedef {import("/scanbridge.js").Session} Session */
/** @typedef {import("/scanbridge.js").ScanJob} ScanJob */
/** @typedef {import("/scanbridge.js").UploadJob} UploadJob */
/** @typedef {import("/scanbridge.js").OcrJob} OcrJob */
/** @typedef {import("/scanbridge.js").BarcodeJob} BarcodeJob */
/** @typedef {import("/scanbridge.js").Barcode} Barcode */
/** @typedef {import("/scanbridge.js").LiveView} LiveView */

/** @param {string} id @returns {any} */
export const $ = (id) => document.getElementById(id);
export const ui = {
  connection: $("connection"), source: $("source"), refreshSources: $("refresh-sources"),
  form: $("scan-form"), resolution: $("resolution"), mode: $("mode"),
  scanSource: $("scan-source"), pageSize: $("page-size"), pages: $("pages"),
  batch: $("batch"), scan: $("scan"), cancel: $("cancel"), progress: $("progress"),
  progressText: $("progress-text"), dropzone: $("dropzone"), importFile: $("import-file"),
  grid: $("thumbnails"), empty: $("empty"), count: $("page-count"),
  rotateLeft: $("rotate-left"), rotateRight: $("rotate-right"), crop: $("crop"),
  cropMargin: $("crop-margin"), moveLeft: $("move-left"), moveRight: $("move-right"),
  undo: $("undo"), delete: $("delete"), savePdf: $("save-pdf"), saveTiff: $("save-tiff"),
  status: $("status"), sessionId: $("session-id"), download: $("download"),
  uploadForm: $("upload-form"), uploadUrl: $("upload-url"), uploadFormat: $("upload-format"),
  uploadFields: $("upload-fields"), upload: $("upload"), uploadCancel: $("upload-cancel"),
  uploadProgress: $("upload-progress"), uploadProgressText: $("upload-progress-text"),
  uploadResult: $("upload-result"), uploadStatus: $("upload-status"),
  uploadMessage: $("upload-message"), uploadBody: $("upload-body"),
  ocrForm: $("ocr-form"), ocrLang: $("ocr-lang"), ocrRotate: $("ocr-rotate"),
  ocrAll: $("ocr-all"), ocrSelected: $("ocr-selected"), ocrCancel: $("ocr-cancel"),
  ocrProgress: $("ocr-progress"), ocrProgressText: $("ocr-progress-text"),
  ocrResult: $("ocr-result"), ocrStatus: $("ocr-status"), ocrMessage: $("ocr-message"),
  ocrPdf: $("ocr-pdf"), ocrHocr: $("ocr-hocr"), ocrText: $("ocr-text"), ocrPages: $("ocr-pages"),
  barcodeForm: $("barcode-form"), barcodeFormat: $("barcode-format"),
  barcodeRead: $("barcode-read"), barcodeCancel: $("barcode-cancel"),
  barcodeProgress: $("barcode-progress"), barcodeProgressText: $("barcode-progress-text"),
  barcodeResult: $("barcode-result"), barcodeStatus: $("barcode-status"),
  barcodeMessage: $("barcode-message"), barcodeList: $("barcode-list"),
  cameraForm: $("camera-form"), camera: $("camera"), cameraLive: $("camera-live"),
  cameraView: $("camera-view"), cameraLiveHint: $("camera-live-hint"),
  cameraFps: $("camera-fps"), cameraStart: $("camera-start"), cameraStop: $("camera-stop"),
  cameraFrames: $("camera-frames"), cameraInterval: $("camera-interval"),
  cameraDocument: $("camera-document"), cameraCapture: $("camera-capture"),
  cameraCancel: $("camera-cancel"), cameraProgressText: $("camera-progress-text"),
};

export const state = {
  /** @type {Session|null} */ session: null,
  /** @type {ImageInfo[]} pages in order, as last known */ images: [],
  /** @type {string|null} */ selected: null,
  /** @type {ScanJob|null} */ job: null,
  /** @type {UploadJob|null} */ upload: null,
  /** @type {OcrJob|null} */ ocr: null,
  /** @type {BarcodeJob|null} */ barcodes: null,
  /** @type {LiveView|null} the camera's live view while it runs */ live: null,
  /** @type {ScanJob|null} a camera capture */ capture: null,
  ocrReady: false,   // the OCR languages are known
  /** @type {Map<string, {el: HTMLElement, img: HTMLImageElement, caption: HTMLElement,
   *  frame: HTMLElement, overlay: SVGSVGElement|null, etag: string}>} */ thumbs: new Map(),
  /** @type {Map<string, {etag: string, width: number, height: number,
   *  barcodes: Barcode[]}>} the codes found on each page, as it was when read */
  codes: new Map(),
  /** @type {Record<string, any>} the current source's aliases */ aliases: {},
  optionsLoad: 0,    // numbers getOptions calls: only the latest one fills the form
};

// --- status line --------------------------------------------------------------------------

/** @param {string} text @param {"info"|"busy"|"ok"|"error"} [kind] */
export function say(text, kind = "info") {
  ui.status.replaceChildren(text);
  ui.status.className = kind;
  delete ui.status.dataset.code;
}

/** Show an error with its code. @param {unknown} error @param {string} doing */
export function fail(error, doing) {
  const code = /** @type {any} */ (error)?.code ?? "error";
  const message = /** @type {any} */ (error)?.message ?? String(error);
  const badge = document.createElement("span");
  badge.className = "code";
  badge.textContent = code;
  ui.status.replaceChildren(badge, ` ${doing} failed: ${message}`);
  ui.status.className = "error";
  ui.status.dataset.code = code;
  console.warn(`${doing} failed`, error);
}

/**
 * Run one user action with status messages; errors are shown, not thrown.
 * @template T
 * @param {string} doing        e.g. "Rotating page 2"
 * @param {() => Promise<T>} work
 * @returns {Promise<T|undefined>}
 */
export async function act(doing, work) {
  say(`${doing}…`, "busy");
  try {
    return await work();
  } catch (error) {
    fail(error, doing);
    return undefined;
  }
}

// --- buttons ------------------------------------------------------------------------------

/** @type {Array<(ready: boolean) => void>} each panel's rule for its buttons */
const buttonRules = [];

/**
 * A panel's rule for its buttons (enabled or not), run on every change of state.
 * @param {(ready: boolean) => void} rule   ready: connected to a session still open
 */
export function onButtons(rule) {
  buttonRules.push(rule);
}

export function updateButtons() {
  const ready = Boolean(state.session) && !state.session?.closed;
  for (const rule of buttonRules) rule(ready);
}

// --- helpers of several panels ------------------------------------------------------------

/** @param {HTMLSelectElement} select @param {Array<string|number>} values
 *  @param {(v: string|number) => string} label @param {string|number|undefined} preferred */
export function fillSelect(select, values, label, preferred) {
  const previous = select.value;
  select.replaceChildren(...values.map((value) => new Option(label(value), String(value))));
  const keep = [previous, preferred].map((v) => (v === undefined ? undefined : String(v)))
    .find((v) => v !== undefined && values.map(String).includes(v));
  if (keep !== undefined) select.value = keep;
}

/** @returns {string} the time now for file names, e.g. "2025-11-26-0942" */
export function stamp() {
  return new Date().toISOString().slice(0, 16).replace("T", "-").replace(":", "");
}

/**
 * A panel's progress bar and the line under it.
 * @param {HTMLProgressElement} bar @param {HTMLElement} line
 * @param {number} percent @param {string} text
 */
export function showBar(bar, line, percent, text) {
  bar.value = Math.round(percent);
  line.textContent = text;
}

/**
 * Cancel a panel's job from its Cancel button; a failure is shown.
 * @param {{cancel: () => Promise<unknown>}|null} job
 * @param {HTMLButtonElement} button @param {string} what   e.g. "the upload"
 */
export async function cancelJob(job, button, what) {
  if (!job) return;
  button.disabled = true;
  try {
    await job.cancel();
  } catch (error) {
    fail(error, `Cancelling ${what}`);
    updateButtons();
  }
}
