// The Import panel: files picked or dropped (anywhere on the page) become pages.
import { addImage, refreshImages } from "./pages.js";
import { act, say, state, ui } from "./ui.js";

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
