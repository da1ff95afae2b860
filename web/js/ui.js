// Page chrome: loading progress, messages, control states and performance readouts. No app logic here.

const $ = (id) => document.getElementById(id);

export const els = {
  loading: $('loading'),
  progress: /** @type {HTMLProgressElement} */ ($('load-progress')),
  steps: $('load-steps'),
  loadStatus: $('load-status'),
  error: $('error'),
  errorText: $('error-text'),
  retry: /** @type {HTMLButtonElement} */ ($('retry-load')),
  notice: $('notice'),
  start: /** @type {HTMLButtonElement} */ ($('start-camera')),
  stop: /** @type {HTMLButtonElement} */ ($('stop-camera')),
  switchCamera: /** @type {HTMLButtonElement} */ ($('switch-camera')),
  upload: /** @type {HTMLInputElement} */ ($('upload')),
  uploadLabel: $('upload-label'),
  viewport: $('viewport'),
  video: /** @type {HTMLVideoElement} */ ($('video')),
  still: /** @type {HTMLCanvasElement} */ ($('still')),
  overlay: /** @type {HTMLCanvasElement} */ ($('overlay')),
  faceList: $('face-list'),
  faceCount: $('face-count'),
  settingsForm: /** @type {HTMLFormElement} */ ($('settings-form')),
  smoothingMode: /** @type {HTMLSelectElement} */ ($('smoothing-mode')),
  smoothingK: /** @type {HTMLInputElement} */ ($('smoothing-k')),
  cameraDetector: /** @type {HTMLSelectElement} */ ($('camera-detector')),
  settingsStatus: $('settings-status'),
  modelSelect: /** @type {HTMLSelectElement} */ ($('model-select')),
  modelStatus: $('model-status'),
  ro: {
    ep: $('ro-ep'),
    runtime: $('ro-runtime'),
    fps: $('ro-fps'),
    detect: $('ro-detect'),
    pre: $('ro-pre'),
    classify: $('ro-classify'),
    post: $('ro-post'),
  },
};

export const STEPS = ['python', 'numpy', 'models', 'verify'];

/** Mark one loading step (pending | active | done | failed) and update bar + status text. */
export function setStep(step, state, text, fraction) {
  const li = /** @type {HTMLLIElement|null} */ (els.steps.querySelector(`li[data-step="${step}"]`));
  if (li) li.dataset.state = state;
  if (text) els.loadStatus.textContent = text;
  if (typeof fraction === 'number') {
    // Python and the models load side by side and report their own fractions: never move the bar back.
    const value = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
    els.progress.value = Math.max(els.progress.value, value);
  }
}

const mb = (bytes) => (bytes / 1e6).toFixed(1);

/** What a loading step's progress (the engine's LoadProgress) says to the user, or null for nothing new. */
export function progressText(p) {
  if (p.status === 'active') {
    if (p.step === 'python') return 'Loading the Python runtime…';
    if (p.step === 'numpy') return p.stage === 'runtime' ? 'Installing the emotion runtime…' : 'Loading numpy…';
    if (p.step === 'models') return p.total ? `Downloading models… ${mb(p.loaded || 0)} of ${mb(p.total)} MB` : null;
    if (p.step === 'verify') return 'Models downloaded. Checking them (sha256) and starting inference…';
  }
  if (p.status === 'done' && p.step === 'numpy') return 'Python runtime ready.';
  if (p.status === 'done' && p.step === 'verify' && p.fraction === 1) return 'Ready.';
  return null;
}

/** Show the engine's loading progress on the four steps, the bar and the status line. */
export function showProgress(p) {
  setStep(p.step, p.status, progressText(p), p.fraction);
}

export function epName(ep) {
  const names = { webgpu: 'WebGPU', webgl: 'WebGL', wasm: 'WASM', cpu: 'WASM' };
  return names[String(ep).toLowerCase()] || String(ep);
}

/** The execution providers in use, e.g. "WASM" or "WebGL (detector) · WASM (emotion)". */
export function epText(ep) {
  if (!ep) return '–';
  const d = epName(ep.detector);
  const e = epName(ep.emotion);
  return d === e ? d : `${d} (detector) · ${e} (emotion)`;
}

/** The status line once the engine is ready (LensInfo): where the models run, and a warning without a worker. */
export function readyText(info) {
  const where = info.backend.thread === 'worker'
    ? 'in a background thread'
    : `on the page's main thread, because a background worker could not run (${info.backend.reason}); ` +
      'the page may respond slowly while the camera runs';
  return `Ready. Models run with ${epText(info.ep)} ${where}; nothing is uploaded.`;
}

/** Fill the model choice from the catalog (one entry: shown, but nothing to choose). */
export function setModelChoice(models, currentId) {
  const select = els.modelSelect;
  const ids = [...select.options].map((o) => o.value).join('\n');
  if (ids !== models.map((m) => m.id).join('\n')) {
    select.replaceChildren(...models.map((m) => {
      const option = document.createElement('option');
      option.value = m.id;
      option.textContent = `${m.title} (${m.labels.length} classes)`;
      return option;
    }));
  }
  select.value = currentId;
  select.disabled = models.length < 2;
}

