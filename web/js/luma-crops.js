// Face crops straight from a camera frame's luma (Y) plane: the emotion model reads grey, and a camera's YUV frame
// already holds grey at full resolution. Copying that plane out (VideoFrame.copyTo, ~0.1 ms for 640x480) and sampling
// the crops here skips the whole-frame YUV -> RGB conversion a canvas draw of a VideoFrame costs (~2 ms a frame in
// headless Chromium). On frames where the face detector runs, its RGB square is still drawn by the canvas.

/** VideoFrame formats whose first plane is 8-bit luma at full resolution. */
const LUMA_FORMATS = new Set(['I420', 'I420A', 'I422', 'I444', 'NV12']);
// Bilinear samples at most this many luma px apart: each reads a 2x2 neighbourhood, so samples 2 px apart cover
// the area under an output pixel (a 230 px face: 3x3 samples a pixel, ~0.6 ms for a 48 px crop); and at most this
// many per pixel and axis.
const SAMPLE_SPACING = 2;
const MAX_SUPERSAMPLE = 8;

/**
 * The frame's luma plane, when its format has one: {data, offset, stride, width, height, limitedRange}.
 * @param {VideoFrame} frame
 * @param {{buffer?: Uint8Array}} [reuse]  a buffer kept from earlier frames (replaced when too small)
 * @returns {Promise<{data: Uint8Array, offset: number, stride: number, width: number, height: number,
 *   limitedRange: boolean}|null>}  null for formats without one (RGBA/BGRA frames)
 */
export async function readLuma(frame, reuse = {}) {
  if (!LUMA_FORMATS.has(frame.format)) return null;
  const size = frame.allocationSize();
  if (!reuse.buffer || reuse.buffer.length < size) reuse.buffer = new Uint8Array(size);
  const [plane] = await frame.copyTo(reuse.buffer);
  return {
    data: reuse.buffer, offset: plane.offset, stride: plane.stride,
    width: frame.visibleRect?.width ?? frame.codedWidth, height: frame.visibleRect?.height ?? frame.codedHeight,
    // Camera frames are video range (Y 16..235) unless they say otherwise; grey from RGB matches (Y - 16) * 255/219
    // (0.2 grey levels from the canvas's RGB -> grey on the fake webcam).
    limitedRange: frame.colorSpace?.fullRange !== true,
  };
}

/**
 * Grey face crops, side x side each, stacked top to bottom: each square ({cx, cy, side, roll} in read pixels, as
 * FramePipeline.crop_geometry gives them) turned upright and area-averaged (bilinear samples at most SAMPLE_SPACING
 * apart) from the luma plane; points outside the frame take the nearest edge pixel, as numpy's crop replicates edges.
 * @param {{data: Uint8Array, offset: number, stride: number, width: number, height: number, limitedRange: boolean}} luma
 * @param {Array<{cx: number, cy: number, side: number, roll: number}>} squares
 * @param {number} scaleX  luma pixels per read pixel, across (the frame may be read smaller than its full size)
 * @param {number} scaleY  the same, down
 * @param {number} side  crop side in px
 * @param {Uint8ClampedArray} [out]  where to write (n * side * side bytes), else a new array
 * @returns {Uint8ClampedArray}
 */
export function lumaCrops(luma, squares, scaleX, scaleY, side,
  out = new Uint8ClampedArray(squares.length * side * side)) {
  const { data, offset, stride, width, height, limitedRange } = luma;
  const [gain, lift] = limitedRange ? [255 / 219, -16 * (255 / 219)] : [1, 0];
  const maxX = width - 1;
  const maxY = height - 1;
  squares.forEach(({ cx, cy, side: sq, roll }, f) => {
    const step = sq / side; // read px per crop px
    const k = Math.min(MAX_SUPERSAMPLE, Math.max(1, Math.ceil((step * Math.max(scaleX, scaleY)) / SAMPLE_SPACING)));
    const cos = Math.cos((roll * Math.PI) / 180);
    const sin = Math.sin((roll * Math.PI) / 180);
    const norm = gain / (k * k);
    for (let v = 0; v < side; v++) {
      for (let u = 0; u < side; u++) {
        let sum = 0;
        for (let b = 0; b < k; b++) {
          const dy = (v + (b + 0.5) / k - side / 2) * step;
          for (let a = 0; a < k; a++) {
            const dx = (u + (a + 0.5) / k - side / 2) * step;
            // crop px -> read px, turned by the roll about the square's centre -> luma px (pixel centres at +0.5)
            const x = Math.min(maxX, Math.max(0, (cx + cos * dx - sin * dy) * scaleX - 0.5));
            const y = Math.min(maxY, Math.max(0, (cy + sin * dx + cos * dy) * scaleY - 0.5));
            const x0 = x | 0;
            const y0 = y | 0;
            const x1 = Math.min(maxX, x0 + 1);
            const y1 = Math.min(maxY, y0 + 1);
            const fx = x - x0;
            const fy = y - y0;
            const r0 = offset + y0 * stride;
            const r1 = offset + y1 * stride;
            const top = data[r0 + x0] + (data[r0 + x1] - data[r0 + x0]) * fx;
            const bottom = data[r1 + x0] + (data[r1 + x1] - data[r1 + x0]) * fx;
            sum += top + (bottom - top) * fy;
          }
        }
        out[(f * side + v) * side + u] = sum * norm + lift; // clamped to 0..255 and rounded
      }
    }
  });
  return out;
}
