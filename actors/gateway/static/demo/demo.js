// The Scanbridge demo: scan, capture from a camera (with its live view), see pages arrive,
// edit, reorder, import, save, upload, read text (OCR) and barcodes, through /scanbridge.js
// only. Runs under the page's strict CSP (no inline script or style).
import { connect } from "/scanbridge.js";

/** @typedef {import("/scanbridge.js").ImageInfo} ImageInfo */
/** @typedef {import("/scanbridge.js").Session} Session */
/** @typedef {import("/scanbridge.js").ScanJob} ScanJob */
/** @typedef {import("/scanbridge.js").UploadJob} UploadJob */
/** @typedef {import("/scanbridge.js").OcrJob} OcrJob */
/** @typedef {import("/scanbridge.js").BarcodeJob} BarcodeJob */
/** @typedef {import("/scanbridge.js").Barcode} Barcode */
/** @typedef {import("/scanbridge.js").LiveView} LiveView */

const SVG = "http://www.w3.org/2000/svg";

const THUMB_SIZE = 200;   // px, the thumbnails' longer side
const COMMON_DPI = [75, 100, 150, 200, 240, 300, 400, 600, 1200];
const LABELS = {
  mode: {color: "Colour", gray: "Grayscale", lineart: "Black & white"},
  source: {flatbed: "Flatbed", adf: "Document feeder", duplex: "Feeder, both sides"},
  page_size: {max: "Full area"},
};

