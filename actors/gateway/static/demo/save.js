// Save: the pages as one PDF or TIFF file, downloaded.
import { act, onButtons, say, stamp, state, ui } from "./ui.js";

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

onButtons((ready) => {
  const has = state.images.length > 0;
  ui.savePdf.disabled = !ready || !has;
  ui.saveTiff.disabled = !ready || !has;
});

ui.savePdf.addEventListener("click", () => saveAs("pdf"));
ui.saveTiff.addEventListener("click", () => saveAs("tiff"));
