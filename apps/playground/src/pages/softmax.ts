import { type Backend, type Comparison, compareToReference, scope } from '@longseq/backend';
import { type SoftmaxAlgorithm, softmax, softmaxRef } from '@longseq/softmax';
import { type BackendChoice, getBackend } from '../backends';
import { h, type Page } from '../page';
import { backendSelect, field, numberInput, runPanel, submitButton, verdict } from '../ui';

/** What one run produced; also written onto the result element as data-* for the browser test. */
export interface SoftmaxRun {
  readonly backend: string;
  readonly rows: number;
  readonly n: number;
  readonly algorithm: SoftmaxAlgorithm;
  readonly temperature: number;
  readonly comparison: Comparison;
  /** The first call: compiling the kernel plus running it. */
  readonly firstMs: number;
  /** A second call of the same kernel, already compiled. */
  readonly warmMs: number;
  /** Row 0 of the output, for the chart. */
  readonly row0: Float32Array;
}

interface Settings {
  readonly backend: BackendChoice;
  readonly rows: number;
  readonly n: number;
  readonly algorithm: SoftmaxAlgorithm;
  readonly temperature: number;
  /** Logits are drawn uniformly from [-range, range]. */
  readonly range: number;
}

/** Fresh random logits each run (never zeros), as the project's tests use. */
function randomLogits(size: number, range: number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = (Math.random() * 2 - 1) * range;
  return out;
}

/** Runs softmax on the chosen backend, times it, and checks it by the test rule against the float64 reference. */
export async function runSoftmax(s: Settings): Promise<SoftmaxRun> {
  const backend: Backend = await getBackend(s.backend);
  const host = randomLogits(s.rows * s.n, s.range);
  const options = { algorithm: s.algorithm, temperature: s.temperature };
  const { output, firstMs, warmMs } = await scope(async () => {
    const x = backend.tensor(host, [s.rows, s.n]);
    await backend.sync();
    let t = performance.now();
    const y = await softmax(x, options);
    await backend.sync();
    const firstMs = performance.now() - t;
    t = performance.now();
    await softmax(x, options);
    await backend.sync();
    const warmMs = performance.now() - t;
    return { output: await y.read(), firstMs, warmMs };
  });
  // The reference follows the same recurrence in float64; with precision 'f32' it is the
  // straightforward float32 computation whose error sets the allowance.
  const x = { shape: [s.rows, s.n], data: host };
  const ref64 = softmaxRef(x, options);
  const ref32 = softmaxRef(x, { ...options, precision: 'f32' });
  return {
    backend: backend.name,
    rows: s.rows,
    n: s.n,
    algorithm: s.algorithm,
    temperature: s.temperature,
    comparison: compareToReference(output, ref64.output.data, ref32.output.data),
    firstMs,
    warmMs,
    row0: Float32Array.from(output.subarray(0, s.n)),
  };
}

const fmt = (x: number) => (Number.isNaN(x) ? 'NaN' : x === 0 ? '0' : x.toExponential(2));
const ms = (x: number) => `${x < 10 ? x.toFixed(2) : x.toFixed(0)} ms`;

/** A bar chart of one softmax row (the first 128 entries), as SVG. */
function barChart(row: Float32Array): SVGSVGElement {
  const shown = row.subarray(0, Math.min(row.length, 128));
  const W = 640;
  const H = 160;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('data-testid', 'chart');
  svg.setAttribute('role', 'img');
  let max = 0;
  for (const v of shown) if (Number.isFinite(v) && v > max) max = v;
  const bw = W / shown.length;
  shown.forEach((v, i) => {
    const finite = Number.isFinite(v);
    const height = finite && max > 0 ? (v / max) * (H - 4) : H - 4;
    const rect = document.createElementNS(ns, 'rect');
    rect.setAttribute('x', (i * bw + bw * 0.1).toFixed(2));
    rect.setAttribute('width', Math.max(bw * 0.8, 0.5).toFixed(2));
    rect.setAttribute('y', (H - height).toFixed(2));
    rect.setAttribute('height', height.toFixed(2));
    rect.setAttribute('class', finite ? (v === max ? 'bar top' : 'bar') : 'bar bad');
    const title = document.createElementNS(ns, 'title');
    title.textContent = `p[${i}] = ${v}`;
    rect.append(title);
    svg.append(rect);
  });
  return svg;
}

