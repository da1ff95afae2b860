// Painting the overlay (a box and a caption per face, over the picture) from a plain-data scene, on any 2D
// context: the page's canvas, or the OffscreenCanvas that js/overlay-worker.js paints on.

/**
 * What the overlay shows, in the canvas's device pixels (built by js/overlay.js).
 * @typedef {object} OverlayScene
 * @property {number} width   canvas size, device pixels
 * @property {number} height
 * @property {number} dpr     device pixel ratio (line widths and text scale with it)
 * @property {{x: number, y: number, w: number, h: number, colour: string, dashed: boolean, text: string}[]} boxes
 *   one per face: its box, its tracker colour, dashed when the model is not sure, its caption
 */

/**
 * Clear the canvas behind `ctx` and paint `scene` on it (the canvas already has the scene's size).
 * @param {CanvasRenderingContext2D|OffscreenCanvasRenderingContext2D} ctx
 * @param {OverlayScene} scene
 */
export function paintOverlay(ctx, { width, height, dpr, boxes }) {
  ctx.clearRect(0, 0, width, height);
  if (!boxes.length) return;
  const line = Math.max(2, Math.round(2 * dpr));
  const fontPx = Math.max(12, Math.round(15 * dpr));
  ctx.font = `600 ${fontPx}px system-ui, sans-serif`;
  ctx.textBaseline = 'top';
  ctx.lineWidth = line;
  for (const { x, y, w, h, colour, dashed, text } of boxes) {
    ctx.strokeStyle = colour;
    ctx.setLineDash(dashed ? [4 * line, 3 * line] : []);
    ctx.strokeRect(x, y, w, h);
    const tw = ctx.measureText(text).width + 8 * dpr;
    const th = fontPx + 6 * dpr;
    // Caption above the box, or inside it when the box touches the top edge.
    const ty = y - th >= 0 ? y - th : y;
    const tx = Math.min(Math.max(0, x - line / 2), width - tw);
    ctx.fillStyle = colour;
    ctx.fillRect(tx, ty, tw, th);
    ctx.fillStyle = '#06121d';
    ctx.fillText(text, tx + 4 * dpr, ty + 3 * dpr);
  }
  ctx.setLineDash([]);
}
