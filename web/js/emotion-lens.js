// Emotion Lens engine: on-device facial expression recognition as one ES module. The demo page (app.js) and the
// example page (example/) use it; so can any page of the same site.
//
//   import { createEmotionLens, EVENTS } from './js/emotion-lens.js';
//   const lens = createEmotionLens({ maxFaces: 4 });
//   lens.addEventListener(EVENTS.RESULT, (e) => console.log(e.detail.faces));
//   await lens.load();
//   const stop = lens.watch(videoElement);        // or: const result = await lens.detect(imageBitmap);
//
// The pipeline (Pyodide + numpy, onnxruntime-web, the per-frame Python) runs in a dedicated module Web Worker
// (js/lens-worker.js); this thread only grabs frames (a VideoFrame or ImageBitmap, transferred, never copied here)
// and hands out results. Where a worker cannot start, the same pipeline module runs on this thread instead, and
// `backend.thread` says so with the reason. One frame is in flight at a time; a frame that arrives while one is
// being processed waits in a single slot, where a newer frame replaces it (the older one is dropped and counted).
import { ERROR_CODES, LensError, asLensError } from './errors.js';
import { fitSize } from './frame-size.js';
import { recordSpans, timed } from './load-timing.js';
import { createPace } from './pace.js';
import { serviceWorkerControl } from './sw-control.js';

export { ERROR_CODES, LensError, fitSize };

/** The browsers that have everything the engine needs: WebAssembly with SIMD and OffscreenCanvas 2D (without module
 *  workers, e.g. Firefox before 114, the pipeline runs on the page's thread). */
export const MINIMUM_BROWSERS = 'Chrome or Edge 91, Firefox 105, Safari 16.4 (iPhone and iPad: iOS 16.4)';

// The smallest module that uses a SIMD instruction: onnxruntime-web's WebAssembly build needs SIMD.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65,
  0, 253, 15, 253, 98, 11]);

/**
 * Why this browser cannot run the engine, in plain words naming the versions that can, or null when it can.
 * @returns {string|null}
 */
export function browserSupportProblem() {
  const missing = [];
  if (typeof WebAssembly !== 'object' || typeof WebAssembly.instantiate !== 'function') missing.push('WebAssembly');
  else if (!WebAssembly.validate(SIMD_PROBE)) missing.push('WebAssembly SIMD');
  if (typeof OffscreenCanvas !== 'function') missing.push('OffscreenCanvas');
  if (!missing.length) return null;
  return `Unsupported browser: it lacks ${missing.join(' and ')}, so the on-device models cannot run. They need ` +
    `${MINIMUM_BROWSERS} or newer: please update this browser, or open the page in one of those.`;
}

/** Names of the events an EmotionLens dispatches (CustomEvent; the payload is `event.detail`). */
export const EVENTS = Object.freeze({
  /** detail: LoadProgress, while load() or setModel() runs */
  PROGRESS: 'progress',
  /** detail: LensInfo, once load() has finished */
  READY: 'ready',
  /** detail: FrameResult, for every processed frame (detect() and watch()) */
  RESULT: 'result',
  /** detail: LensInfo, after setModel() switched the emotion model */
  MODEL: 'model',
  /** detail: LensInfo, when it changed otherwise: the full-range face detector's session, started on its first frame */
  INFO: 'info',
  /** detail: {code, message}: an error no promise reports (a frame of watch(), a crashed worker) */
  ERROR: 'error',
  /** detail: {state}: the engine's state changed */
  STATE: 'state',
});

/** @typedef {'webgpu'|'webgl'|'wasm'} ExecutionProvider  an onnxruntime-web backend */
/** @typedef {import('./pace.js').PaceState} PaceState */

/** The execution providers the engine knows, fastest first. */
export const EXECUTION_PROVIDERS = Object.freeze(/** @type {const} */ (['webgpu', 'webgl', 'wasm']));

/** The face detectors (BlazeFace): short_range (128 px input, faces within about 2 m, faster) and full_range
 *  (192 px input, far and small faces, e.g. group photos; about twice the cost). Both are loaded. */
export const DETECTORS = Object.freeze(/** @type {const} */ (['short_range', 'full_range']));

