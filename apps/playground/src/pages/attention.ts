import { compareToReference, type Tensor } from '@longseq/backend';
import { type AttentionAlgorithm, attention, attentionRef } from '@longseq/flash-attention';
import { type BackendChoice, getBackend } from '../backends';
import { h, type Page } from '../page';
import { backendSelect, field, numberInput, runPanel, submitButton, svgEl } from '../ui';

// ---------------------------------------------------------------------------------------
// 1. The tiling: which blocks of the score matrix a workgroup visits, in which order.

export type BlockState = 'full' | 'partial' | 'skipped';

export interface TilePlan {
  readonly rows: number;
  readonly cols: number;
  /** [query block][key block]: computed whole, computed with a mask inside, or never visited. */
  readonly states: BlockState[][];
  /** [query block][key block]: the step at which the query block's workgroup visits it (-1 if skipped). */
  readonly order: number[][];
}

/**
 * The plan of the WebGPU forward kernel for nq queries, nk keys, tiles br x bc: query i sits
 * at key position p = i + nk - nq and sees keys p - left .. p + right (causal: right = 0).
 * A query block's workgroup loops over the key blocks of its band only, left to right, so
 * blocks outside every row's band are skipped, not masked.
 */
export function tilePlan(
  nq: number,
  nk: number,
  br: number,
  bc: number,
  causal: boolean,
  left: number,
  right: number,
): TilePlan {
  const rightEff = causal ? Math.min(right, 0) : right;
  const rows = Math.ceil(nq / br);
  const cols = Math.ceil(nk / bc);
  const states: BlockState[][] = [];
  const order: number[][] = [];
  for (let r = 0; r < rows; r++) {
    const i0 = r * br;
    const i1 = Math.min(nq, i0 + br) - 1;
    const lo = Math.max(0, i0 + nk - nq - left);
    const hi = Math.min(nk - 1, i1 + nk - nq + rightEff);
    const rowStates: BlockState[] = [];
    const rowOrder: number[] = [];
    let step = 0;
    for (let c = 0; c < cols; c++) {
      const j0 = c * bc;
      const j1 = Math.min(nk, j0 + bc) - 1;
      if (hi < lo || j1 < lo || j0 > hi) {
        rowStates.push('skipped');
        rowOrder.push(-1);
        continue;
      }
      // Whole block visible when every row of the block sees every key of it.
      let full = true;
      for (let i = i0; i <= i1 && full; i++) {
        const p = i + nk - nq;
        if (j0 < p - left || j1 > p + rightEff) full = false;
      }
      rowStates.push(full ? 'full' : 'partial');
      rowOrder.push(step++);
    }
    states.push(rowStates);
    order.push(rowOrder);
  }
  return { rows, cols, states, order };
}

const STATE_COLORS: Record<BlockState, string> = { full: '#4c6ef5', partial: '#91a7ff', skipped: '#f1f3f5' };

function tilingSvg(plan: TilePlan, highlightRow: number): SVGSVGElement {
  const cell = Math.max(10, Math.min(36, Math.floor(520 / Math.max(plan.rows, plan.cols))));
  const W = plan.cols * cell + 90;
  const H = plan.rows * cell + 30;
  const svg = svgEl('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart',
    'data-testid': 'tiling',
    role: 'img',
  }) as SVGSVGElement;
  svg.append(svgEl('text', { x: 80, y: 12, 'font-size': 11 }, 'key blocks ->'));
  for (let r = 0; r < plan.rows; r++) {
    svg.append(svgEl('text', { x: 2, y: 20 + r * cell + cell / 2 + 4, 'font-size': 10 }, `q block ${r}`));
    for (let c = 0; c < plan.cols; c++) {
      const state = plan.states[r]![c]!;
      const g = svgEl('g', { class: 'block', 'data-state': state, 'data-row': r, 'data-col': c });
      g.append(
        svgEl('rect', {
          x: 80 + c * cell,
          y: 18 + r * cell,
          width: cell - 2,
          height: cell - 2,
          fill: STATE_COLORS[state],
          stroke: r === highlightRow ? '#e8590c' : '#ced4da',
          'stroke-width': r === highlightRow ? 2 : 1,
        }),
        svgEl(
          'title',
          {},
          state === 'skipped'
            ? 'skipped: no row of the block sees these keys'
            : `step ${plan.order[r]![c]} (${state})`,
        ),
      );
      if (state !== 'skipped' && cell >= 18) {
        g.append(
          svgEl(
            'text',
            {
              x: 80 + c * cell + cell / 2 - 1,
              y: 18 + r * cell + cell / 2 + 3,
              'text-anchor': 'middle',
              'font-size': 9,
              fill: '#fff',
            },
            String(plan.order[r]![c]),
          ),
        );
      }
      svg.append(g);
    }
  }
  return svg;
}

