// The Scanner and Settings panels: the sources, the settings form built from the source's
// aliases, and the scan with its progress.
import { addImage, refreshImages } from "./pages.js";
import { fillCameras } from "./camera.js";
import { $, cancelJob, fail, fillSelect, onButtons, say, showBar, state, ui, updateButtons }
  from "./ui.js";

const COMMON_DPI = [75, 100, 150, 200, 240, 300, 400, 600, 1200];
const LABELS = {
  mode: {color: "Colour", gray: "Grayscale", lineart: "Black & white"},
  source: {flatbed: "Flatbed", adf: "Document feeder", duplex: "Feeder, both sides"},
  page_size: {max: "Full area"},
};
const fields = {
  resolution: $("field-resolution"), mode: $("field-mode"),
  scanSource: $("field-scan-source"), pageSize: $("field-page-size"),
};

export async function loadSources({force = false} = {}) {
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
  showBar(ui.progress, ui.progressText, percent, text);
}

async function cancelScan() {
  if (!state.job) return;
  say("Cancelling the scan…", "busy");
  await cancelJob(state.job, ui.cancel, "the scan");
}

onButtons((ready) => {
  const scanning = Boolean(state.job);
  ui.scan.disabled = !ready || scanning || !ui.source.value;
  ui.cancel.disabled = !scanning;
  ui.pages.disabled = ui.batch.checked;
});

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
