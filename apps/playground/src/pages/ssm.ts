import { type Comparison, compareToReference, scope } from '@longseq/backend';
import {
  type ComplexVector,
  causalConv,
  DISCRETIZATION_METHODS,
  type DiagonalSsmHost,
  type DiscretizationMethod,
  diagonalKernelRef,
  diagonalScan,
  diagonalScanRef,
  discretizeDiagonal,
  nplrLegs,
  s4dInit,
  ssmKernel,
} from '@longseq/ssm-discretize';
import { type BackendChoice, getBackend } from '../backends';
import { h, type Page } from '../page';
import { backendSelect, field, numberInput, runPanel, submitButton, svgEl, verdict } from '../ui';

const INITS = {
  lin: 'S4D-Lin: -1/2 + i pi n',
  inv: 'S4D-Inv: -1/2 + i N/pi (N/(2n+1) - 1)',
  real: 'S4D-Real: -(n + 1)',
  legs: 'S4D-LegS: eigenvalues of HiPPO-LegS normal part (NPLR)',
} as const;
type InitChoice = keyof typeof INITS;

/** The continuous diagonal A and B of an initialization, `modes` states (complex unless Real). */
export function initialization(
  init: InitChoice,
  modes: number,
): { A: ComplexVector; B: ComplexVector; complex: boolean } {
  if (init === 'legs') {
    // The normal part's eigenvalues come in conjugate pairs: keep those with Im > 0 (S4D-LegS).
    const nplr = nplrLegs(2 * modes);
    const keep: number[] = [];
    for (let k = 0; k < 2 * modes; k++) if (nplr.Lambda.im[k]! > 0) keep.push(k);
    const pick = (v: ComplexVector) => ({
      re: Float64Array.from(keep, (k) => v.re[k]!),
      im: Float64Array.from(keep, (k) => v.im[k]!),
    });
    return { A: pick(nplr.Lambda), B: pick(nplr.Btilde), complex: true };
  }
  const { A, B } = s4dInit(init, modes);
  return { A, B, complex: init !== 'real' };
}

