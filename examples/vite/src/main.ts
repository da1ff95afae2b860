// emotion-lens in a bundled app: the camera or a photo in, each face's expression out, all on this device.
import { EVENTS, LensError, createEmotionLens, type FaceResult, type FrameResult } from 'emotion-lens';

const byId = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = byId<HTMLParagraphElement>('status');
const start = byId<HTMLButtonElement>('start');
const stop = byId<HTMLButtonElement>('stop');
const photo = byId<HTMLInputElement>('photo');
const video = byId<HTMLVideoElement>('video');
const faceList = byId<HTMLOListElement>('faces');

// The bundler moved the engine module, so say where the runtime folder is served (vite.config.js puts it there).
const lens = createEmotionLens({ baseUrl: `${import.meta.env.BASE_URL}emotion-lens/`, maxFaces: 4 });
let stopWatching: (() => void) | null = null;

lens.addEventListener(EVENTS.PROGRESS, ({ detail }) => {
  const size = detail.total ? ` (${(detail.loaded! / 1e6).toFixed(1)} of ${(detail.total / 1e6).toFixed(1)} MB)` : '';
  status.textContent = `Loading: ${detail.step} ${detail.status}${size}`;
});
lens.addEventListener(EVENTS.ERROR, ({ detail }) => {
  status.textContent = `Error (${detail.code}): ${detail.message}`;
});

function describe(face: FaceResult, names: string[]): string {
  const share = (k: number) => `${names[k]} ${Math.round(face.probs[k] * 100)}%`;
  return face.uncertain ? `unsure: ${share(face.top2[0])} or ${share(face.top2[1])}` : share(face.index);
}

function show(result: FrameResult): void {
  const names = lens.model?.display ?? [];
  faceList.replaceChildren(...result.faces.map((face) => {
    const item = document.createElement('li');
    item.dataset.label = face.label;
    item.dataset.uncertain = String(face.uncertain);
    item.textContent = `Face ${face.id}: ${describe(face, names)}`;
    return item;
  }));
  faceList.dataset.frames = String(lens.stats.frames);
}

start.addEventListener('click', async () => {
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    status.textContent = `No camera: ${(err as Error).message}`;
    return;
  }
  await video.play();
  stopWatching = lens.watch(video);
  start.disabled = true;
  stop.disabled = false;
});

stop.addEventListener('click', () => {
  stopWatching?.();
  (video.srcObject as MediaStream | null)?.getTracks().forEach((track) => track.stop());
  video.srcObject = null;
  start.disabled = false;
  stop.disabled = true;
});

photo.addEventListener('change', async () => {
  const file = photo.files?.[0];
  if (!file) return;
  stopWatching?.();
  await lens.reset();
  await lens.detect(file); // a Blob is read with createImageBitmap; the result arrives as a RESULT event
});

try {
  const info = await lens.load();
  status.textContent = `Ready: ${info.model.title} on ${info.ep.emotion} (${info.backend.thread} thread).`;
  start.disabled = false;
  photo.disabled = false;
  lens.addEventListener(EVENTS.RESULT, ({ detail }) => show(detail));
} catch (err) {
  const code = err instanceof LensError ? err.code : 'load';
  status.textContent = `Could not load (${code}): ${(err as Error).message}`;
}
