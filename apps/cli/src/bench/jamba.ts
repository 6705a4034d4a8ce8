/**
 * `longseq bench jamba`: a Jamba model with seeded random weights (JambaModel.fromRandom) of the
 * shape of issue 9 (width 1024, 8 layers with one attention layer, 16 experts top-2 on every
 * other layer, 8 heads of 128 with 2 KV heads, intermediate 3584 = Jamba's 14336 / 4096 ratio,
 * vocab 65536), timed on a backend:
 * - prefill: `forward([prompt], { lastOnly: true })` over one prompt of --prefill tokens, the
 *   logits read back; tokens per second;
 * - decode at each batch: greedy `generate(prompts, { maxNewTokens: N })` minus the same call
 *   with one new token, over N - 1 tokens (prefill and first token cancel): the cached step's
 *   tokens per second, counting every sequence of the batch;
 * - a check that greedy decoding through the hybrid cache chooses the same ids as recomputing
 *   the whole sequence every step (`useCache: false`) for a few tokens.
 *
 * `--torch FILE` puts the numbers of reference/torch_jamba.py (transformers' JambaForCausalLM
 * without the Mamba CUDA kernels, float32, same shape, run on the same GPU) beside them.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Backend } from '@longseq/backend';
import { type JambaConfig, JambaModel, jambaConfig } from '@longseq/jamba';
import { boolFlag, intFlag, intListFlag, parseFlags, stringFlag } from '../args';
import { type BackendName, createBackend, describeAdapter, parseBackends } from '../backends';
import { UsageError } from '../errors';
import { table } from '../format';
import type { Io } from '../io';
import { machineInfo } from '../machine';
import { median } from './measure';
import { adapterName, finishBench, withProgress } from './report';

export interface JambaBenchConfig {
  readonly backend: BackendName;
  readonly hidden: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly intermediate: number;
  readonly experts: number;
  readonly topK: number;
  readonly vocab: number;
  readonly attnPeriod: number;
  readonly attnOffset: number;
  readonly dState: number;
  /** Prompt length of the prefill measurement (batch 1). */
  readonly prefill: number;
  /** Prompt length before decoding. */
  readonly prompt: number;
  /** New tokens per decode measurement. */
  readonly tokens: number;
  readonly batches: readonly number[];
  readonly repeats: number;
  readonly prefillRepeats: number;
  readonly warmup: number;
  readonly seed: number;
  /** Decode path of JambaModel: 'auto' (fused WebGPU kernels where the backend has them) or 'composed'. */
  readonly path: 'auto' | 'composed';
}

export const JAMBA_BENCH_DEFAULTS: Omit<JambaBenchConfig, 'backend'> = {
  hidden: 1024,
  layers: 8,
  heads: 8,
  kvHeads: 2,
  intermediate: 3584,
  experts: 16,
  topK: 2,
  vocab: 65536,
  attnPeriod: 8,
  attnOffset: 4,
  dState: 16,
  prefill: 4096,
  prompt: 64,
  tokens: 32,
  batches: [1, 16],
  repeats: 3,
  prefillRepeats: 3,
  warmup: 1,
  seed: 1234,
  path: 'auto',
};

export interface TorchJambaReport {
  readonly device?: string;
  readonly torch?: string;
  readonly transformers?: string;
  readonly implementation?: string;
  readonly parameters?: number;
  readonly prefill?: { readonly tokens: number; readonly ms: number; readonly tokens_per_s: number };
  readonly decode?: readonly {
    readonly batch: number;
    readonly ms_per_token: number;
    readonly tokens_per_s: number;
  }[];
}

export interface JambaBenchReport {
  readonly backend: string;
  readonly adapter?: Record<string, string>;
  readonly model: JambaConfig;
  readonly parameters: number;
  readonly prefill: {
    readonly tokens: number;
    readonly ms: number;
    readonly tokensPerS: number;
    readonly samplesMs: number[];
  };
  readonly decode: {
    readonly batch: number;
    readonly msPerToken: number;
    readonly tokensPerS: number;
    readonly generate1Ms: number;
    readonly generateNMs: number;
    /** WebGPU: compute dispatches and queue submits per decode step (the N-token run minus the 1-token run, over N - 1). */
    readonly dispatchesPerStep?: number;
    readonly submitsPerStep?: number;
  }[];
  /** Greedy ids through the cache equal those of recomputing every step (batch 1, a few tokens). */
  readonly cacheMatchesRecompute: boolean;
  readonly torch?: TorchJambaReport;
}