function mount(root: HTMLElement): undefined {
  const backendPicker = backendSelect();
  const rowsInput = numberInput('rows', 8, 1, 4096);
  const nInput = h('input', {
    type: 'number',
    name: 'n',
    min: 1,
    max: 65536,
    value: 1000,
    'data-testid': 'length',
  });
  const algorithmSelect = h(
    'select',
    { name: 'algorithm', 'data-testid': 'algorithm' },
    h('option', { value: 'online', selected: true }, 'online (2 passes)'),
    h('option', { value: 'safe' }, 'safe (3 passes)'),
    h('option', { value: 'naive' }, 'naive (no max subtracted)'),
  );
  const temperatureInput = h('input', {
    type: 'number',
    name: 'temperature',
    min: 0.01,
    step: 'any',
    value: 1,
    'data-testid': 'temperature',
  });
  const rangeInput = h('input', {
    type: 'number',
    name: 'range',
    min: 0,
    step: 'any',
    value: 4,
    'data-testid': 'range',
  });
  const runButton = submitButton('Run');
  const panel = runPanel('Pick a backend and sizes, then Run.');
  const { status, result } = panel;

  const form = h(
    'form',
    { class: 'controls' },
    field('Backend', backendPicker),
    field('Rows', rowsInput),
    field('Row length N', nInput),
    field('Algorithm', algorithmSelect),
    field('Temperature', temperatureInput, 'logits are divided by it'),
    field('Logits in ±', rangeInput, 'try 100 with naive'),
    runButton,
  );

  root.append(
    h('h1', {}, 'Softmax'),
    h('p', { class: 'package' }, '@longseq/softmax'),
    h(
      'p',
      { class: 'explainer' },
      'Softmax turns a row of scores z into probabilities: exp(z_j) / Σ_k exp(z_k). Computed literally (naive), ' +
        'exp overflows float32 once a score passes about 88 and the row becomes NaN. The safe softmax first ' +
        'finds the row maximum m and computes exp(z_j − m) instead: the same result, but every exponential is at ' +
        'most 1. That takes three passes over the row (max, sum, normalize). The online softmax finds the max ' +
        'and the sum in one pass: it keeps a running max and, whenever a larger value arrives, rescales the ' +
        'running sum by exp(m_old − m_new). Two passes instead of three, and the same rescaling trick is what ' +
        'lets FlashAttention process keys block by block.',
    ),
    form,
    status,
    result,
  );

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const settings: Settings = {
      backend: backendPicker.value as BackendChoice,
      rows: Math.max(1, Math.floor(Number(rowsInput.value))),
      n: Math.max(1, Math.floor(Number(nInput.value))),
      algorithm: algorithmSelect.value as SoftmaxAlgorithm,
      temperature: Number(temperatureInput.value),
      range: Number(rangeInput.value),
    };
    result.hidden = true;
    await panel.run(
      runButton,
      `Running ${settings.algorithm} softmax on ${settings.backend}…`,
      async () => {
        const run = await runSoftmax(settings);
        showResult(result, run);
        return `Done: ${run.rows} × ${run.n} on ${run.backend}.`;
      },
      `Failed on ${settings.backend}.`,
    );
  });
  root.dataset.ready = 'true';
  return undefined;
}

function showResult(el: HTMLElement, run: SoftmaxRun): void {
  const c = run.comparison;
  el.dataset.pass = String(c.pass);
  el.dataset.maxError = String(c.maxError);
  el.dataset.allowed = String(c.allowed);
  el.dataset.backend = run.backend;
  let sum = 0;
  for (const v of run.row0) sum += v;
  const first = Array.from(run.row0.subarray(0, 6), (v) => v.toPrecision(4)).join(', ');
  el.hidden = false;
  el.replaceChildren(
    verdict(
      c.pass,
      c.pass
        ? 'within 2 × the error of a plain float32 computation (+1e-6), against a float64 reference'
        : (c.reason ?? 'outside the tolerance'),
    ),
    h(
      'dl',
      { class: 'stats' },
      h('dt', {}, 'max error vs float64'),
      h('dd', { 'data-testid': 'max-error' }, fmt(c.maxError)),
      h('dt', {}, 'allowed'),
      h('dd', { 'data-testid': 'allowed' }, fmt(c.allowed)),
      h('dt', {}, 'float32 baseline error'),
      h('dd', {}, fmt(c.baselineError)),
      h('dt', {}, 'time'),
      h(
        'dd',
        { 'data-testid': 'time' },
        `${ms(run.warmMs)} (first call, with compiling: ${ms(run.firstMs)})`,
      ),
    ),
    h(
      'p',
      { class: 'values', 'data-testid': 'values' },
      `row 0: [${first}${run.n > 6 ? ', …' : ''}]   sum = ${sum.toPrecision(7)}`,
    ),
    barChart(run.row0),
    h(
      'p',
      { class: 'caption' },
      `Row 0${run.n > 128 ? ' (first 128 of ' + run.n + ' entries)' : ''}; the dark bar is the largest probability shown.`,
    ),
  );
}

export const softmaxPage: Page = {
  route: 'softmax',
  title: 'Softmax',
  packageName: '@longseq/softmax',
  mount,
};
