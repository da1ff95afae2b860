// Export of a recorded session as CSV or JSON, and the download itself: a Blob handed to the browser through an
// object URL and an <a download>, so the file is written on this device and no request leaves the page.

export const JSON_FORMAT = 'emotion-lens-session';
export const JSON_VERSION = 1;

/**
 * One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF (quotes doubled). Text that a
 * spreadsheet would run as a formula (starting with =, +, -, an at sign, tab or CR) gets a leading apostrophe first.
 * Numbers are written as they are.
 * @param {string|number|null|undefined} value
 * @returns {string}
 */
export function csvField(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * Column names of the CSV for `labels`: top_label is the class the page showed, uncertain 1 where it showed the face
 * as uncertain (its two leading classes) instead, p_<label> are the smoothed probabilities (what the page shows),
 * raw_<label> the unsmoothed ones of that frame.
 * @param {string[]} labels
 * @returns {string[]}
 */
export function csvColumns(labels) {
  return ['time', 't_ms', 'run', 'face_id', 'box_x', 'box_y', 'box_w', 'box_h', 'frame_w', 'frame_h', 'top_label',
    'uncertain', ...labels.map((l) => `p_${l}`), ...labels.map((l) => `raw_${l}`), 'model', 'model_sha256'];
}

/**
 * The session as CSV text: a header row, then one row per face per frame; a frame with no face gives one row
 * with the face columns empty. Lines end with CRLF (RFC 4180).
 * @param {{meta: import('./session-recorder.js').RecordingMeta,
 *          frames: import('./session-recorder.js').RecordedFrame[]}} session
 * @returns {string}
 */
export function sessionToCsv({ meta, frames }) {
  const labels = meta ? meta.labels : [];
  const model = meta ? [meta.model.id, meta.model.sha256 ?? ''] : ['', ''];
  const empty = labels.map(() => null);
  const lines = [csvColumns(labels).map(csvField).join(',')];
  for (const frame of frames) {
    const head = [frame.time, frame.tMs, frame.run];
    const size = [frame.width, frame.height];
    if (!frame.faces.length) {
      lines.push([...head, null, null, null, null, null, ...size, null, null, ...empty, ...empty, ...model]
        .map(csvField).join(','));
    }
    for (const face of frame.faces) {
      lines.push([...head, face.id, ...face.box, ...size, face.label, face.uncertain ? 1 : 0, ...face.probs,
        ...face.raw_probs, ...model]
        .map(csvField).join(','));
    }
  }
  return `${lines.join('\r\n')}\r\n`;
}

/**
 * The session as JSON text: {format, version, exported, model, labels, display, smoothing, started, frames}.
 * @param {{meta: import('./session-recorder.js').RecordingMeta,
 *          frames: import('./session-recorder.js').RecordedFrame[]}} session
 * @param {Date} exported  when the file was made
 * @returns {string}
 */
export function sessionToJson({ meta, frames }, exported) {
  return JSON.stringify({
    format: JSON_FORMAT,
    version: JSON_VERSION,
    exported: exported.toISOString(),
    model: meta ? meta.model : null,
    labels: meta ? meta.labels : [],
    display: meta ? meta.display : [],
    smoothing: meta ? meta.smoothing : null,
    started: frames.length ? frames[0].time : null,
    frames: frames.map((f) => ({
      t_ms: f.tMs, time: f.time, run: f.run, width: f.width, height: f.height, faces: f.faces,
    })),
  });
}

/**
 * File name for an export: emotion-lens-<model>-<UTC date and time>.<ext>, safe on every file system.
 * @param {string} modelId
 * @param {Date} when
 * @param {string} ext  'csv' | 'json'
 */
export function exportFileName(modelId, when, ext) {
  const stamp = when.toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
  const model = String(modelId || 'model').replace(/[^A-Za-z0-9._-]+/g, '_');
  return `emotion-lens-${model}-${stamp}Z.${ext}`;
}

/**
 * Save `text` as a file on this device: an object URL for a Blob, clicked through an <a download>, revoked
 * right after (the browser has taken its own reference by then). Makes no network request.
 * @param {string} text
 * @param {string} fileName
 * @param {string} mime  e.g. 'text/csv'
 */
export function downloadText(text, fileName, mime) {
  const url = URL.createObjectURL(new Blob([text], { type: `${mime};charset=utf-8` }));
  const link = document.createElement('a');
  link.href = url;
  link.download = fileName;
  link.hidden = true;
  document.body.append(link);
  try {
    link.click();
  } finally {
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 0);
  }
}