export function benchModelConfig(c: Omit<JambaBenchConfig, 'backend'>): JambaConfig {
  return jambaConfig({
    dModel: c.hidden,
    nLayer: c.layers,
    numHeads: c.heads,
    numKvHeads: c.kvHeads,
    headDim: c.hidden / c.heads,
    intermediateSize: c.intermediate,
    numExperts: c.experts,
    topK: c.topK,
    vocabSize: c.vocab,
    attnLayerPeriod: c.attnPeriod,
    attnLayerOffset: c.attnOffset,
    expertLayerPeriod: 2,
    expertLayerOffset: 1,
    dState: c.dState,
  });
}

/** Parameters of a Jamba model of this config (every expert counted). */
export function jambaParameterCount(c: JambaConfig): number {
  const { dModel: M, dInner: D, dState: N, dConv: K, dtRank: R, vocabSize: V, intermediateSize: F } = c;
  const mamba =
    2 * D * M + D * K + (c.convBias ? D : 0) + (R + 2 * N) * D + R + 2 * N + D * R + D + D * N + D + M * D;
  const attention = M * c.numHeads * c.headDim * 2 + M * c.numKvHeads * c.headDim * 2;
  let total = V * M * (c.tieWordEmbeddings ? 1 : 2) + M;
  c.layerTypes.forEach((type, l) => {
    const experts = c.layerExperts[l]!;
    total += 2 * M + (type === 'attention' ? attention : mamba);
    total += experts * 3 * M * F + (experts > 1 ? experts * M : 0);
  });
  return total;
}

export function countJambaSteps(config: JambaBenchConfig): number {
  return (
    2 + config.warmup + config.prefillRepeats + config.batches.length * (config.warmup + 2 * config.repeats)
  );
}

export async function benchJamba(
  config: JambaBenchConfig,
  onStep: (label: string) => void = () => {},
): Promise<JambaBenchReport> {
  const modelConfig = benchModelConfig(config);
  const backend: Backend = await createBackend(config.backend);
  try {
    const model = JambaModel.fromRandom(backend, modelConfig, config.seed);
    model.decodePath = config.path;
    onStep('weights');
    try {
      return await run(backend, model, config, onStep);
    } finally {
      model.dispose();
    }
  } finally {
    backend.dispose();
  }
}

async function run(
  backend: Backend,
  model: JambaModel,
  config: JambaBenchConfig,
  onStep: (label: string) => void,
): Promise<JambaBenchReport> {
  const c = model.config;
  let seed = config.seed >>> 0;
  const nextId = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed % c.vocabSize;
  };
  const prompts = (batch: number, length: number) =>
    Array.from({ length: batch }, () => Array.from({ length }, nextId));

  // The cached path against recomputation, on a short prompt: the same greedy ids.
  const checkPrompt = prompts(1, Math.min(config.prompt, 32));
  const checkTokens = Math.min(config.tokens, 4);
  const cached = await model.generate(checkPrompt, { maxNewTokens: checkTokens });
  const recomputed = await model.generate(checkPrompt, { maxNewTokens: checkTokens, useCache: false });
  const cacheMatchesRecompute = cached.ids[0]!.join(',') === recomputed.ids[0]!.join(',');
  onStep('check');

  const long = prompts(1, config.prefill);
  const prefillSamples: number[] = [];
  for (let i = 0; i < config.warmup + config.prefillRepeats; i++) {
    await backend.sync();
    const start = performance.now();
    const { logits } = await model.forward(long, { lastOnly: true });
    await logits.read();
    const ms = performance.now() - start;
    logits.dispose();
    if (i >= config.warmup) prefillSamples.push(ms);
    onStep(`prefill ${i + 1}/${config.warmup + config.prefillRepeats}`);
  }
  const prefillMs = median(prefillSamples);

  const decode: JambaBenchReport['decode'] = [];
  for (const batch of config.batches) {
    const p = prompts(batch, config.prompt);
    const counted: Record<number, { dispatches: number; submits: number }> = {};
    const time = async (n: number) => {
      await backend.sync();
      const before = stats(backend);
      const start = performance.now();
      const out = await model.generate(p, { maxNewTokens: n });
      const ms = performance.now() - start;
      const after = stats(backend);
      if (before && after)
        counted[n] = {
          dispatches: after.dispatches - before.dispatches,
          submits: after.submits - before.submits,
        };
      if (out.ids.length !== batch || out.ids[0]!.length !== n)
        throw new Error('generate returned the wrong shape');
      return ms;
    };
    for (let i = 0; i < config.warmup; i++) {
      await time(2);
      onStep(`decode batch ${batch} warm-up`);
    }
    const ones: number[] = [];
    const manys: number[] = [];
    for (let i = 0; i < config.repeats; i++) {
      ones.push(await time(1));
      onStep(`decode batch ${batch} 1 token`);
      manys.push(await time(config.tokens));
      onStep(`decode batch ${batch} ${config.tokens} tokens`);
    }
    const one = median(ones);
    const many = median(manys);
    const msPerToken = (many - one) / (config.tokens - 1);
    const perStep = (key: 'dispatches' | 'submits') =>
      counted[1] && counted[config.tokens]
        ? (counted[config.tokens]![key] - counted[1]![key]) / (config.tokens - 1)
        : undefined;
    const dispatchesPerStep = perStep('dispatches');
    const submitsPerStep = perStep('submits');
    decode.push({
      ...(dispatchesPerStep === undefined ? {} : { dispatchesPerStep }),
      ...(submitsPerStep === undefined ? {} : { submitsPerStep }),
      batch,
      msPerToken,
      tokensPerS: (1000 * batch) / msPerToken,
      generate1Ms: one,
      generateNMs: many,
    });
  }
  const adapter = describeAdapter(backend);
  return {
    backend: config.backend,
    ...(adapter ? { adapter } : {}),
    model: c,
    parameters: jambaParameterCount(c),
    prefill: {
      tokens: config.prefill,
      ms: prefillMs,
      tokensPerS: (1000 * config.prefill) / prefillMs,
      samplesMs: prefillSamples,
    },
    decode,
    cacheMatchesRecompute,
  };
}

