// Minimal use of the Emotion Lens engine: load it, feed it the camera or a photo, list the faces it reports.
import { EVENTS, createEmotionLens } from '../js/emotion-lens.js';

const $ = (id) => document.getElementById(id);
const video = /** @type {HTMLVideoElement} */ ($('video'));
const photo = /** @type {HTMLInputElement} */ ($('photo'));
const [start, stop] = /** @type {HTMLButtonElement[]} */ ([$('start'), $('stop')]);
const lens = createEmotionLens({ maxFaces: 4 });
let stopWatching = null;

// Progress while loading arrives as plain data: {status, step, loaded?, total?}.
lens.addEventListener(EVENTS.PROGRESS, ({ detail: p }) => {
  $('status').textContent = `Loading: ${p.step} ${p.status}` +
    (p.total ? ` (${(p.loaded / 1e6).toFixed(1)} of ${(p.total / 1e6).toFixed(1)} MB)` : '');
});
lens.addEventListener(EVENTS.ERROR, ({ detail }) => { $('status').textContent = `Error (${detail.code}): ${detail.message}`; });

/** One list item per face: its tracker id and the expression the engine shows for it (`index`), or, when the
 *  model is unsure (`uncertain`), its two leading expressions (`top2`). */
function show(result) {
  const { display } = lens.model;
  const pct = (face, k) => `${display[k]} ${Math.round(face.probs[k] * 100)}%`;
  $('faces').replaceChildren(...result.faces.map((face) => {
    const item = document.createElement('li');
    item.dataset.label = face.label;
    item.textContent = `Face ${face.id}: ` + (face.uncertain
      ? `unsure, ${pct(face, face.top2[0])} / ${pct(face, face.top2[1])}`
      : pct(face, face.index));
    return item;
  }));
  $('faces').dataset.frames = String(lens.stats.frames);
}

async function main() {
  try {
    const info = await lens.load();
    $('status').textContent = `Ready: ${info.model.title}, ${info.ep.detector} (${info.backend.thread} thread).`;
  } catch (err) {
    $('status').textContent = `Could not load (${err.code}): ${err.message}`;
    return;
  }
  start.disabled = false;
  photo.disabled = false;
  // Every result, from the camera or a photo, as an async iterator.
  for await (const result of lens.results()) show(result);
}

start.addEventListener('click', async () => {
  video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  await video.play();
  stopWatching = lens.watch(video);
  start.disabled = true;
  stop.disabled = false;
});

stop.addEventListener('click', () => {
  stopWatching?.();
  for (const track of /** @type {MediaStream} */ (video.srcObject).getTracks()) track.stop();
  video.srcObject = null;
  start.disabled = false;
  stop.disabled = true;
});

photo.addEventListener('change', async () => {
  const file = photo.files[0];
  if (!file) return;
  stopWatching?.();
  await lens.reset();
  await lens.detect(await createImageBitmap(file)); // the result arrives through results() above
});

main();
