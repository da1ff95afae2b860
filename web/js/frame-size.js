// The size a frame is read at, shared by the page (js/emotion-lens.js) and the pipeline (js/lens-pipeline.js).
// A module of its own so the page does not load the pipeline's modules (Pyodide and onnxruntime loaders) just for it.

/** The size a w x h frame is read at: scaled down (never up) so its long side is at most `maxSide`. */
export function fitSize(w, h, maxSide) {
  const scale = Math.min(1, maxSide / Math.max(w, h));
  return { width: Math.max(1, Math.round(w * scale)), height: Math.max(1, Math.round(h * scale)) };
}