/** @param {string} id @returns {any} */
const $ = (id) => document.getElementById(id);
const ui = {
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
const fields = {
  resolution: $("field-resolution"), mode: $("field-mode"),
  scanSource: $("field-scan-source"), pageSize: $("field-page-size"),
};

const state = {
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
function say(text, kind = "info") {
  ui.status.replaceChildren(text);
  ui.status.className = kind;
  delete ui.status.dataset.code;
}

/** Show an error with its code. @param {unknown} error @param {string} doing */
function fail(error, doing) {
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
async function act(doing, work) {
  say(`${doing}…`, "busy");
  try {
    return await work();
  } catch (error) {
    fail(error, doing);
    return undefined;
  }
}

// --- sources and options ------------------------------------------------------------------

/** @param {HTMLSelectElement} select @param {Array<string|number>} values
 *  @param {(v: string|number) => string} label @param {string|number|undefined} preferred */
function fillSelect(select, values, label, preferred) {
  const previous = select.value;
  select.replaceChildren(...values.map((value) => new Option(label(value), String(value))));
  const keep = [previous, preferred].map((v) => (v === undefined ? undefined : String(v)))
    .find((v) => v !== undefined && values.map(String).includes(v));
  if (keep !== undefined) select.value = keep;
}

/** @param {{force?: boolean}} [options] */
async function loadSources({force = false} = {}) {
  const session = state.session;
  if (!session) return;
  ui.refreshSources.disabled = true;
  say(force ? "Looking for scanners again…" : "Looking for scanners…", "busy");
  try {
    const all = await session.listSources({refresh: force});
    const sources = all.filter((s) => s.type !== "camera");  // the cameras have their panel
    fillCameras(all.filter((s) => s.type === "camera"));
    const previous = ui.source.value;
    if (sources.length === 0) {
      ui.source.replaceChildren(new Option("No scanner found", ""));
      ui.source.disabled = true;
      say("No scanner found. Connect one and press Refresh, or import files.", "info");
    } else {
      ui.source.replaceChildren(...sources.map((s) => new Option(
        `${[s.vendor, s.model].filter(Boolean).join(" ") || s.id} (${s.id})${s.busy ? " – busy" : ""}`,
        s.id)));
      ui.source.disabled = false;
      if (sources.some((s) => s.id === previous)) ui.source.value = previous;
      say(`${sources.length} scanner${sources.length === 1 ? "" : "s"} found.`, "ok");
    }
    await loadOptions();
    // Ready for use (and for automated tests): connected, sources listed, form built.
    document.body.dataset.ready = "1";
  } catch (error) {
    fail(error, "Listing the scanners");
  } finally {
    ui.refreshSources.disabled = false;
    updateButtons();
  }
}

/** Build the settings form from the source's aliases. */
async function loadOptions() {
  const session = state.session;
  const source = ui.source.value;
  const load = ++state.optionsLoad;
  if (!session || !source) {
    state.aliases = {};
    showFields();
    return;
  }
  try {
    const described = await session.getOptions(source);
    if (load !== state.optionsLoad) return;  // another source was picked meanwhile
    state.aliases = described.aliases ?? {};
    const a = state.aliases;
    if (a.resolution) {
      const values = resolutionChoices(a.resolution);
      const preferred = values.includes(150) ? 150 : values[Math.floor(values.length / 2)];
      fillSelect(ui.resolution, values, (v) => `${v} dpi`, preferred);
    }
    if (a.mode?.values?.length) {
      fillSelect(ui.mode, a.mode.values, (v) => LABELS.mode[v] ?? String(v), "color");
    }
    if (a.source?.values?.length) {
      fillSelect(ui.scanSource, a.source.values, (v) => LABELS.source[v] ?? String(v),
        ui.batch.checked && a.source.values.includes("adf") ? "adf" : "flatbed");
    }
    if (a.page_size?.values?.length) {
      fillSelect(ui.pageSize, a.page_size.values, (v) => LABELS.page_size[v] ?? String(v),
        a.page_size.values.includes("A4") ? "A4" : "max");
    }
    showFields();
    if (described.busy) say(`${source} is busy with another scan; its settings are shown.`, "info");
  } catch (error) {
    if (load !== state.optionsLoad) return;
    state.aliases = {};
    showFields();
    fail(error, `Reading the settings of ${source}`);
  }
}

/** Resolutions to offer: the device's list, or common values within its range. */
function resolutionChoices(alias) {
  const constraint = alias.constraint ?? {};
  if (Array.isArray(constraint.values) && constraint.values.length) return constraint.values;
  if (constraint.range) {
    const {min, max, step} = constraint.range;
    const onStep = (v) => !step || Math.abs((v - min) / step - Math.round((v - min) / step)) < 1e-6;
    const values = COMMON_DPI.filter((v) => v >= min && v <= max && onStep(v));
    return values.length ? values : [min, max].filter((v, i, all) => all.indexOf(v) === i);
  }
  return COMMON_DPI;
}

function showFields() {
  const a = state.aliases;
  fields.resolution.hidden = !a.resolution;
  fields.mode.hidden = !a.mode?.values?.length;
  fields.scanSource.hidden = !a.source?.values?.length;
  fields.pageSize.hidden = !a.page_size?.values?.length;
}

/** The form's values as scan options (aliases only). */
function scanOptions() {
  /** @type {Record<string, unknown>} */
  const options = {};
  if (!fields.resolution.hidden && ui.resolution.value) options.resolution = Number(ui.resolution.value);
  if (!fields.mode.hidden && ui.mode.value) options.mode = ui.mode.value;
  if (!fields.scanSource.hidden && ui.scanSource.value) options.source = ui.scanSource.value;
  if (!fields.pageSize.hidden && ui.pageSize.value) options.page_size = ui.pageSize.value;
  return options;
}

// --- scanning -----------------------------------------------------------------------------

/** @param {boolean} on */
function setScanning(on) {
  document.body.dataset.scanning = on ? "1" : "0";
  updateButtons();
}

async function startScan() {
  const session = state.session;
  const source = ui.source.value;
  if (!session || !source || state.job) return;
  const batch = ui.batch.checked;
  const pages = Math.max(1, Math.floor(Number(ui.pages.value) || 1));
  ui.pages.value = String(pages);
  let stored = 0;
  showProgress(0, batch ? "Starting the scan…" : `Starting the scan of ${pages} page(s)…`);
  say(`Scanning from ${source}…`, "busy");
  const job = session.scan({
    source, options: scanOptions(), batch, pages: batch ? undefined : pages,
    onPage: (info) => {
      stored += 1;
      addImage(info);
      say(`Page ${stored}${batch ? "" : ` of ${pages}`} stored.`, "busy");
    },
    onProgress: ({page, percent, pages: done}) => {
      const part = (percent ?? 0) / 100;
      if (batch) {
        showProgress(percent ?? 0, `Page ${page}: ${percent ?? 0} %`);
      } else {
        const overall = Math.max(done, page - 1 + part) / pages;
        showProgress(Math.min(100, overall * 100), `Page ${Math.min(page, pages)} of ${pages}`);
      }
    },
  });
  state.job = job;
  setScanning(true);
  try {
    const record = await job.done;
    const n = record.pages ?? stored;
    showProgress(record.state === "done" ? 100 : ui.progress.value,
      record.state === "cancelled" ? "Cancelled" : "Done");
    say(record.state === "cancelled"
      ? `Scan cancelled; ${n} page(s) kept.` : `Scan done: ${n} page(s).`, "ok");
  } catch (error) {
    showProgress(Number(ui.progress.value) || 0, "Stopped");
    fail(error, "Scanning");
  } finally {
    state.job = null;
    setScanning(false);
    refreshImages();
  }
}

/** @param {number} percent @param {string} text */
function showProgress(percent, text) {
  ui.progress.value = Math.round(percent);
  ui.progressText.textContent = text;
}

async function cancelScan() {
  const job = state.job;
  if (!job) return;
  ui.cancel.disabled = true;
  say("Cancelling the scan…", "busy");
  try {
    await job.cancel();
  } catch (error) {
    fail(error, "Cancelling the scan");
    updateButtons();
  }
}

// --- the page grid ------------------------------------------------------------------------

// Counts addImage calls: a page list requested before one of them is stale on arrival.
let localChanges = 0;

/** Insert or update one page (from onPage, an edit, an import) without a round trip. */
function addImage(/** @type {ImageInfo} */ info) {
  localChanges += 1;
  const at = state.images.findIndex((image) => image.id === info.id);
  if (at >= 0) {
    state.images[at] = info;
  } else {
    const index = Number.isInteger(info.index) ? info.index : state.images.length;
    state.images.splice(Math.min(Math.max(index, 0), state.images.length), 0, info);
  }
  render();
}

let refreshing = /** @type {Promise<void>|null} */ (null);
let refreshAgain = false;

/** Read the page list again (coalesced: at most one request in flight, one queued). */
function refreshImages() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      refreshAgain = false;
      const session = state.session;
      if (!session || session.closed) return;
      try {
        const before = localChanges;
        const images = await session.images();
        if (localChanges !== before) {  // a page came in meanwhile: this list lacks it
          refreshAgain = true;
          continue;
        }
        state.images = images;
        render();
      } catch (error) {
        if (!session.closed) fail(error, "Reading the page list");
        return;
      }
    } while (refreshAgain);
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** Show state.images in the grid, reusing thumbnails whose image did not change. */
function render() {
  const session = state.session;
  if (!session) return;
  const wanted = new Set(state.images.map((image) => image.id));
  for (const [id, thumb] of state.thumbs) {
    if (!wanted.has(id)) {
      thumb.el.remove();
      state.thumbs.delete(id);
    }
  }
  if (state.selected && !wanted.has(state.selected)) state.selected = null;
  state.images.forEach((info, index) => {
    let thumb = state.thumbs.get(info.id);
    if (!thumb) {
      thumb = makeThumb(info);
      state.thumbs.set(info.id, thumb);
    }
    if (thumb.etag !== info.etag) {
      thumb.img.src = session.thumbnailUrl(info.id, {size: THUMB_SIZE, etag: info.etag});
      thumb.etag = info.etag;
    }
    thumb.img.alt = `Page ${index + 1}`;
    thumb.caption.textContent = `${index + 1} · ${info.width}×${info.height}`;
    thumb.el.title = [`Page ${index + 1}: ${info.width}×${info.height} px`,
      info.dpi?.[0] ? `${Math.round(info.dpi[0])} dpi` : "", info.mode, info.format]
      .filter(Boolean).join(", ") + ". Drag to move; double-click to open.";
    thumb.el.dataset.index = String(index);
    const selected = info.id === state.selected;
    thumb.el.classList.toggle("selected", selected);
    thumb.el.setAttribute("aria-selected", String(selected));
    if (ui.grid.children[index] !== thumb.el) {
      ui.grid.insertBefore(thumb.el, ui.grid.children[index] ?? null);
    }
    drawCodes(thumb, info);
  });
  ui.count.textContent = String(state.images.length);
  ui.empty.hidden = state.images.length > 0;
  updateButtons();
}

/** @param {ImageInfo} info */
function makeThumb(info) {
  const el = document.createElement("figure");
  el.className = "thumb";
  el.dataset.id = info.id;
  el.draggable = true;
  el.tabIndex = 0;
  el.setAttribute("role", "option");
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.draggable = false;
  img.decoding = "async";
  img.addEventListener("error", () => el.classList.add("broken"));
  frame.append(img);
  const caption = document.createElement("figcaption");
  el.append(frame, caption);
  const thumb = {el, img, caption, frame, overlay: /** @type {SVGSVGElement|null} */ (null),
    etag: ""};
  img.addEventListener("load", () => {
    el.classList.remove("broken");
    sizeOverlay(thumb);
  });
  return thumb;
}

/** @param {string|null} id @param {{focus?: boolean}} [options] */
function select(id, {focus = false} = {}) {
  state.selected = id;
  for (const [key, thumb] of state.thumbs) {
    thumb.el.classList.toggle("selected", key === id);
    thumb.el.setAttribute("aria-selected", String(key === id));
  }
  if (focus && id) state.thumbs.get(id)?.el.focus();
  updateButtons();
}

function selectedInfo() {
  return state.images.find((image) => image.id === state.selected) ?? null;
}

function pageLabel(id) {
  return `page ${state.images.findIndex((image) => image.id === id) + 1}`;
}

function updateButtons() {
  const ready = Boolean(state.session) && !state.session?.closed;
  const scanning = Boolean(state.job);
  const has = state.images.length > 0;
  const index = state.images.findIndex((image) => image.id === state.selected);
  const picked = ready && index >= 0;
  ui.scan.disabled = !ready || scanning || !ui.source.value;
  ui.cancel.disabled = !scanning;
  ui.pages.disabled = ui.batch.checked;
  for (const button of [ui.rotateLeft, ui.rotateRight, ui.crop, ui.undo, ui.delete]) {
    button.disabled = !picked;
  }
  ui.moveLeft.disabled = !picked || index === 0;
  ui.moveRight.disabled = !picked || index === state.images.length - 1;
  ui.savePdf.disabled = !ready || !has;
  ui.saveTiff.disabled = !ready || !has;
  ui.upload.disabled = !ready || !has || Boolean(state.upload);
  ui.uploadCancel.disabled = !state.upload;
  ui.ocrAll.disabled = !ready || !has || !state.ocrReady || Boolean(state.ocr);
  ui.ocrSelected.disabled = !picked || !state.ocrReady || Boolean(state.ocr);
  ui.ocrCancel.disabled = !state.ocr;
  ui.barcodeRead.disabled = !ready || !has || Boolean(state.barcodes);
  ui.barcodeCancel.disabled = !state.barcodes;
  cameraButtons(ready);
}

// --- editing ------------------------------------------------------------------------------

/** @param {string} doing @param {(session: Session, info: ImageInfo) => Promise<ImageInfo>} edit */
async function editSelected(doing, edit) {
  const session = state.session;
  const info = selectedInfo();
  if (!session || !info) return;
  const label = pageLabel(info.id);
  const edited = await act(`${doing} ${label}`, () => edit(session, info));
  if (edited) {
    addImage(edited);
    say(`${doing} ${label}: done.`, "ok");
  }
}

function cropSelected() {
  const percent = Math.min(45, Math.max(1, Number(ui.cropMargin.value) || 10));
  ui.cropMargin.value = String(percent);
  return editSelected(`Cropping ${percent} % off`, (session, info) => {
    const dx = Math.round(info.width * percent / 100);
    const dy = Math.round(info.height * percent / 100);
    return session.crop(info.id, {left: dx, top: dy, right: info.width - dx,
      bottom: info.height - dy});
  });
}

async function deleteSelected() {
  const session = state.session;
  const info = selectedInfo();
  if (!session || !info) return;
  const index = state.images.indexOf(info);
  const label = pageLabel(info.id);
  const deleted = await act(`Deleting ${label}`, () => session.delete(info.id));
  if (deleted) {
    state.images = state.images.filter((image) => image.id !== info.id);
    const next = state.images[Math.min(index, state.images.length - 1)];
    state.selected = next?.id ?? null;
    render();
    if (next) state.thumbs.get(next.id)?.el.focus();
    say(`Deleted ${label}.`, "ok");
  }
}

/** Move a page to another place and tell the service. @param {string[]} order */
async function applyOrder(order) {
  const session = state.session;
  if (!session) return;
  const before = state.images;
  const byId = new Map(before.map((image) => [image.id, image]));
  state.images = order.map((id) => byId.get(id)).filter(Boolean);
  render();
  const done = await act("Reordering the pages", () => session.reorder(order));
  if (done) {
    say("Page order saved.", "ok");
  } else {
    refreshImages();  // back to what the service has
  }
}

/** @param {number} step */
function moveSelected(step) {
  const ids = state.images.map((image) => image.id);
  const from = ids.indexOf(state.selected ?? "");
  const to = from + step;
  if (from < 0 || to < 0 || to >= ids.length) return;
  ids.splice(to, 0, ...ids.splice(from, 1));
  applyOrder(ids).then(() => state.selected && state.thumbs.get(state.selected)?.el.focus());
}

// --- drag to reorder ----------------------------------------------------------------------

let dragId = /** @type {string|null} */ (null);

function clearDropMarks() {
  for (const el of ui.grid.querySelectorAll(".drop-before, .drop-after")) {
    el.classList.remove("drop-before", "drop-after");
  }
}

/** Where a drop on `target` puts the dragged page: at the target's place. */
function dropPlace(target) {
  const ids = state.images.map((image) => image.id);
  const from = ids.indexOf(dragId ?? "");
  const to = target ? ids.indexOf(target.dataset.id) : ids.length - 1;
  return {ids, from, to};
}

ui.grid.addEventListener("dragstart", (event) => {
  const thumb = event.target instanceof Element ? event.target.closest(".thumb") : null;
  if (!thumb || !event.dataTransfer) return;
  dragId = thumb.dataset.id;
  event.dataTransfer.effectAllowed = "move";
  event.dataTransfer.setData("text/plain", `scanbridge-page:${dragId}`);
  thumb.classList.add("dragging");
  select(dragId);
});

ui.grid.addEventListener("dragover", (event) => {
  if (!dragId || !event.dataTransfer) return;  // files are handled by the import area
  event.preventDefault();
  event.dataTransfer.dropEffect = "move";
  const target = event.target instanceof Element ? event.target.closest(".thumb") : null;
  clearDropMarks();
  if (target && target.dataset.id !== dragId) {
    const {from, to} = dropPlace(target);
    target.classList.add(from < to ? "drop-after" : "drop-before");
  }
});

ui.grid.addEventListener("dragleave", (event) => {
  if (event.relatedTarget instanceof Node && ui.grid.contains(event.relatedTarget)) return;
  clearDropMarks();
});

ui.grid.addEventListener("drop", (event) => {
  if (!dragId) return;
  event.preventDefault();
  event.stopPropagation();
  const target = event.target instanceof Element ? event.target.closest(".thumb") : null;
  const {ids, from, to} = dropPlace(target);
  clearDropMarks();
  dragId = null;
  if (from < 0 || to < 0 || from === to) return;
  ids.splice(to, 0, ...ids.splice(from, 1));
  applyOrder(ids);
});

ui.grid.addEventListener("dragend", () => {
  clearDropMarks();
  for (const el of ui.grid.querySelectorAll(".dragging")) el.classList.remove("dragging");
  dragId = null;
});

// --- selection by click and keyboard --------------------------------------------------------

ui.grid.addEventListener("click", (event) => {
  const thumb = event.target instanceof Element ? event.target.closest(".thumb") : null;
  if (thumb) select(thumb.dataset.id);
});

ui.grid.addEventListener("dblclick", (event) => {
  const thumb = event.target instanceof Element ? event.target.closest(".thumb") : null;
  const info = thumb && state.images.find((image) => image.id === thumb.dataset.id);
  if (info && state.session) {
    window.open(state.session.imageUrl(info.id, {etag: info.etag}), "_blank", "noopener");
  }
});

ui.grid.addEventListener("keydown", (event) => {
  const thumb = event.target instanceof Element ? event.target.closest(".thumb") : null;
  if (!thumb) return;
  const ids = state.images.map((image) => image.id);
  const index = ids.indexOf(thumb.dataset.id);
  const go = (to) => {
    if (to >= 0 && to < ids.length) select(ids[to], {focus: true});
  };
  switch (event.key) {
    case "Enter":
    case " ":
      select(thumb.dataset.id);
      break;
    case "ArrowLeft":
    case "ArrowUp":
      go(index - 1);
      break;
    case "ArrowRight":
    case "ArrowDown":
      go(index + 1);
      break;
    case "Home":
      go(0);
      break;
    case "End":
      go(ids.length - 1);
      break;
    case "Delete":
    case "Backspace":
      select(thumb.dataset.id);
      deleteSelected();
      break;
    default:
      return;
  }
  event.preventDefault();
});

// --- import -------------------------------------------------------------------------------

/** @param {Iterable<File>} files */
async function importFiles(files) {
  const session = state.session;
  const list = [...files];
  if (!session || list.length === 0) return;
  let total = 0;
  for (const file of list) {
    const images = await act(`Importing ${file.name || "the file"}`, () => session.import(file));
    if (!images) return;  // the error is shown; stop here
    for (const info of images) addImage(info);
    total += images.length;
  }
  say(`Imported ${total} page(s) from ${list.length} file(s).`, "ok");
  refreshImages();
}

/** @param {DragEvent} event */
const hasFiles = (event) => Boolean(event.dataTransfer?.types?.includes("Files"));

ui.dropzone.addEventListener("dragenter", (event) => {
  if (hasFiles(event)) ui.dropzone.classList.add("over");
});
ui.dropzone.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
  ui.dropzone.classList.add("over");
});
ui.dropzone.addEventListener("dragleave", (event) => {
  if (event.relatedTarget instanceof Node && ui.dropzone.contains(event.relatedTarget)) return;
  ui.dropzone.classList.remove("over");
});
ui.dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  event.stopPropagation();
  ui.dropzone.classList.remove("over");
  document.body.classList.remove("dragging-files");
  importFiles(event.dataTransfer?.files ?? []);
});
ui.dropzone.addEventListener("click", () => ui.importFile.click());
ui.dropzone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    ui.importFile.click();
  }
});
ui.importFile.addEventListener("change", async () => {
  const files = [...ui.importFile.files];
  ui.importFile.value = "";
  await importFiles(files);
});

