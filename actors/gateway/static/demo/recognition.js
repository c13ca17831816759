// The OCR and Barcodes panels: the text of pages (with links to the searchable PDF and
// hOCR) and the codes on them (drawn over the thumbnails by pages.js).
import { pageLabel, render, selectedInfo } from "./pages.js";
import { cancelJob, fail, fillSelect, onButtons, say, showBar, stamp, state, ui, updateButtons }
  from "./ui.js";

/** @typedef {import("/scanbridge.js").OcrJob} OcrJob */
/** @typedef {import("/scanbridge.js").BarcodeJob} BarcodeJob */
/** @typedef {import("/scanbridge.js").Barcode} Barcode */

/** Fill the language list from the service. */
export async function loadLanguages() {
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
  showBar(ui.ocrProgress, ui.ocrProgressText, percent, text);
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

// --- barcodes -----------------------------------------------------------------------------

/** @param {number} percent @param {string} text */
function showBarcodeProgress(percent, text) {
  showBar(ui.barcodeProgress, ui.barcodeProgressText, percent, text);
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

onButtons((ready) => {
  const has = state.images.length > 0;
  const picked = ready && state.images.some((image) => image.id === state.selected);
  ui.ocrAll.disabled = !ready || !has || !state.ocrReady || Boolean(state.ocr);
  ui.ocrSelected.disabled = !picked || !state.ocrReady || Boolean(state.ocr);
  ui.ocrCancel.disabled = !state.ocr;
  ui.barcodeRead.disabled = !ready || !has || Boolean(state.barcodes);
  ui.barcodeCancel.disabled = !state.barcodes;
});

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
