// The engine's inference room: a module worker, started by js/inference.js, that downloads and checks the model
// files and runs onnxruntime-web on a thread of its own, so Python's start and the sessions' start run side by side
// (on one thread they took turns, and the model downloads waited for Python between chunks).
// One reply per request; requests run concurrently (downloads overlap; sessions start as their files arrive):
//   in:  {id, op: 'prepare', siteRoot, path, options, webgl?: {path, batch}}   download and check the file -> {handle}
//                                          options: createSession's plain-data options
//        {id, op: 'start', handle}          create the session -> {ep, batch, attempts, createMs, warmupMs, inputNames,
//                                          outputNames}
//        {id, op: 'run', handle, feeds}      feeds: {name: {data: Float32Array | BigInt64Array (int64), dims}}
//        {id, op: 'release', handle}
//   out: {id, progress: {loaded, total}} while a 'prepare' downloads, then
//        {id, result, spans} or {id, error: {code, message}}; spans: this thread's load-timing measures
import { ERROR_CODES, LensError, asLensError } from './errors.js';
import { createSession, runFeeds } from './inference.js';
import { takeSpans } from './load-timing.js';
import { fetchVerified, setSiteRoot } from './manifest.js';

const prepared = new Map(); // handle -> {bytes, options, variants}: a checked file whose session is not started
const sessions = new Map(); // handle -> onnxruntime session
let nextHandle = 1;

function session(handle) {
  const found = sessions.get(handle);
  if (!found) throw new LensError(ERROR_CODES.LOAD, `no inference session ${handle} (released?)`);
  return found;
}

/** Outputs as exact-size copies (an output may be a view on a larger buffer), transferable. */
function detached(outputs) {
  const out = {};
  for (const [name, { data, dims }] of Object.entries(outputs)) out[name] = { data: data.slice(), dims };
  return out;
}

const ops = {
  async prepare({ siteRoot, path, options, webgl }, progress) {
    setSiteRoot(siteRoot);
    const bytes = await fetchVerified(path, { onProgress: progress });
    const variants = webgl ? { webgl: { load: () => fetchVerified(webgl.path), batch: webgl.batch } } : {};
    const handle = nextHandle++;
    prepared.set(handle, { bytes, options, variants });
    return { handle };
  },
  async start({ handle }) {
    const file = prepared.get(handle);
    if (!file) throw new LensError(ERROR_CODES.LOAD, `no model file ${handle} to start (started or released?)`);
    // createSession takes one creation at a time, in the order they are asked for.
    const { session: created, ep, batch, attempts, createMs, warmupMs } = await createSession(file.bytes,
      { ...file.options, variants: file.variants });
    prepared.delete(handle);
    sessions.set(handle, created);
    return { ep, batch, attempts, createMs, warmupMs, inputNames: created.inputNames, outputNames: created.outputNames };
  },
  async run({ handle, feeds }) {
    return detached(await runFeeds(session(handle), feeds));
  },
  async release({ handle }) {
    const released = sessions.get(handle);
    prepared.delete(handle);
    sessions.delete(handle);
    await released?.release();
    return null;
  },
};

self.addEventListener('message', async ({ data: { id, op, ...args } }) => {
  try {
    if (!Object.hasOwn(ops, op)) throw new LensError(ERROR_CODES.LOAD, `unknown inference request "${op}"`);
    const result = await ops[op](args, ({ loaded, total }) => self.postMessage({ id, progress: { loaded, total } }));
    const transfer = op === 'run' ? Object.values(result).map(({ data }) => data.buffer) : [];
    self.postMessage({ id, result, spans: op === 'prepare' || op === 'start' ? takeSpans() : [] }, { transfer });
  } catch (err) {
    self.postMessage({ id, error: asLensError(err, ERROR_CODES.LOAD).toJSON() });
  }
});
