// A camera frame's pixels straight from its planes: face crops from the luma (Y) plane (the emotion model reads grey,
// and a camera's YUV frame already holds grey at full resolution), and the face detector's small RGB square from the
// Y, U and V planes. Copying the planes out (VideoFrame.copyTo, ~0.1-0.7 ms for 640x480) and sampling here skips the
// whole-frame YUV -> RGB conversion a canvas draw of a VideoFrame costs: ~2-3.5 ms a frame in headless Chromium,
// ~25 ms in WebKitGTK, whose canvas converts in software. Frames stored as RGB (Firefox's camera frames here are BGRA)
// are left to the canvas: copying them out and computing their grey cost more than drawing them (Firefox's fake
// camera: 9.2 against 1.8 ms a frame).

/** YUV formats whose first plane is 8-bit luma at full resolution: chroma subsampling [x, y], U and V interleaved. */
const YUV_FORMATS = Object.freeze({
  I420: [2, 2, false], I420A: [2, 2, false], I422: [2, 1, false], I444: [1, 1, false], NV12: [2, 2, true],
});
/** Luma weights [Kr, Kb] of the YUV matrices a VideoFrame may name (ITU-R BT.601 for SD cameras and by default). */
const MATRICES = Object.freeze({
  bt709: [0.2126, 0.0722], bt470bg: [0.299, 0.114], smpte170m: [0.299, 0.114], 'bt2020-ncl': [0.2627, 0.0593],
});
// Samples at most this many frame px apart: a crop's bilinear samples each read a 2x2 neighbourhood, so samples 2 px
// apart cover the area under an output pixel (a 230 px face: 3x3 samples a pixel, ~0.6 ms for a 48 px crop); the
// detector's square takes single pixels as far apart. At most MAX_SUPERSAMPLE samples per pixel and axis.
const SAMPLE_SPACING = 2;
const MAX_SUPERSAMPLE = 8;

/**
 * @typedef {object} LumaPlane  8-bit grey at the frame's full resolution
 * @property {Uint8Array} data
 * @property {number} offset
 * @property {number} stride
 * @property {number} width
 * @property {number} height
 * @property {boolean} limitedRange  video range (Y 16..235) rather than full range
 */

/**
 * @typedef {object} FramePlanes  a camera frame's YUV planes as copied out of it (readPlanes)
 * @property {LumaPlane} luma
 * @property {{data: Uint8Array, layouts: PlaneLayout[], sub: number[], interleaved: boolean, matrix: number[]}} yuv
 *   the chroma planes (sub: subsampling [x, y]; matrix: [Kr, Kb])
 */

/**
 * A YUV frame's planes, copied out. Null for other formats (RGB frames: the canvas reads them).
 * @param {VideoFrame} frame
 * @param {{buffer?: Uint8Array}} [reuse]  a buffer kept from earlier frames (replaced when too small)
 * @returns {Promise<FramePlanes|null>}
 */
export async function readPlanes(frame, reuse = {}) {
  const yuv = YUV_FORMATS[frame.format];
  if (!yuv) return null;
  const size = frame.allocationSize();
  if (!reuse.buffer || reuse.buffer.length < size) reuse.buffer = new Uint8Array(size);
  const layouts = await frame.copyTo(reuse.buffer);
  const data = reuse.buffer;
  const [plane] = layouts;
  const [kr, kb] = MATRICES[frame.colorSpace?.matrix] ?? MATRICES.smpte170m;
  return {
    // Camera frames are video range (Y 16..235) unless they say otherwise; grey from RGB matches (Y - 16) * 255/219
    // (0.2 grey levels from the canvas's RGB -> grey on the fake webcam).
    luma: { data, offset: plane.offset, stride: plane.stride, width: frame.visibleRect?.width ?? frame.codedWidth,
      height: frame.visibleRect?.height ?? frame.codedHeight, limitedRange: frame.colorSpace?.fullRange !== true },
    yuv: { data, layouts, sub: [yuv[0], yuv[1]], interleaved: yuv[2], matrix: [kr, kb] },
  };
}

/**
 * The frame fitted into the face detector's square input from its planes: RGBA pixels of a size x size square,
 * opaque black outside the rectangle (x, y, width, height) the frame is fitted into, each pixel the mean of k x k
 * frame pixels spread over the area under it (k: the reduction on that axis over SAMPLE_SPACING, rounded up: 3 x 3 of
 * the 5 x 5 pixels under a square pixel for a 640 x 480 frame, 1.6 levels from the canvas's drawing on average and
 * ~1.5 ms in WebKit, where all 25 took 4.4 ms).
 * @param {FramePlanes} planes
 * @param {{size: number, x: number, y: number, width: number, height: number}} fit  letterbox_json's geometry
 * @param {Uint8ClampedArray} [out]  where to write (size * size * 4 bytes), else a new array
 * @returns {Uint8ClampedArray}
 */
