import { type Comparison, compareToReference, scope } from '@longseq/backend';
import {
  hillisSteeleLevels,
  type ScanPair,
  selectiveScan,
  selectiveScanRef,
  sequentialScanRef,
} from '@longseq/selective-scan';
import { type BackendChoice, getBackend } from '../backends';
import { h, type Page } from '../page';
import { backendSelect, field, numberInput, runPanel, submitButton, svgEl, verdict } from '../ui';

// ---------------------------------------------------------------------------------------
// 1. The parallel scan: which partial results combine at each level (Hillis-Steele).

/** Steps [first, last] that the partial result at (level, i) covers: i - 2^level + 1 .. i, clipped at 0. */
function coverage(level: number, i: number): [number, number] {
  return [Math.max(0, i - 2 ** level + 1), i];
}

/**
 * The tree of an inclusive Hillis-Steele scan over `pairs`: one row per level, one cell per
 * step, each cell labeled with the steps it has combined, and a line from each of the two
 * partial results it was made from. The last row holds every prefix.
 */
function treeSvg(pairs: readonly ScanPair[]): SVGSVGElement {
  const levels = hillisSteeleLevels(pairs);
  const L = pairs.length;
  const cellW = 64;
  const cellH = 34;
  const gapY = 38;
  const W = L * cellW + 90;
  const H = levels.length * (cellH + gapY) + 10;
  const svg = svgEl('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart',
    'data-testid': 'tree',
    role: 'img',
  }) as SVGSVGElement;
  const x = (i: number) => 80 + i * cellW + cellW / 2;
  const y = (level: number) => 10 + level * (cellH + gapY);
  levels.forEach((row, level) => {
    svg.append(
      svgEl(
        'text',
        { x: 4, y: y(level) + cellH / 2 + 4, 'font-size': 11 },
        level === 0 ? 'input' : `offset ${2 ** (level - 1)}`,
      ),
    );
    row.forEach((p, i) => {
      const offset = 2 ** (level - 1);
      const combined = level > 0 && i >= offset;
      if (combined) {
        // The two partial results this cell combines: (i - offset) then i, from the row above.
        for (const from of [i - offset, i]) {
          svg.append(
            svgEl('line', {
              x1: x(from),
              y1: y(level - 1) + cellH,
              x2: x(i),
              y2: y(level),
              stroke: from === i ? '#adb5bd' : '#4c6ef5',
              'stroke-width': from === i ? 1 : 1.6,
            }),
          );
        }
      }
      const [first, last] = coverage(level, i);
      const g = svgEl('g', {
        class: 'cell',
        'data-level': level,
        'data-first': first,
        'data-last': last,
      });
      g.append(
        svgEl('rect', {
          x: x(i) - cellW / 2 + 3,
          y: y(level),
          width: cellW - 6,
          height: cellH,
          rx: 4,
          fill: combined ? '#e7ecff' : '#f1f3f5',
          stroke: '#868e96',
        }),
        svgEl(
          'text',
          { x: x(i), y: y(level) + 14, 'text-anchor': 'middle', 'font-size': 11 },
          first === last ? `${first}` : `${first}..${last}`,
        ),
        svgEl(
          'text',
          { x: x(i), y: y(level) + 27, 'text-anchor': 'middle', 'font-size': 9, fill: '#495057' },
          p.b.toFixed(3),
        ),
        svgEl('title', {}, `steps ${first}..${last}: h -> ${p.a.toFixed(4)} h + ${p.b.toFixed(4)}`),
      );
      svg.append(g);
    });
  });
  return svg;
}

function randomPairs(L: number): ScanPair[] {
  return Array.from({ length: L }, () => ({ a: 0.5 + 0.5 * Math.random(), b: Math.random() * 2 - 1 }));
}

// ---------------------------------------------------------------------------------------
// 2. Selective dt against S4's fixed dt, computed on the GPU through selectiveScan.

export interface SelectivityRun {
  readonly backend: string;
  readonly L: number;
  readonly u: Float32Array;
  /** dt per step of the selective channel (the fixed channel's is `fixedDt` everywhere). */
  readonly selectiveDt: Float32Array;
  readonly fixedDt: number;
  /** States over time: channel 0 fixed dt (S4), channel 1 selective dt (Mamba). */
  readonly fixedState: Float32Array;
  readonly selectiveState: Float32Array;
  readonly comparison: Comparison;
}

