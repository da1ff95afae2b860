// Session summary: for each face, the share of time each expression was the top one. Time-weighted: a frame
// counts for the time until the next processed frame, so a slow frame rate does not skew the shares.

// A longer step (tab hidden, camera paused) counts as this much: the face was not watched meanwhile.
export const MAX_STEP_MS = 1_000;

/**
 * @typedef {object} FaceSummary
 * @property {string} key     `${run}:${id}` (tracker ids restart with each camera run)
 * @property {number} run
 * @property {number} id
 * @property {number} seenMs  time the face was in view
 * @property {number[]} shares  per class, fraction of seenMs it was the top class (sums to 1 once seenMs > 0)
 */

export class ExpressionSummary {
  /** @param {string[]} labels  class names; a face's top class is its `label` (the engine's argmax) */
  constructor(labels) {
    this.labels = [...labels];
    this.clear();
  }

  clear() {
    /** @type {Map<string, {run: number, id: number, ms: number[]}>} */
    this.faces = new Map();
    this.pending = null; // the last frame: {t, run, tops: [[key, classIndex]]}, counted when the next comes
  }

  /**
   * Add one processed frame at time `t` (ms, monotonic). Its faces are counted for the time until the next
   * frame (at most MAX_STEP_MS); `flush` counts the last one when the camera stops.
   * @param {number} t
   * @param {number} run
   * @param {{id: number, label: string}[]} faces
   */
  add(t, run, faces) {
    this.flush(t);
    this.pending = { t, run, tops: faces.map((f) => /** @type {[string, number, number]} */ ([`${run}:${f.id}`, f.id, this.labels.indexOf(f.label)])) };
  }

  /** Count the pending frame up to `t` (a stop: pass the stop time). */
  flush(t) {
    const p = this.pending;
    if (!p) return;
    const step = Math.min(MAX_STEP_MS, Math.max(0, t - p.t));
    for (const [key, id, top] of p.tops) {
      let face = this.faces.get(key);
      if (!face) this.faces.set(key, (face = { run: p.run, id, ms: new Array(this.labels.length).fill(0) }));
      if (top >= 0) face.ms[top] += step;
    }
    this.pending = null;
  }

  /** @returns {FaceSummary[]} faces in order of first appearance */
  summaries() {
    return [...this.faces].map(([key, f]) => {
      const seenMs = f.ms.reduce((a, b) => a + b, 0);
      return { key, run: f.run, id: f.id, seenMs, shares: f.ms.map((ms) => (seenMs > 0 ? ms / seenMs : 0)) };
    });
  }
}
