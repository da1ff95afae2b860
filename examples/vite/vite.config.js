// The engine module is bundled like any dependency; its runtime folder (worker, Python, onnxruntime-web, models:
// static files the engine checks against their sha256) is served as it is, at /emotion-lens/.
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { defineConfig } from 'vite';

const RUNTIME = join(dirname(createRequire(import.meta.url).resolve('emotion-lens/package.json')), 'runtime');

/** Copy the package's runtime folder into public/emotion-lens/ (git-ignored), for `vite` and `vite build` alike. */
const emotionLensRuntime = {
  name: 'emotion-lens-runtime',
  configResolved(config) {
    const target = join(config.publicDir, 'emotion-lens');
    rmSync(target, { recursive: true, force: true });
    cpSync(RUNTIME, target, { recursive: true });
  },
};

// Cross-origin isolation lets onnxruntime-web use several threads; your host must send these headers too (or use
// a service worker that adds them, as the demo site does on GitHub Pages).
const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

export default defineConfig({
  plugins: [emotionLensRuntime],
  server: { headers: isolation },
  preview: { headers: isolation },
});
