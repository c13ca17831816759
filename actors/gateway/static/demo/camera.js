// The Camera panel: a camera's live view, and frames captured as pages.
import { addImage, refreshImages } from "./pages.js";
import { cancelJob, fail, onButtons, say, state, ui, updateButtons } from "./ui.js";

/** The camera list. @param {Array<{id: string, name?: string, kind?: string}>} cameras */
export function fillCameras(cameras) {
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

/** @param {boolean} ready */
function cameraButtons(ready) {
  const camera = ready && Boolean(ui.camera.value);
  ui.cameraStart.disabled = !camera || Boolean(state.live);
  ui.cameraStop.disabled = !state.live;
  ui.cameraCapture.disabled = !camera || Boolean(state.capture);
  ui.cameraCancel.disabled = !state.capture;
}

onButtons(cameraButtons);

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
ui.cameraCancel.addEventListener("click", () =>
  cancelJob(state.capture, ui.cameraCancel, "the capture"));
