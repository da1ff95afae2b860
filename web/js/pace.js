// How much the camera costs a device, adapted to it. Two levers, both only where frames cost more than they may:
// 1. The face detector's cadence (its costliest step): on a slow phone the engine stretches it (the frames between keep
//    the last faces, moved on at their tracks' velocity, and classify them again) until a frame's mean cost fits the
//    camera's frame interval, and steps back when the device keeps up.
// 2. A slower frame rate: on a device that cannot afford the configured cadence, the engine takes at most `slowFps`
//    camera frames a second, resting between them, so it is not held at full load and the page's own thread gets the
//    processor between frames (0.5-core proxy, slowFps 16, paired 4 runs each: main-thread long tasks 14.5 -> 3.5 in
//    30 s, 20.9 -> 15.6 FPS).
// Each face is still classified on every frame it is processed, so no accuracy figure of the models moves: what a
// longer cadence costs is how closely a box follows a face that moves between two detections; a rest costs frames.

/** Cadences tried, shortest first (the configured detectEvery is the floor). */
const CADENCES = Object.freeze([1, 2, 3, 5, 8, 12, 20, 30]);
/** Weight of a new frame in the running means of the two kinds of frame. */
const SMOOTHING = 0.1;
/** Frames between two choices: a choice is judged on frames processed under it. */
const CHOOSE_EVERY = 15;

/**
 * @typedef {object} PaceState  what `stats.pace` reports
 * @property {boolean} enabled  whether the cadence adapts (config.adapt.enabled)
 * @property {number} detectEvery  the cadence in force: the detector runs at least every this many camera frames
 * @property {number} configured  config.detectEvery: the shortest cadence used
 * @property {number} budgetMs  what a camera frame may cost (config.adapt.budgetMs)
 * @property {number|null} frameMs  the mean cost of a camera frame at the cadence in force (null before both kinds
 *   of frame were seen)
 * @property {number} slowFps  the camera frame rate while slowed (config.adapt.slowFps)
 * @property {number|null} intervalMs  the engine starts a camera frame at most every this many ms (1000 / slowFps
 *   while slowed; null otherwise)
 * @property {boolean} slowed  the cadence is longer than configured because frames cost more than the budget
 */

/**
 * The camera's detector cadence and frame rate, from the frames' costs.
 * @param {{detectEvery: number, enabled: boolean, budgetMs: number, slowFps: number}} o
 */
export function createPace({ detectEvery, enabled, budgetMs, slowFps }) {
  const ladder = [detectEvery, ...CADENCES.filter((k) => k > detectEvery)];
  let current = detectEvery;
  let detectorMs = null; // running mean cost (ms) of a frame the detector ran on
  let otherMs = null; // ... and of one it did not
  let sinceChoice = 0;

  /** Mean cost of a frame at cadence k: one detector frame and k - 1 others. */
  const costAt = (k) => (detectorMs === null || otherMs === null ? null : (detectorMs + (k - 1) * otherMs) / k);
  /** The shortest time from one camera frame to the next: 1000 / slowFps ms while the cadence is stretched. */
  const minInterval = () => (current > detectEvery ? 1000 / slowFps : null);

  return {
    /** The cadence for the next camera frame. */
    get detectEvery() { return current; },

    /**
     * Count a processed camera frame.
     * @param {number} ms  what it cost, from taking it to its result (FrameResult.timings.roundTrip)
     * @param {boolean} detectorRan
     */
    record(ms, detectorRan) {
      if (detectorRan) detectorMs = detectorMs === null ? ms : detectorMs + SMOOTHING * (ms - detectorMs);
      else otherMs = otherMs === null ? ms : otherMs + SMOOTHING * (ms - otherMs);
      if (!enabled || ++sinceChoice < CHOOSE_EVERY || costAt(1) === null) return;
      sinceChoice = 0;
      // The shortest cadence whose frames fit the budget, else the longest there is.
      current = ladder.find((k) => costAt(k) <= budgetMs) ?? ladder[ladder.length - 1];
    },

    /** How long to wait before the next camera frame, `elapsedMs` after the last one was taken (0 unless slowed). */
    restMs(elapsedMs) {
      const interval = minInterval();
      return interval === null ? 0 : Math.max(0, interval - elapsedMs);
    },

    /** @returns {PaceState} */
    state() {
      const frameMs = costAt(current);
      const intervalMs = minInterval();
      return { enabled, detectEvery: current, configured: detectEvery, budgetMs, slowFps,
        frameMs: frameMs === null ? null : Math.round(frameMs * 10) / 10,
        intervalMs: intervalMs === null ? null : Math.round(intervalMs),
        slowed: current > detectEvery };
    },
  };
}