/**
 * Every option of createEmotionLens and its default. Options are merged over these once, checked, and frozen.
 * @typedef {object} LensConfig
 * @property {number} maxFaces  faces classified per frame (the clearest first); more are counted in `detected`
 * @property {{video: number, image: number}} maxSide  frames are read at most this many pixels on their long side
 *   (video: camera frames; image: photos, canvases, ImageData)
 * @property {{video: 'short_range'|'full_range', image: 'short_range'|'full_range'}} detector  the face detector
 *   for each kind of frame (video: camera frames; image: photos, canvases, ImageData); see DETECTORS
 * @property {{mode: 'ema'|'mean'|'median'|'none', k: number}} smoothing  temporal smoothing of each tracked face's
 *   probabilities over k frames (1..30)
 * @property {string|null} model  id of the emotion model (manifest.json `models.emotion`); null: the build's default
 * @property {string|null} baseUrl  the runtime folder: manifest.json, js/, vendor/, models/ and wheels/, served
 *   from this page's origin (a URL, absolute or relative to this module); null: the folder above this module (the
 *   site or npm package it comes from). An app whose bundler moves this module serves that folder and names it here
 * @property {{load: number, workerStart: number}} timeouts  ms: the Python runtime's start; the worker's start
 *   (past it the engine falls back to the main thread)
 * @property {ExecutionProvider[]} executionProviders  tried in order
 * @property {boolean} allowSoftwareGpu  also use WebGPU/WebGL on a software renderer (SwiftShader); WASM is faster
 * @property {{video: 'browser'|'numpy', image: 'browser'|'numpy'}} resample  who resizes pixels, per kind of frame:
 *   'browser': the canvas fits the frame into the face detector's square input and draws the face crops upright at
 *   48 px from the frame's full-resolution pixels (a few ms a frame; accuracy through this path:
 *   build/measure_resample.py, README); 'numpy': emotion_runtime's numpy code gets the whole frame (the same numbers
 *   as CPython and the tests, several ms a frame slower in WebAssembly)
 * @property {number} detectEvery  camera frames: the face detector (the costliest step) runs at least every this many
 *   frames (1..30; 1: on every frame), on every frame while no face is found, and on the frame after a face's crop
 *   changed (it moved otherwise than predicted, or turned); the frames between keep its last faces, moved on at
 *   their tracks' velocity, and classify them again (emotion_runtime/schedule.py). Photos always run it. The
 *   shortest cadence: with `adapt`, a slow device stretches it
 * @property {{enabled: boolean, budgetMs: number, slowFps: number}} adapt  camera frames on a slow device: when a
 *   frame costs more than budgetMs on average (default 33: a 30 FPS camera's interval), the detector's cadence is
 *   stretched (up to every 30th frame) until frames fit, and shortened again when they do; while it is stretched the
 *   engine takes at most slowFps camera frames a second (default 16), leaving the page's thread room (js/pace.js;
 *   stats.pace says what is in force).
 *   Faces are still classified on every frame processed: boxes follow moving faces less closely between detections
 * @property {boolean} worker  run the pipeline in a Web Worker (false: on the main thread)
 * @property {boolean} warmup  run one blank frame through the camera's face detector (detector.video) at load, so
 *   the first camera frame is not the slow one
 */

/**
 * What createEmotionLens takes: any options of LensConfig; nested ones (maxSide, detector, resample, smoothing,
 * timeouts, adapt) may give some of their fields, the rest keep their defaults.
 * @typedef {{[K in keyof LensConfig]?: LensConfig[K] extends any[] ? LensConfig[K] : Partial<LensConfig[K]>}} LensOptions
 */

/** @type {Readonly<LensConfig>} */
export const DEFAULTS = deepFreeze({
  maxFaces: 8,
  maxSide: { video: 640, image: 1280 },
  detector: { video: 'short_range', image: 'full_range' },
  smoothing: { mode: 'ema', k: 5 },
  model: null,
  baseUrl: null,
  timeouts: { load: 120_000, workerStart: 20_000 },
  executionProviders: [...EXECUTION_PROVIDERS],
  allowSoftwareGpu: false,
  resample: { video: 'browser', image: 'numpy' },
  detectEvery: 3,
  adapt: { enabled: true, budgetMs: 33, slowFps: 16 },
  worker: true,
  warmup: true,
});

/**
 * @typedef {object} LoadProgress  a PROGRESS event's detail: one loading step's state
 * @property {'active'|'done'|'failed'} status
 * @property {'python'|'numpy'|'models'|'verify'} step
 * @property {'runtime'|'detector'|'emotion'} [stage]  finer stage: installing emotion_runtime (numpy step);
 *   starting the sessions of the detectors and the emotion model, or of the emotion model alone (verify step)
 * @property {number} [loaded]  bytes downloaded so far (models step)
 * @property {number} [total]  bytes to download (models step)
 * @property {number} [fraction]  overall progress in 0..1, where known
 */

/**
 * One face in a FrameResult (built by emotion_runtime.pipeline.FramePipeline.update).
 * @typedef {object} FaceResult
 * @property {number} id  tracker id, stable while the face stays in view
 * @property {number[]} box  [x, y, w, h] in the frame's read pixels (FrameResult width x height)
 * @property {number} score  detector confidence
 * @property {number} index  the class shown: the top class of the smoothed probabilities, held by a hysteresis
 *   (another class must lead by a margin to replace it)
 * @property {string} label  that class's label id
 * @property {string} display  its display name
 * @property {string} emoji
 * @property {string} colour
 * @property {boolean} uncertain  the smoothed top probability is below the threshold: show `top2` rather than
 *   one label
 * @property {number[]} top2  indices of the two leading classes
 * @property {number[]} probs  smoothed probabilities, in the model's label order
 * @property {number[]} raw_probs  this frame's probabilities
 */

