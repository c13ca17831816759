/**
 * The tab's session in sessionStorage, so that a reload takes it back (connect({reuse})).
 * @module scanbridge/storage
 */

/**
 * @typedef {object} StoredSession
 * @property {string} url
 * @property {string} id
 * @property {string} token
 * @property {string} [epoch]
 * @property {number} [seq]
 */

/** @param {string} key @returns {StoredSession|null} */
export function loadStored(key) {
  try {
    const value = JSON.parse(globalThis.sessionStorage?.getItem(key) ?? "null");
    return value && typeof value.id === "string" && typeof value.token === "string"
      ? value : null;
  } catch {
    return null;  // no storage (sandboxed frame, privacy settings) or a bad value
  }
}

/** @param {string} key @param {StoredSession|null} value */
export function saveStored(key, value) {
  try {
    if (value === null) globalThis.sessionStorage?.removeItem(key);
    else globalThis.sessionStorage?.setItem(key, JSON.stringify(value));
  } catch {
    // storage full or not available: the session just will not survive a reload
  }
}

