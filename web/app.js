// Emotion Lens: page controller. Loads the runtime and models, runs the camera / photo through the frame
// engine, and keeps the DOM and window.__emotionApp in step. Errors become messages; the UI is never wiped.

import * as status from './js/app-status.js';
import { FrameEngine, MAX_FACES } from './js/app-engine.js';
import {
  browserSupportProblem, cameraOf, cameraSupportProblem, describeCameraError, onVideoFrames, startCamera, stopCamera,
  videoInputs,
} from './js/camera.js';
import { clearResults, drawOverlay, renderFacePanel } from './js/render.js';
import * as ui from './js/ui.js';
import { loadEverything, serviceWorkerControl } from './js/app-boot.js';
import { createSessionPanel } from './js/session-panel.js';

const params = new URLSearchParams(location.search);
const els = ui.els;

let engine = null;
let camera = null; // {stream, cancelFrames, deviceId, mirror}
let pausedDeviceId = null; // the camera to resume when the page is shown again (paused while hidden)
let busy = false; // one frame in flight at most
let lastStill = null; // {bitmap, result} for re-rendering the photo on resize
let noFaceFrames = 0;
let fpsEma = null;
let lastFrameAt = null;
// issue 10: face detector for camera frames (the settings form); photos always use the full-range one.
let cameraDetector = 'short_range';
const PHOTO_DETECTOR = 'full_range';

status.expose();

// Timelines, summary and recording: fed one call per camera frame (see showResult).
const session = createSessionPanel({ getModel: sessionModelInfo, faceList: els.faceList });

/** What the session panel needs to know about the loaded model, or null before it is loaded. */
function sessionModelInfo() {
  if (!engine) return null;
  return {
    model: { id: engine.sidecar.id, sha256: engine.sidecar.sha256 },
    labels: engine.labels,
    display: engine.display,
    colours: engine.colours,
    smoothing: { ...engine.smoothing },
  };
}

// ---------------------------------------------------------------- messages

function fail(code, message, { retry = false } = {}) {
  status.update({ error: { code, message } });
  ui.showError(message, { retry });
}

function clearFailure() {
  status.update({ error: null });
  ui.clearError();
}

function notify(code, message) {
  const current = status.get('notice');
  if (current && current.code === code && current.message === message) return;
  status.update({ notice: code ? { code, message } : null });
  ui.setNotice(message);
}

function epName(ep) {
  const names = { webgpu: 'WebGPU', webgl: 'WebGL', wasm: 'WASM', cpu: 'WASM' };
  return names[String(ep).toLowerCase()] || String(ep);
}

function epText(ep) {
  if (!ep) return '–';
  const d = epName(ep.detector);
  const e = epName(ep.emotion);
  return d === e ? d : `${d} (detector) · ${e} (emotion)`;
}

// ---------------------------------------------------------------- loading

async function boot() {
  clearFailure();
  ui.resetLoading();
  status.update({ state: 'loading' });
  ui.setControls({ ready: false, cameraOn: false });
  const unsupported = browserSupportProblem();
  if (unsupported) {
    ui.setStep('python', 'failed', 'This browser cannot run the app.');
    status.update({ state: 'error' });
    fail('unsupported', unsupported);
    return;
  }
  try {
    await serviceWorkerControl(); // first visit: let the worker see (and keep) the big downloads
    const loaded = await loadEverything({
      onStep: (step, state, text, fraction) => ui.setStep(step, state, text, fraction),
      ep: params.get('ep') || undefined,
      allowSoftwareGpu: params.get('softgpu') === '1',
      timeoutMs: params.has('loadTimeout') ? Number(params.get('loadTimeout')) : undefined,
    });
    engine = new FrameEngine({ ...loaded, maxFaces: MAX_FACES });
    // One blank frame compiles kernels / warms caches so the first real frame is not the slow one.
    const warm = document.createElement('canvas');
    warm.width = 64;
    warm.height = 48;
    await engine.process(warm, 64, 48);
    await engine.process(warm, 64, 48, { detector: PHOTO_DETECTOR });
    engine.reset();
    const ep = { detector: loaded.detector.ep, emotion: loaded.emotion.ep };
    status.update({
      state: 'ready',
      ep,
      epFullRange: loaded.detectorFullRange?.ep ?? null,
      epAttempts: { detector: loaded.detector.attempts, emotion: loaded.emotion.attempts },
      labels: engine.labels,
      smoothing: { ...engine.smoothing },
      cameraDetector,
      maxFaces: MAX_FACES,
      loadMs: Math.round(performance.now()),
    });
    ui.setReadouts({ ep: epText(ep) });
    ui.setLoadDone(`Ready. Models run with ${epText(ep)}; nothing is uploaded.`);
    ui.setControls({ ready: true, cameraOn: false });
    session.modelReady();
    if (!cameraSupportProblem()) els.start.focus({ preventScroll: true });
  } catch (err) {
    console.error(err);
    const code = (err && err.code) || 'load';
    status.update({ state: 'error' });
    ui.setLoadText('Loading failed.');
    fail(code, loadErrorMessage(err), { retry: true });
  }
}

