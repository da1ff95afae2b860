// Drawing: the per-face cards (emotion bars) in the side panel, what the page says about a face, and canvas
// sizing for the overlay (js/overlay.js) and the timelines.

// Same order as the .c0 ... .c7 classes in style.css, so box and card of one face share a colour.
const COLOURS = ['#7cc4ff', '#ffb86b', '#8fe3a1', '#ff8ac4', '#c9a7ff', '#ffe66b', '#6be5e5', '#ff8a8a'];

export function colourIndex(id) {
  return ((Number(id) % COLOURS.length) + COLOURS.length) % COLOURS.length;
}

/** The colour of tracked face `id` (its box, and its card's swatch). */
export function faceColour(id) {
  return COLOURS[colourIndex(id)];
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

// CSS box sizes of the canvases drawn here, kept by a ResizeObserver: reading getBoundingClientRect() after the
// frame's DOM writes would force a synchronous layout on every frame.
const boxSizes = new WeakMap(); // canvas -> {width, height} in CSS px
const resizeHandlers = new WeakMap(); // canvas -> callback after its box changed
let sizeObserver = null;

function onBoxResize(entries) {
  for (const entry of entries) {
    const canvas = entry.target;
    if (!canvas.isConnected) { // removed from the page: forget it (a later draw measures it again)
      sizeObserver.unobserve(canvas);
      boxSizes.delete(canvas);
      continue;
    }
    const box = entry.borderBoxSize?.[0];
    boxSizes.set(canvas, box
      ? { width: box.inlineSize, height: box.blockSize }
      : { width: entry.contentRect.width, height: entry.contentRect.height });
    resizeHandlers.get(canvas)?.();
  }
}

/** The CSS box size of `canvas`: measured once, then kept up to date by the observer. */
function boxSize(canvas) {
  let size = boxSizes.get(canvas);
  if (!size) {
    const rect = canvas.getBoundingClientRect();
    size = { width: rect.width, height: rect.height };
    boxSizes.set(canvas, size);
    sizeObserver ??= new ResizeObserver(onBoxResize);
    sizeObserver.observe(canvas);
  }
  return size;
}

/** Call `onResize` whenever the CSS box of `canvas` changes size (e.g. to redraw it at the new size). */
export function whenResized(canvas, onResize) {
  resizeHandlers.set(canvas, onResize);
  boxSize(canvas);
}

/**
 * The pixel size `canvas` needs for one pixel per device pixel of its CSS box (sharp lines on high-DPI screens).
 * @returns {{cw: number, ch: number, dpr: number}} that size and the device pixel ratio
 */
export function canvasPixels(canvas) {
  const { width, height } = boxSize(canvas);
  const dpr = window.devicePixelRatio || 1;
  return { cw: Math.max(1, Math.round(width * dpr)), ch: Math.max(1, Math.round(height * dpr)), dpr };
}

/**
 * Give `canvas` one pixel per device pixel of its CSS box (see canvasPixels).
 * @returns {{cw: number, ch: number, dpr: number}} its pixel size and the device pixel ratio
 */
export function fitCanvas(canvas) {
  const { cw, ch, dpr } = canvasPixels(canvas);
  if (canvas.width !== cw || canvas.height !== ch) {
    canvas.width = cw;
    canvas.height = ch;
  }
  return { cw, ch, dpr };
}

/**
 * Rebuild the face cards in `list`: one card per tracked face, ordered by tracker id, each with a bar per
 * class. Reuses existing cards (keyed by id) so screen readers and focus are not disturbed every frame, and
 * touches only what changed (every DOM change costs a style and layout pass).
 */
export function renderFacePanel(list, faces, labels) {
  const sorted = faces.length > 1 ? [...faces].sort((a, b) => a.id - b.id) : faces;
  const cards = new Map();
  for (const card of [...list.children]) {
    if (sorted.some((f) => String(f.id) === card.dataset.faceId)) cards.set(card.dataset.faceId, card);
    else card.remove();
  }
  let prev = null;
  for (const face of sorted) {
    const card = cards.get(String(face.id)) ?? makeCard(face, labels);
    // Keep DOM order equal to id order.
    const wantedNext = prev ? prev.nextSibling : list.firstChild;
    if (card !== wantedNext) list.insertBefore(card, wantedNext);
    updateCard(card, face, labels);
    prev = card;
  }
}

// The parts of each card that change, and what they show: {summary, dts, bars, vals, shown (percent per
// class), top (class index)}.
const cardParts = new WeakMap();

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
  const parts = { summary, dts: [], bars: [], vals: [], shown: [], top: -1 };
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
    parts.dts.push(dt);
    parts.bars.push(bar);
    parts.vals.push(val);
    parts.shown.push(null);
  });
  card.append(h, dl);
  cardParts.set(card, parts);
  return card;
}

function updateCard(card, face, labels) {
  const parts = cardParts.get(card);
  const summary = faceSummary(face, labels);
  if (parts.summary.textContent !== summary) parts.summary.textContent = summary;
  const top = topClass(face, labels);
  setData(card, 'top', top.label);
  setData(card, 'uncertain', String(Boolean(face.uncertain)));
  const topIndex = labels.indexOf(top.label);
  for (let i = 0; i < parts.bars.length; i++) {
    // Bar and number move together, in the whole percents the number shows.
    const shown = Math.round((face.probs[i] ?? 0) * 100);
    if (parts.shown[i] !== shown) {
      parts.shown[i] = shown;
      parts.bars[i].value = shown / 100;
      parts.vals[i].textContent = `${shown}%`;
    }
  }
  if (parts.top !== topIndex) {
    for (let i = 0; i < parts.bars.length; i++) {
      parts.dts[i].classList.toggle('top', i === topIndex);
      parts.vals[i].classList.toggle('top', i === topIndex);
    }
    parts.top = topIndex;
  }
}

function setData(el, key, value) {
  if (el.dataset[key] !== value) el.dataset[key] = value;
}
