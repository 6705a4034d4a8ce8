import { fetchFileSource } from '@longseq/nn';
import { inverseOrder, preprocessImage, type ScanOrder, VisionMamba } from '@longseq/vision-mamba';
import { type BackendChoice, getBackend } from '../backends';
import { h, type Page } from '../page';
import { backendSelect, field, runPanel, svgEl } from '../ui';

/** The weights apps/training/vim-mnist/train.py made, served from public/models/vim-mnist/. */
export const VIM_MNIST_PATH = 'models/vim-mnist/';

/** MNIST's geometry: digits scaled into a 20 x 20 box, centred by their centre of mass in 28 x 28. */
const SIDE = 28;
const BOX = 20;
/** Canvas pixels per model pixel. */
const CANVAS = 280;
/** Canvas pixels brighter than this (0..1) count as ink when finding the digit's bounding box. */
const INK = 0.05;

/**
 * A drawing to the model's input, the way MNIST was made: the ink's bounding box is scaled
 * (area-averaged, aspect kept) so its longer side is 20 pixels, and put into a 28 x 28 field
 * with its centre of mass at the centre. `gray` is row-major, 0 = background, 1 = ink. Returns
 * the 784 pixels in [0, 1] (train.py's input: pixel / 255, no mean/std), or null without ink.
 */
export function mnistFromGray(gray: ArrayLike<number>, width: number, height: number): Float32Array | null {
  let x0 = width;
  let y0 = height;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      if (gray[y * width + x]! > INK) {
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x);
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y);
      }
  if (x1 < 0) return null;
  const bw = x1 - x0 + 1;
  const bh = y1 - y0 + 1;
  const scale = BOX / Math.max(bw, bh);
  const tw = Math.max(1, Math.round(bw * scale));
  const th = Math.max(1, Math.round(bh * scale));
  // Area averaging, separable: weight of source column x in target column j is the overlap of
  // [x, x + 1) with target column j's footprint [x0 + j / scale, x0 + (j + 1) / scale).
  const weights = (n: number, from: number, count: number) => {
    const w: [number, number][][] = [];
    for (let j = 0; j < n; j++) {
      const lo = from + j / scale;
      const hi = Math.min(from + count, from + (j + 1) / scale);
      const row: [number, number][] = [];
      for (let s = Math.floor(lo); s < hi; s++) {
        const overlap = Math.min(s + 1, hi) - Math.max(s, lo);
        if (overlap > 0) row.push([s, overlap]);
      }
      const total = row.reduce((a, [, o]) => a + o, 0);
      w.push(row.map(([s, o]) => [s, o / total]));
    }
    return w;
  };
  const wx = weights(tw, x0, bw);
  const wy = weights(th, y0, bh);
  const rows = new Float64Array(th * width);
  for (let i = 0; i < th; i++)
    for (const [sy, w] of wy[i]!)
      for (let x = x0; x <= x1; x++) rows[i * width + x]! += w * gray[sy * width + x]!;
  const box = new Float64Array(th * tw);
  let mass = 0;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < th; i++)
    for (let j = 0; j < tw; j++) {
      let v = 0;
      for (const [sx, w] of wx[j]!) v += w * rows[i * width + sx]!;
      box[i * tw + j] = v;
      mass += v;
      mx += v * j;
      my += v * i;
    }
  // MNIST's digits have their centre of mass at pixel index 14 (row and column), not 13.5.
  const clampOffset = (o: number, size: number) => Math.min(SIDE - size, Math.max(0, o));
  const ox = clampOffset(Math.round(SIDE / 2 - mx / mass), tw);
  const oy = clampOffset(Math.round(SIDE / 2 - my / mass), th);
  const out = new Float32Array(SIDE * SIDE);
  for (let i = 0; i < th; i++)
    for (let j = 0; j < tw; j++) out[(oy + i) * SIDE + ox + j] = Math.min(1, box[i * tw + j]!);
  return out;
}

/** The red channel of RGBA pixels (the canvas draws white on black) in [0, 1]. */
function grayOf(image: ImageData): Float32Array {
  const gray = new Float32Array(image.width * image.height);
  for (let i = 0; i < gray.length; i++) gray[i] = image.data[i * 4]! / 255;
  return gray;
}

const models = new Map<BackendChoice, Promise<VisionMamba>>();