/** Model switching progress (LoadProgress), or, with p = null, the model now in use. */
export function setModelProgress(p, title) {
  if (!p) {
    els.modelStatus.textContent = title ? `Using ${title}.` : '';
  } else if (p.status === 'active') {
    els.modelStatus.textContent = p.step === 'models' && p.total
      ? `Downloading the model… ${mb(p.loaded || 0)} of ${mb(p.total)} MB`
      : 'Starting the model…';
  }
}

/** The settings form's status line: the smoothing in force ({mode, k}) and the camera's face detector. */
export function setSettingsText(s, cameraDetector) {
  const names = { ema: 'exponential moving average', mean: 'window mean', median: 'window median' };
  const detectors = { short_range: 'short-range face detector', full_range: 'full-range face detector' };
  els.settingsStatus.textContent = (s.mode === 'none'
    ? 'Smoothing off: raw per-frame probabilities.'
    : `Smoothing: ${names[s.mode]} over ${s.k} frame(s).`) + ` Camera: ${detectors[cameraDetector]}.`;
}

export function setLoadText(text) {
  els.loadStatus.textContent = text;
}

export function setLoadDone(text) {
  els.progress.value = 100;
  els.loading.dataset.done = 'true';
  els.loadStatus.textContent = text;
}

export function resetLoading() {
  els.loading.dataset.done = 'false';
  els.progress.value = 0;
  for (const li of /** @type {HTMLCollectionOf<HTMLLIElement>} */ (els.steps.children)) li.dataset.state = 'pending';
}

/** Show an error (role=alert). `retry` shows the "Retry loading" button. Never hides the rest of the UI. */
export function showError(message, { retry = false } = {}) {
  els.errorText.textContent = message;
  els.retry.hidden = !retry;
  els.error.hidden = false;
}

export function clearError() {
  els.error.hidden = true;
  els.errorText.textContent = '';
  els.retry.hidden = true;
}

/** Non-fatal information about the current view (no face, too many faces). Only touches the DOM on change. */
export function setNotice(message) {
  const text = message || '';
  if (els.notice.textContent === text && els.notice.hidden === !text) return;
  els.notice.textContent = text;
  els.notice.hidden = !text;
}

/** Enable/disable controls for the app state. `loading`: the engine is still loading; the camera may start already
 *  (its picture shows, labels follow). */
export function setControls({ ready, cameraOn, cameraBusy = false, loading = false }) {
  els.start.disabled = !(ready || loading) || cameraOn || cameraBusy;
  els.stop.disabled = !cameraOn;
  els.upload.disabled = !ready;
  els.uploadLabel.dataset.disabled = String(!ready);
}

export function setViewportMode(mode) {
  els.viewport.dataset.mode = mode;
}

const fmtMs = (v) => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : '–');

/** Set `el`'s text only when it changes: a write, even of the same text, costs a style and layout pass. */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/**
 * The page's isolation and onnxruntime's WASM threads (LensInfo.runtime), e.g. "on · 1 WASM thread".
 * @param {{crossOriginIsolated: boolean, wasmThreads: number}} runtime
 */
export function runtimeText({ crossOriginIsolated, wasmThreads }) {
  const threads = `${wasmThreads} WASM thread${wasmThreads === 1 ? '' : 's'}`;
  return `${crossOriginIsolated ? 'on' : 'off'} · ${threads}`;
}

/**
 * Update the readouts given.
 * @param {{ep?: string, runtime?: string, fps?: number|null, fpsCap?: number|null, timings?: object,
 *          detector?: {frames: number, ran: number, ms: number|null, slowed?: boolean}, faceAlone?: boolean}} readouts
 *   fpsCap: the frame rate the engine holds the camera to on this device (stats.pace.slowFps), if any; timings: the
 *   last frame's (FrameResult.timings); detector: since the last readout, the frames shown, those the face detector
 *   ran on, its last run's ms (it skips frames: config.detectEvery), and whether the engine stretched its cadence for
 *   this device (stats.pace); faceAlone: the emotion model ran on each face without its mirror, for this device
 */
export function setReadouts({ ep, runtime, fps, fpsCap, timings, detector, faceAlone = false }) {
  if (ep !== undefined) setText(els.ro.ep, ep || '–');
  if (runtime !== undefined) setText(els.ro.runtime, runtime || '–');
  if (fps !== undefined) {
    setText(els.ro.fps, (Number.isFinite(fps) ? fps.toFixed(1) : '–') + (fpsCap ? ` (at most ${fpsCap} on this device)` : ''));
  }
  if (detector) {
    const share = detector.ran < detector.frames ? ` · ${detector.ran}/${detector.frames} frames` : '';
    setText(els.ro.detect, fmtMs(detector.ms ?? NaN) + share + (detector.slowed ? ' (slowed for this device)' : ''));
  }
  if (timings) {
    setText(els.ro.pre, fmtMs(timings.pre));
    setText(els.ro.classify, fmtMs(timings.classify) + (faceAlone ? ' (face alone, for this device)' : ''));
    setText(els.ro.post, fmtMs(timings.post));
  }
}

export function setFaceCount(n) {
  setText(els.faceCount, String(n));
}