/** The WebGPU backend's dispatch and submit counters, where the backend has them. */
function stats(backend: Backend): { dispatches: number; submits: number } | undefined {
  const read = (backend as { stats?: () => { dispatches: number; submits: number } }).stats;
  return read ? read.call(backend) : undefined;
}

const ratio = (ours: number, theirs: number | undefined) =>
  theirs === undefined ? '' : `${(ours / theirs).toFixed(2)}x`;

export function renderJambaBench(report: JambaBenchReport, config: JambaBenchConfig): string {
  const m = report.model;
  const layers = m.layerTypes.map(
    (t, l) => `${t === 'attention' ? 'A' : 'M'}${m.layerExperts[l]! > 1 ? '+E' : ''}`,
  );
  const t = report.torch;
  const rows: string[][] = [
    [
      `prefill ${report.prefill.tokens}`,
      '1',
      report.prefill.tokensPerS.toFixed(0),
      report.prefill.ms.toFixed(1),
      t?.prefill ? t.prefill.tokens_per_s.toFixed(0) : '',
      ratio(report.prefill.tokensPerS, t?.prefill?.tokens_per_s),
      '',
    ],
  ];
  for (const d of report.decode) {
    const td = t?.decode?.find((x) => x.batch === d.batch);
    rows.push([
      `decode (prompt ${config.prompt}, ${config.tokens} new)`,
      String(d.batch),
      d.tokensPerS.toFixed(1),
      d.msPerToken.toFixed(2),
      td ? td.tokens_per_s.toFixed(1) : '',
      ratio(d.tokensPerS, td?.tokens_per_s),
      d.dispatchesPerStep === undefined
        ? ''
        : `${d.dispatchesPerStep.toFixed(0)} / ${d.submitsPerStep!.toFixed(0)}`,
    ]);
  }
  const lines = [
    `Jamba, random weights: width ${m.dModel}, ${m.nLayer} layers [${layers.join(' ')}] (A attention, M Mamba, +E ${m.numExperts} experts top-${m.topK}),`,
    `${m.numHeads} heads / ${m.numKvHeads} KV heads of ${m.headDim}, intermediate ${m.intermediateSize}, vocab ${m.vocabSize}; ${(report.parameters / 1e6).toFixed(0)}M parameters, f32`,
    `${report.backend} on ${adapterName(report.adapter)}, decode path ${config.path}; medians of ${config.repeats} (prefill ${config.prefillRepeats})`,
    `greedy ids through the hybrid cache ${report.cacheMatchesRecompute ? 'equal' : 'DIFFER FROM'} recomputing every step`,
    '',
    table(
      [
        'measure',
        ' batch',
        ' tokens/s',
        ' ms (per token)',
        ' torch tokens/s',
        ' vs torch',
        ' dispatches/submits per step',
      ],
      rows,
    ),
  ];
  if (t)
    lines.push(
      '',
      `torch: ${t.implementation ?? 'transformers JambaForCausalLM'}; torch ${t.torch ?? '?'}, transformers ${t.transformers ?? '?'} on ${t.device ?? '?'} (reference/torch_jamba.py)`,
    );
  return lines.join('\n');
}

