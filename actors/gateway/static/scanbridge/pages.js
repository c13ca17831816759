/**
 * The page half of a Session: who the session is (id, token, the service's URL) and its
 * pages (images): the list, URLs for `<img>`, edits, order, deletion, documents, import.
 * Session (session.js) extends it with scans, jobs, events and the session's life.
 * @module scanbridge/pages
 */

import { ScanbridgeError } from "./errors.js";
import { bareEtag, dispositionName, idOf, importType, sessionCall, sessionPath } from "./http.js";

/** @typedef {import("./types.js").ImageInfo} ImageInfo */
/** @typedef {import("./types.js").EditOp} EditOp */
/** @typedef {import("./http.js").RequestOptions} RequestOptions */

/** The part of {@link Session} that handles its pages; use a Session. */
export class SessionPages {
  /** @type {string} */ id;
  /** @type {string} the secret of the session; also in image and thumbnail URLs */ token;
  /** @type {string} the service's base URL */ url;

  #path;

  /** @param {{url: string, id: string, token: string}} init */
  constructor({url, id, token}) {
    this.url = url;
    this.id = id;
    this.token = token;
    this.#path = sessionPath(this);
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {RequestOptions} [options]
   */
  #call(method, path, options = {}) {
    return sessionCall(this, method, path, options);
  }

  /**
   * The session's images in page order.
   * @returns {Promise<ImageInfo[]>}
   */
  async images() {
    return this.#call("GET", `${this.#path}/images`);
  }

  /**
   * One image's info, with its edit `history`.
   * @param {string} id
   * @returns {Promise<ImageInfo>}
   */
  async imageInfo(id) {
    return this.#call("GET", `${this.#path}/images/${encodeURIComponent(id)}/info`);
  }

  /**
   * The URL of an image, for `<img src>` or a download: the token is in the query, and with
   * the etag (`v=`) the browser may cache it for good (the URL changes with each edit).
   * @param {string|ImageInfo} image             an id, or an info (its etag is then used)
   * @param {{format?: "jpeg"|"png"|"tiff"|"bmp"|"gif", width?: number, height?: number,
   *          quality?: number, etag?: string}} [options]  without format: as stored
   * @returns {string}
   */
  imageUrl(image, {format, width, height, quality, etag} = {}) {
    const url = new URL(`${this.url}${this.#path}/images/${encodeURIComponent(idOf(image))}`);
    const params = {format, width, height, quality};
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    return this.#signed(url, etag ?? (typeof image === "object" ? image?.etag : undefined));
  }

  /**
   * The URL of an image's JPEG thumbnail (see {@link Session#imageUrl} for token and etag).
   * @param {string|ImageInfo} image
   * @param {{size?: number, etag?: string}} [options]  size: the longer side in pixels (200)
   * @returns {string}
   */
  thumbnailUrl(image, {size = 200, etag} = {}) {
    const url = new URL(
      `${this.url}${this.#path}/images/${encodeURIComponent(idOf(image))}/thumbnail`);
    url.searchParams.set("size", String(size));
    return this.#signed(url, etag ?? (typeof image === "object" ? image?.etag : undefined));
  }