// Files dropped anywhere else are imported too (and never open in the tab instead).
window.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  document.body.classList.add("dragging-files");
});
window.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) document.body.classList.remove("dragging-files");
});
window.addEventListener("drop", (event) => {
  document.body.classList.remove("dragging-files");
  if (!hasFiles(event)) return;
  event.preventDefault();
  importFiles(event.dataTransfer?.files ?? []);
});

// --- save ---------------------------------------------------------------------------------

/** @returns {string} the time now for file names, e.g. "2025-11-26-0942" */
function stamp() {
  return new Date().toISOString().slice(0, 16).replace("T", "-").replace(":", "");
}

/** @param {"pdf"|"tiff"} format */
async function saveAs(format) {
  const session = state.session;
  if (!session || state.images.length === 0) return;
  const file = await act(`Saving ${state.images.length} page(s) as ${format.toUpperCase()}`,
    () => session.save({format, filename: `scan-${stamp()}`}));
  if (!file) return;
  const url = URL.createObjectURL(file);
  ui.download.href = url;
  ui.download.download = file.name;
  ui.download.click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  say(`Saved ${file.name} (${Math.max(1, Math.round(file.size / 1024))} KB).`, "ok");
}

// --- upload -------------------------------------------------------------------------------

/** An error of the form, shown like the service's. @param {string} message */
function formError(message) {
  return Object.assign(new Error(message), {code: "invalid_argument"});
}