function loadErrorMessage(err) {
  let text = (err && err.message) || String(err);
  // A Python traceback is noise to a user: keep its last line ("TypeError: ...").
  if (text.includes('Traceback (most recent call last)')) {
    const lines = text.trim().split('\n').filter((l) => l.trim());
    text = `internal error in the Python runtime (${lines[lines.length - 1].trim()})`;
  }
  return `Loading failed: ${text}`;
}

// ---------------------------------------------------------------- camera

/** Start the camera (`deviceId`: a given one, e.g. after Switch camera or a pause; else the user-facing one). */
async function onStartCamera({ deviceId } = {}) {
  pausedDeviceId = null;
  clearFailure();
  notify(null, '');
  const problem = cameraSupportProblem();
  if (problem) {
    fail('NotFoundError', problem);
    return;
  }
  ui.setControls({ ready: true, cameraOn: false, cameraBusy: true });
  status.update({
    state: 'camera-starting', cameraClickMs: Math.round(performance.now()), firstFrameMs: null, frames: 0, dropped: 0,
  });
  ui.setLoadText('Starting the camera…');
  try {
    const stream = await startCamera(els.video, { deviceId });
    lastStill = null;
    engine.reset();
    resetFrameStats();
    session.cameraStarted(performance.now());
    ui.setViewportMode('camera');
    status.update({ state: 'running', source: 'camera', frames: 0, dropped: 0 });
    ui.setControls({ ready: true, cameraOn: true });
    ui.setLoadText('Camera on. Frames are processed on this device only.');
    const source = cameraOf(stream);
    // A back camera is not a mirror: show it (and draw its boxes) the right way round.
    const mirror = source.facing !== 'environment';
    els.viewport.dataset.facing = source.facing || 'user';
    camera = { stream, cancelFrames: onVideoFrames(els.video, onVideoFrame), deviceId: source.deviceId, mirror };
    for (const track of stream.getVideoTracks()) {
      track.addEventListener('ended', () => {
        if (!camera || camera.stream !== stream) return;
        fail('ended', 'The camera stopped sending pictures (it was disconnected, or another app or the browser ' +
          'took it). Press “Start camera” to try again, or analyse a photo.');
        onStopCamera();
      });
    }
    await showCameraSwitch();
    if (document.visibilityState === 'hidden') await pauseCamera(); // hidden while the camera was starting
  } catch (err) {
    const { code, message } = describeCameraError(err);
    status.update({ state: 'ready' });
    ui.setControls({ ready: true, cameraOn: false });
    ui.setLoadText('Camera not started.');
    fail(code, message);
  }
}

/** Stop the camera. `paused`: the page was hidden; say so, and keep the focus where it is. */
async function onStopCamera({ paused = false } = {}) {
  if (!camera) return;
  camera.cancelFrames();
  stopCamera(els.video, camera.stream);
  camera = null;
  await waitIdle();
  session.cameraStopped(performance.now());
  clearResults(els.faceList, els.overlay);
  ui.setFaceCount(0);
  ui.setReadouts({ fps: null });
  notify(null, '');
  ui.setViewportMode('idle');
  ui.setControls({ ready: true, cameraOn: false });
  els.switchCamera.hidden = true;
  status.update({ source: null, lastResults: [], faceCount: 0, fps: null });
  if (paused) {
    ui.setLoadText('Camera paused while the page is hidden; it starts again when you come back.');
    status.update({ state: 'paused' });
    return;
  }
  pausedDeviceId = null;
  ui.setLoadText('Camera off.');
  status.update({ state: 'ready' });
  els.start.focus({ preventScroll: true });
}