interface SelectivitySettings {
  readonly backend: BackendChoice;
  readonly L: number;
  readonly spikeAt: number;
  readonly resetAt: number;
  readonly fixedDt: number;
}

/**
 * One sequence, two channels, one state each, A = -1, B = C = 1 (time-invariant), D = 0, so
 * y_t is the state h_t. The input is a spike of 1 at `spikeAt` and a "reset" token (value 0)
 * at `resetAt`. Channel 0 has S4's fixed dt; channel 1's dt depends on the token: large
 * (softplus(4) ~ 4) on the spike and the reset token, tiny (softplus(-9) ~ 1e-4) elsewhere.
 * Large dt means dA = e^-dt ~ 0 (forget the old state) and dBu = dt u (take the new input);
 * tiny dt means dA ~ 1 (keep the state) and dBu ~ 0 (ignore the input).
 */
export async function runSelectivity(s: SelectivitySettings): Promise<SelectivityRun> {
  const backend = await getBackend(s.backend);
  const { L } = s;
  const u = new Float32Array(2 * L);
  const raw = new Float32Array(2 * L);
  for (let t = 0; t < L; t++) {
    const x = t === s.spikeAt ? 1 : 0;
    u[t] = x;
    u[L + t] = x;
    // Channel 0: softplus^-1(fixedDt), the same at every step. Channel 1: input-dependent.
    raw[t] = Math.log(Math.expm1(s.fixedDt));
    raw[L + t] = t === s.spikeAt || t === s.resetAt ? 4 : -9;
  }
  const A = new Float32Array([-1, -1]);
  const ones = new Float32Array([1, 1]);
  const y = await scope(async () => {
    const result = await selectiveScan(
      backend.tensor(u, [1, 2, L]),
      backend.tensor(raw, [1, 2, L]),
      backend.tensor(A, [2, 1]),
      backend.tensor(ones, [2, 1]),
      backend.tensor(ones, [2, 1]),
      { deltaSoftplus: true },
    );
    return result.y.read();
  });
  const host = [
    { shape: [1, 2, L], data: u },
    { shape: [1, 2, L], data: raw },
    { shape: [2, 1], data: A },
    { shape: [2, 1], data: ones },
    { shape: [2, 1], data: ones },
  ] as const;
  const ref64 = selectiveScanRef(...host, { deltaSoftplus: true });
  const ref32 = selectiveScanRef(...host, { deltaSoftplus: true, precision: 'f32' });
  const selectiveDt = Float32Array.from(raw.subarray(L), (r) => (r > 20 ? r : Math.log1p(Math.exp(r))));
  return {
    backend: backend.name,
    L,
    u: u.subarray(0, L),
    selectiveDt,
    fixedDt: s.fixedDt,
    fixedState: Float32Array.from(y.subarray(0, L)),
    selectiveState: Float32Array.from(y.subarray(L)),
    comparison: compareToReference(y, ref64.y.data, ref32.y.data),
  };
}

