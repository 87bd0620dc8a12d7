// The drawing page's answers computed in the browser, for `digits export --format web`:
// the canvas -> MNIST-style 28x28 digit (images.to_mnist, ported line by line) -> model.onnx
// on onnxruntime-web (WebAssembly, files in ort/; nothing is fetched from elsewhere).
"use strict";

const MIN_INK_CONTRAST = 32;  // grey levels; written by `digits export` from images.py
const INK_GAMMA = 1.2;  // the finished digit's grey levels to this power; written by `digits export`
const DIGIT_BOX = 20, FRAME = 28;

ort.env.wasm.wasmPaths = new URL("ort/", document.baseURI).href;  // this folder, never a CDN
ort.env.wasm.numThreads = 1;      // threads need cross-origin isolation a plain server lacks
const session = ort.InferenceSession.create("model.onnx", {executionProviders: ["wasm"]});

// Pillow's separable resampling (precompute_coeffs in Resample.c): box when shrinking,
// bicubic (a = -0.5) when enlarging, as images.to_mnist asks of Pillow. (A drawing on the
// 320 px canvas, whose brush is 22 px wide, is always shrunk.)
function bicubic(x) {
  x = Math.abs(x);
  if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0;
}
const FILTERS = {box: [0.5, x => (x > -0.5 && x <= 0.5 ? 1 : 0)], bicubic: [2.0, bicubic]};

function coefficients(inSize, outSize, kind) {
  const [support0, filter] = FILTERS[kind];
  const scale = inSize / outSize, filterScale = Math.max(scale, 1), support = support0 * filterScale;
  return Array.from({length: outSize}, (_, i) => {
    const center = (i + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    const weights = [];
    for (let x = lo; x < hi; x++) weights.push(filter((x - center + 0.5) / filterScale));
    const sum = weights.reduce((a, b) => a + b, 0);
    return [lo, weights.map(w => (sum ? w / sum : 0))];
  });
}

function resize(src, w, h, outW, outH, kind) {
  let cur = src, cw = w;
  if (outW !== w) {  // horizontal pass first, as Pillow does
    const k = coefficients(w, outW, kind), out = new Float64Array(outW * h);
    for (let y = 0; y < h; y++)
      k.forEach(([lo, ws], x) => { let s = 0; ws.forEach((wt, j) => { s += wt * cur[y * cw + lo + j]; }); out[y * outW + x] = s; });
    cur = out; cw = outW;
  }
  if (outH !== h) {
    const k = coefficients(h, outH, kind), out = new Float64Array(cw * outH);
    k.forEach(([lo, ws], y) => {
      for (let x = 0; x < cw; x++) { let s = 0; ws.forEach((wt, j) => { s += wt * cur[(lo + j) * cw + x]; }); out[y * cw + x] = s; }
    });
    cur = out;
  }
  return cur;
}

function median(values) {
  const v = Float64Array.from(values).sort(), n = v.length;
  return n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

function roundHalfEven(x) {  // Python's round()
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// images._without_specks: the strong-ink mask (w*h, 0/1, changed in place) without the blobs
// (8-connected) smaller than SPECK_FRACTION of the largest, so a stray dot does not stretch
// the digit's box.
const SPECK_FRACTION = 0.1;
function withoutSpecks(strong, w, h) {
  const label = new Int32Array(w * h), sizes = [0];
  for (let start = 0; start < strong.length; start++) {
    if (!strong[start] || label[start]) continue;
    const id = sizes.length, stack = [start];
    let size = 0;
    label[start] = id;
    while (stack.length) {
      const i = stack.pop(), y = Math.floor(i / w), x = i % w;
      size++;
      for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
        const yy = y + dy, xx = x + dx, j = yy * w + xx;
        if (yy >= 0 && yy < h && xx >= 0 && xx < w && strong[j] && !label[j]) { label[j] = id; stack.push(j); }
      }
    }
    sizes.push(size);
  }
  const largest = Math.max(...sizes);
  for (let i = 0; i < strong.length; i++) if (strong[i] && sizes[label[i]] < SPECK_FRACTION * largest) strong[i] = 0;
}

// grey levels (w*h, 0-255) -> {pixels: Uint8Array(784)} or {reason}
// images.to_mnist's first step, undo_blocky_enlargement, is left out: a canvas drawing is
// anti-aliased, never a small image enlarged without smoothing, so it would change nothing.
function toMnist(grey, w, h) {
  const border = [];
  for (let x = 0; x < w; x++) border.push(grey[x], grey[(h - 1) * w + x]);
  for (let y = 0; y < h; y++) border.push(grey[y * w], grey[y * w + w - 1]);
  const background = median(border);
  const ink = new Float64Array(w * h);
  let strongest = 0;
  for (let i = 0; i < ink.length; i++) {
    ink[i] = Math.max(0, background > 127.5 ? background - grey[i] : grey[i] - background);
    strongest = Math.max(strongest, ink[i]);
  }
  if (strongest < MIN_INK_CONTRAST)
    return {reason: `no digit found (no ink against the background; the strongest contrast is ` +
                    `${Math.round(strongest)} of 255, below ${MIN_INK_CONTRAST})`};
  const strong = new Uint8Array(w * h);
  for (let i = 0; i < ink.length; i++) {
    ink[i] *= 255 / strongest;
    strong[i] = ink[i] >= 0.15 * 255 ? 1 : 0;
  }
  withoutSpecks(strong, w, h);
  let top = h, bottom = -1, left = w, right = -1;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = y * w + x;
    if (strong[i]) { top = Math.min(top, y); bottom = y; left = Math.min(left, x); right = Math.max(right, x); }
    if (ink[i] < 0.05 * 255) ink[i] = 0;
  }
  const ch = bottom - top + 1, cw = right - left + 1, crop = new Float64Array(ch * cw);
  for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) crop[y * cw + x] = ink[(top + y) * w + left + x];
  const scale = DIGIT_BOX / Math.max(ch, cw);
  const sw = Math.max(1, roundHalfEven(cw * scale)), sh = Math.max(1, roundHalfEven(ch * scale));
  const small = resize(crop, cw, ch, sw, sh, scale < 1 ? "box" : "bicubic").map(v => Math.min(255, Math.max(0, v)));
  let total = 0, sy = 0, sx = 0;
  for (let y = 0; y < sh; y++) for (let x = 0; x < sw; x++) { const v = small[y * sw + x]; total += v; sy += y * v; sx += x * v; }
  const clamp = (v, hi) => Math.min(Math.max(v, 0), hi);
  const t = clamp(roundHalfEven(FRAME / 2 - 0.5 - sy / total), FRAME - sh);
  const l = clamp(roundHalfEven(FRAME / 2 - 0.5 - sx / total), FRAME - sw);
  const pixels = new Uint8Array(FRAME * FRAME);
  for (let y = 0; y < sh; y++) for (let x = 0; x < sw; x++) pixels[(t + y) * FRAME + l + x] = roundHalfEven(255 * Math.pow(small[y * sw + x] / 255, INK_GAMMA));
  return {pixels};
}

