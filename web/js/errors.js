// Errors with a machine-readable `code`, set where the error is thrown, so callers (the demo page, tests,
// embedders) branch on the code and never parse the message.

/** Every code an EmotionLens error can carry. */
export const ERROR_CODES = Object.freeze({
  CONFIG: 'config', // an option passed to createEmotionLens is invalid
  UNSUPPORTED: 'unsupported', // the browser lacks WebAssembly
  LOAD: 'load', // a download or session creation failed
  INTEGRITY: 'integrity', // a file failed its sha256 / size check against manifest.json
  TIMEOUT: 'timeout', // the Python runtime did not start in time
  CSP: 'csp', // the Content-Security-Policy blocks WebAssembly
  MODEL: 'model', // the requested emotion model is not in the build's catalog
  INPUT: 'input', // detect() was given something it cannot read
  FRAME: 'frame', // processing a frame failed
  NOT_READY: 'not-ready', // called before load() finished (or after dispose())
  WORKER: 'worker', // the pipeline's Web Worker crashed
  DISPOSED: 'disposed', // the engine was disposed while the call was pending
});

/** An Error with `code` (one of ERROR_CODES) and, while loading, the `step` that failed. */
export class LensError extends Error {
  /**
   * @param {string} code  one of ERROR_CODES
   * @param {string} message  fit for the user
   * @param {{cause?: unknown, step?: string}} [options]
   */
  constructor(code, message, { cause, step } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'LensError';
    this.code = code;
    if (step) this.step = step;
  }

  /** Plain data for postMessage: {code, message, step?}. */
  toJSON() {
    return { code: this.code, message: this.message, ...(this.step ? { step: this.step } : {}) };
  }
}

/** `err` as a LensError: kept when it has a code, else wrapped with `fallbackCode`. */
export function asLensError(err, fallbackCode) {
  if (err instanceof LensError) return err;
  const code = (err && typeof err.code === 'string' && err.code) || fallbackCode;
  return new LensError(code, (err && err.message) || String(err), { cause: err, step: err?.step });
}
