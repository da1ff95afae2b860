// Page chrome: loading progress, messages, control states and performance readouts. No app logic here.

const $ = (id) => document.getElementById(id);

export const els = {
  loading: $('loading'),
  progress: $('load-progress'),
  steps: $('load-steps'),
  loadStatus: $('load-status'),
  error: $('error'),
  errorText: $('error-text'),
  retry: $('retry-load'),
  notice: $('notice'),
  start: $('start-camera'),
  stop: $('stop-camera'),
  switchCamera: $('switch-camera'),
  upload: $('upload'),
  uploadLabel: $('upload-label'),
  viewport: $('viewport'),
  video: $('video'),
  still: $('still'),
  overlay: $('overlay'),
  faceList: $('face-list'),
  faceCount: $('face-count'),
  settingsForm: $('settings-form'),
  smoothingMode: $('smoothing-mode'),
  smoothingK: $('smoothing-k'),
  cameraDetector: $('camera-detector'),
  settingsStatus: $('settings-status'),
  ro: {
    ep: $('ro-ep'),
    fps: $('ro-fps'),
    detect: $('ro-detect'),
    pre: $('ro-pre'),
    classify: $('ro-classify'),
    post: $('ro-post'),
  },
};

export const STEPS = ['python', 'numpy', 'models', 'verify'];

/** Mark one loading step (pending | active | done | failed) and update bar + status text. */
export function setStep(step, state, text, fraction) {
  const li = els.steps.querySelector(`li[data-step="${step}"]`);
  if (li) li.dataset.state = state;
  if (text) els.loadStatus.textContent = text;
  if (typeof fraction === 'number') {
    // Python and the models load side by side and report their own fractions: never move the bar back.
    const value = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
    els.progress.value = Math.max(els.progress.value, value);
  }
}

export function setLoadText(text) {
  els.loadStatus.textContent = text;
}

export function setLoadDone(text) {
  els.progress.value = 100;
  els.loading.dataset.done = 'true';
  els.loadStatus.textContent = text;
}

export function resetLoading() {
  els.loading.dataset.done = 'false';
  els.progress.value = 0;
  for (const li of els.steps.children) li.dataset.state = 'pending';
}

/** Show an error (role=alert). `retry` shows the "Retry loading" button. Never hides the rest of the UI. */
export function showError(message, { retry = false } = {}) {
  els.errorText.textContent = message;
  els.retry.hidden = !retry;
  els.error.hidden = false;
}

export function clearError() {
  els.error.hidden = true;
  els.errorText.textContent = '';
  els.retry.hidden = true;
}

/** Non-fatal information about the current view (no face, too many faces). Only touches the DOM on change. */
export function setNotice(message) {
  const text = message || '';
  if (els.notice.textContent === text && els.notice.hidden === !text) return;
  els.notice.textContent = text;
  els.notice.hidden = !text;
}

/** Enable/disable controls for the app state. */
export function setControls({ ready, cameraOn, cameraBusy = false }) {
  els.start.disabled = !ready || cameraOn || cameraBusy;
  els.stop.disabled = !cameraOn;
  els.upload.disabled = !ready;
  els.uploadLabel.dataset.disabled = String(!ready);
}

export function setViewportMode(mode) {
  els.viewport.dataset.mode = mode;
}

const fmtMs = (v) => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : '–');

export function setReadouts({ ep, fps, timings }) {
  if (ep !== undefined) els.ro.ep.textContent = ep || '–';
  if (fps !== undefined) els.ro.fps.textContent = Number.isFinite(fps) ? fps.toFixed(1) : '–';
  if (timings) {
    els.ro.detect.textContent = fmtMs(timings.detect);
    els.ro.pre.textContent = fmtMs(timings.pre);
    els.ro.classify.textContent = fmtMs(timings.classify);
    els.ro.post.textContent = fmtMs(timings.post);
  }
}

export function setFaceCount(n) {
  els.faceCount.textContent = String(n);
}
