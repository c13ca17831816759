// The pages panel: the thumbnails of the session's pages (with the barcodes found on them),
// kept up to date, and the selection.
import { fail, state, ui, updateButtons } from "./ui.js";

/** @typedef {import("/scanbridge.js").ImageInfo} ImageInfo */
/** @typedef {import("/scanbridge.js").Session} Session */

const SVG = "http://www.w3.org/2000/svg";
const THUMB_SIZE = 200;   // px, the thumbnails' longer side

// Counts addImage calls: a page list requested before one of them is stale on arrival.
let localChanges = 0;

/** Insert or update one page (from onPage, an edit, an import) without a round trip. */
export function addImage(/** @type {ImageInfo} */ info) {
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
export function refreshImages() {
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
export function render() {
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
export function select(id, {focus = false} = {}) {
  state.selected = id;
  for (const [key, thumb] of state.thumbs) {
    thumb.el.classList.toggle("selected", key === id);
    thumb.el.setAttribute("aria-selected", String(key === id));
  }
  if (focus && id) state.thumbs.get(id)?.el.focus();
  updateButtons();
}

export function selectedInfo() {
  return state.images.find((image) => image.id === state.selected) ?? null;
}

export function pageLabel(id) {
  return `page ${state.images.findIndex((image) => image.id === id) + 1}`;
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
