// Emotion Lens demo page: the engine (js/emotion-lens.js) does the work; this file wires it to the page. Frames
// go in through the camera or a photo; results come back as the engine's events and flow one way into the DOM
// (overlay.js, render.js, ui.js) and window.__emotionApp (app-status.js, read by the tests and the benchmark).
// Errors become messages; the UI is never wiped.

import * as status from './js/app-status.js';
import {
  cameraOf, cameraSupportProblem, describeCameraError, startCamera, stopCamera, videoInputs,
} from './js/camera.js';
import { EVENTS, browserSupportProblem, createEmotionLens, fitSize } from './js/emotion-lens.js';
import { createOverlay } from './js/overlay.js';
import { renderFacePanel, whenResized } from './js/render.js';
import * as ui from './js/ui.js';
import { createSessionPanel } from './js/session-panel.js';

const params = new URLSearchParams(location.search);
const els = ui.els;
const MODEL_KEY = 'emotion-lens:model'; // the visitor's model choice (localStorage)
// The FPS and stage readouts change with every frame; a few updates a second are as much as anyone can read.
const READOUT_MS = 250;

let lens = null;
let currentModel = null; // the engine's emotion model in use (ModelInfo), kept from its READY / MODEL info
let camera = null; // {stream, stopWatch (null until the engine watches it), deviceId, mirror}
let cameraStarting = false; // the browser is opening the camera (permission prompt, device start)
let pausedDeviceId = null; // the camera to resume when the page is shown again (paused while hidden)
let lastStill = null; // result of the photo on screen, for re-drawing on resize
let noFaceFrames = 0;
let fpsEma = null;
let lastFrameAt = null;
let lastReadoutAt = -Infinity;
let detectorRuns = { frames: 0, ran: 0, ms: null }; // since the last readout: frames, those the detector ran on, its last ms
let cameraBase = { frames: 0, dropped: 0 }; // the engine's counters when the camera started
let switchingModel = false;

status.expose();

const overlay = createOverlay(els.overlay);

// Timelines, summary and recording: fed one call per camera frame (see showResult).
const session = createSessionPanel({ getModel: sessionModelInfo, faceList: els.faceList });