/** The input and both states over time, each scaled to its own peak (fraction kept), as SVG polylines. */
function statePlot(run: SelectivityRun): SVGSVGElement {
  const W = 640;
  const H = 220;
  const m = { l: 36, r: 10, t: 10, b: 24 };
  const svg = svgEl('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart',
    'data-testid': 'states',
    role: 'img',
  }) as SVGSVGElement;
  const scaled = (xs: Float32Array) => {
    let peak = 0;
    for (const v of xs) peak = Math.max(peak, Math.abs(v));
    return Float32Array.from(xs, (v) => v / Math.max(peak, 1e-30));
  };
  const x = (t: number) => m.l + (t / Math.max(run.L - 1, 1)) * (W - m.l - m.r);
  const y = (v: number) => m.t + (1 - v / 1.1) * (H - m.t - m.b);
  svg.append(
    svgEl('line', { x1: m.l, x2: W - m.r, y1: y(0), y2: y(0), stroke: '#ced4da' }),
    svgEl('line', { x1: m.l, x2: W - m.r, y1: y(1), y2: y(1), stroke: '#e9ecef' }),
    svgEl('text', { x: 4, y: y(1) + 4, 'font-size': 10 }, 'peak'),
    svgEl('text', { x: 4, y: y(0) + 4, 'font-size': 10 }, '0'),
    svgEl(
      'text',
      { x: W / 2, y: H - 6, 'text-anchor': 'middle', 'font-size': 11 },
      'time step t (each curve scaled to its own peak)',
    ),
  );
  const series: [string, Float32Array, string, string][] = [
    ['input u (spike)', run.u, '#adb5bd', 'input'],
    [`S4: fixed dt = ${run.fixedDt}`, run.fixedState, '#e8590c', 'fixed'],
    ['Mamba: selective dt', run.selectiveState, '#2f9e44', 'selective'],
  ];
  series.forEach(([label, values, color, id], k) => {
    const points = Array.from(scaled(values), (v, t) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    svg.append(
      svgEl('polyline', {
        points,
        fill: 'none',
        stroke: color,
        'stroke-width': id === 'input' ? 1.5 : 2.2,
        'data-series': id,
      }),
      svgEl('text', { x: W - 190, y: 22 + 15 * k, fill: color, 'font-size': 11 }, label),
    );
  });
  return svg;
}

function mount(root: HTMLElement): undefined {
  // --- the tree ---
  const lengthInput = numberInput('tree-length', 8, 2, 16);
  const treeHolder = h('div', { class: 'result', 'data-testid': 'tree-holder' });
  const drawTree = () => {
    const L = Math.min(16, Math.max(2, Math.floor(Number(lengthInput.value))));
    const pairs = randomPairs(L);
    const levels = hillisSteeleLevels(pairs);
    const last = levels[levels.length - 1]!;
    const sequential = sequentialScanRef(pairs);
    let worst = 0;
    for (let t = 0; t < L; t++) worst = Math.max(worst, Math.abs(last[t]!.b - sequential[t]!));
    treeHolder.dataset.levels = String(levels.length);
    treeHolder.dataset.maxDiff = String(worst);
    treeHolder.replaceChildren(
      treeSvg(pairs),
      h(
        'p',
        { class: 'caption' },
        `${L} steps, ${levels.length - 1} levels. Each box is a partial result: the steps it has combined and the b of its pair ` +
          '(the state those steps produce from h = 0). Blue lines: the partial result from the left that is combined in; ' +
          `grey: the box's own previous value. The last row equals the sequential scan (max difference ${worst.toExponential(1)}).`,
      ),
    );
  };
  lengthInput.addEventListener('change', drawTree);
  const reshuffle = h(
    'button',
    { type: 'button', class: 'run', 'data-testid': 'tree-shuffle' },
    'New values',
  );
  reshuffle.addEventListener('click', drawTree);

  // --- keep or forget ---
  const backendPicker = backendSelect();
  const spikeInput = numberInput('spike', 8, 0, 62);
  const resetInput = numberInput('reset', 44, 1, 63);
  const dtInput = numberInput('fixed-dt', 0.1, 0.001, 5, 'any');
  const runButton = submitButton();
  const panel = runPanel();
  const { status, result } = panel;
  const form = h(
    'form',
    { class: 'controls' },
    field('Backend', backendPicker),
    field('Spike at step', spikeInput),
    field('Reset token at step', resetInput),
    field('S4 fixed dt', dtInput, 'the same at every step'),
    runButton,
  );

  root.append(
    h('h1', {}, 'Selective scan'),
    h('p', { class: 'package' }, '@longseq/selective-scan'),
    h(
      'p',
      { class: 'explainer' },
      "Mamba's layer runs, for every channel, the recurrence h_t = dA_t h_(t-1) + dBu_t with dA_t = exp(dt_t A) and " +
        'dBu_t = dt_t B_t u_t, and reads out y_t = C_t h_t. Because dt, B and C depend on the input, there is no fixed ' +
        'convolution kernel as in S4, but each step is still the map h -> a h + b, and two such steps compose into ' +
        'one: (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2). That operator is associative, so the steps can be combined ' +
        'in a tree (a parallel scan) instead of one after another.',
    ),
    h('h2', {}, 'The parallel scan, level by level'),
    h(
      'p',
      { class: 'explainer' },
      'Hillis-Steele: at the level with offset k, every position i >= k combines the partial result at i - k (earlier ' +
        'steps) with its own. After log2(L) levels every position holds the combination of all steps up to it. The ' +
        "WebGPU kernel does this across a workgroup's threads (each thread first reduces 4 consecutive steps on its " +
        'own), then carries the state into the next chunk of the sequence.',
    ),
    h('div', { class: 'controls' }, field('Steps L (2 to 16)', lengthInput), reshuffle),
    treeHolder,
    h('h2', {}, 'Keep or forget: selective dt against a fixed one'),
    h(
      'p',
      { class: 'explainer' },
      'One state, A = -1, B = C = 1, input: a spike, later a "reset" token. S4 uses the same dt at every step, so the ' +
        'spike enters weakly (dt u) and then fades as e^(-dt t) whatever comes next. With a selective dt (Mamba), the ' +
        'model picks dt per token: large on the spike (write it: dA ~ 0, dBu ~ u), tiny on ordinary tokens (dA ~ 1: ' +
        'keep the state unchanged), large again on the reset token (forget). Both channels run through selectiveScan ' +
        'on the backend you pick and are checked against the float64 reference.',
    ),
    form,
    status,
    result,
  );

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const settings: SelectivitySettings = {
      backend: backendPicker.value as BackendChoice,
      L: 64,
      spikeAt: Math.min(62, Math.max(0, Math.floor(Number(spikeInput.value)))),
      resetAt: Math.min(63, Math.max(1, Math.floor(Number(resetInput.value)))),
      fixedDt: Math.max(0.001, Number(dtInput.value)),
    };
    await panel.run(
      runButton,
      `Running on ${settings.backend}…`,
      async () => {
        const run = await runSelectivity(settings);
        showSelectivity(result, run, settings);
        return `Done on ${run.backend}.`;
      },
      `Failed on ${settings.backend}.`,
    );
  });

  drawTree();
  root.dataset.ready = 'true';
  return undefined;
}