/**
 * @typedef {object} FrameResult
 * @property {FaceResult[]} faces  at most maxFaces
 * @property {number} detected  faces found before the cap (by the frame's detector run, or the last one it kept)
 * @property {boolean} detectorRan  the face detector ran on this frame; false: the faces are the last detection's,
 *   their boxes moved on at their tracks' velocity (config.detectEvery)
 * @property {number} width  the frame as read (after maxSide)
 * @property {number} height
 * @property {'video'|'image'} kind
 * @property {'short_range'|'full_range'} detector  the face detector that processed the frame
 * @property {number} views  views of each face the emotion model ran: all it averages, or 1 (the face alone) on a
 *   camera frame of a device too slow for the configured work (stats.pace)
 * @property {{grab: number, capture: number, detect: number, pre: number, preDetector: number, classify: number,
 *   post: number, total: number, roundTrip: number}} timings  ms: grab (this thread: taking the frame), capture
 *   (reading its pixels: the detector's square and the face crops, or the whole frame with resample 'numpy'),
 *   detect / classify (onnxruntime; detect is 0 when the detector did not run), pre / post (Python; preDetector:
 *   the part of pre that makes the detector's input), total (the pipeline), roundTrip (from taking the frame to its
 *   result on this thread: the frame's lag; a wait in the slot before is not included)
 */

/**
 * @typedef {object} ModelInfo
 * @property {string} id
 * @property {string} title
 * @property {string|null} dataset
 * @property {string[]} labels  class ids, in output order
 * @property {string[]} display  display names
 * @property {string[]} emoji
 * @property {string[]} colours
 * @property {string|null} sha256  of the model's ONNX file, as its sidecar records it
 * @property {{count: number, adjustable: boolean}} views  how many views of each face the model's graph averages
 *   (2: the face and its mirror; more with zooms), and whether it can run the face alone, which the engine does on a
 *   device too slow for its frames (stats.pace.views; the model card gives that mode's accuracy)
 */

/**
 * @typedef {object} LensInfo
 * @property {{thread: 'worker'|'main', reason: string|null}} backend  where the pipeline runs, and why not in a
 *   worker when it does not
 * @property {'worker'|'same-thread'} inference  where onnxruntime runs: the inference worker, or the pipeline's own
 *   thread where that worker could not start
 * @property {{crossOriginIsolated: boolean, wasmThreads: number}} runtime  whether the page is cross-origin isolated
 *   (served with COOP/COEP, or through the service worker) and the threads onnxruntime's WASM backend uses (1 when
 *   not isolated, and on Safari/WebKit, whose threaded WebAssembly memory fails on iPhones)
 * @property {{detector: string, detectorFullRange: string|null, emotion: string}} ep  execution providers in use
 *   (detector: the short-range face detector; the full-range one is kept off WebGL, and its session is started on
 *   its first frame: null until then, and an INFO event when it has started)
 * @property {{detector: object[], detectorFullRange: object[], emotion: object[]}} epAttempts  the fallback chain:
 *   [{ep, ok, reason?, ms}] (detectorFullRange: empty until its first frame)
 * @property {{video: string, image: string}} detector  the face detector for each kind of frame
 * @property {ModelInfo} model
 * @property {Array<{id: string, title: string, dataset: string|null, labels: string[]}>} models  the catalog
 * @property {{mode: string, k: number}} smoothing
 */

function deepFreeze(o) {
  for (const v of Object.values(o)) if (v && typeof v === 'object') deepFreeze(v);
  return Object.freeze(o);
}

const SMOOTHING_MODES = ['ema', 'mean', 'median', 'none'];

/**
 * DEFAULTS with `config` merged over them (nested objects one level deep), checked and frozen.
 * @param {LensOptions} [config]
 * @returns {Readonly<LensConfig>}
 * @throws {LensError} code `config`, naming the option
 */
