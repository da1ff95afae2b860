// The site's manifest.json (written by build/build_site.py) and integrity-checked fetches.
// Every file the page loads itself (models, the Python runtime wheel) is checked against its sha256
// before use, so a truncated download or a stale cache shows as a clear error, not as wrong results.
// A file listed with a gzipped copy (the models: hosts such as GitHub Pages send them uncompressed) is downloaded as
// that copy and inflated here where the browser can (DecompressionStream), then checked like the file itself.
import { ERROR_CODES, LensError } from './errors.js';
import { timed } from './load-timing.js';

// The site root (this file lives in <root>/js/), so the page works under any sub-path; an embedding page may
// point it elsewhere (setSiteRoot) before anything is loaded.
let siteRoot = new URL('../', import.meta.url);

/** Absolute URL of a path relative to the site root. */
export function siteUrl(path) {
  return new URL(path, siteRoot).href;
}

/**
 * Load the site's files (manifest.json, runtime, models) from `root` instead of this module's site.
 * @param {string|URL} root  a folder URL (a trailing slash is added)
 */
export function setSiteRoot(root) {
  const url = new URL(String(root), globalThis.location?.href);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  if (url.href !== siteRoot.href) manifestPromise = null;
  siteRoot = url;
}

let manifestPromise = null;

/**
 * Load manifest.json once: {format, files: {path: {sha256, bytes}}, totals, groups, runtime_wheel,
 * models: {face_detector, emotion: [{id, title, dataset, labels, model, meta, webgl?}], emotion_default}, versions}.
 * @returns {Promise<object>}
 */
export function loadManifest() {
  if (!manifestPromise) {
    manifestPromise = (async () => {
      const response = await fetch(siteUrl('manifest.json'), { cache: 'no-cache' });
      if (!response.ok) {
        throw new LensError(ERROR_CODES.LOAD, `manifest.json could not be loaded (HTTP ${response.status}); the site build is incomplete.`);
      }
      const manifest = await response.json();
      if (!manifest || typeof manifest.files !== 'object') {
        throw new LensError(ERROR_CODES.LOAD, 'manifest.json is malformed (no "files" table); rebuild the site.');
      }
      return manifest;
    })();
    manifestPromise.catch(() => { manifestPromise = null; }); // a later retry fetches again
  }
  return manifestPromise;
}

function toHex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** sha256 of bytes as lowercase hex. Needs a secure context (https, localhost or 127.0.0.1). */
export async function sha256Hex(buffer) {
  if (!globalThis.crypto?.subtle) {
    throw new LensError(ERROR_CODES.LOAD, 'The integrity check needs a secure context: open the page over https or on localhost.');
  }
  return toHex(await crypto.subtle.digest('SHA-256', buffer));
}

async function readWithProgress(response, expectedBytes, onProgress) {
  if (!onProgress || !response.body) return response.arrayBuffer();
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    onProgress({ loaded, total: expectedBytes });
  }
  const out = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out.buffer;
}

/** Inflate a gzip file's bytes; bytes that are not gzip (a host that sent the copy with Content-Encoding: gzip, so
 * the browser inflated it already) are returned as they are. */
async function inflated(buffer) {
  const head = new Uint8Array(buffer, 0, Math.min(2, buffer.byteLength));
  if (head[0] !== 0x1f || head[1] !== 0x8b) return buffer;
  const stream = new Blob([buffer]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Response(stream).arrayBuffer();
}

/**
 * Fetch a site file and check it against manifest.json.
 * @param {string} path  path relative to the site root, as listed in manifest.json (e.g. "models/face_detector.onnx")
 * @param {{onProgress?: (p: {path: string, loaded: number, total: number}) => void}} [options]
 * @returns {Promise<ArrayBuffer>}
 * @throws {LensError} naming the file: code `load` when it is not in the manifest or cannot be fetched,
 *   `integrity` when it fails its check
 */
export async function fetchVerified(path, { onProgress } = {}) {
  const manifest = await loadManifest();
  const entry = manifest.files[path];
  if (!entry) throw new LensError(ERROR_CODES.LOAD, `${path} is not listed in manifest.json; the site build is incomplete.`);
  const packed = entry.gzip && manifest.files[entry.gzip] && typeof DecompressionStream === 'function'
    ? entry.gzip : null;
  const source = packed ?? path;
  let response;
  try {
    response = await fetch(siteUrl(source));
  } catch (err) {
    throw new LensError(ERROR_CODES.LOAD, `${source} could not be downloaded: ${err.message}`, { cause: err });
  }
  if (!response.ok) throw new LensError(ERROR_CODES.LOAD, `${source} could not be downloaded (HTTP ${response.status}).`);
  // Progress in the file's own bytes (callers add up the manifest's sizes), scaled from the copy's.
  const scale = packed ? entry.bytes / manifest.files[packed].bytes : 1;
  const report = onProgress
    ? ({ loaded }) => onProgress({ path, loaded: Math.min(entry.bytes, Math.round(loaded * scale)), total: entry.bytes })
    : null;
  let buffer = await timed(`download ${source}`, () => readWithProgress(response, entry.bytes, report));
  if (packed) {
    buffer = await timed(`inflate ${path}`, () => inflated(buffer)).catch(() => new ArrayBuffer(0)); // fails below
  }
  const digest = await timed(`sha256 ${path}`, () => sha256Hex(buffer));
  if (buffer.byteLength !== entry.bytes || digest !== entry.sha256) {
    const kind = path.startsWith('models/') ? 'model file' : 'file';
    throw new LensError(ERROR_CODES.INTEGRITY,
      `The ${kind} ${path} failed its integrity check (got ${buffer.byteLength} bytes, sha256 ${digest.slice(0, 12)}…; ` +
      `expected ${entry.bytes} bytes, sha256 ${entry.sha256.slice(0, 12)}…). Reload the page; if it persists the ` +
      'site deployment is inconsistent.');
  }
  return buffer;
}
