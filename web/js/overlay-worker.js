// Paints the demo page's overlay on the OffscreenCanvas that js/overlay.js hands over, so that the page's own
// thread does no canvas work per frame. Messages: it says {type: 'loaded'} once its modules ran; then it gets
// {type: 'canvas', canvas} and {type: 'paint', scene}.
import { paintOverlay } from './overlay-paint.js';

let canvas = null;
let ctx = null;

self.addEventListener('message', ({ data }) => {
  if (data.type === 'canvas') {
    canvas = data.canvas;
    ctx = canvas.getContext('2d');
  } else if (data.type === 'paint' && ctx) {
    const { scene } = data;
    if (canvas.width !== scene.width || canvas.height !== scene.height) {
      canvas.width = scene.width;
      canvas.height = scene.height;
    }
    paintOverlay(ctx, scene);
  }
});

self.postMessage({ type: 'loaded' });