// ---------------------------------------------------------------------------------------
// 2. The running max and denominator of one row as key blocks arrive (float64, on the host).

export interface RowTrace {
  /** After each visited key block: its index, the running max m and denominator l. */
  readonly steps: { block: number; m: number; l: number }[];
  /** m + log(l) at the end, and the reference's logsumexp of the row. */
  readonly lse: number;
  readonly refLse: number;
}

/** Replays the online softmax of row `row` block by block: m_new = max(m, block max), l = l e^(m - m_new) + sum e^(s - m_new). */
export function traceRow(
  q: Float32Array,
  k: Float32Array,
  n: number,
  d: number,
  row: number,
  plan: TilePlan,
  br: number,
  bc: number,
  causal: boolean,
  left: number,
  right: number,
): RowTrace {
  const rightEff = causal ? Math.min(right, 0) : right;
  const scale = 1 / Math.sqrt(d);
  const r = Math.floor(row / br);
  let m = Number.NEGATIVE_INFINITY;
  let l = 0;
  const steps: RowTrace['steps'] = [];
  for (let c = 0; c < plan.cols; c++) {
    if (plan.states[r]![c] === 'skipped') continue;
    let blockMax = Number.NEGATIVE_INFINITY;
    const scores: number[] = [];
    for (let j = c * bc; j < Math.min(n, (c + 1) * bc); j++) {
      if (j < row - left || j > row + rightEff) continue;
      let dot = 0;
      for (let e = 0; e < d; e++) dot += q[row * d + e]! * k[j * d + e]!;
      scores.push(dot * scale);
      blockMax = Math.max(blockMax, dot * scale);
    }
    const mNew = Math.max(m, blockMax);
    if (mNew > Number.NEGATIVE_INFINITY) {
      l =
        (m === Number.NEGATIVE_INFINITY ? 0 : l * Math.exp(m - mNew)) +
        scores.reduce((a, s) => a + Math.exp(s - mNew), 0);
      m = mNew;
    }
    steps.push({ block: c, m, l });
  }
  const ref = attentionRef(
    { data: q.subarray(0, n * d), shape: [1, 1, n, d] },
    { data: k.subarray(0, n * d), shape: [1, 1, n, d] },
    { data: k.subarray(0, n * d), shape: [1, 1, n, d] },
    { causal, window: [left, right] },
  );
  return { steps, lse: m + Math.log(l), refLse: ref.lse.data[row]! };
}