/** The digit model on a backend, loaded once per page load from the page's public folder. */
function getModel(name: BackendChoice): Promise<VisionMamba> {
  let pending = models.get(name);
  if (!pending) {
    pending = getBackend(name).then((backend) =>
      VisionMamba.load(backend, fetchFileSource(new URL(VIM_MNIST_PATH, location.href).href)),
    );
    models.set(name, pending);
    pending.catch(() => models.delete(name));
  }
  return pending;
}

export interface DigitRun {
  readonly backend: string;
  /** The model input, 28 x 28 in [0, 1]. */
  readonly input: Float32Array;
  /** Softmax of the logits. */
  readonly probs: number[];
  readonly predicted: number;
  /**
   * Per patch (row-major): probability of the predicted class without it minus with it
   * blanked; empty when occlusion was off.
   */
  readonly contribution: number[];
  readonly order: ScanOrder;
  readonly patchSize: number;
  readonly stride: number;
  readonly ms: number;
}

function softmax(row: ArrayLike<number>): number[] {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i]!);
  const e = Array.from(row, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/**
 * Classifies the digit and measures each patch's contribution by occlusion, in one batched
 * call: image 0 is the digit, image 1 + p the digit with patch p blanked (set to background).
 */
export async function classifyDigit(
  name: BackendChoice,
  input: Float32Array,
  occlusion = true,
): Promise<DigitRun> {
  const model = await getModel(name);
  const { patchSize, stride } = model.config;
  const order = model.order;
  const P = occlusion ? order.patches : 0;
  const per = SIDE * SIDE;
  const batch = new Float32Array((P + 1) * per);
  // preprocessImage checks the input and gives the model's [C, H, W] layout (1 gray channel,
  // scale 1 and no mean/std, as train.py feeds the network).
  const x = preprocessImage(
    { data: input, width: SIDE, height: SIDE, channels: 1 },
    { size: SIDE, channels: 1 },
  );
  for (let b = 0; b <= P; b++) batch.set(x, b * per);
  for (let p = 0; p < P; p++) {
    const r0 = Math.floor(p / order.grid) * stride;
    const c0 = (p % order.grid) * stride;
    for (let r = r0; r < r0 + patchSize; r++)
      batch.fill(0, (p + 1) * per + r * SIDE + c0, (p + 1) * per + r * SIDE + c0 + patchSize);
  }
  const t0 = performance.now();
  const logits = await model.classify({ data: batch, shape: [P + 1, 1, SIDE, SIDE] });
  let values: Float32Array;
  try {
    values = (await logits.read()) as Float32Array;
  } finally {
    logits.dispose();
  }
  const ms = performance.now() - t0;
  const classes = values.length / (P + 1);
  const rows = Array.from({ length: P + 1 }, (_, b) =>
    softmax(values.subarray(b * classes, (b + 1) * classes)),
  );
  const probs = rows[0]!;
  const predicted = probs.indexOf(Math.max(...probs));
  const contribution = rows.slice(1).map((r) => probs[predicted]! - r[predicted]!);
  return {
    backend: model.backend.name,
    input: x,
    probs,
    predicted,
    contribution,
    order,
    patchSize,
    stride,
    ms,
  };
}

// ---------------------------------------------------------------------------------------
// Pictures.

function probsChart(run: DigitRun): SVGSVGElement {
  const W = 420;
  const H = 170;
  const bw = 36;
  const svg = svgEl('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart',
    'data-testid': 'probs',
    role: 'img',
  }) as SVGSVGElement;
  run.probs.forEach((p, k) => {
    const x = 10 + k * (bw + 5);
    const barH = p * (H - 40);
    const bar = svgEl('rect', {
      x,
      y: H - 20 - barH,
      width: bw,
      height: Math.max(barH, 0.5),
      class: k === run.predicted ? 'bar top' : 'bar',
      'data-class': k,
      'data-p': p,
    });
    bar.append(svgEl('title', {}, `${k}: ${(p * 100).toFixed(2)}%`));
    svg.append(
      bar,
      svgEl('text', { x: x + bw / 2, y: H - 6, 'text-anchor': 'middle', 'font-size': 12 }, String(k)),
      svgEl(
        'text',
        { x: x + bw / 2, y: H - 24 - barH, 'text-anchor': 'middle', 'font-size': 10 },
        p >= 0.005 ? `${Math.round(p * 100)}%` : '',
      ),
    );
  });
  return svg;
}

