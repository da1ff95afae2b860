// onnxruntime-web sessions with an execution-provider fallback chain: WebGPU -> WebGL -> WASM.
//
// Each EP has its own ort bundle, imported only when that EP is tried, so a browser downloads just what it
// uses (measured in headless Chromium 156, face detector, 2 cores):
//   webgpu: ort.min.mjs + ort-wasm-simd-threaded.jsep.{mjs,wasm}   28.7 MB raw / 6.8 MB gzip
//   webgl:  ort.webgl.min.mjs (no wasm)                             0.5 MB raw / 0.1 MB gzip
//   wasm:   ort.wasm.min.mjs + ort-wasm-simd-threaded.{mjs,wasm}   14.3 MB raw / 3.7 MB gzip
// The plain wasm build creates sessions in ~0.6 s and runs ~2x faster than the JSEP build that the
// all-in-one bundle (ort.all.min.mjs) would use for WASM too (~1.1 s, 2x slower runs).
// Sessions from different bundles don't mix tensors, so every session remembers its bundle.
// openSession runs the sessions in a worker of their own (js/inference-worker.js) where workers can start, so
// onnxruntime's start does not take turns with Python's on the engine's thread.
import { ERROR_CODES, LensError } from './errors.js';
import { recordSpans, timed } from './load-timing.js';
import { fetchVerified, siteUrl } from './manifest.js';

export const EXECUTION_PROVIDERS = Object.freeze(['webgpu', 'webgl', 'wasm']);
/** How long one EP may take to create and warm up a session before the next is tried (ms): a GPU backend that is
 *  slower than this has nothing to offer over WASM; WASM, the last resort, gets as long as a slow phone needs. */
export const EP_TIME_LIMIT_MS = Object.freeze({ webgpu: 15_000, webgl: 15_000, wasm: 90_000 });

const ORT_DIR = 'vendor/ort/';
const BUNDLES = Object.freeze({ webgpu: 'ort.min.mjs', webgl: 'ort.webgl.min.mjs', wasm: 'ort.wasm.min.mjs' });
const MAX_THREADS = 4;
// Renderers that emulate a GPU on the CPU: there, WebGPU/WebGL run 7-25x slower than the WASM EP.
const SOFTWARE_GPU = /swiftshader|llvmpipe|softpipe|lavapipe|software|basic render/i;

const bundles = new Map(); // bundle file -> Promise<ort namespace>
const sessionOrt = new WeakMap(); // session -> the ort namespace that created it

/** Threads for the wasm backend: several only when cross-origin isolated (SharedArrayBuffer) and able to start
 *  workers (its threads are workers), and one core fewer than the device has: the page's own thread and Python's
 *  need one (on 2 cores, 2 onnxruntime threads left the page's thread waiting for a core: 4.4 ms of main-thread
 *  tasks a frame against ~2.6-3.1 with 1, and 19 against 27 FPS at 4x CPU throttling, for the same time a frame). */
function wasmThreads() {
  if (!globalThis.crossOriginIsolated || typeof Worker !== 'function' || isWebKit()) return 1;
  return Math.max(1, Math.min(MAX_THREADS, (navigator.hardwareConcurrency || 1) - 1));
}

/** Safari, and every browser on iOS (all are WebKit there). Its multi-threaded WebAssembly memory has failed with
 *  "RangeError: Out of memory" once the page is isolated, and a failed onnxruntime start cannot be retried in the
 *  same page (onnxruntime#11679, #22086; emscripten#19144), so onnxruntime runs single-threaded there; it also
 *  loads the runtimes one after the other (app-boot.js). */
export function isWebKit() {
  const ua = globalThis.navigator?.userAgent ?? '';
  return /AppleWebKit/.test(ua) && !/Chrome|Chromium|Edg\/|OPR\//.test(ua);
}

/**
 * Import and configure the ort bundle serving `ep` (once per bundle).
 * @param {string} [ep]  'webgpu', 'webgl' or 'wasm'
 * @returns {Promise<object>} the ort namespace
 */
export function loadOrt(ep = 'wasm') {
  const file = BUNDLES[ep];
  if (!file) return Promise.reject(new Error(`unknown execution provider "${ep}"`));
  if (!bundles.has(file)) {
    const loading = timed(`import ${file}`, () => import(siteUrl(ORT_DIR + file))).then((ort) => {
      ort.env.wasm.wasmPaths = siteUrl(ORT_DIR);
      ort.env.wasm.numThreads = wasmThreads();
      ort.env.wasm.proxy = false;
      ort.env.logLevel = 'error';
      return ort;
    });
    loading.catch(() => bundles.delete(file));
    bundles.set(file, loading);
  }
  return bundles.get(file);
}

