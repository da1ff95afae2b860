// Start Python in the page: Pyodide from this origin, then the vendored numpy wheel and the emotion_runtime wheel
// (both checked against manifest.json) unpacked into site-packages. Nothing is fetched from any other origin.
// Both wheels download while Pyodide starts, and numpy is installed without pyodide.loadPackage: that would compile
// and instantiate every WebAssembly extension module of the wheel, where `import numpy` needs three
// (NUMPY_START_LIBS); the others load if and when Python imports them. The standard library and numpy arrive
// trimmed to what the runtime imports (build/precompile_python.py: no random, fft, email, unittest, ...), compiled
// without docstrings and asserts (python -OO), and the standard library is downloaded gzipped and checked like the
// wheels, then handed to Pyodide.
import { ERROR_CODES, LensError } from './errors.js';
import { timed } from './load-timing.js';
import { fetchVerified, loadManifest, siteUrl } from './manifest.js';

const PYODIDE_DIR = 'vendor/pyodide/';
const STDLIB = `${PYODIDE_DIR}python_stdlib.zip`;
const DEFAULT_TIMEOUT_MS = 120_000;
// numpy's extension modules that `import numpy` opens (numpy 2.0.2), relative to site-packages, without the
// platform suffix. Loaded ahead (asynchronously, as loadPackage would): a synchronous compile on import is refused
// on a browser's main thread past a size limit (the ?worker=0 fallback).
// (numpy.linalg's _umath_linalg is not shipped: build/precompile_python.py puts a placeholder in its place.)
const NUMPY_START_LIBS = ['numpy/_core/_multiarray_umath', 'numpy/_core/_multiarray_tests'];
// Python runs as `python -OO`, as its shipped bytecode was compiled (numpy's docstring helpers read the flag).
const PYTHON_ENV = { PYTHONOPTIMIZE: '2' };

// After unpacking a wheel, Python's finder for site-packages must look again. Only that finder:
// importlib.invalidate_caches() would also import importlib.metadata (and with it csv and email), which the trimmed
// standard library leaves out (build/precompile_python.py runs this same sequence to decide what it keeps).
const REFRESH_SITE_PACKAGES = `
import sys
finder = sys.path_importer_cache.get(path)
if finder is not None:
    finder.invalidate_caches()
`;

let pending = null;

/** Reject `promise` after `ms`, or at once when the page's CSP blocks WebAssembly compilation. */
function guard(promise, ms, stageRef) {
  let timer;
  let onViolation;
  const watchdog = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new LensError(ERROR_CODES.TIMEOUT,
      `The Python runtime did not start within ${Math.round(ms / 1000)} s (stuck while: ${stageRef.message}). ` +
      'A slow connection can cause this; so can a Content-Security-Policy without \'wasm-unsafe-eval\', ' +
      'which makes Pyodide hang instead of failing.')), ms);
    // Pyodide never settles when wasm compilation is refused, so watch for the violation itself.
    onViolation = (event) => {
      // Only WebAssembly compilation: a blocked JS eval (an extension, a test driver) is not our failure.
      if (event.blockedURI === 'wasm-eval') {
        reject(new LensError(ERROR_CODES.CSP,
          'The page\'s Content-Security-Policy blocks WebAssembly (it needs \'wasm-unsafe-eval\' in script-src), ' +
          'so the Python runtime cannot start.'));
      }
    };
    // On globalThis: the event reaches the window from the document, and a worker's own global scope.
    globalThis.addEventListener?.('securitypolicyviolation', onViolation);
  });
  return Promise.race([promise, watchdog]).finally(() => {
    clearTimeout(timer);
    globalThis.removeEventListener?.('securitypolicyviolation', onViolation);
  });
}

/**
 * Run `start` while fetch() answers `url` with `bytes`: Pyodide downloads its standard library itself (stdLibURL),
 * and this way it gets the copy fetchVerified inflated and checked. (A blob: URL would need `connect-src blob:`.)
 * Every other request goes to the network as usual. When `bytes` fail, the caller reports it; Pyodide's request is
 * then left unanswered rather than failed, so it does not go on to start Python without its library.
 * @template T
 * @param {string} url
 * @param {Promise<ArrayBuffer>} bytes
 * @param {() => Promise<T>} start
 * @returns {Promise<T>}
 */
async function answeringFetch(url, bytes, start) {
  const networkFetch = globalThis.fetch;
  globalThis.fetch = (input, init) => (String(input) === url
    ? bytes.then((body) => new Response(body), () => new Promise(() => {}))
    : networkFetch(input, init));
  try {
    return await start();
  } finally {
    globalThis.fetch = networkFetch;
  }
}

/** Unpack a wheel (verified bytes) into site-packages; returns the site-packages path. */
function unpackWheel(pyodide, bytes) {
  const sitePackages = pyodide.runPython('import site; site.getsitepackages()[0]');
  pyodide.unpackArchive(bytes, 'wheel', { extractDir: sitePackages });
  return sitePackages;
}