// ---------------------------------------------------------------- camera switch and pause

/** Show "Switch camera" only when the device has more than one camera. */
async function showCameraSwitch() {
  const cameras = await videoInputs().catch(() => []);
  els.switchCamera.hidden = !camera || cameras.length < 2;
}

/** Go to the next camera the browser lists (front <-> back on a phone). */
async function onSwitchCamera() {
  if (!camera) return;
  const cameras = await videoInputs();
  if (cameras.length < 2) return;
  const at = cameras.findIndex((c) => c.deviceId === camera.deviceId);
  const next = cameras[(at + 1) % cameras.length];
  await onStopCamera();
  await onStartCamera({ deviceId: next.deviceId });
  if (camera) els.switchCamera.focus({ preventScroll: true });
}

/** Release the camera while the page is hidden (light off, no frames processed); it resumes on return. */
async function pauseCamera() {
  if (!camera) return;
  pausedDeviceId = camera.deviceId;
  await onStopCamera({ paused: true });
  if (document.visibilityState === 'visible') onVisibilityChange(); // shown again while it was stopping
}

function onVisibilityChange() {
  if (document.visibilityState === 'hidden') pauseCamera();
  else if (pausedDeviceId !== null && status.get('state') === 'paused') onStartCamera({ deviceId: pausedDeviceId });
}

function resetFrameStats() {
  noFaceFrames = 0;
  fpsEma = null;
  lastFrameAt = null;
}

function onVideoFrame() {
  if (busy) {
    status.update({ dropped: status.get('dropped') + 1 });
    return;
  }
  const video = els.video;
  if (!video.videoWidth || !camera) return;
  busy = true;
  processVideoFrame(video)
    .catch((err) => {
      console.error(err);
      fail('frame', `Processing a frame failed: ${err.message || err}. The camera was stopped; start it again ` +
        'to retry, or analyse a photo.');
      setTimeout(onStopCamera, 0); // one message, not one per frame
    })
    .finally(() => { busy = false; });
}

async function processVideoFrame(video) {
  const result = await engine.process(video, video.videoWidth, video.videoHeight,
    { maxSide: 640, detector: cameraDetector });
  if (!camera) return; // stopped while this frame was in flight
  const t = performance.now();
  if (lastFrameAt !== null) {
    const inst = 1000 / Math.max(1, t - lastFrameAt);
    fpsEma = fpsEma === null ? inst : 0.9 * fpsEma + 0.1 * inst;
  }
  lastFrameAt = t;
  const frames = status.get('frames') + 1;
  status.update({ frames, fps: fpsEma });
  if (status.get('firstResultMs') === null) status.update({ firstResultMs: Math.round(t) });
  if (status.get('firstFrameMs') === null) status.update({ firstFrameMs: Math.round(t) });
  showResult(result, { mirror: camera.mirror, live: true });
}

function waitIdle() {
  return new Promise((resolve) => {
    const check = () => (busy ? setTimeout(check, 10) : resolve());
    check();
  });
}

// ---------------------------------------------------------------- results

function showResult(result, { mirror, live }) {
  const { faces, detected, width, height, timings } = result;
  status.pushTimings({ ...timings, faces: faces.length });
  status.update({ lastResults: faces, faceCount: faces.length, timings, detector: result.detector });
  drawOverlay(els.overlay, faces, engine.display, { srcW: width, srcH: height, mirror });
  renderFacePanel(els.faceList, faces, engine.display);
  if (live) session.frame(result, performance.now());
  ui.setFaceCount(faces.length);
  ui.setReadouts({ fps: status.get('fps'), timings });

  if (detected > MAX_FACES) {
    notify('too-many-faces', `Too many faces: ${detected} found, showing the ${MAX_FACES} clearest. ` +
      `Up to ${MAX_FACES} faces are analysed at once.`);
  } else if (detected === 0) {
    noFaceFrames += 1;
    // Live video: wait a few frames so a single missed frame does not flash a message.
    if (!live || noFaceFrames >= 5) {
      notify('no-face', live
        ? 'No face in view. Face the camera in good light, about an arm’s length away.'
        : 'No face found in this photo. Try a photo where faces are larger, frontal and well lit.');
    }
  } else {
    noFaceFrames = 0;
    notify(null, '');
  }
}

