// The frame pipeline behind the EmotionLens engine: the Python runtime, the onnxruntime sessions (two face
// detectors, one emotion model; in the inference worker, js/inference-worker.js, where it can start) and the per-frame work (pixels -> Python pre -> detector -> Python decode/crop ->
// emotion model -> Python post).
// One module for both places it runs: the engine's Web Worker (js/lens-worker.js), or the main thread where no
// worker can run. It speaks only messages, handled one at a time in arrival order:
//   in:  {type, id, data}   type: load | detect | setModel | setSmoothing | reset | memory | dispose
//   out: {status: 'progress', id, data: LoadProgress} ... then {status: 'done', id, data} or
//        {status: 'error', id, error: {code, message, step?}}
// A frame arrives as a VideoFrame or ImageBitmap (transferred, no copy on the sender's side) and is closed here.
import { VIEWS_INPUT, loadEmotionModel, loadEverything, viewsFeed, viewsOf } from './app-boot.js';
import { ERROR_CODES, LensError, asLensError } from './errors.js';
import { fitSize } from './frame-size.js';
import {
  closeInferenceRoom, inferenceThread, isPrepared, releaseSession, run, runFeeds, runtimeIsolation,
} from './inference.js';
import { takeSpans, timed } from './load-timing.js';
import { lumaCrops, planesSquare, readPlanes } from './frame-planes.js';
import { setSiteRoot } from './manifest.js';

const now = () => performance.now();
// A blank frame of this size compiles kernels and warms caches at load, so the first real frame is not the slow one.
const WARMUP_SIZE = [64, 48];
// Side the browser draws face crops at: the emotion model's input, so Python only turns them grey.
const CROP_SIDE = 48;
// Firefox's canvas has no imageSmoothingQuality (bug 1228847): it downscales bilinearly from 2 x 2 source pixels
// whatever the reduction, so the detector's 5x reduction aliases (build/measure_resample.py in Firefox, RGB camera
// frames: FER+ test faces of 100 px found in 4.0% of frames, 18.5% through numpy). There the canvas draws from halved
// copies of the frame (each drawn from the one before: a 2 x 2 mean), so no draw reduces more than 2x.
const SMOOTHING_QUALITY = (() => {
  const context = globalThis.OffscreenCanvasRenderingContext2D ?? globalThis.CanvasRenderingContext2D;
  return Boolean(context && 'imageSmoothingQuality' in context.prototype);
})();

/** Copy a float32 numpy array (PyProxy) into a JS Float32Array and free the proxy. */
function takeFloat32(proxy) {
  const buf = proxy.getBuffer('f32');
  try {
    return { data: new Float32Array(buf.data), dims: Array.from(buf.shape) };
  } finally {
    buf.release();
    proxy.destroy();
  }
}

/** Pick the detector outputs by shape: regressors (1, A, 16), scores (1, A, 1) (A = 896 or 2304 anchors). */
function detectorOutputs(session, outputs) {
  let reg = null;
  let sc = null;
  for (const name of session.outputNames) {
    const t = outputs[name];
    const last = t.dims[t.dims.length - 1];
    if (last === 16) reg = t;
    else if (last === 1) sc = t;
  }
  if (!reg || !sc) throw new Error(`unexpected detector outputs: ${session.outputNames.join(', ')}`);
  return { reg, sc };
}

/**
 * drawImage arguments (source rect, destination rect) that stretch a w x h frame's edge rows, columns and corner
 * pixels `far` px outwards: edge replication for a crop that leaves the frame.
 */
function edgeStretches(w, h, far) {
  return [
    [0, 0, 1, h, -far, 0, far, h], [w - 1, 0, 1, h, w, 0, far, h], // left, right columns
    [0, 0, w, 1, 0, -far, w, far], [0, h - 1, w, 1, 0, h, w, far], // top, bottom rows
    [0, 0, 1, 1, -far, -far, far, far], [w - 1, 0, 1, 1, w, -far, far, far], // corners
    [0, h - 1, 1, 1, -far, h, far, far], [w - 1, h - 1, 1, 1, w, h, far, far],
  ];
}

function inWorker() {
  return typeof WorkerGlobalScope !== 'undefined' && globalThis instanceof WorkerGlobalScope;
}

