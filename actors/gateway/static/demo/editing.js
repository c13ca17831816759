// The edit toolbar and the page order: rotate, crop, undo, delete, move; drag a thumbnail
// to move it; the keyboard in the grid.
import { addImage, pageLabel, refreshImages, render, select, selectedInfo } from "./pages.js";
import { act, onButtons, say, state, ui } from "./ui.js";

/** @typedef {import("/scanbridge.js").ImageInfo} ImageInfo */
/** @typedef {import("/scanbridge.js").Session} Session */

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

onButtons((ready) => {
  const index = state.images.findIndex((image) => image.id === state.selected);
  const picked = ready && index >= 0;
  for (const button of [ui.rotateLeft, ui.rotateRight, ui.crop, ui.undo, ui.delete]) {
    button.disabled = !picked;
  }
  ui.moveLeft.disabled = !picked || index === 0;
  ui.moveRight.disabled = !picked || index === state.images.length - 1;
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
