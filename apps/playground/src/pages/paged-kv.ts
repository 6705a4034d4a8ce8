import { type Backend, type Comparison, compareToReference } from '@longseq/backend';
import { attentionVarlen } from '@longseq/flash-attention';
import {
  BlockManager,
  type BlockCopy,
  PagedKvCache,
  Scheduler,
  type SimulationReport,
  type TraceRequest,
  contiguousAttentionRef,
  generateTrace,
  seededRandom,
  simulateServing,
} from '@longseq/paged-kv';
import { type BackendChoice, getBackend } from '../backends';
import { h, type Page } from '../page';
import { backendSelect, field, runPanel, SVG_NS, svgEl, verdict } from '../ui';

/** A small trace sized for watching: short prompts and outputs, a tight budget. */
interface Scenario {
  readonly trace: TraceRequest[];
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly report: SimulationReport;
}

function makeScenario(n: number, seed: number): Scenario {
  const numBlocks = 64;
  const blockSize = 4;
  const trace = generateTrace({
    requests: 40,
    rate: 0.35,
    prompt: { mu: Math.log(14) - 0.18, sigma: 0.6 },
    output: { mu: Math.log(18) - 0.18, sigma: 0.6 },
    maxModelLen: 64,
    n,
    seed,
  });
  const report = simulateServing(trace, { numBlocks, blockSize, sampleEvery: 1, seed });
  return { trace, numBlocks, blockSize, report };
}

/** The same replay as simulateServing's paged run, one step at a time, so the grid can show it. */
class Replay {
  readonly manager: BlockManager;
  readonly scheduler: Scheduler;
  step = 0;
  private next = 0;
  private readonly random: () => number;
  copies: BlockCopy[] = [];
  preempted = 0;

  constructor(
    readonly scenario: Scenario,
    seed: number,
  ) {
    this.manager = new BlockManager({
      numBlocks: scenario.numBlocks,
      blockSize: scenario.blockSize,
      numHostBlocks: scenario.numBlocks,
    });
    this.scheduler = new Scheduler(this.manager);
    this.random = seededRandom(seed + 17);
  }

  get done(): boolean {
    return this.next >= this.scenario.trace.length && this.scheduler.idle;
  }

  advance(): void {
    const trace = this.scenario.trace;
    while (this.next < trace.length && trace[this.next]!.arrival <= this.step) {
      const r = trace[this.next++]!;
      this.scheduler.add({
        id: r.id,
        prompt: r.prompt,
        maxNewTokens: r.outputLen,
        n: r.n,
        beamWidth: r.beamWidth,
      });
    }
    const result = this.scheduler.step(
      () => Math.floor(this.random() * 32000),
      (_id, seqIds) =>
        seqIds.map((_, i) => (this.random() < 0.8 ? i : Math.floor(this.random() * seqIds.length))),
    );
    this.copies = result.copies;
    this.preempted += result.preempted.length;
    this.step++;
  }
}

const hue = (requestId: number) => (requestId * 67) % 360;