/** A 2-D canvas to read pixels from: OffscreenCanvas (workers, modern browsers), else a DOM canvas. */
function pixelCanvas(width = 1, height = 1) {
  const canvas = typeof OffscreenCanvas === 'function'
    ? new OffscreenCanvas(width, height)
    : Object.assign(document.createElement('canvas'), { width, height });
  return { canvas, ctx: canvas.getContext('2d', { willReadFrequently: true }) };
}

class Pipeline {
  constructor() {
    this.loaded = null; // {pyodide, runtime, detectors: {short_range, full_range}, emotion, catalog}
    this.infoChanged = false; // a session started since describe() was last sent (the full-range detector's)
    this.bridge = null; // emotion_runtime.AppBridge (PyProxy)
    this.detector = 'short_range'; // the face detector the bridge is set to (FramePipeline's name for it)
    this.options = null;
    this.canvases = {}; // pixel canvases by use (frame, rgb, square, crops, half1...), kept from frame to frame
    this.halves = []; // this frame's halved copies (reducible), made as needed
    this.planeBuffers = {}; // {buffer}: a camera frame's planes (readPlanes), kept from frame to frame
    this.planesWork = true; // false once copying a frame's planes has failed
  }

  async load(data, progress) {
    const o = data;
    if (o.baseUrl) setSiteRoot(o.baseUrl);
    this.options = o;
    this.loaded = await loadEverything({
      progress, eps: o.executionProviders, allowSoftwareGpu: o.allowSoftwareGpu, timeoutMs: o.timeouts.load,
      modelId: o.model,
    });
    this.useEmotion(this.loaded.emotion, o.smoothing);
    if (o.warmup) {
      // Only the camera's face detector: the first camera frame is the one a user waits for; the other detector
      // (photos) is warmed up by its first photo.
      const [w, h] = WARMUP_SIZE;
      const blank = pixelCanvas(w, h).canvas;
      const detector = o.detector?.video ?? this.detector;
      this.useDetector(detector);
      await timed(`pipeline warm-up ${detector}`, () => this.process(blank, w, h, w, h, o.resample, 1));
      this.bridge.reset();
    }
    return { ...this.describe(), spans: takeSpans() };
  }

  /**
   * The face detector `name`'s opened session; one only prepared at load (the full-range detector: downloaded and
   * checked, js/app-boot.js) is started here, on its first frame.
   */
  async detectorSession(name) {
    const slot = this.loaded.detectors[name];
    if (!isPrepared(slot)) return slot;
    const opened = await slot.start();
    this.loaded.detectors[name] = opened;
    this.infoChanged = true;
    return opened;
  }

  /**
   * What the engine reports once loaded, after a model switch, and with the frame that started the full-range
   * detector (until then its ep is null and its attempts empty).
   */
  describe() {
    this.infoChanged = false;
    const { detectors: { short_range: detector, full_range: detectorFullRange }, emotion, catalog } = this.loaded;
    return {
      thread: inWorker() ? 'worker' : 'main',
      inference: inferenceThread(),
      runtime: runtimeIsolation(),
      ep: { detector: detector.ep, detectorFullRange: detectorFullRange.ep ?? null, emotion: emotion.ep },
      epAttempts: {
        detector: detector.attempts, detectorFullRange: detectorFullRange.attempts ?? [], emotion: emotion.attempts,
      },
      model: this.model,
      models: catalog,
      smoothing: { ...this.smoothing },
    };
  }

  /** Make `emotion` the model in use: a fresh AppBridge (tracks forgotten) with its sidecar. */
  useEmotion(emotion, smoothing) {
    const bridge = this.loaded.runtime.AppBridge(JSON.stringify(emotion.sidecar), this.options.maxFaces,
      smoothing.mode, smoothing.k);
    bridge.set_detector(this.detector);
    this.bridge?.destroy();
    this.bridge = bridge;
    this.loaded.emotion = emotion;
    this.smoothing = JSON.parse(bridge.smoothing_json());
    const look = JSON.parse(bridge.labels_json());
    const { id, title, dataset } = emotion.entry;
    this.model = { id, title, dataset: dataset ?? null, sha256: emotion.sidecar.sha256 ?? null, ...look,
      views: viewsOf(emotion) };
  }