/** The model input as gray squares (one per pixel), under a patch grid. */
function inputLayer(svg: SVGElement, input: Float32Array, cell: number): void {
  svg.append(svgEl('rect', { x: 0, y: 0, width: SIDE * cell, height: SIDE * cell, fill: '#000' }));
  for (let i = 0; i < SIDE * SIDE; i++) {
    const v = input[i]!;
    if (v <= 0.02) continue;
    const g = Math.round(v * 255);
    svg.append(
      svgEl('rect', {
        x: (i % SIDE) * cell,
        y: Math.floor(i / SIDE) * cell,
        width: cell,
        height: cell,
        fill: `rgb(${g},${g},${g})`,
      }),
    );
  }
}

const PX = 10; // SVG units per model pixel

function patchCenter(run: DigitRun, p: number): [number, number] {
  const g = run.order.grid;
  return [
    ((p % g) * run.stride + run.patchSize / 2) * PX,
    (Math.floor(p / g) * run.stride + run.patchSize / 2) * PX,
  ];
}

/**
 * One scan direction over the patch grid: each patch numbered by the step at which the scan
 * reads it, the path through the patches in that order, an arrow at its start, and the class
 * token (a star) where the sequence holds it.
 */
function scanPicture(run: DigitRun, direction: 0 | 1): SVGSVGElement {
  const { order } = run;
  const dir = order.directions[direction]!;
  const steps = inverseOrder(dir.order);
  const S = SIDE * PX;
  const svg = svgEl('svg', {
    viewBox: `-4 -4 ${S + 8} ${S + 8}`,
    class: 'chart',
    'data-testid': `scan-${dir.name}`,
    'data-direction': dir.name,
    'data-cls-step': order.clsIndex >= 0 ? steps[order.clsIndex]! : -1,
    role: 'img',
    style: 'max-width: 300px',
  }) as SVGSVGElement;
  inputLayer(svg, run.input, PX);
  svg.append(svgEl('rect', { x: 0, y: 0, width: S, height: S, fill: 'rgba(255,255,255,0.55)' }));
  for (let p = 0; p < order.patches; p++) {
    const [cx, cy] = patchCenter(run, p);
    const half = (run.stride * PX) / 2;
    svg.append(
      svgEl('rect', {
        x: cx - half,
        y: cy - half,
        width: 2 * half,
        height: 2 * half,
        fill: 'none',
        stroke: '#adb5bd',
        'stroke-width': 0.6,
      }),
    );
  }
  // The path: token positions in scan order; the class token sits between its neighbours.
  const tokenPoint = (token: number): [number, number] => {
    if (token === order.clsIndex) {
      const before = order.patchToken.indexOf(token - 1);
      const after = order.patchToken.indexOf(token + 1);
      const a = patchCenter(run, before >= 0 ? before : after);
      const b = patchCenter(run, after >= 0 ? after : before);
      return [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
    }
    return patchCenter(run, order.patchToken.indexOf(token));
  };
  const points = dir.order.map(tokenPoint);
  const color = direction === 0 ? '#1971c2' : '#e8590c';
  svg.append(
    svgEl('polyline', {
      points: points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' '),
      fill: 'none',
      stroke: color,
      'stroke-width': 1.6,
      'stroke-opacity': 0.75,
      'data-path': dir.name,
    }),
  );
  const [sx, sy] = points[0]!;
  svg.append(svgEl('circle', { cx: sx, cy: sy, r: 6, fill: color, 'data-start': 1 }));
  for (let p = 0; p < order.patches; p++) {
    const [cx, cy] = patchCenter(run, p);
    const t = svgEl(
      'text',
      { x: cx, y: cy + 3.5, 'text-anchor': 'middle', 'font-size': 9, fill: '#212529', 'data-patch': p },
      String(steps[order.patchToken[p]!]! + 1),
    );
    svg.append(t);
  }
  if (order.clsIndex >= 0) {
    const [cx, cy] = tokenPoint(order.clsIndex);
    const star = svgEl(
      'text',
      { x: cx, y: cy + 6, 'text-anchor': 'middle', 'font-size': 18, fill: '#c2255c', 'data-cls': 1 },
      '★',
    );
    star.append(svgEl('title', {}, `class token: step ${steps[order.clsIndex]! + 1} of ${order.length}`));
    svg.append(star);
  }
  svg.append(
    svgEl(
      'text',
      { x: 2, y: S - 4, 'font-size': 11, fill: color },
      direction === 0 ? 'forward scan' : 'backward scan',
    ),
  );
  return svg;
}

