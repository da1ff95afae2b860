// Per-face timeline: the last minute of smoothed probabilities of each tracked face, and a small line chart of
// them on a canvas (one line per class, in the class's colour; no chart library).

import { fitCanvas } from './render.js';

export const TIMELINE_WINDOW_MS = 60_000;
// A longer pause between two samples of a face (it left the view, the tab was hidden) breaks its lines.
const GAP_MS = 1_500;

/** Samples per face id, trimmed to the last `windowMs`. Plain data: {t (ms), probs (number[])}. */
export class TimelineStore {
  /** @param {number} windowMs */
  constructor(windowMs = TIMELINE_WINDOW_MS) {
    this.windowMs = windowMs;
    /** @type {Map<number, {t: number, probs: number[]}[]>} */
    this.byFace = new Map();
  }

  /**
   * Add one frame's faces at time `t` (ms, monotonic) and drop what is older than the window, faces with
   * nothing left included.
   * @param {number} t
   * @param {{id: number, probs: number[]}[]} faces
   */
  add(t, faces) {
    for (const face of faces) {
      let samples = this.byFace.get(face.id);
      if (!samples) this.byFace.set(face.id, (samples = []));
      samples.push({ t, probs: [...face.probs] });
    }
    this.trim(t);
  }

  /** Drop samples older than `now - windowMs`. @param {number} now */
  trim(now) {
    const cutoff = now - this.windowMs;
    for (const [id, samples] of this.byFace) {
      let old = 0;
      while (old < samples.length && samples[old].t < cutoff) old += 1;
      if (old) samples.splice(0, old);
      if (!samples.length) this.byFace.delete(id);
    }
  }

  /** Samples of face `id`, oldest first (the stored array: do not change it). */
  samples(id) {
    return this.byFace.get(id) ?? [];
  }

  clear() {
    this.byFace.clear();
  }
}

/**
 * Draw `samples` (oldest first) as one line per class over the window ending at `now`, with a legend of
 * `names` in `colours` under the plot. Sizes the canvas to its CSS box at the device pixel ratio.
 * @param {HTMLCanvasElement} canvas
 * @param {{t: number, probs: number[]}[]} samples
 * @param {{names: string[], colours: string[], now: number, windowMs?: number}} o
 */
export function drawTimeline(canvas, samples, { names, colours, now, windowMs = TIMELINE_WINDOW_MS }) {
  const { cw, ch, dpr } = fitCanvas(canvas);
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, cw, ch);

  const font = Math.round(11 * dpr);
  ctx.font = `${font}px system-ui, sans-serif`;
  ctx.textBaseline = 'middle';
  const legend = legendLayout(ctx, names, cw, font);
  const plotH = Math.max(1, ch - legend.height);

  // Frame and the 50% line.
  ctx.strokeStyle = '#2e3a46';
  ctx.lineWidth = 1;
  ctx.strokeRect(0.5, 0.5, cw - 1, plotH - 1);
  ctx.beginPath();
  ctx.moveTo(0, Math.round(plotH / 2) + 0.5);
  ctx.lineTo(cw, Math.round(plotH / 2) + 0.5);
  ctx.stroke();

  const x = (t) => ((t - (now - windowMs)) / windowMs) * (cw - 1);
  const y = (p) => (1 - p) * (plotH - 2) + 1;
  ctx.lineWidth = Math.max(1, 1.5 * dpr);
  ctx.lineJoin = 'round';
  for (let k = 0; k < names.length; k++) {
    ctx.strokeStyle = colours[k];
    ctx.beginPath();
    let prevT = null;
    for (const s of samples) {
      const px = x(s.t);
      const py = y(s.probs[k] ?? 0);
      if (prevT === null || s.t - prevT > GAP_MS) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
      prevT = s.t;
    }
    ctx.stroke();
    // A single sample has no segment to show: mark it with a dot.
    if (samples.length === 1) {
      ctx.fillStyle = colours[k];
      ctx.fillRect(x(samples[0].t) - dpr, y(samples[0].probs[k] ?? 0) - dpr, 2 * dpr, 2 * dpr);
    }
  }

  for (const item of legend.items) {
    const iy = plotH + legend.gap + item.row * legend.rowH + legend.rowH / 2;
    ctx.fillStyle = colours[item.k];
    ctx.fillRect(item.x, iy - font * 0.35, font * 0.7, font * 0.7);
    ctx.fillStyle = '#b4c0cc';
    ctx.fillText(names[item.k], item.x + font, iy);
  }
}

/** Where each legend entry goes: rows that wrap at the canvas width, under the plot. */
function legendLayout(ctx, names, width, font) {
  const rowH = Math.round(font * 1.5);
  const items = [];
  let x = 0;
  let row = 0;
  names.forEach((name, k) => {
    const w = font + ctx.measureText(name).width + font * 0.8;
    if (x > 0 && x + w > width) {
      x = 0;
      row += 1;
    }
    items.push({ k, x, row });
    x += w;
  });
  const rows = names.length ? row + 1 : 0;
  const gap = Math.round(font * 0.3);
  return { height: rows * rowH + gap, gap, rowH, items };
}