// ---------------------------------------------------------------- photos

async function analyseFile(file) {
  if (!file || !engine) return;
  clearFailure();
  notify(null, '');
  if (camera) await onStopCamera();
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (err) {
    fail('decode', `“${file.name}” could not be read as an image (it may be damaged or in an unsupported ` +
      'format). Try a JPEG, PNG or WebP photo.');
    return;
  }
  await waitIdle();
  busy = true;
  try {
    engine.reset();
    const maxSide = 1280;
    const result = await engine.process(bitmap, bitmap.width, bitmap.height, { maxSide, detector: PHOTO_DETECTOR });
    // Show the photo at the resolution it was analysed at.
    els.still.width = result.width;
    els.still.height = result.height;
    els.still.getContext('2d').drawImage(bitmap, 0, 0, result.width, result.height);
    ui.setViewportMode('still');
    lastStill = result;
    resetFrameStats();
    status.update({ state: 'still', source: 'image', fps: null, frames: 1 });
    if (status.get('firstResultMs') === null) status.update({ firstResultMs: Math.round(performance.now()) });
    showResult(result, { mirror: false, live: false });
    ui.setLoadText(`Analysed “${file.name}”: ${result.faces.length} face(s).`);
  } catch (err) {
    console.error(err);
    fail('frame', `Analysing the photo failed: ${err.message || err}`);
  } finally {
    bitmap.close();
    busy = false;
  }
}

function onUploadChange() {
  const file = els.upload.files && els.upload.files[0];
  analyseFile(file).finally(() => { els.upload.value = ''; });
}

function setUpDragAndDrop() {
  const vp = els.viewport;
  // Stop the browser from navigating to a file dropped anywhere on the page.
  for (const type of ['dragover', 'drop']) {
    document.addEventListener(type, (e) => e.preventDefault());
  }
  vp.addEventListener('dragenter', () => { vp.dataset.drop = 'over'; });
  vp.addEventListener('dragover', (e) => {
    e.dataTransfer.dropEffect = engine ? 'copy' : 'none';
    vp.dataset.drop = 'over';
  });
  vp.addEventListener('dragleave', () => { delete vp.dataset.drop; });
  vp.addEventListener('drop', (e) => {
    delete vp.dataset.drop;
    const file = e.dataTransfer.files && e.dataTransfer.files[0];
    if (!engine) {
      fail('not-ready', 'The app is still loading; drop the photo again once it is ready.');
      return;
    }
    analyseFile(file);
  });
}

// ---------------------------------------------------------------- settings

function onSettingsSubmit(e) {
  e.preventDefault();
  if (!engine) return;
  const mode = els.smoothingMode.value;
  const k = Number(els.smoothingK.value);
  engine.setSmoothing({ mode, k });
  const s = engine.smoothing;
  status.update({ smoothing: { ...s } });
  const names = { ema: 'exponential moving average', mean: 'window mean', median: 'window median' };
  cameraDetector = els.cameraDetector.value;
  status.update({ cameraDetector });
  const detectorText = cameraDetector === 'full_range' ? 'full-range face detector' : 'short-range face detector';
  els.settingsStatus.textContent = (s.mode === 'none'
    ? 'Smoothing off: raw per-frame probabilities.'
    : `Smoothing: ${names[s.mode]} over ${s.k} frame(s).`) + ` Camera: ${detectorText}.`;
}

// ---------------------------------------------------------------- wiring

function onResize() {
  if (lastStill && els.viewport.dataset.mode === 'still') {
    drawOverlay(els.overlay, lastStill.faces, engine.display,
      { srcW: lastStill.width, srcH: lastStill.height, mirror: false });
  }
}

els.start.addEventListener('click', () => onStartCamera());
els.stop.addEventListener('click', () => onStopCamera());
els.switchCamera.addEventListener('click', onSwitchCamera);
document.addEventListener('visibilitychange', onVisibilityChange);
els.upload.addEventListener('change', onUploadChange);
els.retry.addEventListener('click', () => { if (status.get('state') === 'error') boot(); });
els.settingsForm.addEventListener('submit', onSettingsSubmit);
window.addEventListener('resize', onResize);
setUpDragAndDrop();

const camProblem = cameraSupportProblem();
if (camProblem) els.start.title = camProblem;

boot();