async function webgpuProblem(allowSoftwareGpu) {
  if (!navigator.gpu) return 'WebGPU is not available in this browser (navigator.gpu is missing)';
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (err) {
    return `WebGPU adapter request failed: ${err.message}`;
  }
  if (!adapter) return 'WebGPU has no adapter (no supported GPU, or it is blocklisted)';
  const info = adapter.info ?? {};
  const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  if (!allowSoftwareGpu && (adapter.isFallbackAdapter || info.isFallbackAdapter || SOFTWARE_GPU.test(name))) {
    return `WebGPU adapter is a software renderer (${name || 'fallback adapter'}); WASM is faster`;
  }
  return null;
}

function webglProblem(allowSoftwareGpu) {
  const canvas = new OffscreenCanvas(1, 1);
  const gl = canvas.getContext('webgl2') || canvas.getContext('webgl');
  if (!gl) return 'WebGL is not available';
  const debug = gl.getExtension('WEBGL_debug_renderer_info');
  const renderer = String(gl.getParameter(debug ? debug.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  gl.getExtension('WEBGL_lose_context')?.loseContext();
  if (!allowSoftwareGpu && SOFTWARE_GPU.test(renderer)) {
    return `WebGL renderer is a software renderer (${renderer}); WASM is faster`;
  }
  return null;
}

/** Why `ep` should not be tried in this browser, or null when it looks usable (creation may still fail). */
async function unavailableReason(ep, allowSoftwareGpu) {
  if (ep === 'webgpu') return webgpuProblem(allowSoftwareGpu);
  if (ep === 'webgl') return webglProblem(allowSoftwareGpu);
  if (ep === 'wasm') return typeof WebAssembly === 'object' ? null : 'WebAssembly is not available';
  return `unknown execution provider "${ep}"`;
}

/** Input dims with every symbolic/unknown dimension set to 1, from the model's metadata; null if unknown. */
function warmupDimsFromMetadata(session) {
  let meta;
  try {
    meta = session.inputMetadata?.[0];
  } catch {
    return null; // the WebGL backend cannot report metadata
  }
  if (!meta?.isTensor || !Array.isArray(meta.shape) || meta.shape.length === 0) return null;
  return meta.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
}

function allFinite(outputs) {
  return Object.values(outputs).every(({ data }) => data.every(Number.isFinite));
}

// Sessions are created one at a time, in the order they are asked for, in the inference worker and on a thread
// without one alike: onnxruntime-web's backends initialise on the first creation, and overlapping creations failed
// (on WebGPU they never finished) or are the likely cause of a failed warm-up on the page's own thread under CPU load
// ("Cannot read properties of null (reading '3')", issue 24; tests/test_e2e_engine.py repeats that start).
/** @type {Promise<unknown>} */
let creating = Promise.resolve();

/**
 * Create an inference session on the first execution provider that works. An EP is skipped when the
 * browser lacks it, when its GPU is a software renderer (unless allowSoftwareGpu), when session creation
 * throws, when a warm-up run on zeros throws or returns non-finite numbers (WebGL lacks some ops and
 * may fail only at run time), or when the two take longer than the EP's time limit.
 * @param {ArrayBuffer|Uint8Array} modelBytes  the ONNX file (e.g. from fetchVerified)
 * @param {{preferred?: readonly string[], warmupDims?: number[]|null, name?: string, allowSoftwareGpu?: boolean,
 *          variants?: Record<string, {load: () => Promise<ArrayBuffer|Uint8Array>, batch?: number}>,
 *          onAttempt?: (a: {ep: string, ok: boolean, reason?: string, ms: number}) => void,
 *          timeLimitMs?: number, warmupFeeds?: Record<string, {data: Float32Array|BigInt64Array, dims: number[]}>}} [options]
 *   variants: per EP, another file of the same network, loaded only when that EP is tried (WebGL takes
 *   only fixed shapes, so it gets a batch-1 copy); `batch` is the batch size that file is fixed to.
 *   preferred: EPs in order (default ['webgpu', 'webgl', 'wasm']); warmupDims: shape of the warm-up input
 *   (pass it: WebGL cannot report input shapes; default: from the model's metadata, symbolic dims set to 1);
 *   name: used in error messages; allowSoftwareGpu: also use SwiftShader-like GPUs (tests of the chain);
 *   timeLimitMs: how long one EP may take to create and warm up the session (default EP_TIME_LIMIT_MS);
 *   warmupFeeds: what the warm-up gives the model's other inputs, those of them it has (the WebGL copy may lack one).
 * @returns {Promise<{session: object, ep: string, batch: number|null, attempts: Array<{ep: string, ok: boolean,
 *          reason?: string, ms: number}>, createMs: number, warmupMs: number}>}  batch: fixed batch size, or
 *          null when the session takes any batch
 * @throws {Error} when no EP works, listing why each one failed
 */
export function createSession(modelBytes, options = {}) {
  const turn = creating.then(() => createSessionNow(modelBytes, options));
  creating = turn.catch(() => {});
  return turn;
}

/**
 * createSession's work, for one session at a time.
 * @param {Parameters<typeof createSession>[0]} modelBytes
 * @param {Parameters<typeof createSession>[1]} [options]
 */
async function createSessionNow(modelBytes, { preferred = EXECUTION_PROVIDERS, warmupDims, name = 'model',
  allowSoftwareGpu = false, variants = {}, onAttempt, timeLimitMs, warmupFeeds = {} } = {}) {
  const bytes = modelBytes instanceof Uint8Array ? modelBytes : new Uint8Array(modelBytes);
  const attempts = [];
  const record = (attempt) => { attempts.push(attempt); onAttempt?.(attempt); };
  for (const ep of preferred) {
    const t0 = performance.now();
    const reason = await unavailableReason(ep, allowSoftwareGpu);
    if (reason) {
      record({ ep, ok: false, reason, ms: performance.now() - t0 });
      continue;
    }
    // A backend that hangs (Safari's WebGPU has run away) must not keep the page loading: past its time limit the
    // next EP is tried, and a session that still arrives later is released.
    const limitMs = timeLimitMs ?? EP_TIME_LIMIT_MS[ep];
    const attempt = startOnEp(ep, bytes, variants[ep], { name, warmupDims, warmupFeeds });
    let timer;
    const timeout = new Promise((resolve) => { timer = setTimeout(resolve, limitMs, null); });
    const outcome = await Promise.race([attempt, timeout]).finally(() => clearTimeout(timer));
    if (outcome === null) {
      attempt.then((late) => late.session?.release().catch(() => {}), () => {});
      record({ ep, ok: false, reason: `no answer within ${limitMs / 1000} s`, ms: performance.now() - t0 });
      continue;
    }
    if (outcome.reason) {
      record({ ep, ok: false, reason: outcome.reason, ms: performance.now() - t0 });
      continue;
    }
    const { session, createMs, warmupMs, warmedUp } = outcome;
    record({ ep, ok: true, ms: performance.now() - t0, ...(warmedUp ? {} : { reason: 'no warm-up: input shape unknown' }) });
    return { session, ep, batch: variants[ep]?.batch ?? null, attempts, createMs, warmupMs };
  }
  const why = attempts.map((a) => `${a.ep}: ${a.reason}`).join('; ');
  throw new Error(`No execution provider could run the ${name} (${why}).`);
}

/**
 * One EP's try: its session, created and warmed up on zeros. Resolves {session, createMs, warmupMs, warmedUp} or
 * {reason} (why this EP cannot run the model); never rejects.
 */
async function startOnEp(ep, bytes, variant, { name, warmupDims, warmupFeeds }) {
  const t0 = performance.now();
  let session;
  try {
    const ort = await loadOrt(ep);
    // A copy per attempt: a backend may keep or detach the buffer it was given.
    const epBytes = variant ? new Uint8Array(await variant.load()) : bytes.slice();
    session = await timed(`session ${name} (${ep})`, () => ort.InferenceSession.create(epBytes, {
      executionProviders: [ep],
      graphOptimizationLevel: 'all',
    }));
    sessionOrt.set(session, ort);
  } catch (err) {
    return { reason: `session creation failed: ${err.message ?? err}` };
  }
  const createMs = performance.now() - t0;
  const t1 = performance.now();
  const dims = warmupDims ?? warmupDimsFromMetadata(session);
  try {
    if (dims) {
      const size = dims.reduce((a, b) => a * b, 1);
      const feeds = { [session.inputNames[0]]: { data: new Float32Array(size), dims } };
      for (const other of session.inputNames.slice(1)) if (warmupFeeds[other]) feeds[other] = warmupFeeds[other];
      const outputs = await timed(`warm-up ${name} (${ep})`, () => runFeeds(session, feeds));
      if (!allFinite(outputs)) throw new Error('warm-up output has NaN or infinite values');
    }
  } catch (err) {
    await session.release().catch(() => {});
    return { reason: `warm-up run failed: ${err.message ?? err}` };
  }
  return { session, createMs, warmupMs: performance.now() - t1, warmedUp: Boolean(dims) };
}

/** The inference worker (js/inference-worker.js), one per thread that opens sessions, and its pending requests. */
class InferenceRoom {
  constructor() {
    this.worker = new Worker(new URL('./inference-worker.js', import.meta.url), {
      type: 'module', name: 'emotion-lens-inference',
    });
    this.pending = new Map(); // id -> {resolve, reject, onProgress}
    this.nextId = 1;
    this.broken = false;
    this.worker.addEventListener('message', ({ data }) => this.receive(data));
    this.worker.addEventListener('error', (event) => {
      event.preventDefault?.();
      this.fail(`the inference worker stopped: ${event.message || 'it could not start'}`);
    });
  }

  call(op, args, onProgress) {
    if (this.broken) return Promise.reject(new LensError(ERROR_CODES.WORKER, 'the inference worker is not running'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, op, ...args });
    });
  }

  receive({ id, progress, result, error, spans }) {
    const request = this.pending.get(id);
    if (!request) return;
    if (progress) {
      request.onProgress?.(progress);
      return;
    }
    this.pending.delete(id);
    if (spans?.length) recordSpans(spans);
    if (error) request.reject(new LensError(error.code, error.message));
    else request.resolve(result);
  }

  fail(message) {
    this.broken = true;
    this.worker.terminate();
    for (const { reject } of this.pending.values()) reject(new LensError(ERROR_CODES.WORKER, message));
    this.pending.clear();
  }
}