/** Deterministic floats in [-1, 1) (mulberry32), so a setting always shows the same system. */
function seeded(count: number, seed: number): Float32Array {
  const out = new Float32Array(count);
  let a = seed >>> 0;
  for (let i = 0; i < count; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

export interface SsmSettings {
  readonly backend: BackendChoice;
  readonly init: InitChoice;
  readonly modes: number;
  readonly dt: number;
  readonly method: DiscretizationMethod;
  readonly L: number;
}

export interface SsmRun {
  readonly backend: string;
  /** Discretized eigenvalues A-bar (float64). */
  readonly eigenvalues: ComplexVector;
  readonly K: Float32Array;
  readonly u: Float32Array;
  readonly yConv: Float32Array;
  readonly yScan: Float32Array;
  /** max |y_conv - y_scan|, and the largest |y|. */
  readonly maxDiff: number;
  readonly maxAbs: number;
  readonly conv: Comparison;
  readonly scan: Comparison;
}

/**
 * One channel: the initialization's A and B, C from a fixed seed, discretized with dt. On the
 * backend: K by the Vandermonde kernel, y = K * u by the FFT convolution, and y again by the
 * recurrence; both checked against the float64 recurrence by the test rule.
 */
export async function runSsm(s: SsmSettings): Promise<SsmRun> {
  const backend = await getBackend(s.backend);
  const { A, B, complex } = initialization(s.init, s.modes);
  const N = A.re.length;
  const width = complex ? 2 : 1;
  const interleave = (v: ComplexVector) =>
    Float32Array.from({ length: N * width }, (_, i) => (complex ? (i % 2 ? v.im : v.re)[i >> 1]! : v.re[i]!));
  const host: DiagonalSsmHost = {
    H: 1,
    N,
    complex,
    A: interleave(A),
    B: interleave(B),
    C: seeded(N * width, 7).map((c) => c * 0.5),
    dt: [Math.fround(s.dt)],
    method: s.method,
    alpha: s.method === 'bilinear' ? 0.5 : s.method === 'backward_diff' ? 1 : 0,
  };
  const u = seeded(s.L, 11);
  const shape = complex ? [1, N, 2] : [1, N];
  const { K, yConv, yScan } = await scope(async () => {
    const ssm = {
      A: backend.tensor(host.A, shape),
      B: backend.tensor(host.B, shape),
      C: backend.tensor(host.C, shape),
      dt: [s.dt],
    };
    const ut = backend.tensor(u, [1, s.L]);
    const kernel = await ssmKernel(ssm, s.L, { method: s.method });
    const conv = await causalConv(ut, kernel);
    const scan = await diagonalScan(ssm, ut, { method: s.method });
    return { K: await kernel.read(), yConv: await conv.read(), yScan: await scan.read() };
  });
  const ref64 = diagonalScanRef(host, u, s.L);
  const ref32 = diagonalScanRef(host, u, s.L, { precision: 'f32' });
  // The float32 baseline of the convolution form: the worse of the float32 recurrence and
  // the float32 kernel convolved directly.
  const k32 = diagonalKernelRef(host, s.L, { precision: 'f32' });
  const conv32 = Float64Array.from(u, (_, t) => {
    let acc = 0;
    for (let j = 0; j <= t; j++) acc = Math.fround(acc + Math.fround(k32[j]! * u[t - j]!));
    return acc;
  });
  const worst = ref64.map((r, i) =>
    Math.abs(ref32[i]! - r) > Math.abs(conv32[i]! - r) ? ref32[i]! : conv32[i]!,
  );
  let maxDiff = 0;
  let maxAbs = 0;
  for (let t = 0; t < s.L; t++) {
    maxDiff = Math.max(maxDiff, Math.abs(yConv[t]! - yScan[t]!));
    maxAbs = Math.max(maxAbs, Math.abs(ref64[t]!));
  }
  const bar = discretizeDiagonal(A, s.dt, B, { method: s.method });
  return {
    backend: backend.name,
    eigenvalues: bar.A,
    K: K as Float32Array,
    u,
    yConv: yConv as Float32Array,
    yScan: yScan as Float32Array,
    maxDiff,
    maxAbs,
    conv: compareToReference(yConv, ref64, worst),
    scan: compareToReference(yScan, ref64, worst),
  };
}

/** The discretized eigenvalues on the complex plane, with the unit circle (stable inside). */
function eigenPlot(run: SsmRun, complex: boolean): SVGSVGElement {
  const S = 300;
  const c = S / 2;
  let radius = 1;
  for (let k = 0; k < run.eigenvalues.re.length; k++)
    radius = Math.max(radius, Math.hypot(run.eigenvalues.re[k]!, run.eigenvalues.im[k]!));
  const scale = (S / 2 - 14) / (radius * 1.05);
  const svg = svgEl('svg', {
    viewBox: `0 0 ${S} ${S}`,
    class: 'chart',
    'data-testid': 'eigenvalues',
    role: 'img',
  }) as SVGSVGElement;
  svg.append(
    svgEl('line', { x1: 0, x2: S, y1: c, y2: c, stroke: '#dee2e6' }),
    svgEl('line', { x1: c, x2: c, y1: 0, y2: S, stroke: '#dee2e6' }),
    svgEl('circle', {
      cx: c,
      cy: c,
      r: scale,
      fill: 'none',
      stroke: '#868e96',
      'stroke-dasharray': '4 3',
      'data-unit-circle': 1,
    }),
    svgEl('text', { x: S - 4, y: c - 4, 'text-anchor': 'end', 'font-size': 10 }, 'Re'),
    svgEl('text', { x: c + 4, y: 12, 'font-size': 10 }, 'Im'),
  );
  for (let k = 0; k < run.eigenvalues.re.length; k++) {
    const re = run.eigenvalues.re[k]!;
    const im = run.eigenvalues.im[k]!;
    // Complex states stand for conjugate pairs: draw the mirror image lighter.
    if (complex)
      svg.append(
        svgEl('circle', {
          cx: c + re * scale,
          cy: c + im * scale,
          r: 3,
          fill: '#a5d8ff',
          class: 'conjugate',
        }),
      );
    const dot = svgEl('circle', {
      cx: c + re * scale,
      cy: c - im * scale,
      r: 3.5,
      fill: '#1971c2',
      class: 'eigenvalue',
    });
    dot.append(
      svgEl(
        'title',
        {},
        `${re.toFixed(4)} ${im >= 0 ? '+' : '-'} ${Math.abs(im).toFixed(4)}i, |.| = ${Math.hypot(re, im).toFixed(4)}`,
      ),
    );
    svg.append(dot);
  }
  return svg;
}

function linePlot(testId: string, series: [string, ArrayLike<number>, string][]): SVGSVGElement {
  const W = 640;
  const H = 200;
  const m = { l: 46, r: 10, t: 10, b: 22 };
  const svg = svgEl('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart',
    'data-testid': testId,
    role: 'img',
  }) as SVGSVGElement;
  let lo = 0;
  let hi = 0;
  let n = 1;
  for (const [, values] of series) {
    n = Math.max(n, values.length);
    for (let i = 0; i < values.length; i++) {
      lo = Math.min(lo, values[i]!);
      hi = Math.max(hi, values[i]!);
    }
  }
  if (hi === lo) hi = lo + 1;
  const x = (t: number) => m.l + (t / Math.max(n - 1, 1)) * (W - m.l - m.r);
  const y = (v: number) => m.t + (1 - (v - lo) / (hi - lo)) * (H - m.t - m.b);
  svg.append(
    svgEl('line', { x1: m.l, x2: W - m.r, y1: y(0), y2: y(0), stroke: '#ced4da' }),
    svgEl('text', { x: 4, y: y(hi) + 4, 'font-size': 10 }, hi.toPrecision(3)),
    svgEl('text', { x: 4, y: y(lo) + 4, 'font-size': 10 }, lo.toPrecision(3)),
    svgEl('text', { x: W / 2, y: H - 4, 'text-anchor': 'middle', 'font-size': 11 }, 'step'),
  );
  series.forEach(([label, values, color], k) => {
    const points = Array.from(values, (v, t) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    svg.append(
      svgEl('polyline', {
        points,
        fill: 'none',
        stroke: color,
        'stroke-width': k === 0 ? 2.4 : 1.4,
        'data-series': label,
      }),
      svgEl('text', { x: W - 200, y: 20 + 14 * k, fill: color, 'font-size': 11 }, label),
    );
  });
  return svg;
}

function mount(root: HTMLElement): undefined {
  const backendPicker = backendSelect();
  const initSelect = h(
    'select',
    { name: 'init', 'data-testid': 'init' },
    ...Object.entries(INITS).map(([value, label]) => h('option', { value }, label)),
  );
  const methodSelect = h(
    'select',
    { name: 'method', 'data-testid': 'method' },
    ...DISCRETIZATION_METHODS.filter((m) => m !== 'gbt').map((m) => h('option', { value: m }, m)),
  );
  const modesInput = numberInput('modes', 8, 1, 64);
  const dtInput = numberInput('dt', 0.05, 0.0001, 2, 'any');
  const lengthInput = numberInput('length', 256, 1, 4096);
  const runButton = submitButton();
  const panel = runPanel();
  const { status, result } = panel;
  const form = h(
    'form',
    { class: 'controls' },
    field('Backend', backendPicker),
    field('Initialization', initSelect),
    field('States', modesInput, 'complex modes (conjugate pairs) unless Real'),
    field('dt', dtInput),
    field('Method', methodSelect),
    field('Length L', lengthInput),
    runButton,
  );
  root.append(
    h('h1', {}, 'SSM discretization'),
    h('p', { class: 'package' }, '@longseq/ssm-discretize'),
    h(
      'p',
      { class: 'explainer' },
      "A continuous state space model x' = A x + B u, y = C x becomes discrete with a step dt: A-bar = exp(dt A) " +
        'under zero-order hold (the eigenvalues move from the left half-plane into the unit circle), and then ' +
        'x_k = A-bar x_(k-1) + B-bar u_k. Because it is linear and time-invariant, the same output is a convolution ' +
        'y = K * u with K_l = C A-bar^l B-bar. Here a diagonal SSM with an S4D or HiPPO initialization runs both ways ' +
        'on the GPU: K by a Vandermonde product, y = K * u by an FFT of length 2L, and y again step by step.',
    ),
    form,
    status,
    result,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const settings: SsmSettings = {
      backend: backendPicker.value as BackendChoice,
      init: initSelect.value as InitChoice,
      modes: Math.min(64, Math.max(1, Math.floor(Number(modesInput.value)))),
      dt: Number(dtInput.value),
      method: methodSelect.value as DiscretizationMethod,
      L: Math.min(4096, Math.max(1, Math.floor(Number(lengthInput.value)))),
    };
    await panel.run(
      runButton,
      `Running on ${settings.backend}…`,
      async () => {
        const run = await runSsm(settings);
        show(result, run, settings);
        return `Done on ${run.backend}.`;
      },
      `Failed on ${settings.backend}.`,
    );
  });
  root.dataset.ready = 'true';
  return undefined;
}

function show(el: HTMLElement, run: SsmRun, s: SsmSettings): void {
  const pass = run.conv.pass && run.scan.pass;
  let inside = 0;
  for (let k = 0; k < run.eigenvalues.re.length; k++)
    if (Math.hypot(run.eigenvalues.re[k]!, run.eigenvalues.im[k]!) < 1) inside++;
  el.hidden = false;
  el.dataset.pass = String(pass);
  el.dataset.maxDiff = String(run.maxDiff);
  el.dataset.maxAbs = String(run.maxAbs);
  el.dataset.eigenvalues = String(run.eigenvalues.re.length);
  el.dataset.inside = String(inside);
  const complex = s.init !== 'real';
  el.replaceChildren(
    verdict(
      pass,
      pass
        ? `recurrence and FFT convolution agree to ${run.maxDiff.toExponential(2)} (|y| up to ${run.maxAbs.toPrecision(3)}); both match the float64 reference by the test rule`
        : (run.conv.reason ?? run.scan.reason ?? 'outside the tolerance'),
    ),
    h('h2', {}, 'Discretized eigenvalues'),
    eigenPlot(run, complex),
    h(
      'p',
      { class: 'caption' },
      `${run.eigenvalues.re.length} states, ${inside} inside the unit circle (dashed). ${complex ? 'Light dots: the conjugates the complex states stand for. ' : ''}` +
        `Method ${s.method}, dt = ${s.dt}.`,
    ),
    h('h2', {}, 'The kernel K'),
    linePlot('kernel', [['K_l = C A-bar^l B-bar', run.K, '#1971c2']]),
    h('h2', {}, 'The output, both ways'),
    linePlot('output', [
      ['y by recurrence', run.yScan, '#e8590c'],
      ['y = K * u (FFT)', run.yConv, '#2f9e44'],
    ]),
    h(
      'p',
      { class: 'caption' },
      `Max |recurrence - convolution| = ${run.maxDiff.toExponential(2)}; against float64: convolution ${run.conv.maxError.toExponential(2)}, ` +
        `recurrence ${run.scan.maxError.toExponential(2)} (allowed ${run.conv.allowed.toExponential(2)}).`,
    ),
  );
}

export const ssmPage: Page = {
  route: 'ssm',
  title: 'SSM discretization',
  packageName: '@longseq/ssm-discretize',
  mount,
};
