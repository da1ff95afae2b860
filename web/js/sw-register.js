// Registers the site's service worker (sw.js, at the site root: offline use after the first load, and
// cross-origin isolation where the server cannot send COOP/COEP, e.g. GitHub Pages). A classic script, loaded
// before app.js: when the worker takes control of a page that is not yet isolated, it reloads once so the page
// comes back through the worker with the headers (that gives WASM its threads). If isolation still fails (a
// browser without COEP support), it does not loop: the app runs single-threaded.
(() => {
  if (!('serviceWorker' in navigator) || !window.isSecureContext) return;
  const RELOAD_KEY = 'emotion-lens:isolation-reload';
  const workerUrl = new URL('../sw.js', /** @type {HTMLScriptElement} */ (document.currentScript).src);
  const reloadOnce = () => {
    if (window.crossOriginIsolated || sessionStorage.getItem(RELOAD_KEY)) return;
    sessionStorage.setItem(RELOAD_KEY, '1');
    window.emotionLensReloading = true; // the engine starts nothing in a page that is going away (sw-control.js)
    window.location.reload();
  };
  if (window.crossOriginIsolated) sessionStorage.removeItem(RELOAD_KEY);
  // Kept on window so app.js knows at once when there is no worker to wait for (see serviceWorkerControl).
  window.emotionLensWorker = navigator.serviceWorker.register(workerUrl);
  window.emotionLensWorker.then(() => {
    if (navigator.serviceWorker.controller) reloadOnce();
    else navigator.serviceWorker.addEventListener('controllerchange', reloadOnce, { once: true });
  }).catch((err) => console.warn(`Service worker not registered (no offline use, no WASM threads): ${err.message}`));
})();