export function resolveConfig(config = {}) {
  const bad = (what) => { throw new LensError(ERROR_CODES.CONFIG, `createEmotionLens: ${what}`); };
  const unknown = Object.keys(config).filter((k) => !(k in DEFAULTS));
  if (unknown.length) bad(`unknown option(s) ${unknown.join(', ')}`);
  const c = structuredClone({ ...DEFAULTS, ...config });
  for (const key of ['maxSide', 'detector', 'resample', 'smoothing', 'timeouts', 'adapt']) {
    c[key] = { ...DEFAULTS[key], ...(config[key] || {}) };
  }
  const positiveInt = (v) => Number.isInteger(v) && v > 0;
  if (!positiveInt(c.maxFaces)) bad(`maxFaces must be a positive integer, got ${c.maxFaces}`);
  if (!positiveInt(c.maxSide.video) || !positiveInt(c.maxSide.image)) bad('maxSide.video/image must be positive integers');
  if (!DETECTORS.includes(c.detector.video) || !DETECTORS.includes(c.detector.image)) {
    bad(`detector.video/image must be one of ${DETECTORS.join(', ')}`);
  }
  if (!SMOOTHING_MODES.includes(c.smoothing.mode)) bad(`smoothing.mode must be one of ${SMOOTHING_MODES.join(', ')}`);
  if (!(c.smoothing.k >= 1 && c.smoothing.k <= 30)) bad(`smoothing.k must be in 1..30, got ${c.smoothing.k}`);
  if (!(c.timeouts.load > 0 && c.timeouts.workerStart > 0)) bad('timeouts must be positive numbers of ms');
  const eps = c.executionProviders;
  if (!Array.isArray(eps) || eps.length === 0 || !eps.every((ep) => EXECUTION_PROVIDERS.includes(ep))) {
    bad(`executionProviders must list some of ${EXECUTION_PROVIDERS.join(', ')}, got ${JSON.stringify(eps)}`);
  }
  if (c.model !== null && typeof c.model !== 'string') bad('model must be a model id (string) or null');
  if (!(positiveInt(c.detectEvery) && c.detectEvery <= 30)) bad(`detectEvery must be an integer in 1..30, got ${c.detectEvery}`);
  if (typeof c.adapt.enabled !== 'boolean') bad(`adapt.enabled must be true or false, got ${c.adapt.enabled}`);
  if (!(c.adapt.budgetMs > 0 && c.adapt.budgetMs <= 1000)) bad(`adapt.budgetMs must be in (0, 1000] ms, got ${c.adapt.budgetMs}`);
  if (!(c.adapt.slowFps >= 1 && c.adapt.slowFps <= 120)) bad(`adapt.slowFps must be in 1..120, got ${c.adapt.slowFps}`);
  if (![c.resample.video, c.resample.image].every((r) => ['browser', 'numpy'].includes(r))) {
    bad(`resample.video/image must be 'browser' or 'numpy', got ${JSON.stringify(c.resample)}`);
  }
  if (c.baseUrl !== null && typeof c.baseUrl !== 'string') bad('baseUrl must be a URL (string) or null');
  c.baseUrl = new URL(c.baseUrl ?? '../', import.meta.url).href.replace(/\/?$/, '/'); // a folder: 'x' means 'x/'
  return deepFreeze(c);
}

// ---------------------------------------------------------------- where the pipeline runs

// The pipeline's modules are loaded from the runtime folder (config.baseUrl), not from beside this module: an app
// that bundles this module (Vite, webpack, ...) serves the runtime folder as static files, and the worker, the
// Python runtime and the models then come from one place, in one version.

/** The pipeline in a module Web Worker. Resolves once the worker has started, rejects if it cannot. */
function startWorker(baseUrl, onMessage, timeoutMs) {
  return new Promise((resolve, reject) => {
    if (typeof Worker !== 'function') {
      reject(new Error('this browser has no Web Workers'));
      return;
    }
    let worker;
    try {
      worker = new Worker(new URL('js/lens-worker.js', baseUrl), { type: 'module', name: 'emotion-lens' });
    } catch (err) {
      reject(err);
      return;
    }
    const timer = setTimeout(() => {
      worker.terminate();
      reject(new Error(`the worker did not start within ${Math.round(timeoutMs / 1000)} s`));
    }, timeoutMs);
    const onStartError = (event) => {
      clearTimeout(timer);
      worker.terminate();
      // A browser without module workers fails here (no message, or a SyntaxError on `import`).
      reject(new Error(`the worker could not start (${event.message || 'module workers unsupported'})`));
    };
    worker.addEventListener('error', onStartError, { once: true });
    worker.addEventListener('message', (event) => {
      if (event.data?.status === 'started') {
        clearTimeout(timer);
        worker.removeEventListener('error', onStartError);
        resolve({
          thread: 'worker',
          post: (message, transfer) => worker.postMessage(message, transfer),
          terminate: () => worker.terminate(),
          worker,
        });
        return;
      }
      onMessage(event.data);
    });
  });
}

/** The same pipeline module on this thread (the fallback). Replies are delivered asynchronously, like a worker's. */
async function startInline(baseUrl, onMessage) {
  const { createPipelineHost } = await import(/* @vite-ignore */ new URL('js/lens-pipeline.js', baseUrl).href);
  const host = createPipelineHost((message) => setTimeout(() => onMessage(message), 0));
  return { thread: 'main', post: (message) => host.handle(message), terminate: () => {} };
}

// ---------------------------------------------------------------- frames

let videoFramesWork = true; // false once `new VideoFrame(video)` has failed in this page

