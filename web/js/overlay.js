// The overlay over the picture (the #overlay canvas): a box and a caption per face, and the canvas's text
// alternative. Where the browser can hand a canvas to a worker (OffscreenCanvas), js/overlay-worker.js paints it
// and this thread only sends a small scene per frame; elsewhere it is painted here.

import { paintOverlay } from './overlay-paint.js';
import { canvasPixels, faceColour, faceSummary, fitCanvas } from './render.js';

/**
 * @typedef {object} Overlay
 * @property {(faces: object[], labels: string[], source: {srcW: number, srcH: number, mirror?: boolean}) => void} draw
 *   show `faces` (results of a frame of srcW x srcH pixels) with their `labels`' display names; `mirror` flips x
 *   (selfie view) while keeping the text readable
 * @property {() => void} clear  show nothing
 */

/**
 * @param {HTMLCanvasElement} canvas  laid exactly over the picture
 * @returns {Overlay}
 */
export function createOverlay(canvas) {
  const worker = startPainter(canvas);
  const ctx = worker ? null : canvas.getContext('2d');

  function show(scene) {
    if (worker) {
      worker.postMessage({ type: 'paint', scene });
    } else {
      fitCanvas(canvas);
      paintOverlay(ctx, scene);
    }
  }

  return {
    draw(faces, labels, { srcW, srcH, mirror = false }) {
      const label = faces.length === 0 ? 'No faces detected' : [...faces]
        .sort((a, b) => a.id - b.id)
        .map((f) => `Face ${f.id}: ${faceSummary(f, labels)}`)
        .join('; ');
      if (canvas.getAttribute('aria-label') !== label) canvas.setAttribute('aria-label', label);
      show(overlayScene(faces, labels, canvasPixels(canvas), { srcW, srcH, mirror }));
    },
    clear() {
      const { cw, ch, dpr } = canvasPixels(canvas);
      show({ width: cw, height: ch, dpr, boxes: [] });
    },
  };
}

/** The faces' boxes and captions in the canvas's device pixels. @returns {import('./overlay-paint.js').OverlayScene} */
function overlayScene(faces, labels, { cw, ch, dpr }, { srcW, srcH, mirror }) {
  const scene = { width: cw, height: ch, dpr, boxes: [] };
  if (!srcW || !srcH) return scene;
  const sx = cw / srcW;
  const sy = ch / srcH;
  for (const face of faces) {
    const [bx, by, bw, bh] = face.box;
    scene.boxes.push({
      x: (mirror ? srcW - bx - bw : bx) * sx,
      y: by * sy,
      w: bw * sx,
      h: bh * sy,
      colour: faceColour(face.id),
      dashed: Boolean(face.uncertain), // the model is not sure
      text: `#${face.id} ${faceSummary(face, labels)}`,
    });
  }
  return scene;
}

/** A worker painting `canvas` (its control handed over), or null where the browser cannot do that. */
function startPainter(canvas) {
  if (typeof canvas.transferControlToOffscreen !== 'function' ||
    typeof OffscreenCanvasRenderingContext2D !== 'function') {
    return null;
  }
  let worker = null;
  try {
    worker = new Worker(new URL('./overlay-worker.js', import.meta.url), { type: 'module' });
    const offscreen = canvas.transferControlToOffscreen();
    worker.postMessage({ type: 'canvas', canvas: offscreen }, [offscreen]);
    worker.addEventListener('error', (e) => console.error('overlay worker:', e.message || e));
    return worker;
  } catch (err) {
    worker?.terminate();
    console.warn('overlay: painting on the page thread', err);
    return null;
  }
}
