// Loading for the frame pipeline (js/lens-pipeline.js, in the engine's Web Worker or on the main thread): the
// Python runtime (Pyodide + numpy + emotion_runtime) and the models (two face detectors, one emotion model;
// downloaded, sha256-checked against manifest.json, sessions created with the EP fallback chain, in the inference
// worker where one can start: js/inference.js openSession) in parallel. The full-range face detector (photos) is
// downloaded and checked with the rest, its session created on its first frame (js/inference.js prepareSession).
// Progress is reported as plain data (LoadProgress) over the four steps the demo page shows: python, numpy, models,
// verify.
import { ERROR_CODES, LensError, asLensError } from './errors.js';
import { isWebKit, openSession, prepareSession, releaseSession } from './inference.js';
import { timed } from './load-timing.js';
import { fetchVerified, loadManifest } from './manifest.js';
import { loadPython, prefetchPython } from './runtime.js';

/** @typedef {import('./emotion-lens.js').LoadProgress} LoadProgress  (the engine's public type) */

/**
 * @typedef {object} ModelEntry  one emotion model of manifest.json's catalog
 * @property {string} id
 * @property {string} title
 * @property {string|null} dataset
 * @property {string[]} labels
 * @property {string} model  site path of the ONNX file
 * @property {string} meta  site path of the sidecar
 * @property {string} [webgl]  site path of the batch-1 copy for WebGL
 */

async function loadPythonStep(progress, timeoutMs) {
  progress({ status: 'active', step: 'python', fraction: 0.02 });
  const py = await loadPython({
    timeoutMs,
    onProgress: ({ stage }) => {
      if (stage === 'numpy') {
        progress({ status: 'done', step: 'python', fraction: 0.3 });
        progress({ status: 'active', step: 'numpy' });
      } else if (stage === 'runtime') {
        progress({ status: 'active', step: 'numpy', stage: 'runtime', fraction: 0.45 });
      }
    },
  });
  progress({ status: 'done', step: 'python' });
  progress({ status: 'done', step: 'numpy', fraction: 0.5 });
  return py;
}

/**
 * The catalog entry of the emotion model to load: `modelId` if the build lists it, else the build's default.
 * @param {object} models  manifest.json's `models` table
 * @param {string} [modelId]
 * @returns {ModelEntry}
 */
export function pickEmotionModel(models, modelId) {
  const catalog = Array.isArray(models?.emotion) ? models.emotion : [];
  const entry = catalog.find((m) => m.id === modelId) || catalog.find((m) => m.id === models.emotion_default);
  if (!entry) {
    throw new LensError(ERROR_CODES.LOAD, 'This build of the site has no emotion model (models/emotion/); ' +
      'it cannot classify faces.');
  }
  return entry;
}

/**
 * The execution providers of a model kept off WebGL, WASM if nothing else is left.
 * @param {string[]} eps
 * @returns {string[]}
 */
function withoutWebgl(eps) {
  const rest = eps.filter((ep) => ep !== 'webgl');
  return rest.length ? rest : ['wasm'];
}

/** An emotion model's input that says how many of the views its graph averages to run (model_export/onnx_edit.py
 *  add_views_input): 1 runs the face alone; any number from the graph's count up runs all of them. */
export const VIEWS_INPUT = 'views';
const ALL_VIEWS = 2n ** 63n - 1n; // the graph's Slice clamps it to its count

/**
 * The feed of an emotion model's views input.
 * @param {number|null} views  how many views of each face to run; null: all of them
 * @returns {{data: BigInt64Array, dims: number[]}}
 */
export function viewsFeed(views) {
  return { data: BigInt64Array.of(views === null ? ALL_VIEWS : BigInt(views)), dims: [1] };
}

/**
 * How many views of each face an opened emotion model averages, and whether its session can run the face alone (the
 * WebGL copy, and models exported before the input, cannot).
 * @param {{session: {inputNames: string[]}, sidecar: object}} emotion  loadEmotionModel's result
 * @returns {{count: number, adjustable: boolean}}
 */
export function viewsOf({ session, sidecar }) {
  const count = sidecar.views?.count ?? (sidecar.flip_tta_in_graph ? 2 * (sidecar.tta_zooms_in_graph?.length ?? 1) : 1);
  return { count, adjustable: count > 1 && session.inputNames.includes(VIEWS_INPUT) };
}

/**
 * The emotion session of a catalog entry, and its sidecar. WebGL takes only fixed input shapes: it gets the batch-1
 * copy (fetched and verified only if WebGL is tried). A model shipped without one (int8 weights, which WebGL's Conv
 * misreads) skips WebGL, as the full-range detector does.
 */