// The page's answer for a canvas, in the shape POST /predict answers with.
window.localAnswer = async function (canvas) {
  const {width: w, height: h} = canvas;
  const rgba = canvas.getContext("2d").getImageData(0, 0, w, h).data, grey = new Float64Array(w * h);
  for (let i = 0; i < grey.length; i++) {  // Pillow's convert("L") of the page's opaque canvas
    grey[i] = (rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 + 0x8000) >> 16;
  }
  const digit = toMnist(grey, w, h);
  if (!digit.pixels) return {label: null, reason: digit.reason, top3: [], pixels: null};
  const input = new ort.Tensor("float32", Float32Array.from(digit.pixels), [1, FRAME, FRAME, 1]);
  const output = await (await session).run({pixels: input});
  const probabilities = Array.from(output.probabilities.data);
  // far from every digit the model learned (exports of runs with a digit space): no guess
  const far = output.digit_distance ? output.digit_distance.data[0] : 0;
  if (far > 1)
    return {label: null, probabilities, top3: [], pixels: Array.from(digit.pixels),
            reason: `no digit found (unlike every digit the model learned: ${far.toFixed(1)} ` +
                    `times what it accepts)`};
  const order = probabilities.map((p, d) => [p, d]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  return {label: order[0][1], probabilities, pixels: Array.from(digit.pixels),
          top3: order.slice(0, 3).map(([probability, digit]) => ({digit, probability}))};
};
window.localModelReady = session.then(() => true);