  async setModel({ modelId }, progress) {
    this.requireLoaded();
    const old = this.loaded.emotion;
    if (old.entry.id === modelId) return this.describe();
    const { executionProviders: eps, allowSoftwareGpu } = this.options;
    // The old model stays in use until the new one is running: a failed switch loses nothing.
    const emotion = await loadEmotionModel(modelId, { eps, allowSoftwareGpu }, progress);
    this.useEmotion(emotion, this.smoothing);
    await old.session.release().catch(() => {});
    return this.describe();
  }

  /** Run the next frames through the face detector `name` (short_range | full_range); face tracks are kept. */
  useDetector(name) {
    if (name === this.detector) return;
    this.bridge.set_detector(name);
    this.detector = name;
  }

  setSmoothing({ mode, k }) {
    this.requireLoaded();
    this.smoothing = JSON.parse(this.bridge.set_smoothing(mode, k));
    return { ...this.smoothing };
  }

  reset() {
    this.requireLoaded();
    this.bridge.reset();
    return null;
  }

  requireLoaded() {
    if (!this.loaded) throw new LensError(ERROR_CODES.NOT_READY, 'The engine is not loaded yet: call load() first.');
  }

  /**
   * One frame (VideoFrame | ImageBitmap, closed here), read at most `maxSide` px on its long side, through the face
   * detector `detector` (short_range | full_range) at least every `detectEvery` frames (see process), resampled by
   * `resample` (browser | numpy, see process), each face through `views` views of the emotion model (null: all).
   */
  async detect({ frame, maxSide, kind, detector, resample, detectEvery = 1, views = null }) {
    try {
      this.requireLoaded();
      if (!this.loaded.detectors[detector]) {
        throw new LensError(ERROR_CODES.INPUT, `unknown face detector "${detector}"`);
      }
      this.useDetector(detector);
      const w = frame.displayWidth ?? frame.width;
      const h = frame.displayHeight ?? frame.height;
      const { width, height } = fitSize(w, h, maxSide);
      const result = await this.process(frame, w, h, width, height, resample, detectEvery, views);
      result.kind = kind;
      result.detector = detector;
      if (this.infoChanged) result.info = this.describe(); // the engine's info, with the session just started
      return result;
    } finally {
      frame.close?.(); // VideoFrame / ImageBitmap: free it now, not at garbage collection
    }
  }

