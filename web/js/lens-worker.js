// The EmotionLens engine's Web Worker (a module worker): runs the frame pipeline (js/lens-pipeline.js) off the
// page's main thread. Says {status: 'started'} once its modules have loaded, so the engine knows it can run.
import { createPipelineHost } from './lens-pipeline.js';

const host = createPipelineHost((message, transfer) => self.postMessage(message, transfer ?? []));
self.addEventListener('message', (event) => host.handle(event.data));
self.postMessage({ status: 'started', id: null });
