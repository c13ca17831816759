// The Scanbridge demo: scan, capture from a camera (with its live view), see pages arrive,
// edit, reorder, import, save, upload, read text (OCR) and barcodes, through /scanbridge.js
// only. Runs under the page's strict CSP (no inline script or style). Each panel is a
// module of this folder; this one connects and starts them.
import { connect } from "/scanbridge.js";
import "./camera.js";
import "./editing.js";
import "./importing.js";
import { refreshImages, render } from "./pages.js";
import { loadLanguages } from "./recognition.js";
import "./save.js";
import { loadSources } from "./scan.js";
import { fail, say, state, ui, updateButtons } from "./ui.js";
import "./upload.js";

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
