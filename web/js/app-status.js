// The read-only status object the page exposes as window.__emotionApp, so tests and the benchmark can read
// what the page shows without scraping pixels. The app writes through `update`; readers get copies.

const state = {
  state: 'loading', // loading | ready | camera-starting | running | paused (page hidden) | still | error
  ep: null, // {detector, emotion} execution providers in use
  epFullRange: null, // execution provider of the full-range face detector (photos; camera when chosen)
  epAttempts: null, // {detector, emotion}: [{ep, ok, reason, ms}] from the fallback chain
  error: null, // {code, message} of the message on screen, or null
  notice: null, // {code, message}: no-face / too-many-faces, or null
  labels: [], // class ids of the emotion model in use
  model: null, // {id, title, dataset} of the emotion model in use
  models: [], // the site's catalog: [{id, title, dataset, labels}]
  thread: null, // where the pipeline runs: worker | main
  threadReason: null, // why not in a worker, when it runs on the main thread
  inference: null, // where onnxruntime runs: worker (the inference worker) | same-thread (it could not start)
  runtime: null, // {crossOriginIsolated, wasmThreads}: the page's isolation and onnxruntime's WASM threads
  smoothing: null, // {mode, k}
  cameraDetector: null, // short_range | full_range: face detector for camera frames (photos: full_range)
  detector: null, // face detector that processed the last frame or photo
  maxFaces: null, // faces analysed per frame at most (more: the "Too many faces" notice)
  lastResults: [], // faces of the last processed frame
  faceCount: 0,
  fps: null,
  timings: null, // last frame: {capture, detect, pre, classify, post, total} in ms
  frames: 0, // frames processed since the camera started
  dropped: 0, // camera frames dropped since the camera started (a newer one arrived while the engine was busy)
  pace: null, // the engine's stats.pace at the last readout: the camera's detector cadence, slowed on a slow device
  loadMs: null, // navigation start -> ready (performance.now())
  firstResultMs: null, // navigation start -> first processed frame or photo
  cameraClickMs: null, // when Start camera was last pressed
  firstFrameMs: null, // first processed frame after that
  source: null, // camera | image
  history: [], // per-frame timings, face count and time (at, ms) of the last 300 frames (for the benchmark)
};

const HISTORY = 300;

export function update(patch) {
  Object.assign(state, patch);
}

export function pushTimings(t) {
  state.history.push(t);
  if (state.history.length > HISTORY) state.history.shift();
}

export function get(key) {
  return state[key];
}

function snapshot() {
  return structuredClone(state);
}

let memoryProbe = null;

/** Where window.__emotionApp.memory() gets its figures (the engine's memory()), for the benchmark's soak run. */
export function setMemoryProbe(probe) {
  memoryProbe = probe;
}

/** Install window.__emotionApp: every property read returns a fresh copy, so callers cannot change the app. */
export function expose() {
  const api = {};
  for (const key of Object.keys(state)) {
    Object.defineProperty(api, key, { enumerable: true, get: () => structuredClone(state[key]) });
  }
  Object.defineProperty(api, 'snapshot', { value: snapshot });
  Object.defineProperty(api, 'memory', { value: () => (memoryProbe ? memoryProbe() : Promise.resolve(null)) });
  Object.freeze(api);
  Object.defineProperty(window, '__emotionApp', { value: api, writable: false, configurable: false });
}