/** The receiver's URL from the form (http or https). @returns {string} */
function uploadUrl() {
  const text = ui.uploadUrl.value.trim();
  if (!text) throw formError("enter the URL of the server that receives the document");
  let url;
  try {
    url = new URL(text);
  } catch {
    throw formError(`${text} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw formError(`${text} is not an http or https URL`);
  }
  return url.href;
}

/** The form fields, from lines of name=value (blank lines and # comments skipped). */
function uploadFields() {
  /** @type {Record<string, string>} */
  const fields = {};
  String(ui.uploadFields.value).split(/\r?\n/).forEach((line, index) => {
    if (!line.trim() || line.trim().startsWith("#")) return;
    const at = line.indexOf("=");
    const name = at > 0 ? line.slice(0, at).trim() : "";
    if (!name) throw formError(`form fields, line ${index + 1}: "${line.trim()}" is not name=value`);
    fields[name] = line.slice(at + 1).trim();
  });
  return fields;
}

/** @param {number} bytes */
function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** @param {number} percent @param {string} text */
function showUploadProgress(percent, text) {
  ui.uploadProgress.value = Math.round(percent);
  ui.uploadProgressText.textContent = text;
}

/**
 * The end of an upload in the panel: the receiver's status and body, or the error.
 * @param {"done"|"error"} kind @param {string} badge @param {string} message
 * @param {string} [body]
 */
function showUploadResult(kind, badge, message, body = "") {
  ui.uploadResult.dataset.state = kind;
  ui.uploadStatus.textContent = badge;
  ui.uploadMessage.textContent = message;
  ui.uploadBody.textContent = body;
  ui.uploadBody.hidden = body === "";
  ui.uploadResult.hidden = false;
}

/** @param {unknown} error */
function showUploadError(error) {
  const e = /** @type {any} */ (error);
  const result = e?.details?.result;
  showUploadResult("error", String(e?.code ?? "error"), String(e?.message ?? error),
    result ? String(result.body ?? "") : "");
  ui.uploadResult.dataset.code = String(e?.code ?? "error");
}

async function startUpload() {
  const session = state.session;
  if (!session || state.upload || state.images.length === 0) return;
  let url, fields;
  try {
    url = uploadUrl();
    fields = uploadFields();
  } catch (error) {
    showUploadError(error);
    fail(error, "Uploading");
    ui.uploadUrl.focus();
    return;
  }
  const format = ui.uploadFormat.value;
  const pages = state.images.length;
  ui.uploadResult.hidden = true;
  delete ui.uploadResult.dataset.state;
  delete ui.uploadResult.dataset.code;
  showUploadProgress(0, `Preparing ${pages} page(s) as ${format.toUpperCase()}…`);
  say(`Uploading ${pages} page(s) to ${url}…`, "busy");
  const job = session.upload({
    url, format, fields, filename: `scan-${stamp()}`,
    onProgress: ({sent, total, percent, attempt}) => showUploadProgress(percent,
      `${attempt && attempt > 1 ? `Attempt ${attempt}: sent` : "Sent"} ${size(sent)} of ${size(total)}`),
    onRetry: ({attempt, delay, error}) => showUploadProgress(0, `Attempt ${attempt} failed ` +
      `(${error?.message ?? "no answer"}); trying again in ${delay.toFixed(1)} s…`),
  });
  state.upload = job;
  document.body.dataset.uploading = "1";
  updateButtons();
  job.started.then((record) => {
    // Only while nothing happened yet: the first attempt (even its retry) may be known
    // before the service's answer to the POST is.
    if (job.state === "queued" && !job.progress && !job.record?.attempts) {
      showUploadProgress(0, `Queued: ${record.files.length} file(s), ` +
        `${size(record.files.reduce((sum, file) => sum + file.bytes, 0))}`);
    }
  }, () => {});
  try {
    const record = await job.done;
    const status = record.result?.status ?? 0;
    const files = record.files.map((file) => file.name).join(", ");
    showUploadProgress(100, `Sent ${files} in ${record.attempts} attempt(s).`);
    showUploadResult("done", String(status), `The receiver answered HTTP ${status}.`,
      record.result?.body ?? "");
    say(`Uploaded ${files} to ${url}: HTTP ${status}.`, "ok");
  } catch (error) {
    const code = /** @type {any} */ (error)?.code;
    const attempts = job.record?.attempts ?? 0;
    showUploadProgress(Number(ui.uploadProgress.value) || 0, job.id === null ? "Not sent."
      : code === "cancelled" ? "Cancelled." : `Failed after ${attempts} attempt(s).`);
    showUploadError(error);
    fail(error, "Uploading");
  } finally {
    state.upload = null;
    document.body.dataset.uploading = "0";
    updateButtons();
  }
}

async function cancelUpload() {
  const job = state.upload;
  if (!job) return;
  ui.uploadCancel.disabled = true;
  try {
    await job.cancel();
  } catch (error) {
    fail(error, "Cancelling the upload");
    updateButtons();
  }
}

// --- OCR ----------------------------------------------------------------------------------

/** Fill the language list from the service. */
async function loadLanguages() {
  const session = state.session;
  if (!session) return;
  try {
    const {installed, default: preferred} = await session.ocrLanguages();
    fillSelect(ui.ocrLang, installed, (v) => String(v), preferred);
    ui.ocrLang.disabled = installed.length === 0;
    state.ocrReady = installed.length > 0;
    if (!state.ocrReady) ui.ocrLang.replaceChildren(new Option("no language installed", ""));
  } catch (error) {
    // Not worth the status line: the rest of the page works without OCR.
    ui.ocrLang.replaceChildren(new Option("OCR is not available", ""));
    ui.ocrLang.title = `${/** @type {any} */ (error)?.code ?? "error"}: ` +
      `${/** @type {any} */ (error)?.message ?? error}`;
    console.warn("Reading the OCR languages failed", error);
  }
  updateButtons();
}

/**
 * One of the OCR panel's links: shown with its URL, or hidden.
 * @param {HTMLAnchorElement} link @param {string|null} url
 */
function showLink(link, url) {
  link.hidden = url === null;
  if (url === null) link.removeAttribute("href");
  else link.href = url;
}

/** @param {number} percent @param {string} text */
function showOcrProgress(percent, text) {
  ui.ocrProgress.value = Math.round(percent);
  ui.ocrProgressText.textContent = text;
}

/**
 * The end of a job in its panel's result box.
 * @param {HTMLElement} box @param {HTMLElement} badge @param {HTMLElement} line
 * @param {"done"|"error"} kind @param {string} code @param {string} message
 */
function showJobResult(box, badge, line, kind, code, message) {
  box.dataset.state = kind;
  if (kind === "error") box.dataset.code = code;
  else delete box.dataset.code;
  badge.textContent = code;
  line.textContent = message;
  box.hidden = false;
}

/** @param {"all"|"selected"} scope */
async function startOcr(scope) {
  const session = state.session;
  if (!session || state.ocr || state.images.length === 0) return;
  const picked = scope === "selected" ? selectedInfo() : null;
  if (scope === "selected" && !picked) return;
  const lang = ui.ocrLang.value;
  const output = ["text", ...[...ui.ocrForm.querySelectorAll('input[name="ocr-output"]:checked')]
    .map((box) => box.value)];
  const count = picked ? 1 : state.images.length;
  ui.ocrResult.hidden = true;
  ui.ocrPages.replaceChildren();
  for (const link of [ui.ocrPdf, ui.ocrHocr, ui.ocrText]) showLink(link, null);
  showOcrProgress(0, `Starting: ${count} page(s) in ${lang}…`);
  say(`Reading the text of ${picked ? pageLabel(picked.id) : `${count} page(s)`}…`, "busy");
  const job = session.ocr({
    images: picked ? [picked.id] : undefined, lang, output, rotate: ui.ocrRotate.checked,
    onProgress: ({done, total, percent}) => showOcrProgress(percent,
      `Read ${done} of ${total} page(s)…`),
  });
  state.ocr = job;
  document.body.dataset.ocr = "1";
  updateButtons();
  try {
    const result = await job.done;
    const words = result.pages.reduce((sum, page) => sum + (page.text.match(/\S+/g) ?? []).length, 0);
    showOcrProgress(100, `Read ${result.pages.length} page(s).`);
    showLink(ui.ocrText, job.fileUrl("text"));
    if (result.files.pdf) {
      showLink(ui.ocrPdf, job.fileUrl("pdf", {download: true, filename: `scan-${stamp()}-ocr`}));
    }
    if (result.files.hocr) showLink(ui.ocrHocr, job.fileUrl("hocr"));
    ui.ocrPages.replaceChildren(...result.pages.map((page) => {
      const section = document.createElement("section");
      section.className = "ocr-page";
      section.dataset.image = page.image;
      const at = state.images.findIndex((image) => image.id === page.image);
      const title = document.createElement("h3");
      title.textContent = [`Page ${at >= 0 ? at + 1 : page.index + 1}`,
        page.rotation ? `turned ${page.rotation}°` : "",
        page.confidence === null ? "no text found" : `${Math.round(page.confidence)} % sure`,
        page.words ? `${page.words.length} word box(es)` : ""].filter(Boolean).join(" · ");
      const text = document.createElement("pre");
      text.textContent = page.text.trim() || "(no text)";
      section.append(title, text);
      return section;
    }));
    showJobResult(ui.ocrResult, ui.ocrStatus, ui.ocrMessage, "done", result.lang,
      `${words} word(s) on ${result.pages.length} page(s).`);
    say(`Read ${words} word(s) on ${result.pages.length} page(s).`, "ok");
  } catch (error) {
    const e = /** @type {any} */ (error);
    showOcrProgress(Number(ui.ocrProgress.value) || 0,
      e?.code === "cancelled" ? "Cancelled." : "Stopped.");
    showJobResult(ui.ocrResult, ui.ocrStatus, ui.ocrMessage, "error", String(e?.code ?? "error"),
      String(e?.message ?? error));
    if (e?.code !== "cancelled") fail(error, "Reading the text");
    else say("Text recognition cancelled.", "ok");
  } finally {
    state.ocr = null;
    document.body.dataset.ocr = "0";
    updateButtons();
  }
}

/** @param {OcrJob|BarcodeJob|null} job @param {HTMLButtonElement} button @param {string} what */
async function cancelJob(job, button, what) {
  if (!job) return;
  button.disabled = true;
  try {
    await job.cancel();
  } catch (error) {
    fail(error, `Cancelling ${what}`);
    updateButtons();
  }
}

// --- barcodes -----------------------------------------------------------------------------

/** @param {number} percent @param {string} text */
function showBarcodeProgress(percent, text) {
  ui.barcodeProgress.value = Math.round(percent);
  ui.barcodeProgressText.textContent = text;
}

async function startBarcodes() {
  const session = state.session;
  if (!session || state.barcodes || state.images.length === 0) return;
  const formats = ui.barcodeFormat.value ? ui.barcodeFormat.value.split(",") : undefined;
  // The pages as they are now: the boxes belong to these versions of them.
  const pages = new Map(state.images.map((info) => [info.id, info]));
  ui.barcodeResult.hidden = true;
  showBarcodeProgress(0, `Starting: ${pages.size} page(s)…`);
  say(`Looking for barcodes on ${pages.size} page(s)…`, "busy");
  const job = session.barcodes({
    formats,
    onProgress: ({done, total, percent}) => showBarcodeProgress(percent,
      `Read ${done} of ${total} page(s)…`),
  });
  state.barcodes = job;
  document.body.dataset.barcodes = "1";
  updateButtons();
  try {
    const result = await job.done;
    state.codes.clear();
    const items = [];
    for (const page of result.pages) {
      const info = pages.get(page.image);
      if (info && page.barcodes.length) {
        state.codes.set(page.image, {etag: info.etag, width: info.width, height: info.height,
          barcodes: page.barcodes});
      }
      for (const code of page.barcodes) items.push(codeItem(code, page.image, page.index));
    }
    ui.barcodeList.replaceChildren(...items);
    render();
    showBarcodeProgress(100, `Read ${result.pages.length} page(s).`);
    const found = `${result.count} code(s) on ${result.pages.length} page(s)`;
    showJobResult(ui.barcodeResult, ui.barcodeStatus, ui.barcodeMessage, "done",
      String(result.count), result.count ? `Found ${found}.` : "No codes found.");
    say(`Found ${found}.`, "ok");
  } catch (error) {
    const e = /** @type {any} */ (error);
    showBarcodeProgress(Number(ui.barcodeProgress.value) || 0,
      e?.code === "cancelled" ? "Cancelled." : "Stopped.");
    ui.barcodeList.replaceChildren();
    showJobResult(ui.barcodeResult, ui.barcodeStatus, ui.barcodeMessage, "error",
      String(e?.code ?? "error"), String(e?.message ?? error));
    if (e?.code !== "cancelled") fail(error, "Reading barcodes");
    else say("Barcode reading cancelled.", "ok");
  } finally {
    state.barcodes = null;
    document.body.dataset.barcodes = "0";
    updateButtons();
  }
}

/** A line of the list of codes. @param {Barcode} code @param {string} image @param {number} index */
function codeItem(code, image, index) {
  const item = document.createElement("li");
  item.dataset.image = image;
  item.dataset.format = code.format;
  const format = document.createElement("span");
  format.className = "format";
  format.textContent = code.format;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = code.text;
  const where = document.createElement("span");
  where.className = "where";
  const at = state.images.findIndex((info) => info.id === image);
  where.textContent = `page ${at >= 0 ? at + 1 : index + 1}`;
  item.append(format, " ", text, " · ", where);
  item.title = `${code.format} on ${where.textContent}: ${code.text}`;
  return item;
}

/**
 * The codes found on a page, as boxes over its thumbnail: an SVG whose viewBox is the
 * page's pixels, sized to the image as shown (so the points need no scaling of their own).
 * A page edited since it was read loses its boxes.
 * @param {{frame: HTMLElement, img: HTMLImageElement, overlay: SVGSVGElement|null}} thumb
 * @param {ImageInfo} info
 */
function drawCodes(thumb, info) {
  const found = state.codes.get(info.id);
  if (!found || found.etag !== info.etag) {
    if (found) state.codes.delete(info.id);
    thumb.overlay?.remove();
    thumb.overlay = null;
    return;
  }
  const overlay = /** @type {SVGSVGElement} */ (document.createElementNS(SVG, "svg"));
  overlay.classList.add("codes-overlay");
  overlay.setAttribute("viewBox", `0 0 ${found.width} ${found.height}`);
  overlay.setAttribute("preserveAspectRatio", "none");
  overlay.setAttribute("aria-hidden", "true");
  for (const code of found.barcodes) {
    const box = document.createElementNS(SVG, "polygon");
    box.classList.add("code-box");
    box.setAttribute("points", code.points.map(([x, y]) => `${x},${y}`).join(" "));
    box.dataset.format = code.format;
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${code.format}: ${code.text}`;
    box.append(title);
    overlay.append(box);
  }
  thumb.overlay?.remove();
  thumb.overlay = overlay;
  thumb.frame.append(overlay);
  sizeOverlay(thumb);
}

/** The overlay as large as the thumbnail as shown. @param {{img: HTMLImageElement,
 *  overlay: SVGSVGElement|null}} thumb */
function sizeOverlay(thumb) {
  if (!thumb.overlay) return;
  thumb.overlay.setAttribute("width", String(thumb.img.clientWidth));
  thumb.overlay.setAttribute("height", String(thumb.img.clientHeight));
}

// A thumbnail's size follows the grid's column width.
const resized = new ResizeObserver(() => {
  for (const thumb of state.thumbs.values()) sizeOverlay(thumb);
});
resized.observe(ui.grid);

// --- camera -------------------------------------------------------------------------------

/** The camera list. @param {Array<{id: string, name?: string, kind?: string}>} cameras */
function fillCameras(cameras) {
  const previous = ui.camera.value;
  if (cameras.length === 0) {
    ui.camera.replaceChildren(new Option("No camera found", ""));
    ui.camera.disabled = true;
  } else {
    ui.camera.replaceChildren(...cameras.map((c) => new Option(
      `${c.name || c.id}${c.kind ? ` (${c.kind})` : ""}`, c.id)));
    ui.camera.disabled = false;
    if (cameras.some((c) => c.id === previous)) ui.camera.value = previous;
  }
  if (state.live && state.live.source !== ui.camera.value) stopLive();
}

/** @param {"off"|"starting"|"live"|"error"} name @param {string} text */
function showLive(name, text) {
  ui.cameraLive.dataset.state = name;
  ui.cameraLiveHint.textContent = text;
}

/** Start the live view of the camera picked (again, with the fps picked now). */
function startLive() {
  const session = state.session;
  const source = ui.camera.value;
  if (!session || session.closed || !source) return;
  stopLive();
  showLive("starting", `Opening ${source}…`);
  const view = session.liveView(ui.cameraView, {source, fps: Number(ui.cameraFps.value) || undefined});
  state.live = view;
  document.body.dataset.live = "1";
  updateButtons();
  view.started.then(({width, height}) => {
    if (state.live !== view) return;
    showLive("live", "");
    ui.cameraView.alt = `Live view of ${source}, ${width}×${height}`;
    say(`Live view of ${source}: ${width}×${height}.`, "ok");
  }, () => {});  // ended says why
  view.ended.catch((error) => {
    if (state.live !== view) return;
    state.live = null;
    document.body.dataset.live = "0";
    showLive("error", `The live view ended: ${error?.code ?? "error"}.`);
    if (error?.code !== "session_closed") fail(error, "The live view");
    updateButtons();
  });
}

/** Stop the live view: the camera is released once nobody else uses it. */
function stopLive() {
  const view = state.live;
  if (!view) return;
  state.live = null;
  view.stop();
  document.body.dataset.live = "0";
  showLive("off", "Live view is off.");
  updateButtons();
}

/** Capture frames into the session: they arrive as pages, like a scan's. */
async function startCapture() {
  const session = state.session;
  const source = ui.camera.value;
  if (!session || !source || state.capture) return;
  const frames = Math.min(100, Math.max(1, Math.floor(Number(ui.cameraFrames.value) || 1)));
  const interval = Math.min(60, Math.max(0, Number(ui.cameraInterval.value) || 0));
  ui.cameraFrames.value = String(frames);
  ui.cameraInterval.value = String(interval);
  let stored = 0;
  ui.cameraProgressText.textContent = `Capturing ${frames} frame(s)…`;
  say(`Capturing ${frames} frame(s) from ${source}…`, "busy");
  const job = session.capture({
    source, frames, interval, document: ui.cameraDocument.checked,
    onPage: (info) => {
      stored += 1;
      addImage(info);
      ui.cameraProgressText.textContent = `Frame ${stored} of ${frames} stored.`;
    },
  });
  state.capture = job;
  document.body.dataset.capturing = "1";
  updateButtons();
  try {
    const record = await job.done;
    const n = record.pages ?? stored;
    ui.cameraProgressText.textContent = record.state === "cancelled"
      ? `Cancelled; ${n} frame(s) kept.` : `Captured ${n} frame(s).`;
    say(ui.cameraProgressText.textContent, "ok");
  } catch (error) {
    ui.cameraProgressText.textContent = "Stopped.";
    fail(error, "Capturing");
  } finally {
    state.capture = null;
    document.body.dataset.capturing = "0";
    updateButtons();
    refreshImages();
  }
}

async function cancelCapture() {
  const job = state.capture;
  if (!job) return;
  ui.cameraCancel.disabled = true;
  try {
    await job.cancel();
  } catch (error) {
    fail(error, "Cancelling the capture");
    updateButtons();
  }
}

/** @param {boolean} ready */
function cameraButtons(ready) {
  const camera = ready && Boolean(ui.camera.value);
  ui.cameraStart.disabled = !camera || Boolean(state.live);
  ui.cameraStop.disabled = !state.live;
  ui.cameraCapture.disabled = !camera || Boolean(state.capture);
  ui.cameraCancel.disabled = !state.capture;
}

// --- wiring -------------------------------------------------------------------------------

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  startScan();
});
ui.cancel.addEventListener("click", cancelScan);
ui.source.addEventListener("change", () => {
  loadOptions();
  updateButtons();
});
ui.refreshSources.addEventListener("click", () => loadSources({force: true}));
ui.batch.addEventListener("change", () => {
  if (ui.batch.checked && !fields.scanSource.hidden &&
      [...ui.scanSource.options].some((o) => o.value === "adf")) {
    ui.scanSource.value = "adf";  // a batch needs the document feeder
  }
  updateButtons();
});
ui.rotateLeft.addEventListener("click", () =>
  editSelected("Rotating left", (session, info) => session.rotate(info.id, -90)));
