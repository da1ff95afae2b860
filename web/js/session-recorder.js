// Session recording for export: per-frame face results kept in this tab's memory, and only while the user has
// pressed Record. Plain data in, plain data out; nothing here touches the DOM, storage or the network.

/** Frames kept at most (two hours at 30 frames/s): past that, recording stops rather than eat the tab's memory. */
export const MAX_RECORDED_FRAMES = 216_000;

/**
 * @typedef {object} RecordingMeta  what the numbers mean, fixed for one recording
 * @property {{id: string, sha256?: string}} model  the emotion model: its id, and its file's sha256 when known
 * @property {string[]} labels   class names, in the order of every probability list
 * @property {string[]} display  display names, same order
 * @property {{mode: string, k: number}} smoothing  smoothing in force when recording started
 */

/**
 * @typedef {object} RecordedFrame
 * @property {number} tMs     ms since the recording started (monotonic clock)
 * @property {string} time    wall-clock time, ISO 8601 (UTC)
 * @property {number} run     camera run (1 = first Start camera of the session); face ids restart each run
 * @property {number} width   analysed frame width, px (boxes are in these pixels)
 * @property {number} height  analysed frame height, px
 * @property {{id: number, box: number[], label: string, uncertain: boolean, probs: number[],
 *   raw_probs: number[]}[]} faces
 *   label: the class the page showed; uncertain: the page showed the face as uncertain (two leading classes)
 */

/** Recorded frames plus what they mean. Frames without a face are kept too, so gaps stay visible. */
export class SessionRecorder {
  constructor() {
    this.clear();
  }

  /** Drop everything recorded (the recording also stops). */
  clear() {
    /** @type {RecordingMeta|null} */
    this.meta = null;
    /** @type {RecordedFrame[]} */
    this.frames = [];
    this.recording = false;
    this.startedAt = null; // {t: performance ms, wall: epoch ms} of the first Record press
    this.stopReason = null;
  }

  /**
   * Start (or resume) recording. Resuming appends to the frames already there, which must have been recorded
   * with the same model and labels: otherwise this throws, and the caller asks the user to clear first.
   * @param {RecordingMeta} meta
   * @param {number} t  performance.now() of the press
   * @param {number} wall  Date.now() of the press
   */
  start(meta, t, wall) {
    if (this.meta && this.frames.length && !sameModel(this.meta, meta)) {
      throw new Error('The recording so far used another model or other labels. Download it, then clear it, ' +
        'before recording with this one.');
    }
    if (this.frames.length >= MAX_RECORDED_FRAMES) {
      throw new Error('The recording is full. Download it, then clear it, to record more.');
    }
    if (!this.startedAt) this.startedAt = { t, wall };
    if (!this.meta || !this.frames.length) this.meta = structuredClone(meta);
    this.recording = true;
    this.stopReason = null;
  }

  /** Stop recording; what was recorded stays until clear(). */
  stop(reason = null) {
    this.recording = false;
    this.stopReason = reason;
  }

  /**
   * Add one processed frame if recording. Returns false when it was not recorded.
   * @param {{t: number, run: number, width: number, height: number, faces: object[]}} frame
   *   t: performance.now() when the result arrived; faces as the engine returns them
   */
  add({ t, run, width, height, faces }) {
    if (!this.recording) return false;
    const tMs = Math.max(0, t - this.startedAt.t);
    this.frames.push({
      tMs: Math.round(tMs * 10) / 10,
      time: new Date(this.startedAt.wall + tMs).toISOString(),
      run,
      width,
      height,
      faces: faces.map((f) => ({
        id: f.id,
        box: f.box.map((v) => Math.round(v * 10) / 10),
        label: f.label,
        uncertain: Boolean(f.uncertain),
        probs: [...f.probs],
        raw_probs: [...(f.raw_probs ?? f.probs)],
      })),
    });
    if (this.frames.length >= MAX_RECORDED_FRAMES) this.stop('full');
    return true;
  }

  /** Number of face rows (a frame with no face counts as one row, as in the CSV). */
  get rowCount() {
    let rows = 0;
    for (const f of this.frames) rows += Math.max(1, f.faces.length);
    return rows;
  }

  /** Recorded span in ms (first to last frame). */
  get durationMs() {
    const n = this.frames.length;
    return n ? this.frames[n - 1].tMs - this.frames[0].tMs : 0;
  }
}

function sameModel(a, b) {
  return a.model.id === b.model.id && a.model.sha256 === b.model.sha256 &&
    JSON.stringify(a.labels) === JSON.stringify(b.labels);
}
