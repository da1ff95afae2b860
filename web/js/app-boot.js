// Loading sequence for the page: Python runtime (Pyodide + numpy + emotion_runtime) and the two models
// (downloaded, sha256-checked against manifest.json, sessions created with the EP fallback chain) in parallel,
// reported as the four steps the page shows: python, numpy, models, verify.
import { createSession, EXECUTION_PROVIDERS } from './inference.js';
import { fetchVerified, loadManifest } from './manifest.js';
import { loadPython } from './runtime.js';

/** Error with a machine-readable `code` for window.__emotionApp (integrity | timeout | csp | load). */
function classify(err) {
  const message = (err && err.message) || String(err);
  let code = 'load';
  if (/integrity check/i.test(message)) code = 'integrity';
  else if (/did not start within/i.test(message)) code = 'timeout';
  else if (/Content-Security-Policy/i.test(message)) code = 'csp';
  const out = new Error(message);
  out.code = code;
  out.cause = err;
  return out;
}

/**
 * Execution providers to try. By default the full chain. `?ep=webgpu|webgl|wasm` puts one first and keeps
 * WASM as the fallback for a model that EP cannot run (WebGL cannot take a dynamic batch dimension).
 */
export function preferredEps(ep) {
  if (!ep) return [...EXECUTION_PROVIDERS];
  const wanted = String(ep).toLowerCase();
  if (!EXECUTION_PROVIDERS.includes(wanted)) {
    throw Object.assign(new Error(`Unknown execution provider "${ep}" in the address (use webgpu, webgl or wasm).`),
      { code: 'load' });
  }
  return wanted === 'wasm' ? ['wasm'] : [wanted, 'wasm'];
}

async function loadPythonStep(onStep, timeoutMs) {
  onStep('python', 'active', 'Loading the Python runtime…', 0.02);
  const py = await loadPython({
    timeoutMs,
    onProgress: ({ stage, message }) => {
      if (stage === 'numpy') {
        onStep('python', 'done', `${message}…`, 0.3);
        onStep('numpy', 'active');
      } else if (stage === 'runtime') {
        onStep('numpy', 'active', `${message}…`, 0.45);
      }
    },
  });
  onStep('python', 'done');
  onStep('numpy', 'done', 'Python runtime ready.', 0.5);
  return py;
}

/**
 * The catalog entry of the emotion model to load: `modelId` if the build lists it, else the build's default.
 * @param {object} models  manifest.json's `models` table
 * @param {string} [modelId]
 * @returns {{id: string, title: string, labels: string[], model: string, meta: string, webgl?: string}}
 */
export function pickEmotionModel(models, modelId) {
  const catalog = Array.isArray(models?.emotion) ? models.emotion : [];
  const entry = catalog.find((m) => m.id === modelId) || catalog.find((m) => m.id === models.emotion_default);
  if (!entry) {
    throw Object.assign(new Error('This build of the site has no emotion model (models/emotion/); ' +
      'it cannot classify faces.'), { code: 'load' });
  }
  return entry;
}

