// The Session panel: per-face timelines in the face cards, the expression summary table, and the Record /
// Stop recording / Download CSV / Download JSON / Clear controls. Fed one call per processed camera frame;
// holds its data in memory only (nothing is stored or sent).

import { downloadText, exportFileName, sessionToCsv, sessionToJson } from './export.js';
import { SessionRecorder } from './session-recorder.js';
import { ExpressionSummary } from './session-summary.js';
import { drawTimeline, TimelineStore } from './timeline.js';

// Redrawing every camera frame would cost more than the chart is worth: these are the refresh periods.
const TIMELINE_REDRAW_MS = 250;
const SUMMARY_REDRAW_MS = 1_000;

const $ = (id) => document.getElementById(id);

/**
 * @typedef {object} SessionModelInfo  what getModel() returns (the engine's current model)
 * @property {{id: string, sha256?: string}} model
 * @property {string[]} labels
 * @property {string[]} display
 * @property {string[]} colours  one CSS colour per class, for the timeline lines
 * @property {{mode: string, k: number}} smoothing
 */

/**
 * Wire the Session panel (markup in index.html) and return the calls the page makes.
 * @param {{getModel: () => SessionModelInfo|null, faceList: HTMLElement}} o
 *   getModel: the current model, or null before it is loaded; faceList: the face cards' list (render.js)
 */