  /**
   * A frame (any canvas image source, `srcWidth` x `srcHeight`) through the pipeline with the bridge's current face
   * detector; results are in the frame's read size `width` x `height`. The detector runs when the bridge says it is
   * due (at least every `detectEvery` frames; emotion_runtime.schedule); on the other frames the last detection's
   * faces, moved on at their tracks' velocity, are cut from this frame and classified again. Who resamples
   * (`resample`):
   * - 'browser': the frame is fitted into the detector's square, and each face's crop square is drawn upright at
   *   CROP_SIDE px from the frame's full-resolution pixels: sampled from a camera frame's planes (js/frame-planes.js),
   *   drawn by the canvas otherwise; Python gets only those small images (see build/measure_resample.py for what
   *   this does to accuracy);
   * - 'numpy': the frame's pixels (read at width x height) go to Python, which letterboxes and crops them
   *   (emotion_runtime.preprocess, the same numbers as CPython and the tests).
   * The emotion model runs `views` views of each face where it can (null: all it averages; see classify).
   */
  async process(source, srcWidth, srcHeight, width, height, resample, detectEvery, views = null) {
    const bridge = this.bridge;
    const byBrowser = resample === 'browser';
    const t0 = now();
    const detectorRan = bridge.detection_due(width, height, detectEvery);
    this.halves = [];
    const videoFrame = byBrowser && typeof VideoFrame === 'function' && source instanceof VideoFrame;
    // A camera frame: the detector's square and the crops come from its planes (js/frame-planes.js), with no
    // canvas draw of the whole frame. Planes that cannot be copied out (VideoFrame.copyTo failing, as in some Safari
    // versions) leave the canvas to draw them, from then on.
    // A frame stored turned or mirrored (VideoFrame.rotation / flip: a phone's portrait camera) keeps its planes as
    // coded, not as displayed: the canvas, which draws it as displayed, reads it.
    const upright = videoFrame && !source.rotation && !source.flip;
    const planes = upright && this.planesWork
      ? await readPlanes(source, this.planeBuffers).catch(() => { this.planesWork = false; return null; }) : null;
    if (videoFrame && !planes) source = this.rgbCopy(source, srcWidth, srcHeight);
    let n = 0;
    const stage = { read: 0, input: 0, detect: 0, decode: 0 }; // ms of the detector's steps, 0 when it is skipped
    if (detectorRan) {
      const pixels = !byBrowser ? this.framePixels(source, width, height)
        : planes ? planesSquare(planes, this.squareFit(width, height))
          : this.detectorSquare(source, srcWidth, srcHeight, width, height);
      const t1 = now();
      const x = takeFloat32(byBrowser
        ? bridge.detector_input_square(pixels, width, height)
        : bridge.detector_input(pixels, width, height));
      const t2 = now();
      const det = (await this.detectorSession(this.detector)).session;
      const { reg, sc } = detectorOutputs(det, await run(det, det.inputNames[0], x.data, x.dims));
      const t3 = now();
      n = bridge.decode_faces(reg.data, sc.data);
      Object.assign(stage, { read: t1 - t0, input: t2 - t1, detect: t3 - t2, decode: now() - t3 });
    } else {
      const t1 = now();
      n = bridge.keep_faces(width, height, byBrowser ? null : this.framePixels(source, width, height));
      stage.read = t1 - t0;
    }
    const detected = bridge.detected;
    const tc = now();
    let crops = null;
    let drawMs = 0; // drawing the crops: part of capture, not of Python's pre
    if (n > 0 && byBrowser) {
      const squares = JSON.parse(bridge.crop_geometry_json());
      const drawn = planes
        ? lumaCrops(planes.luma, squares, planes.luma.width / width, planes.luma.height / height, CROP_SIDE)
        : this.drawCrops(source, srcWidth, srcHeight, width, height, squares);
      drawMs = now() - tc;
      crops = takeFloat32(bridge.emotion_input_drawn(drawn, CROP_SIDE));
    } else if (n > 0) {
      crops = takeFloat32(bridge.emotion_input());
    }
    const t4 = now();
    const ran = this.viewsRun(views);
    const logits = n > 0 ? await this.classify(crops, ran) : null;
    const t5 = now();
    const faces = JSON.parse(bridge.update_json(logits));
    const t6 = now();
    return {
      faces,
      detected,
      detectorRan,
      width,
      height,
      views: ran,
      timings: {
        capture: stage.read + drawMs,
        detect: stage.detect,
        pre: stage.input + stage.decode + (t4 - tc) - drawMs, // detector input + decode_faces + emotion input (Python)
        preDetector: stage.input, // of which the detector's input
        classify: t5 - t4,
        post: t6 - t5,
        total: t6 - t0,
      },
    };
  }

  /** The frame's RGBA pixels at width x height (the numpy path). */
  framePixels(source, width, height) {
    const { ctx } = this.canvasFor('frame', width, height);
    ctx.drawImage(source, 0, 0, width, height);
    return ctx.getImageData(0, 0, width, height).data;
  }

  /**
   * A VideoFrame's pixels on a canvas of its own size. Every drawImage of a VideoFrame converts the whole frame from
   * the camera's YUV to RGB (about 2-3.5 ms for 640x480 in headless Chromium here): the detector's square (and the
   * crops of a frame without a luma plane) draw from this one copy.
   */
  rgbCopy(frame, width, height) {
    const { canvas, ctx } = this.canvasFor('rgb', width, height);
    ctx.drawImage(frame, 0, 0);
    return canvas;
  }

