// The "Send to a URL" panel: the service uploads the pages, with retries.
import { cancelJob, fail, onButtons, say, showBar, stamp, state, ui, updateButtons }
  from "./ui.js";

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
  showBar(ui.uploadProgress, ui.uploadProgressText, percent, text);
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

onButtons((ready) => {
  ui.upload.disabled = !ready || state.images.length === 0 || Boolean(state.upload);
  ui.uploadCancel.disabled = !state.upload;
});

ui.uploadForm.addEventListener("submit", (event) => {
  event.preventDefault();
  startUpload();
});
ui.uploadCancel.addEventListener("click", () => cancelJob(state.upload, ui.uploadCancel,
  "the upload"));