function showSelectivity(el: HTMLElement, run: SelectivityRun, s: SelectivitySettings): void {
  const c = run.comparison;
  // What each channel still holds just before the reset token, relative to its own peak.
  const before = Math.max(s.spikeAt, s.resetAt - 1);
  const peakOf = (xs: Float32Array) => Math.max(...Array.from(xs.subarray(s.spikeAt, before + 1)));
  const kept = (xs: Float32Array) => xs[before]! / Math.max(peakOf(xs), 1e-30);
  el.hidden = false;
  el.dataset.pass = String(c.pass);
  el.dataset.maxError = String(c.maxError);
  el.dataset.fixedKept = String(kept(run.fixedState));
  el.dataset.selectiveKept = String(kept(run.selectiveState));
  el.dataset.selectiveAfterReset = String(run.selectiveState[Math.min(run.L - 1, s.resetAt)]);
  el.dataset.selectivePeak = String(peakOf(run.selectiveState));
  el.replaceChildren(
    verdict(
      c.pass,
      c.pass
        ? 'GPU states match the float64 reference by the test rule'
        : (c.reason ?? 'outside the tolerance'),
    ),
    statePlot(run),
    h(
      'p',
      { class: 'caption' },
      `Just before the reset token (t = ${before}) the selective channel still holds ${(100 * kept(run.selectiveState)).toFixed(1)}% ` +
        `of its peak, the fixed-dt channel ${(100 * kept(run.fixedState)).toFixed(1)}%. After the reset the selective state is ` +
        `${run.selectiveState[Math.min(run.L - 1, s.resetAt)]!.toExponential(1)}. Selective dt: ${run.selectiveDt[s.spikeAt]!.toFixed(2)} on the ` +
        `spike and reset tokens, ${run.selectiveDt[(s.spikeAt + 1) % run.L]!.toExponential(1)} elsewhere.`,
    ),
  );
}

export const scanPage: Page = {
  route: 'scan',
  title: 'Selective scan',
  packageName: '@longseq/selective-scan',
  mount,
};
