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
  let ctx = null; // the page thread's context, once it paints here
  let painter = null; // the worker, once it holds the canvas
  let waiting = null; // the newest scene while the worker starts
  /** @type {ReturnType<typeof setTimeout> | undefined} how long a scene may wait for the worker */
  let patience;
  const giveUp = startPainter(canvas, {
    ready(worker) {
      clearTimeout(patience);
      painter = worker;
      if (waiting) painter.postMessage({ type: 'paint', scene: waiting });
      waiting = null;
    },
    failed() {
      ctx = canvas.getContext('2d');
      if (waiting) paintHere(waiting);
      waiting = null;
    },
  });
  if (!giveUp) ctx = canvas.getContext('2d');

  function paintHere(scene) {
    fitCanvas(canvas);
    paintOverlay(ctx, scene);
  }

  function show(scene) {
    if (painter) painter.postMessage({ type: 'paint', scene });
    else if (ctx) paintHere(scene);
    else {
      waiting = scene;
      patience ||= setTimeout(giveUp, PAINTER_START_MS);
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

/** How long a scene waits for the painting worker to start before this thread paints instead. */
const PAINTER_START_MS = 2000;

/**
 * Start a worker to paint `canvas`; it gets the canvas's control only once its script has loaded (it says so), so that
 * a worker that cannot start (blocked, offline without it, or cut off by the page's own reload) leaves the canvas to
 * this thread instead of blank. Returns a function that gives up on a worker still starting, or null where the browser
 * cannot hand a canvas to a worker.
 * @param {HTMLCanvasElement} canvas
 * @param {{ready: (worker: Worker) => void, failed: () => void}} on
 */
function startPainter(canvas, on) {
  if (typeof canvas.transferControlToOffscreen !== 'function' ||
    typeof OffscreenCanvasRenderingContext2D !== 'function') {
    return null;
  }
  let worker;
  try {
    worker = new Worker(new URL('./overlay-worker.js', import.meta.url), { type: 'module' });
  } catch (err) {
    console.warn('overlay: painting on the page thread', err);
    return null;
  }
  let started = false;
  worker.addEventListener('message', ({ data }) => {
    if (data?.type !== 'loaded' || started) return;
    started = true;
    const offscreen = canvas.transferControlToOffscreen();
    worker.postMessage({ type: 'canvas', canvas: offscreen }, [offscreen]);
    on.ready(worker);
  });
  const abandon = (why) => {
    if (started) return;
    started = true; // the canvas stays on this thread
    worker.terminate();
    console.warn(`overlay worker did not start (${why}): painting on the page thread`);
    on.failed();
  };
  worker.addEventListener('error', (e) => {
    if (started) console.error('overlay worker:', e.message || 'failed');
    else abandon(e.message || 'its script did not load');
  });
  return () => abandon(`not within ${PAINTER_START_MS} ms`);
}