  /** @param {URL} url @param {string|undefined} etag @returns {string} */
  #signed(url, etag) {
    if (etag) url.searchParams.set("v", bareEtag(etag));
    url.searchParams.set("token", this.token);
    return url.href;
  }

  /**
   * Edit an image: the ops apply in order, as one step (one undo takes them all back).
   * @param {string} id
   * @param {EditOp|EditOp[]} ops
   * @returns {Promise<ImageInfo>}  the new info (new etag)
   */
  async edit(id, ops) {
    return this.#call("POST", `${this.#path}/images/${encodeURIComponent(id)}/ops`,
      {json: Array.isArray(ops) ? ops : [ops]});
  }

  /**
   * @param {string} id
   * @param {number} angle          degrees clockwise (-90 turns left)
   * @returns {Promise<ImageInfo>}
   */
  rotate(id, angle) {
    return this.edit(id, [{op: "rotate", angle}]);
  }

  /** Upside down. @param {string} id @returns {Promise<ImageInfo>} */
  flip(id) {
    return this.edit(id, [{op: "flip"}]);
  }

  /** Left to right. @param {string} id @returns {Promise<ImageInfo>} */
  mirror(id) {
    return this.edit(id, [{op: "mirror"}]);
  }

  /**
   * Keep a box of the image, in pixels (right and bottom exclusive).
   * @param {string} id
   * @param {{left: number, top: number, right: number, bottom: number}} box
   * @returns {Promise<ImageInfo>}
   */
  crop(id, {left, top, right, bottom}) {
    return this.edit(id, [{op: "crop", left, top, right, bottom}]);
  }

  /**
   * Take back the image's last edit.
   * @param {string} id
   * @returns {Promise<ImageInfo>}
   */
  async undo(id) {
    return this.#call("POST", `${this.#path}/images/${encodeURIComponent(id)}/undo`);
  }

  /**
   * Set the page order.
   * @param {string[]} ids          every image id of the session, once
   * @returns {Promise<string[]>}   the order now
   */
  async reorder(ids) {
    return (await this.#call("PUT", `${this.#path}/order`, {json: {order: ids}})).order;
  }

  /**
   * Delete one image or several.
   * @param {string|string[]} ids
   * @returns {Promise<string[]>}   the deleted ids
   */
  async delete(ids) {
    if (typeof ids === "string") {
      return (await this.#call("DELETE",
        `${this.#path}/images/${encodeURIComponent(ids)}`)).deleted;
    }
    if (!Array.isArray(ids)) {
      throw new ScanbridgeError("invalid_argument", "delete() takes an image id or a list of " +
        "them (deleteAll() deletes every image)");
    }
    if (ids.length === 0) return [];
    return (await this.#call("DELETE", `${this.#path}/images`, {json: {images: ids}})).deleted;
  }

  /**
   * Delete every image of the session.
   * @returns {Promise<string[]>}   the deleted ids
   */
  async deleteAll() {
    return (await this.#call("DELETE", `${this.#path}/images`)).deleted;
  }

  /**
   * Make a document of the images. Several JPEG/PNG/BMP pages come as one zip; so do the
   * parts of a document split by separator barcodes (`split_by: "barcode"`): one PDF (or
   * TIFF) per part.
   * @param {object} [options]
   * @param {string[]} [options.images]   ids, in this order (default: all, in page order)
   * @param {"pdf"|"tiff"|"jpeg"|"png"|"bmp"|"gif"} [options.format]
   * @param {string} [options.filename]   the download name (its extension is set by format)
   * @param {string} [options.title]      PDF metadata, also author, subject, keywords
   * @param {string} [options.author]
   * @param {string} [options.subject]
   * @param {string} [options.keywords]
   * @param {boolean} [options.pdfa]
   * @param {"auto"|"jpeg"|"lossless"} [options.compression]
   * @param {number} [options.quality]
   * @param {"barcode"} [options.split_by]  a page with a separator barcode starts a new part
   * @param {{formats?: string[], pattern?: string, keep?: boolean}} [options.separator]
   *   which barcodes separate (formats; pattern: a regular expression their text must
   *   match); keep: the separator pages stay in the parts (default: dropped)
   * @param {AbortSignal} [options.signal]
   * @returns {Promise<File>}  a File: a Blob with `name` (from Content-Disposition) and `type`
   */
  async save({format = "pdf", signal, ...fields} = {}) {
    /** @type {Object<string, unknown>} */
    const body = {format};
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined) body[key] = value;
    }
    const response = await this.#call("POST", `${this.#path}/documents`,
      {json: body, signal, raw: true});
    const blob = await response.blob();
    /** @type {Record<string, string>} */
    const extensions = {jpeg: "jpg", tiff: "tif"};
    const zipped = (response.headers.get("Content-Type") ?? "").startsWith("application/zip");
    const fallback = `scan.${zipped ? "zip" : extensions[format] ?? format}`;
    const name = dispositionName(response.headers.get("Content-Disposition")) ?? fallback;
    return new File([blob], name, {type: blob.type || response.headers.get("Content-Type") || ""});
  }

  /**
   * Import a file (JPEG, PNG, TIFF, BMP, GIF or PDF); multi-page files give one image per page.
   * @param {Blob|File} file
   * @param {{password?: string, dpi?: number, index?: number, signal?: AbortSignal}} [options]
   *   password: of an encrypted PDF (sent in a header, not the URL); dpi: for pages that do
   *   not say; index: insert at this position (default: at the end)
   * @returns {Promise<ImageInfo[]>}
   */
  async import(file, {password, dpi, index, signal} = {}) {
    /** @type {Object<string, string>} */
    const headers = {"Content-Type": importType(file)};
    if (password) headers["X-Scanbridge-Password"] = password;
    const answer = await this.#call("POST", `${this.#path}/images`,
      {query: {dpi, index}, body: file, headers, signal});
    return answer.images;
  }
}
