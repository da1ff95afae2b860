// Drawing: face boxes on the overlay canvas and per-face emotion bars in the side panel.

// Same order as the .c0 ... .c7 classes in style.css, so box and card of one face share a colour.
const COLOURS = ['#7cc4ff', '#ffb86b', '#8fe3a1', '#ff8ac4', '#c9a7ff', '#ffe66b', '#6be5e5', '#ff8a8a'];

export function colourIndex(id) {
  return ((Number(id) % COLOURS.length) + COLOURS.length) % COLOURS.length;
}

/**
 * Class shown for a face result: {label (display name from `labels`), p}. Python picks it (`index`: the
 * smoothed argmax held by the label hysteresis); the argmax of `probs` is the fallback for results without it.
 */
export function topClass(face, labels) {
  let best = face.index;
  if (best === undefined) {
    best = 0;
    for (let i = 1; i < face.probs.length; i++) if (face.probs[i] > face.probs[best]) best = i;
  }
  return { label: labels[best] ?? face.label, p: face.probs[best] };
}

export function pct(p) {
  return `${Math.round(p * 100)}%`;
}

/**
 * What the page says about a face: "Happy 82%", or, when Python marks it uncertain (smoothed top probability
 * under the threshold), "Uncertain: Neutral 45% / Happy 38%" with its two leading classes.
 */
export function faceSummary(face, labels) {
  if (face.uncertain && face.top2) {
    const [a, b] = face.top2;
    return `Uncertain: ${labels[a]} ${pct(face.probs[a])} / ${labels[b]} ${pct(face.probs[b])}`;
  }
  const top = topClass(face, labels);
  return `${top.label} ${pct(top.p)}`;
}

/**
 * Give `canvas` one pixel per device pixel of its CSS box (sharp lines on high-DPI screens).
 * @returns {{cw: number, ch: number, dpr: number}} its pixel size and the device pixel ratio
 */
export function fitCanvas(canvas) {
  const rect = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const cw = Math.max(1, Math.round(rect.width * dpr));
  const ch = Math.max(1, Math.round(rect.height * dpr));
  if (canvas.width !== cw || canvas.height !== ch) {
    canvas.width = cw;
    canvas.height = ch;
  }
  return { cw, ch, dpr };
}

/**
 * Draw one box + caption per face on `canvas`, which is laid over a source of size srcW x srcH.
 * `mirror` flips x (selfie view) while keeping the text readable.
 */
export function drawOverlay(canvas, faces, labels, { srcW, srcH, mirror = false }) {
  const { cw, ch, dpr } = fitCanvas(canvas);
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, cw, ch);
  canvas.setAttribute('aria-label', faces.length === 0 ? 'No faces detected' : [...faces]
    .sort((a, b) => a.id - b.id)
    .map((f) => `Face ${f.id}: ${faceSummary(f, labels)}`)
    .join('; '));
  if (!srcW || !srcH) return;
  const sx = cw / srcW;
  const sy = ch / srcH;
  const line = Math.max(2, Math.round(2 * dpr));
  const fontPx = Math.max(12, Math.round(15 * dpr));
  ctx.font = `600 ${fontPx}px system-ui, sans-serif`;
  ctx.textBaseline = 'top';
  for (const face of faces) {
    const [bx, by, bw, bh] = face.box;
    const x = (mirror ? srcW - bx - bw : bx) * sx;
    const y = by * sy;
    const w = bw * sx;
    const h = bh * sy;
    const colour = COLOURS[colourIndex(face.id)];
    ctx.lineWidth = line;
    ctx.strokeStyle = colour;
    ctx.setLineDash(face.uncertain ? [4 * line, 3 * line] : []); // dashed: the model is not sure
    ctx.strokeRect(x, y, w, h);
    ctx.setLineDash([]);
    const text = `#${face.id} ${faceSummary(face, labels)}`;
    const tw = ctx.measureText(text).width + 8 * dpr;
    const th = fontPx + 6 * dpr;
    // Caption above the box, or inside it when the box touches the top edge.
    const ty = y - th >= 0 ? y - th : y;
    const tx = Math.min(Math.max(0, x - line / 2), cw - tw);
    ctx.fillStyle = colour;
    ctx.fillRect(tx, ty, tw, th);
    ctx.fillStyle = '#06121d';
    ctx.fillText(text, tx + 4 * dpr, ty + 3 * dpr);
  }
}

/**
 * Rebuild the face cards in `list`: one card per tracked face, ordered by tracker id, each with a bar per
 * class. Reuses existing cards (keyed by id) so screen readers and focus are not disturbed every frame.
 */
export function renderFacePanel(list, faces, labels) {
  const sorted = [...faces].sort((a, b) => a.id - b.id);
  const keep = new Set(sorted.map((f) => String(f.id)));
  for (const card of [...list.children]) {
    if (!keep.has(card.dataset.faceId)) card.remove();
  }
  let prev = null;
  for (const face of sorted) {
    let card = list.querySelector(`li[data-face-id="${face.id}"]`);
    if (!card) card = makeCard(face, labels);
    // Keep DOM order equal to id order.
    const wantedNext = prev ? prev.nextSibling : list.firstChild;
    if (card !== wantedNext) list.insertBefore(card, wantedNext);
    updateCard(card, face, labels);
    prev = card;
  }
}

function makeCard(face, labels) {
  const card = document.createElement('li');
  card.className = 'face-card';
  card.dataset.faceId = String(face.id);
  const h = document.createElement('h3');
  const name = document.createElement('span');
  const swatch = document.createElement('span');
  swatch.className = `face-swatch c${colourIndex(face.id)}`;
  swatch.setAttribute('aria-hidden', 'true');
  name.append(swatch, document.createTextNode(`Face #${face.id}`));
  const summary = document.createElement('span');
  summary.className = 'face-top';
  h.append(name, summary);
  const dl = document.createElement('dl');
  dl.className = 'bars';
  labels.forEach((label, i) => {
    const dt = document.createElement('dt');
    dt.textContent = label;
    dt.id = `face-${face.id}-label-${i}`;
    const dd = document.createElement('dd');
    const bar = document.createElement('progress');
    bar.max = 1;
    bar.value = 0;
    bar.setAttribute('aria-labelledby', dt.id);
    const val = document.createElement('span');
    val.className = 'pct';
    dd.append(bar, val);
    dl.append(dt, dd);
  });
  card.append(h, dl);
  return card;
}

function updateCard(card, face, labels) {
  const top = topClass(face, labels);
  card.querySelector('.face-top').textContent = faceSummary(face, labels);
  card.dataset.top = top.label;
  card.dataset.uncertain = String(Boolean(face.uncertain));
  const dts = card.querySelectorAll('dt');
  const bars = card.querySelectorAll('progress');
  const vals = card.querySelectorAll('.pct');
  for (let i = 0; i < bars.length; i++) {
    const p = face.probs[i] ?? 0;
    bars[i].value = p;
    vals[i].textContent = pct(p);
    const isTop = labels[i] === top.label;
    dts[i].classList.toggle('top', isTop);
    vals[i].classList.toggle('top', isTop);
  }
}

/** Remove every card and clear the overlay. */
export function clearResults(list, canvas) {
  list.replaceChildren();
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
}