/** numpy from its wheel's verified bytes: unpacked, and the extension modules of `import numpy` loaded. */
async function installNumpy(pyodide, wheel) {
  const sitePackages = unpackWheel(pyodide, wheel);
  const suffix = pyodide.runPython('import importlib.machinery; importlib.machinery.EXTENSION_SUFFIXES[0]');
  const loadDynlib = pyodide._api?.loadDynlib; // Pyodide's own loader (what loadPackage uses)
  if (!loadDynlib) return; // another Pyodide: Python's import loads each module when it needs it
  for (const lib of NUMPY_START_LIBS) {
    const path = `${sitePackages}/${lib}${suffix}`;
    if (pyodide.FS.analyzePath(path).exists) await loadDynlib(path, false);
  }
}

let downloads = null;

/**
 * Start downloading and checking the files Python is started from (its standard library, numpy, the emotion_runtime
 * wheel) without starting it; loadPython takes them over. In WebKit the page starts onnxruntime before Python
 * (js/app-boot.js): this keeps the network busy meanwhile.
 * @returns {Promise<Promise<ArrayBuffer>[]>}  the three files' bytes, in that order
 */
export function prefetchPython() {
  downloads ??= loadManifest().then((manifest) => [STDLIB, manifest.numpy_wheel, manifest.runtime_wheel]
    .map((path) => {
      const bytes = fetchVerified(path);
      bytes.catch(() => {}); // reported where it is awaited
      return bytes;
    }));
  return downloads;
}

async function start(onProgress) {
  const timings = {};
  const t0 = performance.now();
  const step = (name, message, fraction) => onProgress?.({ stage: name, message, fraction });

  step('python', 'Loading the Python runtime', 0);
  const manifest = await loadManifest();
  // Downloaded and sha256-checked while Pyodide starts, or earlier (prefetchPython); awaited in turn below.
  const files = prefetchPython();
  downloads = null; // taken over: a retry downloads again, and the bytes are not kept once Python has them
  const [stdlib, numpyWheelBytes, runtimeWheelBytes] = await files;
  const pyodide = await timed('pyodide', async () => {
    const { loadPyodide } = await import(siteUrl(`${PYODIDE_DIR}pyodide.mjs`));
    const stdLibURL = siteUrl(STDLIB);
    // A failed check rejects here, not inside Pyodide (which would only log it and start without a library).
    const started = answeringFetch(stdLibURL, stdlib, () => loadPyodide({
      indexURL: siteUrl(PYODIDE_DIR),
      stdLibURL,
      env: PYTHON_ENV,
      stdout: (line) => console.log(`[python] ${line}`),
      stderr: (line) => console.warn(`[python] ${line}`),
    }));
    return (await Promise.all([started, stdlib]))[0];
  });
  timings.pyodideMs = performance.now() - t0;

  step('numpy', 'Loading numpy', 0.6);
  const t1 = performance.now();
  const numpyWheel = await numpyWheelBytes;
  await timed('numpy', () => installNumpy(pyodide, numpyWheel));
  timings.numpyMs = performance.now() - t1;

  step('runtime', 'Installing the emotion runtime', 0.85);
  const t2 = performance.now();
  const runtimeWheel = await runtimeWheelBytes;
  const runtime = await timed('emotion_runtime', () => {
    const sitePackages = unpackWheel(pyodide, runtimeWheel);
    pyodide.runPython(REFRESH_SITE_PACKAGES, { locals: pyodide.toPy({ path: sitePackages }) });
    return pyodide.pyimport('emotion_runtime');
  });
  timings.runtimeMs = performance.now() - t2;
  timings.totalMs = performance.now() - t0;

  step('ready', 'Python runtime ready', 1);
  return { pyodide, runtime, timings, versions: manifest.versions };
}

/**
 * Start Pyodide, numpy and emotion_runtime (once per page; a failed attempt can be retried).
 * @param {{onProgress?: (p: {stage: 'python'|'numpy'|'runtime'|'ready', message: string, fraction: number}) => void,
 *          timeoutMs?: number}} [options]
 * @returns {Promise<{pyodide: object, runtime: object, timings: {pyodideMs: number, numpyMs: number,
 *          runtimeMs: number, totalMs: number}, versions: object}>}  runtime is the emotion_runtime module proxy
 * @throws {LensError} with a message fit for the user and its code: timeout, csp, integrity or load
 */
export function loadPython({ onProgress, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  if (!pending) {
    const stageRef = { message: 'starting' };
    const report = (p) => { stageRef.message = p.message; onProgress?.(p); };
    pending = guard(start(report), timeoutMs, stageRef);
    pending.catch(() => { pending = null; });
  }
  return pending;
}