ui.rotateRight.addEventListener("click", () =>
  editSelected("Rotating right", (session, info) => session.rotate(info.id, 90)));
ui.crop.addEventListener("click", cropSelected);
ui.undo.addEventListener("click", () =>
  editSelected("Undoing the last edit of", (session, info) => session.undo(info.id)));
ui.delete.addEventListener("click", deleteSelected);
ui.moveLeft.addEventListener("click", () => moveSelected(-1));
ui.moveRight.addEventListener("click", () => moveSelected(1));
ui.savePdf.addEventListener("click", () => saveAs("pdf"));
ui.saveTiff.addEventListener("click", () => saveAs("tiff"));
ui.uploadForm.addEventListener("submit", (event) => {
  event.preventDefault();
  startUpload();
});
ui.uploadCancel.addEventListener("click", cancelUpload);
ui.ocrForm.addEventListener("submit", (event) => {
  event.preventDefault();
  startOcr("all");
});
ui.ocrSelected.addEventListener("click", () => startOcr("selected"));
ui.ocrCancel.addEventListener("click", () => cancelJob(state.ocr, ui.ocrCancel, "the OCR"));
ui.barcodeForm.addEventListener("submit", (event) => {
  event.preventDefault();
  startBarcodes();
});
ui.barcodeCancel.addEventListener("click", () =>
  cancelJob(state.barcodes, ui.barcodeCancel, "the barcode reading"));
