// Service worker for the site root. Two jobs:
//
// 1. Offline use after the first load. Every same-origin GET goes to the network first (so a new deploy is
//    picked up at once) and the answer is stored; when the network fails, the stored copy answers. The small
//    page shell (everything in manifest.json outside vendor/, models/ and wheels/) is stored at install, the
//    runtime and models as the page fetches them, so a visitor keeps exactly what their browser used.
//    The page still checks every model and the runtime wheel against manifest.json's sha256 before use.
//    The shell includes the web app manifest (manifest.webmanifest) and its icons (icons/), so the installed
//    app opens offline with its name and icon.
// 2. Cross-origin isolation on hosts that cannot send headers (GitHub Pages): COOP/COEP are added to every
//    response served here, which gives WASM its threads. js/sw-register.js reloads the page once for that.
//
// Nothing here talks to another origin: requests to other origins are not touched (the CSP forbids them).

const CACHE = 'emotion-lens-v1';
const SHELL_EXCLUDED = /^(vendor|models|wheels|__test__)\//;
const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

self.addEventListener('install', (event) => {
  event.waitUntil(precacheShell().finally(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name !== CACHE && name.startsWith('emotion-lens-')) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  if (request.headers.has('range')) return; // partial responses cannot be stored; let the browser handle them
  event.respondWith(networkFirst(request, event));
});

/** The page shell, so a reload works offline even if it was first loaded before this worker took control. */
async function precacheShell() {
  try {
    const cache = await caches.open(CACHE);
    const response = await fetch('manifest.json', { cache: 'no-cache' });
    if (!response.ok) return;
    const manifest = await response.clone().json();
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