async function loadModelsStep(onStep, ep, allowSoftwareGpu, modelId) {
  const preferred = preferredEps(ep);
  // A software GPU (SwiftShader) is skipped by default: WASM is much faster there. An explicit ?ep= or
  // ?softgpu=1 (testing the chain in headless browsers) uses it anyway.
  const allow = Boolean(allowSoftwareGpu || ep);
  const manifest = await loadManifest();
  const entry = pickEmotionModel(manifest.models, modelId);
  // issue 10: the full-range detector (photos, and the camera when chosen) is fetched with the rest, so nothing
  // is downloaded after the page is ready.
  const paths = [manifest.models.face_detector, entry.model, entry.meta, manifest.models.face_detector_full_range]
    .filter(Boolean);
  onStep('models', 'active');
  const sizes = paths.map((p) => manifest.files[p]?.bytes || 0);
  const total = sizes.reduce((a, b) => a + b, 0) || 1;
  const loaded = {};
  const onProgress = ({ path, loaded: n }) => {
    loaded[path] = n;
    const done = Object.values(loaded).reduce((a, b) => a + b, 0);
    onStep('models', 'active', `Downloading models… ${(done / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`);
  };
  // fetchVerified checks each file's size and sha256 against manifest.json before returning it.
  const [detBytes, emoBytes, metaBytes, fullRangeBytes] = await Promise.all(
    paths.map((p) => fetchVerified(p, { onProgress })));
  onStep('models', 'done');
  onStep('verify', 'active', 'Models verified (sha256). Starting inference…', 0.7);
  const sidecar = JSON.parse(new TextDecoder().decode(metaBytes));
  if (!Array.isArray(sidecar.labels) || sidecar.labels.length === 0) {
    throw Object.assign(new Error(`${entry.meta} has no labels list.`), { code: 'load' });
  }
  // Warm-up shapes given explicitly: the WebGL backend cannot report model input metadata.
  const detector = await createSession(detBytes, {
    preferred, name: 'face detector', warmupDims: [1, 128, 128, 3], allowSoftwareGpu: allow,
  });
  // Not on WebGL: there (SwiftShader) its boxes came out up to 6 px (640x480 frame) off the WASM / CPython ones,
  // while the short-range model agreed within 3 px (tests/test_e2e_backends.py). WebGPU, then WASM.
  const detectorFullRange = fullRangeBytes && await createSession(fullRangeBytes, {
    preferred: preferred.filter((p) => p !== 'webgl'), name: 'full-range face detector',
    warmupDims: [1, 192, 192, 3], allowSoftwareGpu: allow,
  });
  onStep('verify', 'active', `Face detector running on ${detector.ep}. Starting the emotion model…`, 0.8);
  // WebGL takes only fixed input shapes: it gets the batch-1 copy (fetched and verified only if WebGL is tried).
  const variants = entry.webgl ? { webgl: { load: () => fetchVerified(entry.webgl), batch: 1 } } : {};
  const emotion = await createSession(emoBytes, {
    preferred, name: 'emotion model', warmupDims: [1, 1, 48, 48], allowSoftwareGpu: allow, variants,
  });
  return { detector, detectorFullRange, emotion, sidecar: { ...sidecar, id: entry.id, title: entry.title } };
}

/**
 * Wait (at most `timeoutMs`) until the service worker controls this page, so the runtime and models the page
 * fetches next pass through it and are kept for offline use. Resolves at once where there is no worker.
 * @param {number} [timeoutMs]
 * @returns {Promise<boolean>} whether a worker controls the page
 */
export async function serviceWorkerControl(timeoutMs = 4000) {
  const sw = globalThis.isSecureContext && navigator.serviceWorker;
  if (!sw || sw.controller) return Boolean(sw?.controller);
  const registration = await globalThis.emotionLensWorker?.catch(() => null);
  if (sw.controller) return true; // claimed while we waited for the registration
  // No worker (registration failed), or one already active that will not claim this page (a hard reload):
  // nothing will take control, so do not wait for it.
  const settled = registration?.active?.state === 'activated' && !registration.installing && !registration.waiting;
  if (!registration || settled) return false;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    sw.addEventListener('controllerchange', () => { clearTimeout(timer); resolve(true); }, { once: true });
  });
}

/**
 * Load everything the frame engine needs.
 * @param {{onStep: (step: string, state: string, text?: string, fraction?: number) => void, ep?: string,
 *          allowSoftwareGpu?: boolean, timeoutMs?: number, modelId?: string}} o  modelId: an id of manifest.json's
 *          emotion model catalog (default: the build's default model)
 * @returns {Promise<{pyodide: object, detector: {session, ep}, detectorFullRange: ({session, ep}|undefined),
 *          emotion: {session, ep}, sidecar: object}>}
 * @throws {Error} with `code` (integrity | timeout | csp | load) and a message fit for the user
 */
export async function loadEverything({ onStep, ep, allowSoftwareGpu, timeoutMs, modelId }) {
  // The two branches run side by side (one is mostly CPU, the other mostly network); each remembers its
  // current step so a failure is shown on the right one.
  const branch = () => {
    const b = { current: null };
    b.step = (name, state, text, fraction) => {
      if (state === 'active') b.current = name;
      onStep(name, state, text, fraction);
    };
    b.tag = (err) => {
      err.step = /integrity check/i.test(err.message || '') ? 'verify' : b.current;
      throw err;
    };
    return b;
  };
  const pyBranch = branch();
  const modelBranch = branch();
  try {
    const [py, models] = await Promise.all([
      loadPythonStep(pyBranch.step, timeoutMs).catch(pyBranch.tag),
      loadModelsStep(modelBranch.step, ep, allowSoftwareGpu, modelId).catch(modelBranch.tag),
    ]);
    onStep('verify', 'done', 'Ready.', 1);
    return { pyodide: py.pyodide, ...models };
  } catch (err) {
    const e = classify(err);
    onStep(err.step || 'python', 'failed', e.message);
    throw e;
  }
}