ui.cameraStart.addEventListener("click", startLive);
ui.cameraStop.addEventListener("click", stopLive);
ui.camera.addEventListener("change", () => {
  if (state.live) startLive();  // the view follows the camera picked
  updateButtons();
});
ui.cameraFps.addEventListener("change", () => {
  if (state.live) startLive();
});
ui.cameraForm.addEventListener("submit", (event) => {
  event.preventDefault();
  startCapture();
});
ui.cameraCancel.addEventListener("click", () => cancelCapture());

/** @param {"connecting"|"connected"|"reconnecting"|"closed"|"offline"} name @param {string} text */
function connectionState(name, text) {
  ui.connection.dataset.state = name;
  ui.connection.textContent = text;
}

async function main() {
  document.body.dataset.scanning = "0";
  document.body.dataset.uploading = "0";
  document.body.dataset.ocr = "0";
  document.body.dataset.barcodes = "0";
  document.body.dataset.live = "0";
  document.body.dataset.capturing = "0";
  let session;
  try {
    // Same origin as this page: the page's CSP (connect-src 'self') allows only that.
    session = await connect({url: location.origin});
  } catch (error) {
    connectionState("offline", "not connected");
    fail(error, "Connecting to Scanbridge");
    return;
  }
  state.session = session;
  ui.sessionId.textContent = `session ${session.id}`;
  connectionState("connecting", "connected, events starting…");
  session.on("buffer.changed", () => refreshImages());
  session.on("events.lost", () => refreshImages());
  session.on("events.connected", () => connectionState("connected", "connected"));
  session.on("events.disconnected", (event) =>
    connectionState("reconnecting", `reconnecting in ${event.data.retry_in} s…`));
  session.on("buffer.import", (event) => {
    const {done, total} = event.data ?? {};
    if (total > 1) say(`Importing: page ${done} of ${total}…`, "busy");
  });
  session.on("session.closed", (event) => {
    connectionState("closed", "session closed");
    state.images = [];
    render();
    say(`The session was closed (${event.data?.reason ?? "by the service"}). ` +
      "Reload the page to start a new one.", "error");
    ui.status.dataset.code = "session_closed";
    updateButtons();
  });
  await refreshImages();
  loadLanguages();      // in parallel: the OCR workers may still be starting
  await loadSources();  // sets body[data-ready] once the sources are listed
}

main();