function randomData(count: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = Math.fround((s / 2 ** 32) * 2 - 1);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// 3. Live: time and peak extra memory of flash and naive as N grows, on the visitor's GPU.

export interface LiveRow {
  readonly n: number;
  readonly algorithm: AttentionAlgorithm;
  readonly ms: number;
  /** Peak bytes beyond inputs and outputs. */
  readonly extraBytes: number;
}

async function measure(
  backendName: BackendChoice,
  ns: readonly number[],
  d: number,
  onRow: (r: LiveRow) => void,
) {
  const backend = await getBackend(backendName);
  // The first N's flash output against the float64 reference, by the test rule.
  let check: ReturnType<typeof compareToReference> | undefined;
  for (const n of ns) {
    const data = randomData(3 * n * d, n);
    const host = (i: number) => ({ data: data.subarray(i * n * d, (i + 1) * n * d), shape: [1, 1, n, d] });
    const [q, k, v] = [0, 1, 2].map((i) => backend.tensor(host(i).data, [1, 1, n, d])) as [
      Tensor,
      Tensor,
      Tensor,
    ];
    try {
      for (const algorithm of ['flash', 'naive'] as AttentionAlgorithm[]) {
        const warm = await attention(q, k, v, { algorithm, causal: true, returnLse: true });
        if (algorithm === 'flash' && check === undefined) {
          const got = await warm.output.read();
          const ref64 = attentionRef(host(0), host(1), host(2), { causal: true });
          const ref32 = attentionRef(host(0), host(1), host(2), { causal: true, precision: 'f32' });
          check = compareToReference(got, ref64.output.data, ref32.output.data);
        }
        warm.output.dispose();
        warm.lse.dispose();
        await backend.sync();
        const base = backend.memory().bytes;
        backend.resetPeak();
        const times: number[] = [];
        let extra = 0;
        for (let rep = 0; rep < 3; rep++) {
          const start = performance.now();
          const { output, lse } = await attention(q, k, v, { algorithm, causal: true, returnLse: true });
          await backend.sync();
          times.push(performance.now() - start);
          extra = backend.memory().peakBytes - base - (output.size + lse.size) * 4;
          output.dispose();
          lse.dispose();
        }
        times.sort((a, b) => a - b);
        onRow({ n, algorithm, ms: times[1]!, extraBytes: extra });
      }
    } finally {
      q.dispose();
      k.dispose();
      v.dispose();
    }
  }
  return check!;
}

function fmtBytes(b: number): string {
  if (b >= 1 << 20) return `${(b / (1 << 20)).toFixed(1)} MiB`;
  if (b >= 1 << 10) return `${(b / (1 << 10)).toFixed(1)} KiB`;
  return `${b} B`;
}

function mount(root: HTMLElement): undefined {
  const nInput = numberInput('tile-n', 256, 16, 2048);
  const brInput = numberInput('tile-br', 64, 4, 256);
  const bcInput = numberInput('tile-bc', 32, 4, 256);
  const leftInput = numberInput('window-left', 96, 0, 4096);
  const causalInput = h('input', {
    type: 'checkbox',
    name: 'causal',
    checked: true,
    'data-testid': 'causal',
  });
  const windowInput = h('input', { type: 'checkbox', name: 'window', 'data-testid': 'window' });
  const rowInput = numberInput('trace-row', 200, 0, 2047);
  const tilingHolder = h('div', { class: 'result', 'data-testid': 'tiling-holder' });
  const traceHolder = h('div', { class: 'result', 'data-testid': 'trace' });

  const draw = () => {
    const n = Math.max(16, Math.min(2048, Math.floor(Number(nInput.value))));
    const br = Math.max(4, Math.floor(Number(brInput.value)));
    const bc = Math.max(4, Math.floor(Number(bcInput.value)));
    const causal = causalInput.checked;
    const left = windowInput.checked
      ? Math.max(0, Math.floor(Number(leftInput.value)))
      : Number.POSITIVE_INFINITY;
    const row = Math.max(0, Math.min(n - 1, Math.floor(Number(rowInput.value))));
    const plan = tilePlan(n, n, br, bc, causal, left, Number.POSITIVE_INFINITY);
    const count = (s: BlockState) => plan.states.flat().filter((x) => x === s).length;
    tilingHolder.dataset.full = String(count('full'));
    tilingHolder.dataset.partial = String(count('partial'));
    tilingHolder.dataset.skipped = String(count('skipped'));
    tilingHolder.replaceChildren(
      tilingSvg(plan, Math.floor(row / br)),
      h(
        'p',
        { class: 'caption' },
        `${plan.rows} x ${plan.cols} blocks of ${br} queries x ${bc} keys: ${count('full')} computed whole (dark), ` +
          `${count('partial')} computed with the mask applied inside (light), ${count('skipped')} skipped (grey: the ` +
          "workgroup's loop never reaches them). Numbers: the order in which a query block's workgroup visits its key blocks.",
      ),
    );
    const d = 16;
    const q = randomData(n * d, 1);
    const k = randomData(n * d, 2);
    const trace = traceRow(q, k, n, d, row, plan, br, bc, causal, left, Number.POSITIVE_INFINITY);
    traceHolder.dataset.steps = String(trace.steps.length);
    traceHolder.dataset.lseError = String(Math.abs(trace.lse - trace.refLse));
    traceHolder.replaceChildren(
      h(
        'p',
        { class: 'caption' },
        `Row ${row} (d = ${d}, random q and k): after each key block its workgroup visits,`,
      ),
      h(
        'table',
        { class: 'data' },
        h(
          'tr',
          {},
          h('th', {}, 'step'),
          h('th', {}, 'key block'),
          h('th', {}, 'running max m'),
          h('th', {}, 'denominator l'),
        ),
        ...trace.steps.map((s, i) =>
          h(
            'tr',
            {},
            h('td', {}, String(i)),
            h('td', {}, String(s.block)),
            h('td', {}, s.m.toFixed(5)),
            h('td', {}, s.l.toFixed(5)),
          ),
        ),
      ),
      h(
        'p',
        { class: 'caption' },
        `m + log(l) = ${trace.lse.toFixed(9)}; the reference logsumexp of the row is ${trace.refLse.toFixed(9)}. ` +
          'Whenever a block raises the max, the sum so far (and the output accumulated so far) is rescaled by e^(m_old - m_new).',
      ),
    );
  };
  for (const input of [nInput, brInput, bcInput, leftInput, causalInput, windowInput, rowInput])
    input.addEventListener('change', draw);

  const backendPicker = backendSelect();
  const maxNInput = numberInput('max-n', 512, 64, 16384);
  const runButton = submitButton();
  const panel = runPanel();
  const { status, result } = panel;
  const form = h(
    'form',
    { class: 'controls' },
    field('Backend', backendPicker),
    field('Largest N', maxNInput, 'N doubles from 64'),
    runButton,
  );

  root.append(
    h('h1', {}, 'FlashAttention'),
    h('p', { class: 'package' }, '@longseq/flash-attention'),
    h(
      'p',
      { class: 'explainer' },
      'Attention softmax(q k^T / sqrt(d)) v normally writes the N x N score matrix to memory. FlashAttention never does: ' +
        'a workgroup keeps a block of queries on chip and streams blocks of keys and values past it, keeping for each ' +
        'row a running max m and denominator l (the online softmax) and rescaling the output as each block arrives. ' +
        'Memory beyond inputs and outputs is O(N) instead of O(N^2), and under a causal or sliding-window mask whole ' +
        'blocks are skipped.',
    ),
    h('h2', {}, 'The tiling'),
    h(
      'div',
      { class: 'controls' },
      field('N (queries = keys)', nInput),
      field('Query block', brInput),
      field('Key block', bcInput),
      field('Causal', causalInput),
      field('Sliding window', windowInput, 'keys within left of the row'),
      field('Window left', leftInput),
    ),
    tilingHolder,
    h('h2', {}, 'One row, block by block'),
    h('div', { class: 'controls' }, field('Row', rowInput)),
    traceHolder,
    h('h2', {}, 'Naive against flash on your GPU'),
    h(
      'p',
      { class: 'explainer' },
      'Causal attention, one head, d = 64, as N doubles: wall time per call (median of 3) and peak memory beyond the ' +
        'inputs and outputs (backend.memory()). Naive materializes the scores and probabilities; flash does not.',
    ),
    form,
    status,
    result,
  );
  draw();

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const maxN = Math.max(64, Math.min(16384, Math.floor(Number(maxNInput.value))));
    const ns: number[] = [];
    for (let n = 64; n <= maxN; n *= 2) ns.push(n);
    const rows: LiveRow[] = [];
    const body = h('tbody', {});
    result.hidden = false;
    result.replaceChildren(
      h(
        'table',
        { class: 'data', 'data-testid': 'live' },
        h(
          'tr',
          {},
          h('th', {}, 'N'),
          h('th', {}, 'algorithm'),
          h('th', {}, 'ms'),
          h('th', {}, 'extra memory'),
        ),
        body,
      ),
    );
    panel.setStatus('running', 'Running...');
    runButton.disabled = true;
    try {
      const check = await measure(backendPicker.value as BackendChoice, ns, 64, (r) => {
        rows.push(r);
        body.append(
          h(
            'tr',
            { 'data-n': r.n, 'data-algorithm': r.algorithm, 'data-extra': r.extraBytes, 'data-ms': r.ms },
            h('td', {}, String(r.n)),
            h('td', {}, r.algorithm),
            h('td', {}, r.ms.toFixed(2)),
            h('td', {}, fmtBytes(r.extraBytes)),
          ),
        );
      });
      result.dataset.pass = String(check.pass);
      result.dataset.maxError = String(check.maxError);
      result.append(
        h(
          'p',
          { class: 'caption' },
          `Flash at N = ${ns[0]} against the float64 reference: max error ${check.maxError.toExponential(2)} ` +
            `(allowed ${check.allowed.toExponential(2)}) ${check.pass ? 'passes' : 'FAILS'} the test rule.`,
        ),
      );
      panel.setStatus('done', `Done: ${rows.length} measurements.`);
    } catch (err) {
      result.append(
        h('p', { class: 'error', 'data-testid': 'error' }, err instanceof Error ? err.message : String(err)),
      );
      panel.setStatus('error', 'Failed.');
    } finally {
      runButton.disabled = false;
    }
  });
  root.dataset.ready = 'true';
  return undefined;
}

export const attentionPage: Page = {
  route: 'attention',
  title: 'FlashAttention',
  packageName: '@longseq/flash-attention',
  mount,
};
