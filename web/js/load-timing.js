// Where the engine's load time goes: each phase (Python runtime, numpy, models, sessions, warm-up) is recorded as a
// User Timing measure named `lens:<phase>`, so DevTools' Performance panel shows it on the thread that did the work.
// The worker's measures live in the worker's own timeline; takeSpans/recordSpans carry them over to the page's
// (build/bench_browser.py reads them there to print the breakdown).

const PREFIX = 'lens:';

/**
 * Run `work` and record how long it took as the measure `lens:<name>`.
 * @template T
 * @param {string} name
 * @param {() => Promise<T>|T} work
 * @returns {Promise<T>}
 */
export async function timed(name, work) {
  const start = performance.now();
  try {
    return await work();
  } finally {
    performance.measure(PREFIX + name, { start, end: performance.now() });
  }
}

/**
 * This thread's `lens:` measures, with times on the wall clock (ms since the epoch) so another thread can place
 * them on its own timeline; they are cleared here.
 * @returns {Array<{name: string, start: number, duration: number}>}
 */
export function takeSpans() {
  const spans = performance.getEntriesByType('measure')
    .filter((m) => m.name.startsWith(PREFIX))
    .map((m) => ({ name: m.name, start: performance.timeOrigin + m.startTime, duration: m.duration }));
  for (const { name } of spans) performance.clearMeasures(name);
  return spans;
}

/**
 * Record spans taken on another thread (takeSpans) as measures on this one.
 * @param {Array<{name: string, start: number, duration: number}>} spans
 */
export function recordSpans(spans) {
  for (const { name, start, duration } of spans) {
    const at = Math.max(0, start - performance.timeOrigin);
    performance.measure(name, { start: at, end: at + duration });
  }
}
