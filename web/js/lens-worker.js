// The EmotionLens engine's Web Worker (a module worker): runs the frame pipeline (js/lens-pipeline.js) off the
// page's main thread. Says {status: 'started'} once its modules have loaded, so the engine knows it can run.
import { createPipelineHost } from './lens-pipeline.js';
// The rest of the pipeline's static module graph, named here so the worker fetches it all at once instead of one
// import level at a time (each level is a round trip through the service worker). tests/test_module_graph.py
// keeps the list complete.
import './app-boot.js';
import './errors.js';
import './frame-size.js';
import './inference.js';
import './load-timing.js';
import './frame-planes.js';
import './manifest.js';
import './runtime.js';

const host = createPipelineHost((message, transfer) => self.postMessage(message, { transfer: transfer ?? [] }));
self.addEventListener('message', (event) => host.handle(event.data));
self.postMessage({ status: 'started', id: null });
