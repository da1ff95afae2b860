// Service worker for the site root. Two jobs:
//
// 1. Offline use after the first load. Every same-origin GET goes to the network first (so a new deploy is
//    picked up at once) and the answer is stored; when the network fails, the stored copy answers. The small
//    page shell (everything in manifest.json outside vendor/, models/ and wheels/) is stored at install, the
//    runtime and models as the page fetches them, so a visitor keeps exactly what their browser used.
//    The page still checks every model and the runtime wheel against manifest.json's sha256 before use.
//    The shell includes the web app manifest (manifest.webmanifest) and its icons (icons/), so the installed
//    app opens offline with its name and icon.
//    The runtime (vendor/: Pyodide, onnxruntime-web) is the exception: it is stored only once its sha256 matches
//    manifest.json, and answered from this cache while it still matches the newest manifest.json seen (a new
//    deploy lists new hashes, so it is fetched again). Answering with the stored response itself, not a copy,
//    lets Chromium keep the compiled WebAssembly next to it: the second visit skips compiling Pyodide and
//    onnxruntime (several seconds of CPU). The network's own answers never get that (measured: a Response
//    passed through from fetch() misses the code cache here).
// 2. Cross-origin isolation on hosts that cannot send headers (GitHub Pages): COOP/COEP are added to every
//    document and worker script served here, which gives WASM its threads. js/sw-register.js reloads the page
//    once for that.
//
// Nothing here talks to another origin: requests to other origins are not touched (the CSP forbids them).

const CACHE = 'emotion-lens-v1';
const SHELL_EXCLUDED = /^(vendor|models|wheels|__test__)\//;
const VERIFIED = /^vendor\//; // answered from the cache once verified (see 1. above)
const SHA256_HEADER = 'X-Emotion-Lens-Sha256'; // on stored runtime files: the sha256 they were verified with
const SCOPE_PATH = new URL('./', self.location.href).pathname;
const MANIFEST_URL = new URL('manifest.json', self.location.href).href;
const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

self.addEventListener('install', (event) => {
  event.waitUntil(self.skipWaiting());
});

// Control is taken first and the shell stored after: the page waits for control before its big downloads (so they
// are kept), and storing the shell first made that wait several hundred ms longer on a first visit.
self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    await self.clients.claim();
    for (const name of await caches.keys()) {
      if (name !== CACHE && name.startsWith('emotion-lens-')) await caches.delete(name);
    }
    await precacheShell();
  })());
});

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  if (request.headers.has('range')) return; // partial responses cannot be stored; let the browser handle them
  const path = new URL(request.url).pathname.slice(SCOPE_PATH.length);
  event.respondWith(VERIFIED.test(path) ? verifiedFirst(request, path) : networkFirst(request, event));
});

let siteManifest = null; // the newest manifest.json this worker has seen; its sha256s say what the cache may answer

async function currentManifest(cache) {
  if (!siteManifest) {
    const stored = await cache.match(MANIFEST_URL);
    siteManifest = stored ? await stored.json().catch(() => null) : null;
  }
  return siteManifest;
}

/** The page shell, so a reload works offline even if it was first loaded before this worker took control. */
async function precacheShell() {
  try {
    const cache = await caches.open(CACHE);
    const response = await fetch('manifest.json', { cache: 'no-cache' });
    if (!response.ok) return;
    const manifest = await response.clone().json();
    siteManifest = manifest;
    const shell = Object.keys(manifest.files || {}).filter((path) => !SHELL_EXCLUDED.test(path) && path !== 'sw.js');
    await cache.put('manifest.json', response);
    await cache.addAll(['./', ...shell]);
  } catch {
    // Offline or a partial deploy: the runtime cache below still fills as the page loads.
  }
}

async function networkFirst(request, event) {
  const cache = await caches.open(CACHE);
  let response;
  try {
    response = await fetch(request);
    if (response.status === 200 && response.type === 'basic') {
      if (withoutQuery(request.url) === MANIFEST_URL) {
        siteManifest = await response.clone().json().catch(() => siteManifest);
      }
      // Stored under the path without the query (`?ep=wasm` and friends are page options, not other files),
      // in the background so the page still sees the body stream in (download progress).
      event.waitUntil(cache.put(withoutQuery(request.url), response.clone()).catch(() => {}));
    }
  } catch (err) {
    response = await cache.match(withoutQuery(request.url));
    if (!response) throw err;
  }
  return isolated(response);
}

/**
 * A runtime file: the stored copy while its sha256 is the one the newest manifest.json lists, else the network's,
 * stored (and answered from the cache) when its bytes match the manifest. Offline, the stored copy answers.
 */
async function verifiedFirst(request, path) {
  const cache = await caches.open(CACHE);
  const key = withoutQuery(request.url);
  const expected = (await currentManifest(cache))?.files?.[path]?.sha256;
  const stored = await cache.match(key);
  if (stored && expected && stored.headers.get(SHA256_HEADER) === expected) return forPage(request, stored);
  let response;
  try {
    response = await fetch(request);
  } catch (err) {
    if (stored) return forPage(request, stored);
    throw err;
  }
  if (!expected || response.status !== 200 || response.type !== 'basic') return forPage(request, response);
  const bytes = await response.arrayBuffer();
  const init = { status: response.status, statusText: response.statusText, headers: new Headers(response.headers) };
  const digest = await sha256Hex(bytes);
  if (digest !== expected) return forPage(request, new Response(bytes, init)); // not this deploy's file: never stored
  init.headers.set(SHA256_HEADER, digest);
  await cache.put(key, new Response(bytes, init));
  return forPage(request, (await cache.match(key)) ?? new Response(bytes, init));
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A worker script needs the isolation headers (a rebuilt Response); anything else goes to the page as stored. */
function forPage(request, response) {
  return request.destination === 'worker' ? isolated(response) : response;
}

function withoutQuery(url) {
  const u = new URL(url);
  u.search = '';
  u.hash = '';
  return u.href;
}

function isolated(response) {
  if (response.status === 0 || response.type === 'opaqueredirect') return response;
  const headers = new Headers(response.headers);
  for (const [name, value] of Object.entries(ISOLATION_HEADERS)) headers.set(name, value);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}