export function planesSquare(planes, fit, out = new Uint8ClampedArray(fit.size * fit.size * 4)) {
  const { size, x: left, y: top, width: fitW, height: fitH } = fit;
  const { luma, yuv } = planes;
  const { data, layouts, sub: [subX, subY], interleaved, matrix: [kr, kb] } = yuv;
  out.fill(0);
  for (let i = 3; i < out.length; i += 4) out[i] = 255; // opaque black, as the canvas letterboxes
  const sx = luma.width / fitW; // frame px per square px
  const sy = luma.height / fitH;
  const kx = Math.min(MAX_SUPERSAMPLE, Math.max(1, Math.ceil(sx / SAMPLE_SPACING)));
  const ky = Math.min(MAX_SUPERSAMPLE, Math.max(1, Math.ceil(sy / SAMPLE_SPACING)));
  const [u0, u1] = [Math.max(0, Math.floor(left)), Math.min(size, Math.ceil(left + fitW))];
  const [v0, v1] = [Math.max(0, Math.floor(top)), Math.min(size, Math.ceil(top + fitH))];
  // Where each square column's and row's samples sit in the planes, worked out once (flat, kx or ky per entry): the
  // inner loop below only adds.
  const [uPlane, vPlane] = interleaved ? [layouts[1], layouts[1]] : [layouts[1], layouts[2]];
  const cStep = interleaved ? 2 : 1;
  const lumaX = new Int32Array((u1 - u0) * kx);
  const chromaX = new Int32Array((u1 - u0) * kx);
  for (let u = u0; u < u1; u++) {
    for (let i = 0; i < kx; i++) {
      const x = samplePosition(u, left, sx, (i + 0.5) / kx, luma.width);
      lumaX[(u - u0) * kx + i] = x;
      chromaX[(u - u0) * kx + i] = ((x / subX) | 0) * cStep;
    }
  }
  const lumaRow = new Int32Array((v1 - v0) * ky);
  const uRow = new Int32Array((v1 - v0) * ky);
  const vRow = new Int32Array((v1 - v0) * ky);
  for (let v = v0; v < v1; v++) {
    for (let j = 0; j < ky; j++) {
      const y = samplePosition(v, top, sy, (j + 0.5) / ky, luma.height);
      const cy = (y / subY) | 0;
      lumaRow[(v - v0) * ky + j] = luma.offset + y * luma.stride;
      uRow[(v - v0) * ky + j] = uPlane.offset + cy * uPlane.stride;
      vRow[(v - v0) * ky + j] = vPlane.offset + cy * vPlane.stride + (interleaved ? 1 : 0);
    }
  }
  // Mean Y, U and V, then RGB (the conversion is linear: this is the mean of the pixels' RGB, before clamping).
  const n = kx * ky;
  const [yGain, yLift, cGain] = luma.limitedRange ? [255 / 219, -16 * (255 / 219), 255 / 224] : [1, 0, 1];
  const [rV, bU] = [2 * (1 - kr), 2 * (1 - kb)];
  const kg = 1 - kr - kb;
  for (let v = v0; v < v1; v++) {
    const rows = (v - v0) * ky;
    for (let u = u0; u < u1; u++) {
      const cols = (u - u0) * kx;
      let ySum = 0;
      let uSum = 0;
      let vSum = 0;
      for (let j = rows; j < rows + ky; j++) {
        const ly = lumaRow[j];
        const uy = uRow[j];
        const vy = vRow[j];
        for (let i = cols; i < cols + kx; i++) {
          ySum += data[ly + lumaX[i]];
          const c = chromaX[i];
          uSum += data[uy + c];
          vSum += data[vy + c];
        }
      }
      const Y = (ySum / n) * yGain + yLift;
      const r = Y + rV * (vSum / n - 128) * cGain;
      const b = Y + bU * (uSum / n - 128) * cGain;
      const o = (v * size + u) * 4;
      out[o] = r;
      out[o + 1] = (Y - kr * r - kb * b) / kg;
      out[o + 2] = b;
    }
  }
  return out;
}

/** The frame pixel (column or row) of a sample at `fraction` (0..1) across square pixel p, the frame fitted from
 *  `start` at `scale` frame px per square px; clamped to the frame. */
function samplePosition(p, start, scale, fraction, limit) {
  return Math.min(limit - 1, Math.max(0, Math.floor((p + fraction - start) * scale)));
}

/**
 * Grey face crops, side x side each, stacked top to bottom: each square ({cx, cy, side, roll} in read pixels, as
 * FramePipeline.crop_geometry gives them) turned upright and area-averaged (bilinear samples at most SAMPLE_SPACING
 * apart) from the luma plane; points outside the frame take the nearest edge pixel, as numpy's crop replicates edges.
 * @param {LumaPlane} luma
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