/** A session living in the inference worker; `run` / `runFeeds` take it like a local one. */
class RemoteSession {
  constructor(room, { handle, inputNames, outputNames }) {
    this.room = room;
    this.handle = handle;
    this.inputNames = inputNames;
    this.outputNames = outputNames;
  }

  release() {
    return this.room.call('release', { handle: this.handle });
  }
}

let room = null;
let roomUnavailable = typeof Worker !== 'function';

/**
 * @typedef {object} OpenedSession  a session and how it was created (createSession's result)
 * @property {object} session  for run / runFeeds
 * @property {string} ep
 * @property {number|null} batch
 * @property {Array<{ep: string, ok: boolean, reason?: string, ms: number}>} attempts
 * @property {number} createMs
 * @property {number} warmupMs
 */

/**
 * @typedef {object} PreparedSession  a model file downloaded and checked, its session not created yet
 * @property {() => Promise<OpenedSession>} start  creates the session the first time (one creation however often
 *   it is called; a failed one may be tried again)
 * @property {() => Promise<void>} release  frees the file, and the session if it was started
 */

/** start/release over `create`, which is called at most once at a time and again only after it failed. */
function preparedOnce(create, forget) {
  let started = null;
  return {
    start() {
      started ??= create().catch((err) => {
        started = null;
        throw err;
      });
      return started;
    },
    async release() {
      const opened = started && await started.catch(() => null);
      if (opened) await opened.session.release();
      else await forget();
    },
  };
}

