// Browser APIs that TypeScript's DOM library (5.9) lacks, and the two globals the demo page's classic scripts share
// with its modules: only for `tsc -p tsconfig.json` (type-checking web/); nothing here ships.

interface Window {
  /** sw-register.js: the page is reloading to become cross-origin isolated (js/sw-control.js starts nothing). */
  emotionLensReloading?: boolean;
  /** sw-register.js: the site's service worker registration. */
  emotionLensWorker?: Promise<ServiceWorkerRegistration>;
}

interface Navigator {
  /** WebGPU (js/inference.js only asks for an adapter and its info). */
  gpu?: { requestAdapter(options?: object): Promise<any> };
}

interface Performance {
  /** Chromium only. */
  memory?: { usedJSHeapSize: number };
}

/** Defined in workers only (js/lens-pipeline.js tests for it). */
declare var WorkerGlobalScope: { prototype: object; new (): object } | undefined;