function pathFlag(value: string | undefined): 'auto' | 'composed' {
  if (value === undefined) return 'auto';
  if (value !== 'auto' && value !== 'composed')
    throw new UsageError(`--path: expected auto or composed, got '${value}'`);
  return value;
}

export async function benchJambaCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(
    args,
    {
      backend: { type: 'string' },
      hidden: { type: 'string' },
      layers: { type: 'string' },
      heads: { type: 'string' },
      'kv-heads': { type: 'string' },
      intermediate: { type: 'string' },
      experts: { type: 'string' },
      'top-k': { type: 'string' },
      vocab: { type: 'string' },
      'attn-period': { type: 'string' },
      'attn-offset': { type: 'string' },
      'd-state': { type: 'string' },
      prefill: { type: 'string' },
      prompt: { type: 'string' },
      tokens: { type: 'string' },
      batches: { type: 'string' },
      repeats: { type: 'string' },
      'prefill-repeats': { type: 'string' },
      warmup: { type: 'string' },
      seed: { type: 'string' },
      path: { type: 'string' },
      torch: { type: 'string' },
      json: { type: 'boolean' },
    },
    'bench jamba',
  );
  if (p.positionals.length > 0)
    throw new UsageError(`bench jamba: unexpected argument '${p.positionals[0]}'`);
  const d = JAMBA_BENCH_DEFAULTS;
  const backends = parseBackends(stringFlag(p, 'backend'), ['webgpu']);
  if (backends.length !== 1) throw new UsageError('bench jamba: --backend takes one backend');
  const config: JambaBenchConfig = {
    backend: backends[0]!,
    hidden: intFlag(p, 'hidden', d.hidden),
    layers: intFlag(p, 'layers', d.layers),
    heads: intFlag(p, 'heads', d.heads),
    kvHeads: intFlag(p, 'kv-heads', d.kvHeads),
    intermediate: intFlag(p, 'intermediate', d.intermediate),
    experts: intFlag(p, 'experts', d.experts),
    topK: intFlag(p, 'top-k', d.topK),
    vocab: intFlag(p, 'vocab', d.vocab),
    attnPeriod: intFlag(p, 'attn-period', d.attnPeriod),
    attnOffset: intFlag(p, 'attn-offset', d.attnOffset, 0),
    dState: intFlag(p, 'd-state', d.dState),
    prefill: intFlag(p, 'prefill', d.prefill),
    prompt: intFlag(p, 'prompt', d.prompt),
    tokens: intFlag(p, 'tokens', d.tokens, 2),
    batches: intListFlag(p, 'batches', [...d.batches]),
    repeats: intFlag(p, 'repeats', d.repeats),
    prefillRepeats: intFlag(p, 'prefill-repeats', d.prefillRepeats),
    warmup: intFlag(p, 'warmup', d.warmup, 0),
    seed: intFlag(p, 'seed', d.seed, 0),
    path: pathFlag(stringFlag(p, 'path')),
  };
  benchModelConfig(config); // a ConfigError naming the field before any GPU work
  let torch: TorchJambaReport | undefined;
  const torchFile = stringFlag(p, 'torch');
  if (torchFile !== undefined) {
    try {
      torch = JSON.parse(await readFile(path.resolve(io.cwd ?? process.cwd(), torchFile), 'utf8'));
    } catch (err) {
      throw new UsageError(`--torch: cannot read ${torchFile}: ${err instanceof Error ? err.message : err}`);
    }
  }
  const report = await withProgress(io, countJambaSteps(config), (tick) => benchJamba(config, tick));
  const full: JambaBenchReport = torch ? { ...report, torch } : report;
  return finishBench(io, {
    name: 'jamba',
    machine: machineInfo(report.adapter),
    json: boolFlag(p, 'json'),
    doc: { config, ...full },
    table: () => renderJambaBench(full, config),
    failed: report.cacheMatchesRecompute ? 0 : 1,
  });
}
