// How much the camera costs a device, adapted to it. Three levers, used in this order and only where frames cost
// more than they may:
// 1. One view per face: an emotion model whose graph averages each face with its mirror (and zooms) runs on the face
//    alone (its `views` input; the model card gives that mode's accuracy: FER+ test 81.61% / 85.43% against 82.17% /
//    86.01% with the mirror), which halves the emotion model's cost on every frame.
// 2. The face detector's cadence (its costliest step): on a slow phone the engine stretches it (the frames between
//    keep the last faces, moved on at their tracks' velocity, and classify them again) until a frame's mean cost fits
//    the camera's frame interval.
// 3. A slower frame rate: on a device that cannot afford the configured work, the engine takes at most `slowFps`
//    camera frames a second, resting between them, so it is not held at full load and the page's own thread gets the
//    processor between frames (0.5-core proxy, slowFps 16, paired 4 runs each: main-thread long tasks 14.5 -> 3.5 in
//    30 s, 20.9 -> 15.6 FPS).
// It steps back as soon as the device keeps up. Each face is still classified on every frame it is processed; what a
// longer cadence costs is how closely a box follows a face that moves between two detections; a rest costs frames.

/** Cadences tried, shortest first (the configured detectEvery is the floor). */
const CADENCES = Object.freeze([1, 2, 3, 5, 8, 12, 20, 30]);
/** Weight of a new frame in the running means of the frames' costs. */
const SMOOTHING = 0.1;
/** Frames between two choices: a choice is judged on frames processed under it. */
const CHOOSE_EVERY = 15;

/**
 * @typedef {object} PaceState  what `stats.pace` reports
 * @property {boolean} enabled  whether the work adapts (config.adapt.enabled)
 * @property {number} detectEvery  the cadence in force: the detector runs at least every this many camera frames
 * @property {number} configured  config.detectEvery: the shortest cadence used
 * @property {number} views  views of each face the emotion model runs now: all its graph averages (2: face and
 *   mirror), or 1 (the face alone) while slowed
 * @property {number} budgetMs  what a camera frame may cost (config.adapt.budgetMs)
 * @property {number|null} frameMs  the mean cost of a camera frame at the work in force (null before both kinds of
 *   frame were seen)
 * @property {number} slowFps  the camera frame rate while slowed (config.adapt.slowFps)
 * @property {number|null} intervalMs  the engine starts a camera frame at most every this many ms (1000 / slowFps
 *   while slowed; null otherwise)
 * @property {boolean} slowed  frames cost more than the budget at the configured work: one view, a longer cadence
 *   or both are in force
 */

/**
 * The camera's work per frame (emotion model views, detector cadence) and frame rate, from the frames' costs.
 * @param {{detectEvery: number, enabled: boolean, budgetMs: number, slowFps: number}} o
 */
export function createPace({ detectEvery, enabled, budgetMs, slowFps }) {
  let allViews = 1; // views the emotion model averages per face
  let canRunOne = false; // whether it can run the face alone (a views input)
  let levels = ladder();
  let level = 0; // index into levels: the work in force
  let detectorBaseMs = null; // running mean cost (ms) of a frame the detector ran on, less the emotion model's share
  let otherBaseMs = null; // ... and of one it did not
  let viewMs = null; // running mean cost of one view of the frame's faces in the emotion model
  let sinceChoice = 0;

  /** The levels of work, most first: all views at the configured cadence, then one view, then longer cadences. */
  function ladder() {
    const fewest = canRunOne ? 1 : allViews;
    return [{ detectEvery, views: allViews },
      ...(fewest < allViews ? [{ detectEvery, views: fewest }] : []),
      ...CADENCES.filter((k) => k > detectEvery).map((k) => ({ detectEvery: k, views: fewest }))];
  }

  /** Mean cost of a frame at a level: one detector frame and k - 1 others, each with its faces' views. */
  const costAt = ({ detectEvery: k, views }) => (detectorBaseMs === null || otherBaseMs === null ? null
    : (detectorBaseMs + (k - 1) * otherBaseMs) / k + views * viewMs);
  /** The shortest time from one camera frame to the next: 1000 / slowFps ms while slowed. */
  const minInterval = () => (level > 0 ? 1000 / slowFps : null);
  const mean = (m, x) => (m === null ? x : m + SMOOTHING * (x - m));

  return {
    /** The cadence for the next camera frame. */
    get detectEvery() { return levels[level].detectEvery; },

    /** How many views of each face the emotion model runs on the next camera frame. */
    get views() { return levels[level].views; },

    /**
     * The emotion model in use: how many views its graph averages, and whether it can run one alone. Work starts
     * again from the most (the new model's costs are not known yet).
     * @param {{count: number, adjustable: boolean}} views
     */
    useModel({ count, adjustable }) {
      allViews = count;
      canRunOne = adjustable;
      levels = ladder();
      level = 0;
      viewMs = null;
      sinceChoice = 0;
    },

    /**
     * Count a processed camera frame.
     * @param {{ms: number, detectorRan: boolean, classifyMs: number, views: number}} frame  ms: what it cost, from
     *   taking it to its result (FrameResult.timings.roundTrip); classifyMs: the emotion model's part of it, which ran
     *   `views` views of each face
     */
    record({ ms, detectorRan, classifyMs, views }) {
      const base = ms - classifyMs;
      if (detectorRan) detectorBaseMs = mean(detectorBaseMs, base);
      else otherBaseMs = mean(otherBaseMs, base);
      viewMs = mean(viewMs, classifyMs / views);
      if (!enabled || ++sinceChoice < CHOOSE_EVERY || costAt(levels[0]) === null) return;
      sinceChoice = 0;
      // The most work whose frames fit the budget, else the least there is.
      const fits = levels.findIndex((l) => costAt(l) <= budgetMs);
      level = fits === -1 ? levels.length - 1 : fits;
    },

    /** How long to wait before the next camera frame, `elapsedMs` after the last one was taken (0 unless slowed). */
    restMs(elapsedMs) {
      const interval = minInterval();
      return interval === null ? 0 : Math.max(0, interval - elapsedMs);
    },

    /** @returns {PaceState} */
    state() {
      const frameMs = costAt(levels[level]);
      const intervalMs = minInterval();
      return { enabled, detectEvery: levels[level].detectEvery, configured: detectEvery, views: levels[level].views,
        budgetMs, slowFps,
        frameMs: frameMs === null ? null : Math.round(frameMs * 10) / 10,
        intervalMs: intervalMs === null ? null : Math.round(intervalMs),
        slowed: level > 0 };
    },
  };
}