/**
 * Download a model file of the site (checked against manifest.json) now, and create its session with
 * createSession's EP chain only when `start()` is called: in the inference worker where one can start, else on this
 * thread. For a model not needed at once (the full-range face detector, for photos): its file is on the device
 * before the engine is ready (nothing is fetched after that), its session's start and memory wait for its first use.
 * @param {string} path  site path of the ONNX file, as listed in manifest.json
 * @param {{preferred?: readonly string[], warmupDims?: number[]|null, name?: string, allowSoftwareGpu?: boolean,
 *          warmupFeeds?: Record<string, {data: Float32Array|BigInt64Array, dims: number[]}>}} options
 *   createSession's options (plain data: they cross to the worker)
 * @param {{webgl?: {path: string, batch: number}|null, onProgress?: (p: {path: string, loaded: number,
 *          total: number}) => void}} [more]  webgl: a fixed-shape copy of the network for the WebGL EP
 * @returns {Promise<PreparedSession>}
 * @throws {LensError} code `integrity` or `load` (downloading); start() throws code `load`
 */
export async function prepareSession(path, options, { webgl = null, onProgress } = {}) {
  const report = onProgress ? (p) => onProgress({ path, ...p }) : undefined;
  if (!roomUnavailable) {
    try {
      room ??= new InferenceRoom();
      const owner = room;
      const { handle } = await owner.call('prepare', { siteRoot: siteUrl(''), path, options, webgl }, report);
      return preparedOnce(async () => {
        const { inputNames, outputNames, ...opened } = await owner.call('start', { handle });
        return { ...opened, session: new RemoteSession(owner, { handle, inputNames, outputNames }) };
      }, () => owner.call('release', { handle }));
    } catch (err) {
      if (err.code !== ERROR_CODES.WORKER) throw err;
      roomUnavailable = true; // this browser cannot start it: onnxruntime runs on this thread
      room = null;
    }
  }
  const bytes = await fetchVerified(path, { onProgress });
  const variants = webgl ? { webgl: { load: () => fetchVerified(webgl.path), batch: webgl.batch } } : {};
  return preparedOnce(() => createSession(bytes, { ...options, variants }), async () => {});
}