/** What the session panel needs to know about the current model, or null before one is loaded. */
function sessionModelInfo() {
  if (lens?.state !== 'ready' || !currentModel) return null;
  const { id, sha256, labels, display, colours } = currentModel;
  const model = sha256 ? { id, sha256 } : { id };
  return { model, labels, display, colours, smoothing: { ...status.get('smoothing') } };
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

/** A Python traceback is noise to a user: keep its last line ("TypeError: ..."). */
function readable(err) {
  let text = (err && err.message) || String(err);
  if (text.includes('Traceback (most recent call last)')) {
    const lines = text.trim().split('\n').filter((l) => l.trim());
    text = `internal error in the Python runtime (${lines[lines.length - 1].trim()})`;
  }
  return text;
}

// ---------------------------------------------------------------- engine options from the address and storage

/** Demo-page overrides: ?ep=webgpu|webgl|wasm puts one EP first (WASM stays the fallback), ?softgpu=1 allows
 *  software GPUs (also implied by ?ep=), ?loadTimeout=ms, ?worker=0 runs the pipeline on the main thread,
 *  ?resample=numpy|browser sets who resizes camera frames and photos (numpy or the browser's canvas),
 *  ?detectEvery=n runs the face detector on camera frames at least every n frames (1: every frame), ?adapt=0 keeps
 *  that cadence on a slow device,
 *  ?model=<id> opens with that emotion model (a study's link; the visitor's stored choice is left as it is). */
function pageConfig() {
  const ep = params.get('ep');
  const config = { model: params.get('model') || storedModel() };
  if (ep) {
    const wanted = ep.toLowerCase();
    config.executionProviders = wanted === 'wasm' ? ['wasm'] : [wanted, 'wasm'];
  }
  if (ep || params.get('softgpu') === '1') config.allowSoftwareGpu = true;
  if (params.has('loadTimeout')) config.timeouts = { load: Number(params.get('loadTimeout')) };
  if (params.get('worker') === '0') config.worker = false;
  if (params.has('resample')) config.resample = { video: params.get('resample'), image: params.get('resample') };
  if (params.has('detectEvery')) config.detectEvery = Number(params.get('detectEvery'));
  if (params.get('adapt') === '0') config.adapt = { enabled: false };
  return config;
}

function storedModel() {
  try {
    return localStorage.getItem(MODEL_KEY);
  } catch {
    return null; // storage blocked: the build's default model
  }
}

function storeModel(id) {
  try {
    localStorage.setItem(MODEL_KEY, id);
  } catch {
    // storage blocked: the choice lasts for this visit only
  }
}

// ---------------------------------------------------------------- loading

function applyInfo(info) {
  currentModel = info.model;
  const ep = { detector: info.ep.detector, emotion: info.ep.emotion };
  status.update({
    ep,
    epFullRange: info.ep.detectorFullRange,
    epAttempts: info.epAttempts,
    cameraDetector: info.detector.video,
    maxFaces: lens.config.maxFaces,
    labels: info.model.labels,
    model: { id: info.model.id, title: info.model.title, dataset: info.model.dataset },
    models: info.models,
    smoothing: { ...info.smoothing },
    thread: info.backend.thread,
    threadReason: info.backend.reason,
    inference: info.inference,
    runtime: { ...info.runtime },
  });
  ui.setReadouts({ ep: ui.epText(ep), runtime: ui.runtimeText(info.runtime) });
  ui.setModelChoice(info.models, info.model.id);
  ui.setModelProgress(null, info.model.title);
}

async function boot() {
  clearFailure();
  ui.resetLoading();
  status.update({ state: 'loading' });
  ui.setControls({ ready: false, cameraOn: false });
  const unsupported = browserSupportProblem();
  if (unsupported) {
    ui.showProgress({ status: 'failed', step: 'python' });
    ui.setLoadText('This browser cannot run the app.');
    status.update({ state: 'error' });
    fail('unsupported', unsupported);
    return;
  }
  try {
    lens ??= createLens();
    // The camera may start while the engine loads (on a phone that hides seconds of loading behind its own start).
    ui.setControls({ ready: false, loading: true, cameraOn: Boolean(camera), cameraBusy: cameraStarting });
    const info = await lens.load();
    applyInfo(info);
    status.update({ state: 'ready', loadMs: Math.round(performance.now()) });
    ui.setLoadDone(ui.readyText(info));
    ui.setControls({ ready: true, cameraOn: Boolean(camera), cameraBusy: cameraStarting });
    session.modelReady();
    if (!camera && !cameraStarting && !cameraSupportProblem()) els.start.focus({ preventScroll: true });
  } catch (err) {
    console.error(err);
    status.update({ state: 'error' });
    ui.setControls({ ready: false, cameraOn: Boolean(camera) }); // a camera started meanwhile is stopped by its start
    ui.showProgress({ status: 'failed', step: err.step || 'python' });
    ui.setLoadText('Loading failed.');
    fail(err.code || 'load', `Loading failed: ${readable(err)}`, { retry: true });
  }
}

function createLens() {
  const engine = createEmotionLens(pageConfig());
  engine.addEventListener(EVENTS.PROGRESS, (e) => {
    if (switchingModel) ui.setModelProgress(e.detail);
    else ui.showProgress(e.detail);
  });
  engine.addEventListener(EVENTS.RESULT, (e) => onResult(e.detail));
  engine.addEventListener(EVENTS.MODEL, (e) => applyInfo(e.detail));
  engine.addEventListener(EVENTS.INFO, (e) => applyInfo(e.detail));
  engine.addEventListener(EVENTS.ERROR, (e) => onEngineError(e.detail));
  status.setMemoryProbe(() => engine.memory());
  return engine;
}

function onEngineError({ code, message }) {
  if (!camera) return;
  fail(code, `Processing a frame failed: ${readable({ message })}. The camera was stopped; start it again ` +
    'to retry, or analyse a photo.');
  onStopCamera();
}

// ---------------------------------------------------------------- camera

/** Start the camera (`deviceId`: a given one, e.g. after Switch camera or a pause; else the user-facing one). */
/** @param {{deviceId?: string}} [options] */
async function onStartCamera({ deviceId } = {}) {
  pausedDeviceId = null;
  clearFailure();
  notify(null, '');
  const problem = cameraSupportProblem();
  if (problem) {
    fail('NotFoundError', problem);
    return;
  }
  const ready = lens.state === 'ready';
  cameraStarting = true;
  ui.setControls({ ready, loading: !ready, cameraOn: false, cameraBusy: true });
  status.update({
    state: ready ? 'camera-starting' : status.get('state'), cameraClickMs: Math.round(performance.now()),
    firstFrameMs: null, frames: 0, dropped: 0,
  });
  ui.setLoadText('Starting the camera…');
  try {
    const stream = await startCamera(els.video, { deviceId });
    cameraStarting = false;
    lastStill = null;
    const source = cameraOf(stream);
    // A back camera is not a mirror: show it (and draw its boxes) the right way round.
    els.viewport.dataset.facing = source.facing || 'user';
    ui.setViewportMode('camera');
    camera = { stream, stopWatch: null, deviceId: source.deviceId, mirror: source.facing !== 'environment' };
    ui.setControls({ ready: lens.state === 'ready', loading: lens.state !== 'ready', cameraOn: true });
    if (lens.state !== 'ready') {
      // Started before the engine was ready: the picture shows now, the labels from the first frame after.
      ui.setLoadText('Camera on; the models are still loading.');
      const loaded = await lens.load().then(() => true, () => false); // boot() reports a failure
      if (camera?.stream !== stream) return; // stopped meanwhile
      if (!loaded) {
        onStopCamera();
        return;
      }
    }
    await lens.reset();
    resetFrameStats();
    session.cameraStarted(performance.now());
    status.update({ state: 'running', source: 'camera', frames: 0, dropped: 0 });
    ui.setControls({ ready: true, cameraOn: true });
    ui.setLoadText('Camera on. Frames are processed on this device only.');
    cameraBase = lens.stats;
    camera.stopWatch = lens.watch(els.video);
    for (const track of stream.getVideoTracks()) {
      track.addEventListener('ended', () => {
        if (!camera || camera.stream !== stream) return;
        fail('ended', 'The camera stopped sending pictures (it was disconnected, or another app or the browser ' +
          'took it). Press “Start camera” to try again, or analyse a photo.');
        onStopCamera();
      });
    }
    await showCameraSwitch();
    if (document.visibilityState === 'hidden') pauseCamera(); // hidden while the camera was starting
  } catch (err) {
    cameraStarting = false;
    const { code, message } = describeCameraError(err);
    const ready = lens.state === 'ready';
    if (ready) status.update({ state: 'ready' });
    ui.setControls({ ready, loading: lens.state === 'loading', cameraOn: false });
    ui.setLoadText('Camera not started.');
    fail(code, message);
  }
}

/** Stop the camera. `paused`: the page was hidden; say so, and keep the focus where it is. */
function onStopCamera({ paused = false } = {}) {
  if (!camera) return;
  const watched = camera.stopWatch !== null; // null: stopped before the engine was ready to take its frames
  camera.stopWatch?.();
  stopCamera(els.video, camera.stream);
  camera = null; // results of frames still in flight are ignored from here on
  if (watched) session.cameraStopped(performance.now());
  clearFaces();
  ui.setFaceCount(0);
  ui.setReadouts({ fps: null });
  notify(null, '');
  ui.setViewportMode('idle');
  const ready = lens?.state === 'ready';
  ui.setControls({ ready, loading: lens?.state === 'loading', cameraOn: false });
  els.switchCamera.hidden = true;
  status.update({ source: null, lastResults: [], faceCount: 0, fps: null });
  if (!ready) return; // stopped while loading (or after loading failed): boot() owns the state and the messages
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
  onStopCamera();
  await onStartCamera({ deviceId: next.deviceId });
  if (camera) els.switchCamera.focus({ preventScroll: true });
}

/** Release the camera while the page is hidden (light off, no frames processed); it resumes on return. */
function pauseCamera() {
  if (!camera) return;
  pausedDeviceId = camera.deviceId;
  onStopCamera({ paused: true });
}

function onVisibilityChange() {
  if (document.visibilityState === 'hidden') pauseCamera();
  else if (pausedDeviceId !== null && status.get('state') === 'paused') onStartCamera({ deviceId: pausedDeviceId });
}

function resetFrameStats() {
  noFaceFrames = 0;
  fpsEma = null;
  lastFrameAt = null;
  lastReadoutAt = -Infinity;
  detectorRuns = { frames: 0, ran: 0, ms: null };
}

// ---------------------------------------------------------------- results (the engine's RESULT events)

function onResult(result) {
  if (result.kind === 'video') {
    if (camera) showCameraResult(result);
  } else {
    showStillResult(result);
  }
}

function showCameraResult(result) {
  const t = performance.now();
  if (lastFrameAt !== null) {
    const inst = 1000 / Math.max(1, t - lastFrameAt);
    fpsEma = fpsEma === null ? inst : 0.9 * fpsEma + 0.1 * inst;
  }
  lastFrameAt = t;
  const stats = lens.stats;
  status.update({ frames: status.get('frames') + 1, dropped: stats.dropped - cameraBase.dropped, fps: fpsEma });
  if (status.get('firstResultMs') === null) status.update({ firstResultMs: Math.round(t) });
  if (status.get('firstFrameMs') === null) status.update({ firstFrameMs: Math.round(t) });
  showResult(result, { mirror: camera.mirror, live: true });
}

/** Remove every face card and box. */
function clearFaces() {
  els.faceList.replaceChildren();
  overlay.clear();
}

function showStillResult(result) {
  lastStill = result;
  resetFrameStats();
  status.update({ state: 'still', source: 'image', fps: null, frames: 1 });
  if (status.get('firstResultMs') === null) status.update({ firstResultMs: Math.round(performance.now()) });
  showResult(result, { mirror: false, live: false });
}

function showResult(result, { mirror, live }) {
  const { faces, detected, detectorRan, width, height, timings } = result;
  const { display } = currentModel;
  const maxFaces = lens.config.maxFaces;
  status.pushTimings({ ...timings, faces: faces.length, detectorRan, at: performance.now() });
  status.update({ lastResults: faces, faceCount: faces.length, timings, detector: result.detector });
  overlay.draw(faces, display, { srcW: width, srcH: height, mirror });
  renderFacePanel(els.faceList, faces, display);
  const now = performance.now();
  if (live) session.frame(result, now);
  ui.setFaceCount(faces.length);
  detectorRuns.frames += 1;
  if (detectorRan) Object.assign(detectorRuns, { ran: detectorRuns.ran + 1, ms: timings.detect });
  if (!live || now - lastReadoutAt >= READOUT_MS) {
    lastReadoutAt = now;
    const { pace } = lens.stats;
    status.update({ pace });
    ui.setReadouts({
      fps: status.get('fps'), fpsCap: live && pace.slowed ? pace.slowFps : null, timings,
      detector: { ...detectorRuns, slowed: live && pace.detectEvery > pace.configured },
      faceAlone: result.views < lens.model.views.count,
    });
    detectorRuns.frames = detectorRuns.ran = 0;
  }

  if (detected > maxFaces) {
    notify('too-many-faces', `Too many faces: ${detected} found, showing the ${maxFaces} clearest. ` +
      `Up to ${maxFaces} faces are analysed at once.`);
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
  if (!file || lens?.state !== 'ready') return;
  clearFailure();
  notify(null, '');
  if (camera) onStopCamera();
  let bitmap;
  try {
    bitmap = await createImageBitmap(file); // decoded off the main thread
  } catch (err) {
    fail('decode', `“${file.name}” could not be read as an image (it may be damaged or in an unsupported ` +
      'format). Try a JPEG, PNG or WebP photo.');
    return;
  }
  // Show the photo at the resolution the engine reads it at; the engine then takes the bitmap (transferred).
  const { width, height } = fitSize(bitmap.width, bitmap.height, lens.config.maxSide.image);
  els.still.width = width;
  els.still.height = height;
  els.still.getContext('2d').drawImage(bitmap, 0, 0, width, height);
  ui.setViewportMode('still');
  try {
    await lens.reset();
    const result = await lens.detect(bitmap);
    if (result) ui.setLoadText(`Analysed “${file.name}”: ${result.faces.length} face(s).`);
  } catch (err) {
    console.error(err);
    fail('frame', `Analysing the photo failed: ${readable(err)}`);
  }
}

function onUploadChange() {
  const file = els.upload.files && els.upload.files[0];
  analyseFile(file).finally(() => { els.upload.value = ''; });
}

function setUpDragAndDrop() {
  const vp = els.viewport;
  const ready = () => lens?.state === 'ready';
  // Stop the browser from navigating to a file dropped anywhere on the page.
  for (const type of ['dragover', 'drop']) {
    document.addEventListener(type, (e) => e.preventDefault());
  }
  vp.addEventListener('dragenter', () => { vp.dataset.drop = 'over'; });
  vp.addEventListener('dragover', (e) => {
    e.dataTransfer.dropEffect = ready() ? 'copy' : 'none';
    vp.dataset.drop = 'over';
  });
  vp.addEventListener('dragleave', () => { delete vp.dataset.drop; });
  vp.addEventListener('drop', (e) => {
    delete vp.dataset.drop;
    const file = e.dataTransfer.files && e.dataTransfer.files[0];
    if (!ready()) {
      fail('not-ready', 'The app is still loading; drop the photo again once it is ready.');
      return;
    }
    analyseFile(file);
  });
}

// ---------------------------------------------------------------- settings

async function onSettingsSubmit(e) {
  e.preventDefault();
  if (lens?.state !== 'ready') return;
  const s = await lens.setSmoothing({ mode: els.smoothingMode.value, k: Number(els.smoothingK.value) });
  // Photos always use the full-range detector (config default); the camera's is this setting.
  const { video: cameraDetector } = lens.setDetector({ video: els.cameraDetector.value });
  status.update({ smoothing: { ...s }, cameraDetector });
  ui.setSettingsText(s, cameraDetector);
}

async function onModelChange() {
  const id = els.modelSelect.value;
  if (lens?.state !== 'ready' || id === lens.model.id) return;
  clearFailure();
  switchingModel = true;
  els.modelSelect.disabled = true;
  try {
    await lens.setModel(id); // the MODEL event updates the page
    storeModel(id);
    session.modelReady();
    clearFaces(); // the old model's cards have the old labels
  } catch (err) {
    console.error(err);
    fail(err.code || 'model', `Switching the model failed: ${readable(err)} The previous model is still in use.`);
    ui.setModelChoice(lens.info.models, lens.model.id);
    ui.setModelProgress(null, lens.model.title);
  } finally {
    switchingModel = false;
    els.modelSelect.disabled = false;
  }
}

// ---------------------------------------------------------------- wiring

/** The overlay changed size (window resized, layout moved): the photo's boxes are drawn again to fit. */
function redrawStill() {
  if (lastStill && els.viewport.dataset.mode === 'still') {
    overlay.draw(lastStill.faces, currentModel.display, { srcW: lastStill.width, srcH: lastStill.height });
  }
}

els.start.addEventListener('click', () => onStartCamera());
els.stop.addEventListener('click', () => onStopCamera());
els.switchCamera.addEventListener('click', onSwitchCamera);
document.addEventListener('visibilitychange', onVisibilityChange);
els.upload.addEventListener('change', onUploadChange);
els.retry.addEventListener('click', () => { if (status.get('state') === 'error') boot(); });
els.settingsForm.addEventListener('submit', onSettingsSubmit);
els.modelSelect.addEventListener('change', onModelChange);
whenResized(els.overlay, redrawStill);
setUpDragAndDrop();

const camProblem = cameraSupportProblem();
if (camProblem) els.start.title = camProblem;

boot();