/** The frame to send for `source`: {frame: VideoFrame|ImageBitmap, kind}. The caller's own bitmap/frame is consumed. */
async function grabFrame(source) {
  if (typeof VideoFrame === 'function' && source instanceof VideoFrame) return { frame: source, kind: 'video' };
  if (typeof ImageBitmap === 'function' && source instanceof ImageBitmap) return { frame: source, kind: 'image' };
  if (typeof HTMLVideoElement === 'function' && source instanceof HTMLVideoElement) {
    if (!source.videoWidth) throw new LensError(ERROR_CODES.INPUT, 'The video has no frame yet (not playing?).');
    // A VideoFrame refers to the decoded frame: no pixel copy on this thread. Where making one fails (seen in Safari
    // with some camera formats), an ImageBitmap of the video does the same job, from then on.
    if (typeof VideoFrame === 'function' && videoFramesWork) {
      try {
        return { frame: new VideoFrame(source), kind: 'video' };
      } catch {
        videoFramesWork = false;
      }
    }
    return { frame: await createImageBitmap(source), kind: 'video' };
  }
  const readable = ['HTMLCanvasElement', 'OffscreenCanvas', 'HTMLImageElement', 'SVGImageElement', 'ImageData', 'Blob']
    .some((name) => typeof globalThis[name] === 'function' && source instanceof globalThis[name]);
  if (!readable) {
    throw new LensError(ERROR_CODES.INPUT, 'detect() takes a video element, canvas, image, ImageBitmap, VideoFrame, ' +
      'ImageData or Blob.');
  }
  try {
    return { frame: await createImageBitmap(source), kind: 'image' };
  } catch (err) {
    throw new LensError(ERROR_CODES.INPUT, `The image could not be read (${err.message || err}).`, { cause: err });
  }
}

/** Frames `video` has shown so far (its playback quality's count), or null where the browser does not count them. */
function shownFrames(video) {
  const count = video.getVideoPlaybackQuality?.().totalVideoFrames;
  return Number.isFinite(count) ? count : null;
}

// ---------------------------------------------------------------- the engine

/** @typedef {'idle'|'loading'|'ready'|'error'|'disposed'} LensState */

/**
 * Each event of EVENTS with its `detail`.
 * @typedef {object} LensEventMap
 * @property {CustomEvent<LoadProgress>} progress
 * @property {CustomEvent<LensInfo>} ready
 * @property {CustomEvent<FrameResult>} result
 * @property {CustomEvent<LensInfo>} model
 * @property {CustomEvent<LensInfo>} info
 * @property {CustomEvent<{code: string, message: string, step?: string}>} error
 * @property {CustomEvent<{state: LensState}>} state
 */

export class EmotionLens extends EventTarget {
  #config;
  /** @type {LensState} */
  #state = 'idle';
  #channel = null;
  #loading = null;
  #calls = new Map(); // id -> {resolve, reject}
  #nextId = 1;
  #info = null; // LensInfo
  #backend = { thread: null, reason: null };
  #result = null;
  #inFlight = false; // one frame in the pipeline at a time
  #waiting = null; // the next frame's job: {source, options, resolve, reject}
  #frames = 0;
  #dropped = 0;
  #pace; // the camera's detector cadence (js/pace.js)
  #stopWatch = null;
  #detector; // {video, image}: config.detector, changed by setDetector()

  /** @param {LensOptions} [config] */
  constructor(config) {
    super();
    this.#config = resolveConfig(config);
    this.#detector = { ...this.#config.detector };
    this.#pace = createPace({ detectEvery: this.#config.detectEvery, ...this.#config.adapt });
  }

  /**
   * Listen to one of EVENTS; `event.detail` is typed per event (LensEventMap).
   * @template {keyof LensEventMap} K
   * @overload
   * @param {K} type
   * @param {(event: LensEventMap[K]) => void} listener
   * @param {boolean|AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {string} type
   * @param {EventListenerOrEventListenerObject|null} listener
   * @param {boolean|AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @param {string} type
   * @param {any} listener
   * @param {boolean|AddEventListenerOptions} [options]
   */
  addEventListener(type, listener, options) {
    super.addEventListener(type, listener, options);
  }

  /**
   * @template {keyof LensEventMap} K
   * @overload
   * @param {K} type
   * @param {(event: LensEventMap[K]) => void} listener
   * @param {boolean|EventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {string} type
   * @param {EventListenerOrEventListenerObject|null} listener
   * @param {boolean|EventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @param {string} type
   * @param {any} listener
   * @param {boolean|EventListenerOptions} [options]
   */
  removeEventListener(type, listener, options) {
    super.removeEventListener(type, listener, options);
  }