  /**
   * What to draw `source` from for a `reduction`-fold downscale: the source itself where the canvas resamples well
   * (SMOOTHING_QUALITY) or the reduction is at most 2x, else this frame's copy halved k times, from which the draw
   * reduces at most 2x. {image, width, height}: the image and its size in px.
   */
  reducible(source, srcWidth, srcHeight, reduction) {
    const k = SMOOTHING_QUALITY ? 0 : Math.max(0, Math.ceil(Math.log2(reduction)) - 1);
    let level = { image: source, width: srcWidth, height: srcHeight };
    for (let i = 1; i <= k; i++) {
      if (!this.halves[i]) {
        const width = Math.max(1, Math.ceil(level.width / 2));
        const height = Math.max(1, Math.ceil(level.height / 2));
        const { canvas, ctx } = this.canvasFor(`half${i}`, width, height);
        ctx.imageSmoothingEnabled = true;
        ctx.drawImage(level.image, 0, 0, level.width, level.height, 0, 0, width, height);
        this.halves[i] = { image: canvas, width, height };
      }
      level = this.halves[i];
    }
    return level;
  }

  /** The pixel canvas kept for `use`, sized width x height (a resize resets its drawing state: set it per draw). */
  canvasFor(use, width, height) {
    const held = (this.canvases[use] ??= pixelCanvas(width, height));
    if (held.canvas.width !== width || held.canvas.height !== height) {
      held.canvas.width = width;
      held.canvas.height = height;
    }
    return held;
  }

  /** Where a width x height frame goes in the detector's square (letterbox_json: {size, x, y, width, height}). */
  squareFit(width, height) {
    const key = `${width}x${height}@${this.detector}`;
    if (this.squareGeometry?.key !== key) {
      this.squareGeometry = { key, ...JSON.parse(this.bridge.letterbox_json(width, height)) };
    }
    return this.squareGeometry;
  }

  /**
   * The frame fitted into the detector's square by the browser's resampling (smoothing quality high), where the
   * Python side expects a width x height frame (letterbox_json), padding black: RGBA pixels of the square.
   */
  detectorSquare(source, srcWidth, srcHeight, width, height) {
    const g = this.squareFit(width, height);
    const { ctx } = this.canvasFor('square', g.size, g.size); // sides differ per detector
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, g.size, g.size);
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    const drawn = this.reducible(source, srcWidth, srcHeight, srcWidth / g.width);
    ctx.drawImage(drawn.image, 0, 0, drawn.width, drawn.height, g.x, g.y, g.width, g.height);
    return ctx.getImageData(0, 0, g.size, g.size).data;
  }

  /**
   * Each face's crop square (crop_geometry: centre, side and roll in the read size width x height) drawn upright from
   * the source's own srcWidth x srcHeight pixels at CROP_SIDE x CROP_SIDE, stacked top to bottom: RGBA pixels of all
   * crops.
   * Where a square leaves the frame, the frame's edge pixels are stretched outwards, as numpy's crop replicates them
   * (a black border would be an edge no training face has).
   */
  drawCrops(source, srcWidth, srcHeight, width, height, squares) {
    const g = CROP_SIDE;
    const rows = g * squares.length;
    const { ctx } = this.canvasFor('crops', g, rows);
    ctx.clearRect(0, 0, g, rows);
    const [scaleX, scaleY] = [srcWidth / width, srcHeight / height];
    const far = Math.max(srcWidth, srcHeight); // long enough for any edge stretch
    squares.forEach(({ cx, cy, side, roll }, i) => {
      const s = g / side;
      const cos = Math.cos((roll * Math.PI) / 180);
      const sin = Math.sin((roll * Math.PI) / 180);
      ctx.save();
      ctx.beginPath();
      ctx.rect(0, i * g, g, g);
      ctx.clip(); // a turned frame covers more than its slot
      // Source px -> slot px: scale to read px, centre on the square, turn by -roll, scale to g, move to the slot.
      ctx.setTransform((s * cos) / scaleX, (-s * sin) / scaleX, (s * sin) / scaleY, (s * cos) / scaleY,
        g / 2 - s * (cos * cx + sin * cy), i * g + g / 2 - s * (-sin * cx + cos * cy));
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = 'high';
      const drawn = this.reducible(source, srcWidth, srcHeight, (side * scaleX) / g);
      ctx.drawImage(drawn.image, 0, 0, drawn.width, drawn.height, 0, 0, srcWidth, srcHeight);
      const reach = (side / 2) * (Math.abs(cos) + Math.abs(sin)); // half the turned square's bounding box
      if (cx - reach < 0 || cy - reach < 0 || cx + reach > width || cy + reach > height) {
        for (const [sx, sy, sw, sh, dx, dy, dw, dh] of edgeStretches(srcWidth, srcHeight, far)) {
          ctx.drawImage(source, sx, sy, sw, sh, dx, dy, dw, dh);
        }
      }
      ctx.restore();
    });
    return ctx.getImageData(0, 0, g, rows).data;
  }

  /** How many views of each face the emotion model runs when `views` are asked for (null: all of them). */
  viewsRun(views) {
    const { count, adjustable } = this.model.views;
    return adjustable && views !== null ? Math.min(views, count) : count;
  }

  /**
   * Emotion logits for N crops ({data, dims: [N, 1, 48, 48]}) on `views` views of each face, as one Float32Array of
   * N x C. A session fixed to batch 1 (the WebGL copy of the model) runs once per face.
   */
  async classify(crops, views) {
    const em = this.loaded.emotion.session;
    const [input, output] = [em.inputNames[0], em.outputNames[0]];
    const feeds = (data, dims) => ({ [input]: { data, dims },
      ...(em.inputNames.includes(VIEWS_INPUT) ? { [VIEWS_INPUT]: viewsFeed(views) } : {}) });
    const n = crops.dims[0];
    if (this.loaded.emotion.batch !== 1 || n === 1) return (await runFeeds(em, feeds(crops.data, crops.dims)))[output].data;
    const per = crops.data.length / n;
    let logits = null; // n x C, C known after the first run
    for (let i = 0; i < n; i++) {
      const one = crops.data.slice(i * per, (i + 1) * per); // a copy: a backend may keep the buffer
      const row = (await runFeeds(em, feeds(one, [1, ...crops.dims.slice(1)])))[output].data;
      logits ??= new Float32Array(n * row.length);
      logits.set(row, i * row.length);
    }
    return logits;
  }

  /** Memory figures for the benchmark's soak run: Python's WebAssembly heap, and the JS heap where reported. */
  memory() {
    this.requireLoaded();
    return {
      pythonWasmBytes: this.loaded.pyodide._module.HEAP8.length,
      jsHeapBytes: globalThis.performance?.memory?.usedJSHeapSize ?? null, // Chromium, window only
    };
  }

  async dispose() {
    if (this.loaded) {
      const sessions = [...Object.values(this.loaded.detectors), this.loaded.emotion];
      await Promise.all(sessions.map(releaseSession)).catch(() => {});
      closeInferenceRoom();
    }
    this.bridge?.destroy();
    this.bridge = null;
    this.loaded = null;
    return null;
  }
}