/**
 * Release an OpenedSession, or a PreparedSession (its file, and its session if it was started).
 * @param {OpenedSession|PreparedSession} opened
 * @returns {Promise<void>}
 */
export function releaseSession(opened) {
  return isPrepared(opened) ? opened.release() : opened.session.release();
}

/**
 * Whether `opened` is a PreparedSession (prepareSession's, not started through it) rather than an OpenedSession.
 * @param {OpenedSession|PreparedSession} opened
 * @returns {opened is PreparedSession}
 */
export function isPrepared(opened) {
  return 'start' in opened;
}

/**
 * Download a model file of the site (checked against manifest.json) and create its session: prepareSession, then
 * start at once.
 * @param {Parameters<typeof prepareSession>[0]} path
 * @param {Parameters<typeof prepareSession>[1]} options
 * @param {Parameters<typeof prepareSession>[2]} [more]
 * @returns {Promise<OpenedSession>}
 * @throws {LensError} code `integrity` or `load`
 */
export async function openSession(path, options, more) {
  return (await prepareSession(path, options, more)).start();
}

/** Where openSession's sessions run: 'worker' (the inference worker) or 'same-thread' (it could not start). */
export function inferenceThread() {
  return room ? 'worker' : 'same-thread';
}

/** Stop the inference worker (after its sessions are released); the next openSession starts a new one. */
export function closeInferenceRoom() {
  room?.worker.terminate();
  room = null;
}

/** Exact-size copies of views on larger buffers, so posting a feed copies only its own bytes. */
function ownBuffers(feeds) {
  const out = {};
  for (const [name, { data, dims }] of Object.entries(feeds)) {
    out[name] = { data: data.byteLength === data.buffer.byteLength ? data : data.slice(), dims };
  }
  return out;
}

/**
 * Run a session on named inputs: float32, or int64 where the data is a BigInt64Array (an emotion model's `views`).
 * @param {object} session  from createSession or openSession
 * @param {Record<string, {data: Float32Array|BigInt64Array, dims: number[]}>} feeds
 * @returns {Promise<Record<string, {data: Float32Array, dims: number[]}>>}  outputs, on the CPU
 */
export async function runFeeds(session, feeds) {
  if (session instanceof RemoteSession) return session.room.call('run', { handle: session.handle, feeds: ownBuffers(feeds) });
  const ort = sessionOrt.get(session);
  if (!ort) throw new Error('runFeeds: this session was not created by createSession');
  const tensors = {};
  for (const [name, { data, dims }] of Object.entries(feeds)) {
    tensors[name] = new ort.Tensor(data instanceof BigInt64Array ? 'int64' : 'float32', data, dims);
  }
  const results = await session.run(tensors);
  /** @type {Record<string, {data: Float32Array, dims: number[]}>} */
  const out = {};
  for (const [name, tensor] of Object.entries(results)) {
    out[name] = { data: tensor.location === 'cpu' ? tensor.data : await tensor.getData(true), dims: tensor.dims };
  }
  return out;
}

/**
 * Run a single-input session.
 * @param {object} session
 * @param {string} name  the input's name (e.g. 'input')
 * @param {Float32Array} data
 * @param {number[]} dims
 * @returns {Promise<Record<string, {data: Float32Array, dims: number[]}>>}
 */
export function run(session, name, data, dims) {
  return runFeeds(session, { [name]: { data, dims } });
}

/**
 * What the WASM backend runs with here: whether the page is cross-origin isolated (SharedArrayBuffer) and how many
 * threads onnxruntime's WASM backend gets (1 where not isolated, and on WebKit).
 * @returns {{crossOriginIsolated: boolean, wasmThreads: number}}
 */
export function runtimeIsolation() {
  return { crossOriginIsolated: Boolean(globalThis.crossOriginIsolated), wasmThreads: wasmThreads() };
}
