// Loading for the frame pipeline (js/lens-pipeline.js, in the engine's Web Worker or on the main thread): the
// Python runtime (Pyodide + numpy + emotion_runtime) and the models (two face detectors, one emotion model;
// downloaded, sha256-checked against manifest.json, sessions created with the EP fallback chain) in parallel.
// Progress is reported as plain data (LoadProgress) over the four steps the demo page shows: python, numpy, models,
// verify.
import { ERROR_CODES, LensError, asLensError } from './errors.js';
import { createSession } from './inference.js';
import { timed } from './load-timing.js';
import { fetchVerified, loadManifest } from './manifest.js';
import { loadPython } from './runtime.js';

/**
 * @typedef {object} LoadProgress
 * @property {'active'|'done'|'failed'} status
 * @property {'python'|'numpy'|'models'|'verify'} step
 * @property {'runtime'|'detector'|'emotion'} [stage]  finer stage: installing emotion_runtime (numpy step);
 *   creating the detector / emotion session (verify step)
 * @property {number} [loaded]  bytes downloaded so far (models step)
 * @property {number} [total]  bytes to download (models step)
 * @property {string} [ep]  execution provider the detector runs on (verify step, stage emotion)
 * @property {number} [fraction]  overall progress in 0..1, where known
 */

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
 * The emotion session of a catalog entry, from its verified bytes. WebGL takes only fixed input shapes: it gets
 * the batch-1 copy (fetched and verified only if WebGL is tried).
 */
async function emotionSession(entry, modelBytes, metaBytes, { eps, allowSoftwareGpu }) {
  const sidecar = JSON.parse(new TextDecoder().decode(metaBytes));
  if (!Array.isArray(sidecar.labels) || sidecar.labels.length === 0) {
    throw new LensError(ERROR_CODES.LOAD, `${entry.meta} has no labels list.`);
  }
  const variants = entry.webgl ? { webgl: { load: () => fetchVerified(entry.webgl), batch: 1 } } : {};
  // Warm-up shape given explicitly: the WebGL backend cannot report model input metadata.
  const session = await createSession(modelBytes, {
    preferred: eps, name: 'emotion model', warmupDims: [1, 1, 48, 48], allowSoftwareGpu, variants,
  });
  return { ...session, entry, sidecar: { ...sidecar, id: entry.id, title: entry.title } };
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
  const paths = [entry.model, entry.meta];
  const total = paths.reduce((sum, p) => sum + (manifest.files[p]?.bytes || 0), 0);
  const loaded = {};
  progress({ status: 'active', step: 'models', loaded: 0, total });
  const [modelBytes, metaBytes] = await Promise.all(paths.map((p) => fetchVerified(p, {
    onProgress: ({ loaded: n }) => {
      loaded[p] = n;
      progress({ status: 'active', step: 'models', loaded: sum(loaded), total });
    },
  })));
  progress({ status: 'done', step: 'models', loaded: total, total });
  progress({ status: 'active', step: 'verify', stage: 'emotion' });
  const emotion = await emotionSession(entry, modelBytes, metaBytes, options);
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
  // downloaded after the engine is ready.
  const paths = [...detectorPaths, entry.model, entry.meta];
  progress({ status: 'active', step: 'models' });
  const total = paths.reduce((n, p) => n + (manifest.files[p]?.bytes || 0), 0);
  const loaded = {};
  const onProgress = ({ path, loaded: n }) => {
    loaded[path] = n;
    progress({ status: 'active', step: 'models', loaded: sum(loaded), total });
  };
  // fetchVerified checks each file's size and sha256 against manifest.json before returning it.
  const [shortBytes, fullBytes, emoBytes, metaBytes] = await Promise.all(
    paths.map((p) => fetchVerified(p, { onProgress })));
  progress({ status: 'done', step: 'models', loaded: total, total });
  progress({ status: 'active', step: 'verify', stage: 'detector', fraction: 0.7 });
  // Warm-up shapes given explicitly: the WebGL backend cannot report model input metadata.
  const shortRange = await createSession(shortBytes, {
    preferred: eps, name: 'face detector', warmupDims: [1, 128, 128, 3], allowSoftwareGpu,
  });
  // The full-range detector is kept off WebGL: there (SwiftShader) its boxes came out up to 6 px (640x480 frame)
  // off the WASM / CPython ones, while the short-range model agreed within 3 px (tests/test_e2e_backends.py).
  const fullRangeEps = eps.filter((ep) => ep !== 'webgl');
  const fullRange = await createSession(fullBytes, {
    preferred: fullRangeEps.length ? fullRangeEps : ['wasm'], name: 'full-range face detector',
    warmupDims: [1, 192, 192, 3], allowSoftwareGpu,
  });
  progress({ status: 'active', step: 'verify', stage: 'emotion', ep: shortRange.ep, fraction: 0.8 });
  const emotion = await emotionSession(entry, emoBytes, metaBytes, { eps, allowSoftwareGpu });
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
 * @throws {LensError} with `code` (integrity | timeout | csp | load) and `step` (the step that failed)
 */
export async function loadEverything({ progress, eps, allowSoftwareGpu, timeoutMs, modelId }) {
  // The two branches run side by side (one is mostly CPU, the other mostly network); each remembers its
  // current step so a failure is shown on the right one.
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
    const [py, models] = await Promise.all([
      timed('python branch', () => loadPythonStep(pyBranch.progress, timeoutMs)).catch(pyBranch.tag),
      timed('models branch', () => loadModelsStep(modelBranch.progress, { eps, allowSoftwareGpu, modelId }))
        .catch(modelBranch.tag),
    ]);
    progress({ status: 'done', step: 'verify', fraction: 1 });
    return { pyodide: py.pyodide, runtime: py.runtime, ...models };
  } catch (err) {
    const e = asLensError(err, ERROR_CODES.LOAD);
    e.step ||= 'python';
    progress({ status: 'failed', step: e.step });
    throw e;
  }
}