/**
 * A message handler around one Pipeline.
 * @param {(message: object, transfer?: Transferable[]) => void} send  where replies go
 * @returns {{handle: (message: {type: string, id: number, data?: object}) => void}}
 */
export function createPipelineHost(send) {
  const pipeline = new Pipeline();
  let queue = Promise.resolve();
  const handlers = {
    load: (data, progress) => pipeline.load(data, progress),
    detect: (data) => pipeline.detect(data),
    setModel: (data, progress) => pipeline.setModel(data, progress),
    setSmoothing: (data) => pipeline.setSmoothing(data),
    reset: () => pipeline.reset(),
    memory: () => pipeline.memory(),
    dispose: () => pipeline.dispose(),
  };
  /** @param {{type: string, id: number, data?: any}} message */
  const handleOne = async ({ type, id, data }) => {
    try {
      const handler = handlers[type];
      if (!handler) throw new LensError(ERROR_CODES.INPUT, `unknown message type "${type}"`);
      const result = await handler(data ?? {}, (p) => send({ status: 'progress', id, data: p }));
      send({ status: 'done', id, data: result });
    } catch (err) {
      if (type === 'detect') data?.frame?.close?.();
      if (!(err instanceof LensError)) console.error(err);
      const e = asLensError(err, type === 'detect' ? ERROR_CODES.FRAME : ERROR_CODES.LOAD);
      send({ status: 'error', id, error: e.toJSON() });
    }
  };
  return {
    handle(message) {
      queue = queue.then(() => handleOne(message));
    },
  };
}