  /** @returns {Readonly<LensConfig>} the options in force */
  get config() { return this.#config; }

  /** @returns {LensState} */
  get state() { return this.#state; }

  /** @returns {FrameResult|null} the last processed frame's result */
  get result() { return this.#result; }

  /** @returns {LensInfo|null} backend, execution providers, model and catalog (null before load()) */
  get info() {
    return this.#info && structuredClone({ ...this.#info, backend: this.#backend, detector: this.#detector });
  }

  /** @returns {ModelInfo|null} the emotion model in use */
  get model() { return this.#info && structuredClone(this.#info.model); }

  /**
   * @returns {{frames: number, dropped: number, busy: boolean, pace: PaceState}} frames processed and dropped since
   *   load, and the camera's detector cadence in force (slowed on a slow device: config.adapt)
   */
  get stats() {
    return { frames: this.#frames, dropped: this.#dropped, busy: this.#inFlight, pace: this.#pace.state() };
  }

  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit(EVENTS.STATE, { state });
  }

  #emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  #onMessage = (message) => {
    const call = this.#calls.get(message.id);
    if (!call) return;
    if (message.status === 'progress') {
      this.#emit(EVENTS.PROGRESS, message.data);
      return;
    }
    this.#calls.delete(message.id);
    if (message.status === 'error') call.reject(new LensError(message.error.code, message.error.message, message.error));
    else call.resolve(message.data);
  };

  #call(type, data, transfer) {
    if (!this.#channel) {
      return Promise.reject(new LensError(ERROR_CODES.NOT_READY, 'The engine is not loaded (call load() first).'));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject });
      this.#channel.post({ type, id, data }, transfer);
    });
  }

  #failAll(error) {
    for (const call of this.#calls.values()) call.reject(error);
    this.#calls.clear();
  }

  async #openChannel() {
    const c = this.#config;
    if (c.worker) {
      try {
        const channel = await startWorker(c.baseUrl, this.#onMessage, c.timeouts.workerStart);
        channel.worker.addEventListener('error', (event) => {
          const error = new LensError(ERROR_CODES.WORKER, `The engine's worker crashed: ${event.message || 'unknown error'}`);
          this.#failAll(error);
          this.#setState('error');
          this.#emit(EVENTS.ERROR, error.toJSON());
        });
        return { channel, reason: null };
      } catch (err) {
        const channel = await startInline(c.baseUrl, this.#onMessage);
        return { channel, reason: `${err.message || err}` };
      }
    }
    return { channel: await startInline(c.baseUrl, this.#onMessage), reason: 'turned off by the worker option' };
  }

  /**
   * Start the pipeline: Python runtime, face detector and emotion model (downloaded once, sha256-checked), with
   * PROGRESS events on the way. Calling it again while loading (or once loaded) returns the same promise;
   * after a failure it tries again.
   * @returns {Promise<LensInfo>}
   * @throws {LensError} code unsupported | integrity | timeout | csp | load | config, `step` the failed step
   */
  load() {
    if (this.#state === 'disposed') return Promise.reject(new LensError(ERROR_CODES.DISPOSED, 'This engine was disposed.'));
    if (this.#loading) return this.#loading;
    this.#setState('loading');
    this.#loading = (async () => {
      const unsupported = browserSupportProblem();
      if (unsupported) throw new LensError(ERROR_CODES.UNSUPPORTED, unsupported, { step: 'python' });
      // First visit: let the site's service worker see (and keep) the big downloads.
      await timed('service worker control', () => serviceWorkerControl());
      if (!this.#channel) {
        const { channel, reason } = await timed('engine start', () => this.#openChannel());
        this.#channel = channel;
        this.#backend = { thread: channel.thread, reason };
      }
      const c = this.#config;
      const { spans, ...info } = await timed('pipeline load', () => this.#call('load', {
        baseUrl: c.baseUrl, executionProviders: [...c.executionProviders], allowSoftwareGpu: c.allowSoftwareGpu,
        timeouts: { ...c.timeouts }, model: c.model, maxFaces: c.maxFaces, smoothing: { ...c.smoothing },
        warmup: c.warmup, detector: { ...this.#detector }, resample: c.resample.video,
      }));
      recordSpans(spans);
      this.#info = info;
      this.#pace.useModel(info.model.views);
      this.#setState('ready');
      this.#emit(EVENTS.READY, this.info);
      return this.info;
    })();
    this.#loading.catch(() => {
      this.#loading = null;
      if (this.#state !== 'disposed') this.#setState('error');
    });
    return this.#loading;
  }

  /**
   * Process one frame. While another frame is being processed, this one waits; a newer call replaces a waiting
   * frame, whose promise then resolves to null (counted in stats.dropped). An ImageBitmap or VideoFrame passed in
   * is consumed (transferred to the worker and closed).
   * @param {HTMLVideoElement|HTMLCanvasElement|OffscreenCanvas|HTMLImageElement|ImageBitmap|VideoFrame|ImageData|Blob} source
   * @param {{maxSide?: number, detector?: 'short_range'|'full_range'}} [options]  maxSide: default
   *   config.maxSide.video for a video / VideoFrame, else .image; detector: default as set for the kind of frame
   *   (config.detector, setDetector())
   * @returns {Promise<FrameResult|null>}
   * @throws {LensError} code input | frame | not-ready | worker | disposed
   */
  detect(source, options = {}) {
    if (this.#state !== 'ready') {
      return Promise.reject(new LensError(ERROR_CODES.NOT_READY, `The engine is ${this.#state}, not ready.`));
    }
    if (options.detector !== undefined && !DETECTORS.includes(options.detector)) {
      return Promise.reject(new LensError(ERROR_CODES.INPUT, `detector must be one of ${DETECTORS.join(', ')}`));
    }
    return new Promise((resolve, reject) => {
      const job = { source, options, resolve, reject };
      if (!this.#inFlight) {
        this.#run(job);
        return;
      }
      if (this.#waiting) {
        this.#dropped += 1;
        this.#waiting.resolve(null);
      }
      this.#waiting = job;
    });
  }

  async #run(job) {
    this.#inFlight = true;
    const t0 = performance.now();
    try {
      const { frame, kind } = await grabFrame(job.source);
      const grab = performance.now() - t0;
      const maxSide = job.options.maxSide ?? this.#config.maxSide[kind];
      const detector = job.options.detector ?? this.#detector[kind];
      const resample = this.#config.resample[kind];
      // A camera frame gets the work the device affords (js/pace.js); a photo all of it.
      const [detectEvery, views] = kind === 'video' ? [this.#pace.detectEvery, this.#pace.views] : [1, null];
      const { info, ...result } = await this.#call('detect',
        { frame, maxSide, kind, detector, resample, detectEvery, views }, [frame]);
      if (info) {
        this.#info = info;
        this.#emit(EVENTS.INFO, this.info);
      }
      result.timings.grab = grab;
      result.timings.roundTrip = performance.now() - t0;
      if (kind === 'video') {
        this.#pace.record({ ms: result.timings.roundTrip, detectorRan: result.detectorRan,
          classifyMs: result.timings.classify, views: result.views });
      }
      this.#frames += 1;
      this.#result = result;
      this.#emit(EVENTS.RESULT, result);
      job.resolve(result);
    } catch (err) {
      job.reject(asLensError(err, ERROR_CODES.FRAME));
    } finally {
      this.#inFlight = false;
      const next = this.#waiting;
      this.#waiting = null;
      if (next && this.#state === 'ready') this.#run(next);
      else next?.resolve(null);
    }
  }

  /**
   * Process a playing video continuously: the newest video frame is sent whenever the engine is free, i.e. at
   * once when a result arrives if the video has shown a new frame meanwhile, else on the video's next frame.
   * Frames the video showed in between are skipped (counted in stats.dropped where the browser counts the video's
   * frames). Results arrive as RESULT events (and results()); a failing frame is reported as an ERROR event and
   * stops the loop. One video at a time: a new watch() stops the previous one.
   * @param {HTMLVideoElement} video
   * @param {{maxSide?: number, detector?: 'short_range'|'full_range'}} [options]  as for detect()
   * @returns {() => void} stop: no further frames are sent (a frame in flight still delivers its result)
   */
  watch(video, options = {}) {
    this.#stopWatch?.();
    let active = true;
    // No frame callback is pending while a frame is in flight: while one is pending, the browser runs the page's
    // rendering steps at every display refresh (a loop that always keeps one pending: 60 updates a second).
    const useRvfc = typeof video.requestVideoFrameCallback === 'function';
    let handle = null; // the pending frame callback
    let resting = null; // the timer of a rest between frames (js/pace.js)
    let lastCount = null; // shownFrames(video) when the last frame was taken
    let takenAt = 0; // when the last frame was taken
    const waitForFrame = () => {
      if (!active || handle !== null) return;
      handle = useRvfc ? video.requestVideoFrameCallback(onFrame) : requestAnimationFrame(onFrame);
    };
    const onFrame = () => {
      handle = null;
      take(true);
    };
    /** Send the video's frame: `fresh` (a frame callback fired) or when the video has shown one since the last. */
    const take = (fresh) => {
      if (!active) return;
      const count = shownFrames(video);
      const newer = fresh || (count !== null && lastCount !== null && count > lastCount);
      if (!newer || !video.videoWidth || this.#state !== 'ready') {
        waitForFrame();
        return;
      }
      if (count !== null && lastCount !== null) this.#dropped += Math.max(0, count - lastCount - 1);
      lastCount = count;
      takenAt = performance.now();
      this.detect(video, options).then((result) => {
        if (result === null) {
          waitForFrame(); // replaced by another caller's frame: wait for the next one
          return;
        }
        const rest = this.#pace.restMs(performance.now() - takenAt);
        if (rest > 0) resting = setTimeout(() => { resting = null; take(false); }, rest);
        else take(false);
      }, (err) => {
        if (!active) return;
        stop();
        this.#emit(EVENTS.ERROR, asLensError(err, ERROR_CODES.FRAME).toJSON());
      });
    };
    const stop = () => {
      if (!active) return;
      active = false;
      clearTimeout(resting);
      if (handle !== null) {
        if (useRvfc) video.cancelVideoFrameCallback(handle);
        else cancelAnimationFrame(handle);
        handle = null;
      }
      if (this.#waiting?.source === video) {
        this.#waiting.resolve(null);
        this.#waiting = null;
      }
      if (this.#stopWatch === stop) this.#stopWatch = null;
    };
    waitForFrame();
    this.#stopWatch = stop;
    return stop;
  }

  /**
   * The results as an async iterator (newest first: a slow consumer skips results, it never falls behind).
   * Ends when the engine is disposed.
   * @returns {AsyncGenerator<FrameResult>}
   */
  async* results() {
    let latest = null;
    let wake = null;
    const onResult = (e) => { latest = e.detail; wake?.(); };
    const onState = () => wake?.();
    this.addEventListener(EVENTS.RESULT, onResult);
    this.addEventListener(EVENTS.STATE, onState);
    try {
      while (this.#state !== 'disposed') {
        if (!latest) await new Promise((resolve) => { wake = resolve; });
        wake = null;
        if (latest) {
          const out = latest;
          latest = null;
          yield out;
        }
      }
    } finally {
      this.removeEventListener(EVENTS.RESULT, onResult);
      this.removeEventListener(EVENTS.STATE, onState);
    }
  }

  /**
   * Switch the emotion model (an id of info.models) without reloading anything else; face tracks start afresh.
   * On failure the current model stays in use.
   * @param {string} modelId
   * @returns {Promise<LensInfo>}
   * @throws {LensError} code model | integrity | load
   */
  async setModel(modelId) {
    if (this.#state !== 'ready') throw new LensError(ERROR_CODES.NOT_READY, `The engine is ${this.#state}, not ready.`);
    if (!this.#info.models.some((m) => m.id === modelId)) {
      throw new LensError(ERROR_CODES.MODEL, `This site has no emotion model "${modelId}".`);
    }
    this.#info = await this.#call('setModel', { modelId });
    this.#pace.useModel(this.#info.model.views);
    this.#emit(EVENTS.MODEL, this.info);
    return this.info;
  }

  /**
   * Change the smoothing (forgets the face tracks).
   * @param {{mode: 'ema'|'mean'|'median'|'none', k: number}} smoothing
   * @returns {Promise<{mode: string, k: number}>} the settings in force (k rounded and clamped to 1..30)
   */
  async setSmoothing({ mode, k }) {
    if (!SMOOTHING_MODES.includes(mode)) {
      throw new LensError(ERROR_CODES.CONFIG, `smoothing mode must be one of ${SMOOTHING_MODES.join(', ')}`);
    }
    const smoothing = await this.#call('setSmoothing', { mode, k: Number(k) || 1 });
    this.#info.smoothing = smoothing;
    return { ...smoothing };
  }

  /**
   * The face detector for the next frames of a kind (camera frames: `video`; photos: `image`); face tracks are
   * kept. Takes effect from the next frame sent, a watch() in progress included.
   * @param {{video?: 'short_range'|'full_range', image?: 'short_range'|'full_range'}} detector
   * @returns {{video: string, image: string}} the detectors in force
   * @throws {LensError} code config for an unknown kind or detector
   */
  setDetector(detector) {
    for (const [kind, name] of Object.entries(detector)) {
      if (!(kind in this.#detector) || !DETECTORS.includes(name)) {
        throw new LensError(ERROR_CODES.CONFIG, `setDetector: ${kind} must be one of ${DETECTORS.join(', ')}`);
      }
    }
    Object.assign(this.#detector, detector);
    return { ...this.#detector };
  }

  /** Forget the face tracks (e.g. when the source changes from the camera to a photo). */
  async reset() {
    await this.#call('reset');
    this.#result = null;
  }

  /**
   * Memory where the pipeline runs, for long-run checks: {pythonWasmBytes, jsHeapBytes (null where the browser
   * does not report it, e.g. in a worker)}.
   * @returns {Promise<{pythonWasmBytes: number, jsHeapBytes: number|null}>}
   */
  memory() {
    return this.#call('memory');
  }

  /** Stop watching, release the sessions and end the worker. The engine cannot be used afterwards. */
  async dispose() {
    if (this.#state === 'disposed') return;
    this.#stopWatch?.();
    const channel = this.#channel;
    if (channel) await this.#call('dispose').catch(() => {});
    channel?.terminate();
    this.#channel = null;
    this.#failAll(new LensError(ERROR_CODES.DISPOSED, 'The engine was disposed.'));
    this.#waiting?.resolve(null);
    this.#waiting = null;
    this.#setState('disposed');
  }
}

/**
 * Create an engine (nothing is loaded until load()).
 * @param {LensOptions} [config]  options over DEFAULTS
 * @returns {EmotionLens}
 * @throws {LensError} code `config` for an invalid option
 */
export function createEmotionLens(config = {}) {
  return new EmotionLens(config);
}