/** Occlusion: each patch tinted by how much the predicted class's probability drops without it. */
function contributionPicture(run: DigitRun): SVGSVGElement {
  const S = SIDE * PX;
  const svg = svgEl('svg', {
    viewBox: `-4 -4 ${S + 8} ${S + 8}`,
    class: 'chart',
    'data-testid': 'contribution',
    'data-cells': run.contribution.length,
    role: 'img',
    style: 'max-width: 300px',
  }) as SVGSVGElement;
  inputLayer(svg, run.input, PX);
  const peak = Math.max(1e-6, ...run.contribution.map(Math.abs));
  run.contribution.forEach((c, p) => {
    const [cx, cy] = patchCenter(run, p);
    const half = (run.stride * PX) / 2;
    const a = Math.min(1, Math.abs(c) / peak) * 0.75;
    const cell = svgEl('rect', {
      x: cx - half,
      y: cy - half,
      width: 2 * half,
      height: 2 * half,
      fill: c >= 0 ? `rgba(240,62,62,${a.toFixed(3)})` : `rgba(51,154,240,${a.toFixed(3)})`,
      stroke: '#495057',
      'stroke-width': 0.4,
      'data-patch': p,
      'data-drop': c,
    });
    cell.append(
      svgEl(
        'title',
        {},
        `patch ${p}: blanking it changes P(${run.predicted}) by ${(-c * 100).toFixed(2)} points`,
      ),
    );
    svg.append(cell);
  });
  return svg;
}

// ---------------------------------------------------------------------------------------
// The page.

