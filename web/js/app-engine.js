// One frame through the whole chain: pixels -> Python pre -> detector -> Python decode/crop -> emotion model ->
// Python post. Owns the Python FramePipeline and the two onnxruntime sessions; knows nothing about the DOM
// except how to read pixels from a video/image source.
import { run } from './inference.js';

export const MAX_FACES = 8;

// Small Python shim over emotion_runtime.FramePipeline: converts JS typed arrays (JsProxy) to buffers the
// pipeline takes, and keeps the count of faces seen before the cap so the page can say "too many faces".
const PY_GLUE = `
import json
from emotion_runtime import FramePipeline

class AppBridge:
    def __init__(self, sidecar_json, max_faces, smoothing, alpha, window):
        # max_faces=None in the pipeline: we cap here so we still know how many faces were seen.
        self.cap = int(max_faces)
        self.pipe = FramePipeline(json.loads(sidecar_json), smoothing=smoothing, alpha=float(alpha),
                                  window=int(window), max_faces=None)
        self.detected = 0

    def detector_input(self, detector, rgba, width, height):
        self.pipe.set_detector(detector)  # "short_range" | "full_range": which model JS runs on this frame
        return self.pipe.detector_input(rgba.to_py(), width, height)

    def decode_faces(self, regressors, scores):
        self.detected = self.pipe.decode_faces(regressors.to_py(), scores.to_py())
        if self.detected > self.cap:
            self.pipe.faces = self.pipe.faces[: self.cap]  # best score first
        return len(self.pipe.faces)

    def emotion_input(self):
        return self.pipe.emotion_input()

    def update_json(self, logits):
        return self.pipe.update_json(None if logits is None else logits.to_py())

    def labels_json(self):
        return self.pipe.labels_json()

    def reset(self):
        self.pipe.reset()

AppBridge
`;

const now = () => performance.now();

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

export class FrameEngine {
  /**
   * @param {object} o
   * @param {object} o.pyodide  a Pyodide instance with numpy + emotion_runtime installed
   * @param {object} o.detector {session, ep} face detector (short-range)
   * @param {object} [o.detectorFullRange] {session, ep} full-range face detector (small / far faces)
   * @param {object} o.emotion  {session, ep} emotion classifier
   * @param {object} o.sidecar  the emotion model's JSON sidecar (labels, ...)
   */
  constructor({ pyodide, detector, detectorFullRange, emotion, sidecar, maxFaces = MAX_FACES }) {
    this.py = pyodide;
    this.detector = detector;
    // issue 10: detector sessions by the names emotion_runtime's FramePipeline knows
    this.detectors = { short_range: detector };
    if (detectorFullRange) this.detectors.full_range = detectorFullRange;
    this.emotion = emotion;
    this.sidecar = sidecar;
    this.maxFaces = maxFaces;
    this.BridgeClass = pyodide.runPython(PY_GLUE);
    this.bridge = null;
    this.inFlight = false;
    this.retired = [];
    this.setSmoothing({ mode: 'ema', k: 5 });
    const labels = JSON.parse(this.bridge.labels_json());
    this.labels = labels.labels;
    this.display = labels.display;
    this.colours = labels.colours;
    this.canvas = document.createElement('canvas');
    this.ctx = this.canvas.getContext('2d', { willReadFrequently: true });
  }

  /**
   * Smoothing across frames. mode: ema | mean | median | none; k: window length, or the EMA span
   * (alpha = 2 / (k + 1), the usual span <-> alpha relation). Forgets the current tracks.
   */
  setSmoothing({ mode, k }) {
    const span = Math.max(1, Math.min(30, Math.round(Number(k) || 1)));
    const alpha = 2 / (span + 1);
    const old = this.bridge;
    this.bridge = this.BridgeClass(JSON.stringify(this.sidecar), this.maxFaces, mode, alpha, span);
    // A frame in flight still uses the old bridge: free it when that frame is done.
    if (old && this.inFlight) this.retired.push(old);
    else if (old) old.destroy();
    this.smoothing = { mode, k: span };
  }

  reset() {
    this.bridge.reset();
  }

  /**
   * Process one frame from `source` (video, image, canvas or ImageBitmap) of size w x h, read at most
   * `maxSide` pixels on its long side, with the `detector` model ("short_range" | "full_range"). Returns
   * {faces, detected, width, height, timings}; face boxes are in the read frame's pixels (width x height).
   */
  async process(source, w, h, { maxSide = 640, detector = 'short_range' } = {}) {
    this.inFlight = true;
    try {
      return await this.processWith(this.bridge, source, w, h, maxSide, detector);
    } finally {
      this.inFlight = false;
      for (const b of this.retired.splice(0)) b.destroy();
    }
  }

  /**
   * Emotion logits for N crops ({data, dims: [N, 1, 48, 48]}), as one Float32Array of N x C. A session fixed
   * to batch 1 (the WebGL copy of the model) runs once per face.
   */
  async classify(crops) {
    const em = this.emotion.session;
    const [input, output] = [em.inputNames[0], em.outputNames[0]];
    const n = crops.dims[0];
    if (this.emotion.batch !== 1 || n === 1) return (await run(em, input, crops.data, crops.dims))[output].data;
    const per = crops.data.length / n;
    let logits = null; // n x C, C known after the first run
    for (let i = 0; i < n; i++) {
      const one = crops.data.slice(i * per, (i + 1) * per); // a copy: a backend may keep the buffer
      const row = (await run(em, input, one, [1, ...crops.dims.slice(1)]))[output].data;
      logits ??= new Float32Array(n * row.length);
      logits.set(row, i * row.length);
    }
    return logits;
  }

  async processWith(bridge, source, w, h, maxSide, detector) {
    const name = this.detectors[detector] ? detector : 'short_range'; // a build without full-range falls back
    const t0 = now();
    const scale = Math.min(1, maxSide / Math.max(w, h));
    const width = Math.max(1, Math.round(w * scale));
    const height = Math.max(1, Math.round(h * scale));
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.ctx.drawImage(source, 0, 0, width, height);
    const rgba = this.ctx.getImageData(0, 0, width, height).data;
    const t1 = now();

    const x = takeFloat32(bridge.detector_input(name, rgba, width, height));
    const t2 = now();

    const det = this.detectors[name].session;
    const detOut = await run(det, det.inputNames[0], x.data, x.dims);
    const { reg, sc } = detectorOutputs(det, detOut);
    const t3 = now();

    const n = bridge.decode_faces(reg.data, sc.data);
    const detected = bridge.detected;
    let crops = null;
    if (n > 0) crops = takeFloat32(bridge.emotion_input());
    const t4 = now();

    let logits = null;
    if (n > 0) {
      logits = await this.classify(crops);
    }
    const t5 = now();

    const faces = JSON.parse(bridge.update_json(logits));
    const t6 = now();

    return {
      faces,
      detected,
      detector: name,
      width,
      height,
      timings: {
        capture: t1 - t0,
        detect: t3 - t2,
        pre: (t2 - t1) + (t4 - t3), // detector_input + decode_faces + emotion_input
        classify: t5 - t4,
        post: t6 - t5,
        total: t6 - t0,
      },
    };
  }
}