export function createSessionPanel({ getModel, faceList }) {
  const els = {
    panel: $('session'),
    record: /** @type {HTMLButtonElement} */ ($('record-start')),
    stop: /** @type {HTMLButtonElement} */ ($('record-stop')),
    csv: /** @type {HTMLButtonElement} */ ($('download-csv')),
    json: /** @type {HTMLButtonElement} */ ($('download-json')),
    clear: /** @type {HTMLButtonElement} */ ($('session-clear')),
    status: $('record-status'),
    counts: $('record-counts'),
    table: $('summary-table'),
    head: $('summary-head'),
    body: $('summary-body'),
    empty: $('summary-empty'),
  };
  const recorder = new SessionRecorder();
  const timeline = new TimelineStore();
  let summary = null; // ExpressionSummary for the current labels
  let run = 0; // camera runs since the page loaded
  let lastTimelineDraw = -Infinity;
  let lastSummaryDraw = -Infinity;
  let message = null; // {text, error}: the outcome of the last button press, until the next one
  const timelineCanvases = faceList.getElementsByClassName('timeline'); // live: one per card that has its chart

  function summaryFor(labels) {
    if (!summary || JSON.stringify(summary.labels) !== JSON.stringify(labels)) summary = new ExpressionSummary(labels);
    return summary;
  }

  // ------------------------------------------------------------ controls

  function onRecord() {
    const info = getModel();
    if (!info) return;
    try {
      recorder.start({ model: info.model, labels: info.labels, display: info.display, smoothing: info.smoothing },
        performance.now(), Date.now());
      message = null;
    } catch (err) {
      message = { text: err.message, error: true };
    }
    update();
  }

  function onStopRecording() {
    recorder.stop();
    message = null;
    update();
  }

  function onDownload(kind) {
    if (!recorder.frames.length) return;
    const when = new Date();
    const name = exportFileName(recorder.meta.model.id, when, kind);
    if (kind === 'csv') downloadText(sessionToCsv(recorder), name, 'text/csv');
    else downloadText(sessionToJson(recorder, when), name, 'application/json');
    message = { text: `Saved ${name} on this device.`, error: false };
    update();
  }

  function onClear() {
    recorder.clear();
    timeline.clear();
    if (summary) summary.clear();
    for (const canvas of faceList.querySelectorAll('canvas.timeline')) canvas.remove();
    message = { text: 'Cleared: the recording, the timelines and the summary are gone.', error: false };
    drawSummary();
    update();
  }

  els.record.addEventListener('click', onRecord);
  els.stop.addEventListener('click', onStopRecording);
  els.csv.addEventListener('click', () => onDownload('csv'));
  els.json.addEventListener('click', () => onDownload('json'));
  els.clear.addEventListener('click', onClear);

  /** Control states and the status line from the recorder's state. */
  function update() {
    const ready = getModel() !== null;
    const has = recorder.frames.length > 0;
    els.record.disabled = !ready || recorder.recording;
    els.stop.disabled = !recorder.recording;
    els.csv.disabled = !has;
    els.json.disabled = !has;
    els.clear.disabled = !has && !(summary && summary.faces.size) && timeline.byFace.size === 0;
    els.panel.dataset.recording = String(recorder.recording);
    els.panel.dataset.frames = String(recorder.frames.length);
    // The counts change every second while recording: kept out of the live region so they are not announced.
    const secs = Math.round(recorder.durationMs / 1000);
    els.counts.textContent = has || recorder.recording
      ? `${recorder.frames.length} frame(s), ${recorder.rowCount} row(s), ${secs} s recorded.`
      : 'Nothing recorded.';
    let text;
    if (recorder.recording) text = 'Recording.';
    else if (recorder.stopReason === 'full') text = 'Recording stopped: it is full. Download it, then clear it.';
    else text = 'Not recording.';
    if (message) text = `${message.text} ${text}`;
    if (els.status.textContent !== text) els.status.textContent = text;
    els.status.dataset.state = message && message.error ? 'error' : '';
  }

  // ------------------------------------------------------------ per frame

  function drawTimelines(info, now) {
    for (const card of /** @type {NodeListOf<HTMLLIElement>} */ (faceList.querySelectorAll('li[data-face-id]'))) {
      const id = Number(card.dataset.faceId);
      let canvas = /** @type {HTMLCanvasElement|null} */ (card.querySelector('canvas.timeline'));
      if (!canvas) {
        canvas = document.createElement('canvas');
        canvas.className = 'timeline';
        canvas.setAttribute('role', 'img');
        canvas.setAttribute('aria-label', `Face #${id}: expression probabilities over the last minute`);
        card.append(canvas);
      }
      const samples = timeline.samples(id);
      canvas.dataset.samples = String(samples.length);
      drawTimeline(canvas, samples, { names: info.display, colours: info.colours, now });
    }
  }

  function drawSummary() {
    const rows = summary ? summary.summaries() : [];
    const labels = summary ? summary.labels : [];
    els.table.hidden = rows.length === 0;
    els.empty.hidden = rows.length > 0;
    if (!rows.length) {
      els.body.replaceChildren();
      return;
    }
    const display = (getModel() || { display: labels }).display;
    const runs = new Set(rows.map((r) => r.run));
    const head = ['Face', 'Seen', ...display].map((text) => {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = text;
      return th;
    });
    els.head.replaceChildren(...head);
    els.body.replaceChildren(...rows.map((r) => {
      const tr = document.createElement('tr');
      tr.dataset.face = r.key;
      const name = document.createElement('th');
      name.scope = 'row';
      name.textContent = runs.size > 1 ? `Run ${r.run}, face #${r.id}` : `Face #${r.id}`;
      const seen = document.createElement('td');
      seen.textContent = `${(r.seenMs / 1000).toFixed(1)} s`;
      const best = r.shares.indexOf(Math.max(...r.shares));
      const cells = r.shares.map((share, k) => {
        const td = document.createElement('td');
        td.dataset.share = String(share);
        td.textContent = `${Math.round(share * 100)}%`;
        if (k === best && share > 0) td.className = 'top';
        return td;
      });
      tr.append(name, seen, ...cells);
      return tr;
    }));
  }

  return {
    /** The model is loaded (or changed): enable Record. */
    modelReady() {
      update();
    },

    /** A camera run starts: new tracker ids, so the timelines start afresh. @param {number} t */
    cameraStarted(t) {
      if (summary) summary.flush(t);
      run += 1;
      timeline.clear();
      update();
    },

    /** The camera stopped (or paused): the last frame is counted up to now. @param {number} t */
    cameraStopped(t) {
      if (summary) summary.flush(t);
      drawSummary();
    },

    /**
     * One processed camera frame, after the face cards were rendered.
     * @param {{faces: object[], width: number, height: number}} result  as the engine returns it
     * @param {number} t  performance.now() when it arrived
     */
    frame(result, t) {
      const info = getModel();
      if (!info) return;
      const { faces, width, height } = result;
      timeline.add(t, faces);
      summaryFor(info.labels).add(t, run, faces);
      recorder.add({ t, run, width, height, faces });
      // A new card gets its chart at once; the others are redrawn at the refresh period.
      if (t - lastTimelineDraw >= TIMELINE_REDRAW_MS || timelineCanvases.length < faceList.childElementCount) {
        lastTimelineDraw = t;
        drawTimelines(info, t);
      }
      if (t - lastSummaryDraw >= SUMMARY_REDRAW_MS) {
        lastSummaryDraw = t;
        drawSummary();
        update();
      }
    },
  };
}