async function emotionSession(entry, { eps, allowSoftwareGpu }, onProgress) {
  const [metaBytes, session] = await Promise.all([
    fetchVerified(entry.meta, { onProgress }),
    // Warm-up shape given explicitly: the WebGL backend cannot report model input metadata.
    openSession(entry.model, {
      preferred: entry.webgl ? eps : withoutWebgl(eps), name: 'emotion model', warmupDims: [1, 1, 48, 48],
      warmupFeeds: { [VIEWS_INPUT]: viewsFeed(null) }, allowSoftwareGpu,
    }, { webgl: entry.webgl ? { path: entry.webgl, batch: 1 } : null, onProgress }),
  ]);
  const sidecar = JSON.parse(new TextDecoder().decode(metaBytes));
  if (!Array.isArray(sidecar.labels) || sidecar.labels.length === 0) {
    await session.session.release().catch(() => {});
    throw new LensError(ERROR_CODES.LOAD, `${entry.meta} has no labels list.`);
  }
  return { ...session, entry, sidecar: { ...sidecar, id: entry.id, title: entry.title } };
}

/**
 * Progress of the models step over a set of files: bytes downloaded so far; once all have arrived the step is done
 * and the verify step (checks, sessions) active. `finish()` closes the models step if the byte count never got there.
 * @returns {((p: {path: string, loaded: number}) => void) & {finish: () => void}}
 */
function downloadProgress(progress, total, stage) {
  const loaded = {};
  let arrived = false;
  const finish = () => {
    if (arrived) return;
    arrived = true;
    progress({ status: 'done', step: 'models', loaded: total, total });
    progress({ status: 'active', step: 'verify', stage, fraction: 0.7 });
  };
  const onProgress = ({ path, loaded: n }) => {
    loaded[path] = n;
    if (arrived) return;
    progress({ status: 'active', step: 'models', loaded: sum(loaded), total });
    if (sum(loaded) >= total) finish();
  };
  return Object.assign(onProgress, { finish });
}

/**
 * Load (download, verify, start) one emotion model of the catalog, e.g. to switch models without reloading
 * anything else.
 * @param {string} modelId  an id of manifest.json's catalog
 * @param {{eps: string[], allowSoftwareGpu: boolean}} options
 * @param {(p: LoadProgress) => void} [progress]
 * @returns {Promise<{session: object, ep: string, batch: number|null, attempts: object[], entry: ModelEntry,
 *          sidecar: object}>}
 * @throws {LensError} code `model` when the catalog has no such id, `integrity` or `load` otherwise
 */
export async function loadEmotionModel(modelId, options, progress = () => {}) {
  const manifest = await loadManifest();
  const entry = (manifest.models?.emotion || []).find((m) => m.id === modelId);
  if (!entry) throw new LensError(ERROR_CODES.MODEL, `This site has no emotion model "${modelId}".`);
  const total = [entry.model, entry.meta].reduce((n, p) => n + (manifest.files[p]?.bytes || 0), 0);
  progress({ status: 'active', step: 'models', loaded: 0, total });
  const onProgress = downloadProgress(progress, total, 'emotion');
  const emotion = await emotionSession(entry, options, onProgress);
  onProgress.finish();
  progress({ status: 'done', step: 'verify' });
  return emotion;
}

const sum = (table) => Object.values(table).reduce((a, b) => a + b, 0);

/** Face detectors by the names emotion_runtime's FramePipeline knows, and manifest.json's key for each. */
const DETECTOR_FILES = Object.freeze({ short_range: 'face_detector', full_range: 'face_detector_full_range' });

