// Waiting for the site's service worker (registered by js/sw-register.js) to control the page, so that the big
// downloads that follow pass through it and are kept for offline use.

/**
 * Wait (at most `timeoutMs`) until the service worker controls this page. Resolves at once where there is no
 * worker, or none that will take control. Never settles in a page that sw-register.js is reloading for
 * cross-origin isolation: loading anything there would only take CPU from the reloaded page.
 * @param {number} [timeoutMs]
 * @returns {Promise<boolean>} whether a worker controls the page
 */
export async function serviceWorkerControl(timeoutMs = 4000) {
  const sw = globalThis.isSecureContext && globalThis.navigator?.serviceWorker;
  const reloading = () => Boolean(globalThis.emotionLensReloading);
  const never = () => new Promise(() => {});
  if (!sw || sw.controller) return reloading() ? never() : Boolean(sw?.controller);
  const registration = await globalThis.emotionLensWorker?.catch(() => null);
  if (sw.controller) return reloading() ? never() : true; // claimed while we waited for the registration
  // No worker (registration failed), or one already active that will not claim this page (a hard reload):
  // nothing will take control, so do not wait for it.
  const settled = registration?.active?.state === 'activated' && !registration.installing && !registration.waiting;
  if (!registration || settled) return false;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    sw.addEventListener('controllerchange', () => {
      clearTimeout(timer);
      if (!reloading()) resolve(true); // sw-register.js's listener ran first (registered before this one)
    }, { once: true });
  });
}