function mount(root: HTMLElement): () => void {
  const backendPicker = backendSelect();
  const canvas = h('canvas', {
    width: CANVAS,
    height: CANVAS,
    'data-testid': 'canvas',
    style:
      'touch-action: none; cursor: crosshair; border-radius: 6px; background: #000; width: 280px; height: 280px',
  });
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  const clear = () => {
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, CANVAS, CANVAS);
  };
  clear();
  const classifyButton = h('button', { type: 'submit', class: 'run', 'data-testid': 'run' }, 'Classify');
  const clearButton = h('button', { type: 'button', 'data-testid': 'clear' }, 'Clear');
  const panel = runPanel('Draw a digit (0-9) in the black square, one digit filling most of it.');
  const { status, result } = panel;
  const occlusionBox = h('input', {
    type: 'checkbox',
    name: 'occlusion',
    'data-testid': 'occlusion',
    checked: true,
  });
  const form = h(
    'form',
    { class: 'controls' },
    field('Backend', backendPicker),
    field('Patch contributions', occlusionBox, 'occlusion: 49 blanked copies in the same batch'),
    classifyButton,
    clearButton,
  );

  const classify = async () => {
    const backend = backendPicker.value as BackendChoice;
    await panel.run(
      classifyButton,
      `Classifying on ${backend}…`,
      async () => {
        // Let the browser paint the status and finish the click before the GPU work (gpu.js
        // compiles its kernels synchronously on first use).
        await new Promise((resolve) => setTimeout(resolve, 0));
        const input = mnistFromGray(grayOf(ctx.getImageData(0, 0, CANVAS, CANVAS)), CANVAS, CANVAS);
        if (!input) {
          result.hidden = true;
          delete result.dataset.predicted;
          return 'The canvas is empty: draw a digit first.';
        }
        const run = await classifyDigit(backend, input, occlusionBox.checked);
        show(result, run);
        const images = run.contribution.length
          ? `${run.contribution.length + 1} images (the digit and ${run.contribution.length} occlusions)`
          : '1 image';
        return `Done on ${run.backend}: ${images} in ${run.ms.toFixed(0)} ms.`;
      },
      `Failed on ${backend}.`,
    );
  };

  // Drawing: white strokes on black, MNIST's colours. Pointer events cover mouse, pen and touch.
  let drawing = false;
  const point = (e: PointerEvent): [number, number] => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * CANVAS) / r.width, ((e.clientY - r.top) * CANVAS) / r.height];
  };
  canvas.addEventListener('pointerdown', (e) => {
    drawing = true;
    canvas.setPointerCapture?.(e.pointerId);
    const [x, y] = point(e);
    ctx.strokeStyle = '#fff';
    ctx.fillStyle = '#fff';
    ctx.lineWidth = 22;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.beginPath();
    ctx.arc(x, y, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
    ctx.beginPath();
    ctx.moveTo(x, y);
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    const [x, y] = point(e);
    ctx.lineTo(x, y);
    ctx.stroke();
    ctx.beginPath();
    ctx.moveTo(x, y);
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    void classify();
  };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  clearButton.addEventListener('click', () => {
    clear();
    result.hidden = true;
    delete result.dataset.predicted;
    panel.setStatus('idle', 'Cleared: draw a digit.');
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void classify();
  });

  root.append(
    h('h1', {}, 'Vision Mamba: draw a digit'),
    h('p', { class: 'package' }, '@longseq/vision-mamba'),
    h(
      'p',
      { class: 'explainer' },
      'Vision Mamba (Vim) reads an image as a sequence: the 28 x 28 digit is cut into 7 x 7 patches of 4 x 4 pixels, ' +
        'each patch becomes a token, and a class token is put in the middle of the sequence. Every block runs a ' +
        'selective scan (Mamba) over the tokens twice, forward and backward, so both directions reach the class ' +
        'token; its final features give the 10 class scores. The weights here (4 blocks of width 64, 144k parameters) ' +
        'were trained by apps/training/vim-mnist on 9,000 MNIST digits; they run on your GPU with the backend you pick. ' +
        'Your drawing is scaled and centred the way MNIST digits were before it goes in.',
    ),
    form,
    h('div', { style: 'display: flex; gap: 1.5rem; flex-wrap: wrap; align-items: flex-start' }, canvas),
    status,
    result,
  );
  root.dataset.ready = 'true';
  return () => {
    drawing = false;
  };
}

function show(el: HTMLElement, run: DigitRun): void {
  el.hidden = false;
  el.dataset.pass = 'true';
  el.dataset.predicted = String(run.predicted);
  el.dataset.probs = JSON.stringify(run.probs.map((p) => Number(p.toFixed(6))));
  el.dataset.backend = run.backend;
  const top = run.probs[run.predicted]!;
  const { order } = run;
  const clsSteps = order.directions.map((d) => inverseOrder(d.order)[order.clsIndex]! + 1);
  const occluded = run.contribution.length > 0;
  el.replaceChildren(
    h(
      'p',
      { class: 'verdict' },
      h('span', { class: 'badge pass', 'data-testid': 'predicted' }, String(run.predicted)),
      h('span', {}, `the Vim reads a ${run.predicted} (${(top * 100).toFixed(1)}%)`),
    ),
    h('h2', {}, 'Class probabilities'),
    probsChart(run),
    h(
      'p',
      { class: 'caption' },
      'Softmax of the logits. The model was trained with label smoothing 0.1, so a confident answer shows ' +
        'about 90% and every other class about 1%.',
    ),
    h('h2', {}, 'The scan'),
    h(
      'div',
      { style: 'display: flex; gap: 1rem; flex-wrap: wrap' },
      scanPicture(run, 0),
      scanPicture(run, 1),
      ...(occluded ? [contributionPicture(run)] : []),
    ),
    h(
      'p',
      { class: 'caption' },
      `The order in which the forward and backward scans read the ${order.patches} patches (numbers are steps; ` +
        `the dot marks the first). The star is the class token, in the middle of the sequence: step ` +
        `${clsSteps[0]} of ${order.length} forward and ${clsSteps[1]} backward, so both scans have read half ` +
        `the image when they reach it. ` +
        (occluded
          ? `The last picture: what each patch contributed: red where blanking the patch lowers the probability of ` +
            `${run.predicted}, blue where it raises it (occlusion: all ${order.patches} blanked copies of your ` +
            'digit were classified in the same batch as the digit).'
          : 'Tick "Patch contributions" to see what each patch contributed.'),
    ),
  );
}

export const vimPage: Page = {
  route: 'vim',
  title: 'Vision Mamba',
  packageName: '@longseq/vision-mamba',
  mount,
};