/** The block pool: one cell per block, its slots filled by the request owning it. */
function drawGrid(svg: SVGSVGElement, replay: Replay): void {
  const { manager, scheduler } = replay;
  const { numBlocks, blockSize } = replay.scenario;
  const owner = new Map<number, number>();
  const fill = new Map<number, number>();
  for (const g of scheduler.groups()) {
    if (g.state !== 'running') continue;
    for (const id of g.seqIds) {
      const table = manager.blockTable(id);
      const length = manager.length(id);
      table.forEach((b, i) => {
        owner.set(b, g.requestId);
        fill.set(b, Math.max(fill.get(b) ?? 0, Math.min(blockSize, length - i * blockSize)));
      });
    }
  }
  const copied = new Set(replay.copies.map(([, dst]) => dst));
  const cols = 16;
  const cell = 36;
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${cols * cell} ${Math.ceil(numBlocks / cols) * cell}`);
  for (let b = 0; b < numBlocks; b++) {
    const x = (b % cols) * cell + 2;
    const y = Math.floor(b / cols) * cell + 2;
    const refs = manager.device.refcount(b);
    const req = owner.get(b);
    const cached = refs === 0 && manager.device.hashOf(b) !== undefined;
    const g = svgEl('g', { 'data-block': b, 'data-refs': refs, class: 'block' });
    g.append(
      svgEl('rect', {
        x,
        y,
        width: cell - 4,
        height: cell - 4,
        rx: 3,
        fill: cached ? '#e9ecef' : '#fff',
        stroke: copied.has(b) ? '#f08c00' : refs > 1 ? '#1d2330' : '#ced4da',
        'stroke-width': copied.has(b) ? 3 : refs > 1 ? 2.5 : 1,
      }),
    );
    if (req !== undefined) {
      const filled = fill.get(b) ?? 0;
      const slotW = (cell - 8) / blockSize;
      for (let s = 0; s < blockSize; s++) {
        g.append(
          svgEl('rect', {
            x: x + 2 + s * slotW,
            y: y + 2,
            width: slotW - 1,
            height: cell - 8,
            fill: `hsl(${hue(req)} 65% ${s < filled ? 55 : 90}%)`,
          }),
        );
      }
    }
    if (refs > 1) {
      const t = svgEl('text', {
        x: x + cell / 2 - 2,
        y: y + cell / 2 + 3,
        'text-anchor': 'middle',
        'font-size': 11,
        fill: '#fff',
        'font-weight': 'bold',
      });
      t.textContent = `×${refs}`;
      g.append(t);
    }
    const title = svgEl('title', {});
    title.textContent = `block ${b}: ${refs} reference${refs === 1 ? '' : 's'}${req !== undefined ? `, request ${req}` : cached ? ', cached (evictable)' : ', free'}${copied.has(b) ? ', just copied on write' : ''}`;
    g.append(title);
    svg.append(g);
  }
}

/** Memory over time, paged against contiguous, with a cursor at the current step. */
function drawMemory(svg: SVGSVGElement, report: SimulationReport, step: number): void {
  const W = 576;
  const H = 200;
  const pad = 30;
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const steps = Math.max(report.contiguous.steps, report.paged.steps, 1);
  const x = (s: number) => pad + (s / steps) * (W - pad - 10);
  const y = (v: number) => H - pad - (v / report.budgetTokens) * (H - 2 * pad);
  svg.append(
    svgEl('line', {
      x1: pad,
      x2: W - 10,
      y1: y(report.budgetTokens),
      y2: y(report.budgetTokens),
      stroke: '#adb5bd',
      'stroke-dasharray': '3 3',
    }),
  );
  const budget = svgEl('text', {
    x: pad + 4,
    y: y(report.budgetTokens) - 4,
    'font-size': 11,
    fill: '#5b6475',
  });
  budget.textContent = `budget ${report.budgetTokens} tokens`;
  svg.append(budget);
  const line = (points: { step: number; v: number }[], color: string, dash: string, id: string) => {
    svg.append(
      svgEl('polyline', {
        points: points.map((p) => `${x(p.step).toFixed(1)},${y(p.v).toFixed(1)}`).join(' '),
        fill: 'none',
        stroke: color,
        'stroke-width': 1.6,
        'stroke-dasharray': dash,
        'data-series': id,
      }),
    );
  };
  line(
    report.contiguous.series.map((p) => ({ step: p.step, v: p.reserved })),
    '#e03131',
    '',
    'contiguous-reserved',
  );
  line(
    report.contiguous.series.map((p) => ({ step: p.step, v: p.used })),
    '#e03131',
    '4 3',
    'contiguous-used',
  );
  line(
    report.paged.series.map((p) => ({ step: p.step, v: p.reserved })),
    '#2f9e44',
    '',
    'paged-reserved',
  );
  line(
    report.paged.series.map((p) => ({ step: p.step, v: p.used })),
    '#2f9e44',
    '4 3',
    'paged-used',
  );
  svg.append(svgEl('line', { x1: x(step), x2: x(step), y1: pad / 2, y2: H - pad, stroke: '#3b5bdb' }));
  const legend = [
    ['contiguous reserved', '#e03131', ''],
    ['contiguous used', '#e03131', '4 3'],
    ['paged reserved', '#2f9e44', ''],
    ['paged used', '#2f9e44', '4 3'],
  ] as const;
  legend.forEach(([label, color, dash], i) => {
    const lx = pad + i * 135;
    svg.append(
      svgEl('line', {
        x1: lx,
        x2: lx + 20,
        y1: H - 8,
        y2: H - 8,
        stroke: color,
        'stroke-width': 2,
        'stroke-dasharray': dash,
      }),
    );
    const t = svgEl('text', { x: lx + 24, y: H - 4, 'font-size': 11 });
    t.textContent = label;
    svg.append(t);
  });
}

// ---- the GPU check -----------------------------------------------------------------

export interface PagedCheck {
  readonly backend: string;
  /** The paged kernel against the float64 contiguous reference. */
  readonly paged: Comparison;
  /** flash-attention's contiguous kernel against the same reference. */
  readonly contiguous: Comparison;
  /** max |paged - contiguous|. */
  readonly maxDiff: number;
  readonly pass: boolean;
  readonly copies: number;
}

/**
 * Builds a small paged cache with random keys and values for three sequences (one forked,
 * so a block is copied on write), runs paged decode attention, and runs flash-attention on
 * the same keys and values laid out contiguously.
 */
export async function runPagedCheck(choice: BackendChoice): Promise<PagedCheck> {
  const backend: Backend = await getBackend(choice);
  const [heads, kvHeads, d, blockSize] = [4, 2, 16, 4];
  const cache = new PagedKvCache(backend, { blockSize, layers: 1, kvHeads, headDim: d, numBlocks: 24 });
  const truth = new Map<number, { k: number[]; v: number[] }>();
  const rand = (n: number) => Array.from({ length: n }, () => Math.random() * 2 - 1);
  const write = async (seqId: number, slots: number[]) => {
    const k = rand(slots.length * kvHeads * d);
    const v = rand(slots.length * kvHeads * d);
    const kt = backend.tensor(k, [slots.length, kvHeads, d]);
    const vt = backend.tensor(v, [slots.length, kvHeads, d]);
    try {
      await cache.write(0, slots, kt, vt);
    } finally {
      kt.dispose();
      vt.dispose();
    }
    const rec = truth.get(seqId) ?? { k: [], v: [] };
    rec.k.push(...k);
    rec.v.push(...v);
    truth.set(seqId, rec);
  };
  const tensors: { dispose(): void }[] = [];
  try {
    let copies = 0;
    const a = await cache.add([1, 2, 3, 4, 5, 6, 7]);
    await write(a.seqId, a.slots);
    const b = await cache.add([9, 8, 7]);
    await write(b.seqId, b.slots);
    const c = cache.fork(a.seqId);
    truth.set(c, { k: [...truth.get(a.seqId)!.k], v: [...truth.get(a.seqId)!.v] });
    const grown = await cache.append(c, [10, 11]);
    copies += grown.copies.length;
    await write(c, grown.slots);
    const seqs = [a.seqId, b.seqId, c];
    const qData = rand(seqs.length * heads * d);
    const q = backend.tensor(qData, [seqs.length, heads, d]);
    tensors.push(q);
    const paged = await cache.attention(0, q, seqs);
    tensors.push(paged);
    // the contiguous layout: each sequence's keys one after another
    const lengths = seqs.map((s) => cache.length(s));
    const k = backend.tensor(
      seqs.flatMap((s) => truth.get(s)!.k),
      [lengths.reduce((x, y) => x + y, 0), kvHeads, d],
    );
    const v = backend.tensor(
      seqs.flatMap((s) => truth.get(s)!.v),
      [lengths.reduce((x, y) => x + y, 0), kvHeads, d],
    );
    tensors.push(k, v);
    const cuSeqlensK = [0];
    for (const l of lengths) cuSeqlensK.push(cuSeqlensK[cuSeqlensK.length - 1]! + l);
    const contiguous = await attentionVarlen(q, k, v, { cuSeqlensQ: [0, 1, 2, 3], cuSeqlensK });
    tensors.push(contiguous);
    const got = await paged.read();
    const want = await contiguous.read();
    const qh = { shape: [seqs.length, heads, d], data: qData };
    const keys = seqs.map((s, i) => ({ shape: [lengths[i]!, kvHeads, d], data: truth.get(s)!.k }));
    const values = seqs.map((s, i) => ({ shape: [lengths[i]!, kvHeads, d], data: truth.get(s)!.v }));
    const ref = contiguousAttentionRef(qh, keys, values);
    const ref32 = contiguousAttentionRef(qh, keys, values, { precision: 'f32' });
    const pagedCmp = compareToReference(got, ref.data, ref32.data, { atol: 1e-5 });
    const contiguousCmp = compareToReference(want, ref.data, ref32.data, { atol: 1e-5 });
    let maxDiff = 0;
    for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i]! - want[i]!));
    const pass = pagedCmp.pass && contiguousCmp.pass && maxDiff <= pagedCmp.allowed + contiguousCmp.allowed;
    return { backend: backend.name, paged: pagedCmp, contiguous: contiguousCmp, maxDiff, pass, copies };
  } finally {
    for (const t of tensors) t.dispose();
    cache.dispose();
  }
}

const fmt = (x: number) => (Number.isNaN(x) ? 'NaN' : x === 0 ? '0' : x.toExponential(2));

function mount(root: HTMLElement): () => void {
  const nSelect = h(
    'select',
    { name: 'n', 'data-testid': 'samples' },
    h('option', { value: '1', selected: true }, '1 (one answer per request)'),
    h('option', { value: '3' }, '3 parallel samples'),
  );
  const playButton = h('button', { type: 'button', class: 'run', 'data-testid': 'play' }, 'Play');
  const stepButton = h('button', { type: 'button', 'data-testid': 'step' }, 'Step');
  const resetButton = h('button', { type: 'button', 'data-testid': 'reset' }, 'Reset');
  const grid = document.createElementNS(SVG_NS, 'svg') as SVGSVGElement;
  grid.setAttribute('data-testid', 'grid');
  grid.setAttribute('class', 'chart');
  const memory = document.createElementNS(SVG_NS, 'svg') as SVGSVGElement;
  memory.setAttribute('data-testid', 'memory');
  memory.setAttribute('class', 'chart');
  const stats = h('p', { class: 'values', 'data-testid': 'stats' });
  const summary = h('p', { class: 'values', 'data-testid': 'summary' });

  const backendPicker = backendSelect('gpu-backend');
  const gpuButton = h('button', { type: 'button', class: 'run', 'data-testid': 'gpu-run' }, 'Run on GPU');
  const gpuPanel = runPanel('Checks that paged decode attention equals contiguous attention.', 'gpu-');
  const { status: gpuStatus, result: gpuResult } = gpuPanel;

  root.append(
    h('h1', {}, 'Paged KV cache'),
    h('p', { class: 'package' }, '@longseq/paged-kv'),
    h(
      'p',
      { class: 'explainer' },
      'A language model keeps the keys and values (KV) of every token it has seen. Reserving room for a ' +
        "request's longest possible answer up front wastes most of that memory, because most answers are short. " +
        'PagedAttention stores the KV in small fixed-size blocks, like pages of virtual memory: a block is taken ' +
        "only when the previous one is full, a block table maps each sequence's logical blocks to physical ones, " +
        'and sequences that share a prefix (parallel samples, beams) share its blocks until one of them writes ' +
        'into a shared, partly filled block, which is then copied (copy-on-write). Below, requests of a synthetic ' +
        'chat trace arrive and are served under a budget of 64 blocks of 4 tokens. Each cell is a block: colour = ' +
        'request, bright slots hold tokens, a dark outline with ×k means k sequences share it, orange means it was ' +
        'just copied on write, grey means cached for reuse.',
    ),
    h(
      'form',
      { class: 'controls' },
      h('label', { class: 'field' }, h('span', {}, 'Samples per request'), nSelect),
      playButton,
      stepButton,
      resetButton,
    ),
    grid,
    stats,
    h('h2', {}, 'Memory: paged against contiguous reservation'),
    memory,
    summary,
    h('h2', {}, 'Run on the GPU'),
    h(
      'p',
      { class: 'explainer' },
      'Three sequences in a paged cache (one forked and extended, so a block is copied on write); paged decode attention reads them through the block tables, and flash-attention reads the same keys and values laid out contiguously. Both are checked against a float64 reference.',
    ),
    h('form', { class: 'controls' }, field('Backend', backendPicker), gpuButton),
    gpuStatus,
    gpuResult,
  );

  let scenario = makeScenario(1, 7);
  let replay = new Replay(scenario, 7);
  let timer: ReturnType<typeof setInterval> | undefined;

  const render = () => {
    drawGrid(grid, replay);
    drawMemory(memory, scenario.report, replay.step);
    const m = replay.manager;
    const running = replay.scheduler.runningSequences;
    stats.dataset.step = String(replay.step);
    stats.dataset.done = String(replay.done);
    stats.dataset.shared = String(
      Array.from({ length: m.numBlocks }, (_, b) => m.device.refcount(b)).filter((r) => r > 1).length,
    );
    stats.textContent = `step ${replay.step}: ${running} sequences running, ${replay.scheduler.numWaiting} waiting; blocks in use ${m.device.numReferenced} / ${m.numBlocks}, in the prefix cache ${m.device.numCached}; copies on write this step: ${replay.copies.length}; preemptions so far: ${replay.preempted}`;
    const { contiguous: c, paged: p } = scenario.report;
    summary.dataset.pagedWaste = String(p.wastePct);
    summary.dataset.contiguousWaste = String(c.wastePct);
    summary.dataset.gain = String(scenario.report.concurrencyGain);
    summary.textContent = `Over the whole trace: KV reserved but unused ${p.wastePct.toFixed(1)}% paged vs ${c.wastePct.toFixed(1)}% contiguous; at most ${p.maxConcurrent} sequences at once paged vs ${c.maxConcurrent} contiguous; finished in ${p.steps} vs ${c.steps} steps${p.sharingSavedPct > 0 ? `; sharing saved ${p.sharingSavedPct.toFixed(0)}% of the blocks` : ''}.`;
  };
  const stop = () => {
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
    playButton.textContent = 'Play';
  };
  const reset = () => {
    stop();
    const seed = 7;
    scenario = makeScenario(Number(nSelect.value), seed);
    replay = new Replay(scenario, seed);
    render();
  };
  stepButton.addEventListener('click', () => {
    if (!replay.done) replay.advance();
    render();
  });
  playButton.addEventListener('click', () => {
    if (timer !== undefined) return stop();
    playButton.textContent = 'Pause';
    timer = setInterval(() => {
      if (replay.done) return stop();
      replay.advance();
      render();
    }, 120);
  });
  resetButton.addEventListener('click', reset);
  nSelect.addEventListener('change', reset);

  gpuButton.addEventListener('click', async () => {
    gpuResult.hidden = true;
    await gpuPanel.run(
      gpuButton,
      `Running on ${backendPicker.value}…`,
      async () => {
        const r = await runPagedCheck(backendPicker.value as BackendChoice);
        gpuResult.dataset.pass = String(r.pass);
        gpuResult.dataset.maxError = String(r.paged.maxError);
        gpuResult.dataset.maxDiff = String(r.maxDiff);
        gpuResult.dataset.backend = r.backend;
        gpuResult.hidden = false;
        gpuResult.replaceChildren(
          verdict(
            r.pass,
            'paged decode attention equals contiguous attention (flash-attention) within the test rule',
            'gpu-verdict',
          ),
          h(
            'dl',
            { class: 'stats' },
            h('dt', {}, 'paged: max error vs float64'),
            h('dd', {}, `${fmt(r.paged.maxError)} (allowed ${fmt(r.paged.allowed)})`),
            h('dt', {}, 'contiguous: max error vs float64'),
            h('dd', {}, `${fmt(r.contiguous.maxError)} (allowed ${fmt(r.contiguous.allowed)})`),
            h('dt', {}, 'max |paged − contiguous|'),
            h('dd', {}, fmt(r.maxDiff)),
            h('dt', {}, 'blocks copied on write'),
            h('dd', {}, String(r.copies)),
          ),
        );
        return `Done on ${r.backend}.`;
      },
      `Failed on ${backendPicker.value}.`,
    );
  });

  render();
  root.dataset.ready = 'true';
  return stop;
}

export const pagedKvPage: Page = {
  route: 'paged-kv',
  title: 'Paged KV',
  packageName: '@longseq/paged-kv',
  mount,
};