async function loadModelsStep(progress, { eps, allowSoftwareGpu, modelId }) {
  const manifest = await loadManifest();
  const entry = pickEmotionModel(manifest.models, modelId);
  const detectorPaths = Object.values(DETECTOR_FILES).map((key) => {
    const path = manifest.models?.[key];
    if (!path) throw new LensError(ERROR_CODES.LOAD, `This build of the site lists no ${key} (manifest.json models).`);
    return path;
  });
  // Both face detectors come with the rest (photos use the full-range one, the camera either), so nothing is
  // downloaded after the engine is ready; the full-range one's session starts on its first frame (the camera's
  // detector is warmed up at load: js/lens-pipeline.js).
  const total = [...detectorPaths, entry.model, entry.meta].reduce((n, p) => n + (manifest.files[p]?.bytes || 0), 0);
  progress({ status: 'active', step: 'models', loaded: 0, total });
  const onProgress = downloadProgress(progress, total, 'detector');
  // All three download at once and each session starts as soon as its file has passed its check (openSession checks
  // size and sha256 against manifest.json). Warm-up shapes given explicitly: WebGL cannot report input metadata.
  const [shortPath, fullPath] = detectorPaths;
  const shortRangeLoad = openSession(shortPath, {
    preferred: eps, name: 'face detector', warmupDims: [1, 128, 128, 3], allowSoftwareGpu,
  }, { onProgress });
  // The full-range detector is kept off WebGL: there (SwiftShader) its boxes came out up to 6 px (640x480 frame)
  // off the WASM / CPython ones, while the short-range model agreed within 3 px (tests/test_e2e_backends.py).
  const fullRangeLoad = prepareSession(fullPath, {
    preferred: withoutWebgl(eps), name: 'full-range face detector',
    warmupDims: [1, 192, 192, 3], allowSoftwareGpu,
  }, { onProgress });
  const emotionLoad = emotionSession(entry, { eps, allowSoftwareGpu }, onProgress);
  const loads = [shortRangeLoad, fullRangeLoad, emotionLoad];
  const settled = await Promise.allSettled(loads);
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) {
    // Free what did start, then report the first failure (an integrity error names its file).
    await Promise.all(settled.filter((r) => r.status === 'fulfilled')
      .map(({ value }) => releaseSession(value).catch(() => {})));
    throw failed.reason;
  }
  onProgress.finish();
  const [shortRange, fullRange, emotion] = settled.map((r) => /** @type {PromiseFulfilledResult<any>} */ (r).value);
  const catalog = manifest.models.emotion.map(({ id, title, dataset, labels }) => ({ id, title, dataset, labels }));
  return { detectors: { short_range: shortRange, full_range: fullRange }, emotion, catalog };
}

/**
 * Load everything the frame pipeline needs.
 * @param {{progress: (p: LoadProgress) => void, eps: string[], allowSoftwareGpu: boolean, timeoutMs: number,
 *          modelId?: string|null}} o  eps: execution providers in order; modelId: an id of manifest.json's
 *          emotion model catalog (default: the build's default model)
 * @returns {Promise<{pyodide: object, runtime: object, detectors: {short_range: object, full_range: object},
 *          emotion: object, catalog: Array<{id: string, title: string, dataset: string|null, labels: string[]}>}>}
 *          detectors.full_range: a PreparedSession (js/inference.js), the others opened sessions
 * @throws {LensError} with `code` (integrity | timeout | csp | load) and `step` (the step that failed)
 */
export async function loadEverything({ progress, eps, allowSoftwareGpu, timeoutMs, modelId }) {
  // The two branches run side by side (one is mostly CPU, the other mostly network), except on WebKit; each
  // remembers its current step so a failure is shown on the right one.
  const branch = () => {
    const b = { current: null };
    b.progress = (p) => {
      if (p.status === 'active') b.current = p.step;
      progress(p);
    };
    b.tag = (err) => {
      const e = asLensError(err, ERROR_CODES.LOAD);
      e.step = e.code === ERROR_CODES.INTEGRITY ? 'verify' : b.current;
      throw e;
    };
    return b;
  };
  const pyBranch = branch();
  const modelBranch = branch();
  try {
    const python = () => timed('python branch', () => loadPythonStep(pyBranch.progress, timeoutMs)).catch(pyBranch.tag);
    const sessions = () => timed('models branch', () => loadModelsStep(modelBranch.progress, { eps, allowSoftwareGpu,
      modelId })).catch(modelBranch.tag);
    // JavaScriptCore starts two WebAssembly runtimes (Pyodide's, onnxruntime's) more slowly side by side than one
    // after the other: WebKitGTK 2.50 on 2 cores, ready in 9.1-10.5 s side by side, 7.4 s models first; Chromium
    // the other way round (3.1 s side by side, 4.1 s one after the other).
    let py;
    let models;
    if (isWebKit()) {
      prefetchPython().catch(() => {}); // Python's files download meanwhile; a failure shows when it starts
      models = await sessions();
      py = await python();
    } else {
      [py, models] = await Promise.all([python(), sessions()]);
    }
    progress({ status: 'done', step: 'verify', fraction: 1 });
    return { pyodide: py.pyodide, runtime: py.runtime, ...models };
  } catch (err) {
    const e = asLensError(err, ERROR_CODES.LOAD);
    e.step ||= 'python';
    progress({ status: 'failed', step: /** @type {LoadProgress['step']} */ (e.step) });
    throw e;
  }
}
