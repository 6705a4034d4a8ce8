/**
 * The Mamba decode benchmark: a model of Mamba-130m's shape (d_model 768, 24 layers, vocab
 * 50280, d_state 16, expand 2, d_conv 4) with seeded random weights built from the config
 * (no checkpoint), timed on a backend:
 * - prefill: `forward(prompt)` over the whole prompt (the scan form), tokens per second;
 * - decode: tokens per second of greedy decoding after the prompt, each token one
 *   `stepGreedy()` (O(1) per token; the fused path takes the argmax on the GPU and reads back
 *   one id, the composed path reads the logits and takes it on the host), as `generate` does;
 *   the same steps without the readback (the device's own rate); and the GPU's kernel time;
 * for each decode path ('fused' WebGPU kernels, 'composed' primitive ops).
 *
 * Decoding reads every weight once per token, so the effective bandwidth (weight bytes per
 * token / time) says how close a path is to the memory bound; the gap to it is dispatch and
 * host overhead.
 */
import type { Backend } from '@longseq/backend';
import { type MambaConfig, MambaModel, argmax, mambaConfig, randomReader } from '@longseq/mamba';
import { boolFlag, intFlag, parseFlags, stringFlag } from '../args';
import { type BackendName, createBackend, describeAdapter, parseBackends } from '../backends';
import { UsageError } from '../errors';
import { median } from './measure';
import { table } from '../format';
import type { Io } from '../io';
import { machineInfo } from '../machine';
import { finishBench, withProgress } from './report';

export interface MambaDecodeConfig {
  readonly backend: BackendName;
  readonly dModel: number;
  readonly layers: number;
  readonly vocab: number;
  readonly dState: number;
  readonly batch: number;
  /** Prompt length for prefill. */
  readonly prompt: number;
  /** Decoded tokens per measurement. */
  readonly tokens: number;
  readonly repeats: number;
  readonly warmup: number;
  readonly seed: number;
  readonly paths: readonly ('fused' | 'composed')[];
  /** Fused decode: threads per matrix row (0 = chosen for the device). */
  readonly lanes: number;
}

export interface MambaDecodeResult {
  readonly path: 'fused' | 'composed';
  /** Median decode tokens per second (all sequences of the batch), readback and argmax included. */
  readonly decodeTokensPerS: number;
  readonly decodeMsPerToken: number;
  /** Steps queued back to back with one sync at the end: the device's own rate. */
  readonly deviceOnlyMsPerToken: number;
  /** Weight bytes read per token / deviceOnlyMsPerToken. */
  readonly effectiveGBps: number;
  /**
   * The GPU's own time per token: the compute passes' durations summed (timestamp queries;
   * WebGPU with 'timestamp-query' only). device-only minus this is the host's recording and
   * submission cost plus gaps between passes.
   */
  readonly gpuKernelMsPerToken?: number;
  readonly samplesMsPerToken: number[];
  /**
   * Where a token's time goes: the embedding + final norm + LM head (a model with no layers,
   * device-only), each layer ((device-only - head) / layers), and the readback of the logits
   * with the host argmax (ms/token - device-only).
   */
  readonly breakdown: { readonly headMs: number; readonly perLayerMs: number; readonly readbackMs: number };
}

export interface MambaDecodeReport {
  readonly backend: string;
  readonly adapter?: Record<string, string>;
  readonly model: MambaConfig;
  readonly parameters: number;
  /** f32 bytes of the weights one decode step reads. */
  readonly weightBytesPerToken: number;
  readonly prefill: {
    readonly tokensPerS: number;
    readonly ms: number;
    readonly samplesMs: number[];
    /** The GPU's kernel time of one prefill (timestamp queries; WebGPU only). */
    readonly gpuKernelMs?: number;
  };
  readonly decode: MambaDecodeResult[];
  /** Greedy ids of the fused and composed paths agree (the first decoded tokens). */
  readonly pathsAgree?: boolean;
}

/** Parameters of a Mamba model of this config. */
export function mambaParameterCount(c: MambaConfig): number {
  const { dModel: M, dInner: D, dState: N, dConv: K, dtRank: R, vocabSize: V } = c;
  const perLayer =
    M + // norm
    2 * D * M + // in_proj
    D * K +
    D + // conv1d weight and bias
    (R + 2 * N) * D + // x_proj
    D * R +
    D + // dt_proj weight and bias
    D * N + // A_log
    D + // D
    M * D + // out_proj
    (c.useBias ? 2 * D + M : 0);
  return V * M + c.nLayer * perLayer + M + (c.tieWordEmbeddings ? 0 : V * M);
}

export async function benchMambaDecode(
  config: MambaDecodeConfig,
  onStep: (label: string) => void = () => {},
): Promise<MambaDecodeReport> {
  const model = mambaConfig({
    dModel: config.dModel,
    nLayer: config.layers,
    vocabSize: config.vocab,
    dState: config.dState,
  });
  const backend: Backend = await createBackend(config.backend);
  try {
    const mamba = MambaModel.fromReader(backend, model, randomReader(model, config.seed));
    mamba.decodeLanes = config.lanes;
    try {
      return await run(backend, mamba, config, onStep);
    } finally {
      mamba.dispose();
    }
  } finally {
    backend.dispose();
  }
}

async function run(
  backend: Backend,
  mamba: MambaModel,
  config: MambaDecodeConfig,
  onStep: (label: string) => void,
): Promise<MambaDecodeReport> {
  const c = mamba.config;
  let seed = config.seed >>> 0;
  const nextId = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed % c.vocabSize;
  };
  const prompt = Array.from({ length: config.batch }, () => Array.from({ length: config.prompt }, nextId));

  // WebGPU's timer (timestamp queries around each compute pass), where the backend has one.
  const timing = (backend as { time?: (fn: () => unknown) => Promise<{ gpuMs?: number }> }).time;
  const timer = timing ? (fn: () => unknown) => timing.call(backend, fn) : undefined;

  // Prefill: forward over the prompt, the state returned and the last position's logits read
  // (what generate does).
  const prefillSamples: number[] = [];
  for (let i = 0; i < config.warmup + config.repeats; i++) {
    const start = performance.now();
    const { logits, state } = await mamba.forward(prompt, { returnState: true, lastOnly: true });
    await logits.read();
    const ms = performance.now() - start;
    logits.dispose();
    state!.dispose();
    if (i >= config.warmup) prefillSamples.push(ms);
    onStep(`prefill ${i + 1}/${config.warmup + config.repeats}`);
  }
  const prefillMs = median(prefillSamples);
  // The prefill's GPU kernel time alone (timestamp queries): the rest of its wall time is the
  // host recording and submitting ~12 dispatches per layer, and allocation.
  let prefillGpuMs: number | undefined;
  if (timer) {
    const timed = await timer(async () => {
      const { logits, state } = await mamba.forward(prompt, { returnState: true, lastOnly: true });
      await logits.read();
      logits.dispose();
      state!.dispose();
    });
    prefillGpuMs = timed.gpuMs;
  }

  // The same model without layers: embedding, final norm and LM head only.
  const headOnly = MambaModel.fromReader(
    backend,
    { ...c, nLayer: 0 },
    randomReader({ ...c, nLayer: 0 }, config.seed),
  );
  const decode: MambaDecodeResult[] = [];
  const firstIds: number[][] = [];
  try {
    for (const path of config.paths) {
      if (path === 'fused' && backend.kind !== 'webgpu') continue;
      mamba.decodePath = path === 'fused' ? 'auto' : 'composed';
      const samples: number[] = [];
      const deviceSamples: number[] = [];
      const gpuSamples: number[] = [];
      for (let i = 0; i < config.warmup + config.repeats; i++) {
        const { logits, state } = await mamba.forward(prompt, { returnState: true, lastOnly: true });
        const all = await logits.read();
        logits.dispose();
        let ids = prompt.map((_, b) => argmax(all, b * c.vocabSize, (b + 1) * c.vocabSize));
        const chosen: number[] = [];
        // Greedy decoding as generate does it: stepGreedy (the fused path takes the argmax on
        // the GPU and reads back one id per sequence; the composed path reads the logits and
        // takes it on the host).
        await backend.sync();
        let start = performance.now();
        for (let t = 0; t < config.tokens; t++) {
          ids = await mamba.stepGreedy(ids, state!);
          chosen.push(ids[0]!);
        }
        const perToken = (performance.now() - start) / config.tokens;
        // The same number of steps queued without readback: one sync at the end.
        start = performance.now();
        for (let t = 0; t < config.tokens; t++) (await mamba.step(ids, state!)).dispose();
        await backend.sync();
        const devicePerToken = (performance.now() - start) / config.tokens;
        // Again, timed by the GPU's timestamps: the summed time of the compute passes (the
        // kernels alone, without the host's recording and submission).
        if (timer) {
          const timed = await timer(async () => {
            for (let t = 0; t < config.tokens; t++) (await mamba.step(ids, state!)).dispose();
          });
          if (timed.gpuMs !== undefined && i >= config.warmup) gpuSamples.push(timed.gpuMs / config.tokens);
        }
        state!.dispose();
        if (i >= config.warmup) {
          samples.push(perToken);
          deviceSamples.push(devicePerToken);
        }
        if (i === 0) firstIds.push(chosen);
        onStep(`decode ${path} ${i + 1}/${config.warmup + config.repeats}`);
      }
      const ms = median(samples);
      const deviceMs = median(deviceSamples);
      headOnly.decodePath = mamba.decodePath;
      headOnly.decodeLanes = mamba.decodeLanes;
      const headSamples: number[] = [];
      for (let i = 0; i < config.warmup + config.repeats; i++) {
        const state = headOnly.createState(config.batch);
        const ids = prompt.map((row) => row[0]!);
        const start = performance.now();
        for (let t = 0; t < config.tokens; t++) (await headOnly.step(ids, state)).dispose();
        await backend.sync();
        if (i >= config.warmup) headSamples.push((performance.now() - start) / config.tokens);
        state.dispose();
      }
      const headMs = median(headSamples);
      decode.push({
        path,
        decodeTokensPerS: (1000 * config.batch) / ms,
        decodeMsPerToken: ms,
        deviceOnlyMsPerToken: deviceMs,
        effectiveGBps: weightBytes(c) / deviceMs / 1e6,
        ...(gpuSamples.length > 0 ? { gpuKernelMsPerToken: median(gpuSamples) } : {}),
        samplesMsPerToken: samples,
        breakdown: {
          headMs,
          perLayerMs: Math.max(0, deviceMs - headMs) / c.nLayer,
          readbackMs: Math.max(0, ms - deviceMs),
        },
      });
    }
  } finally {
    headOnly.dispose();
  }
  mamba.decodePath = 'auto';
  return {
    backend: backend.name,
    ...(describeAdapter(backend) ? { adapter: describeAdapter(backend)! } : {}),
    model: c,
    parameters: mambaParameterCount(c),
    weightBytesPerToken: weightBytes(c),
    prefill: {
      tokensPerS: (1000 * config.batch * config.prompt) / prefillMs,
      ms: prefillMs,
      samplesMs: prefillSamples,
      ...(prefillGpuMs !== undefined ? { gpuKernelMs: prefillGpuMs } : {}),
    },
    decode,
    ...(firstIds.length === 2 ? { pathsAgree: firstIds[0]!.join() === firstIds[1]!.join() } : {}),
  };
}

/** f32 bytes of the weights a decode step reads (every parameter once; the embedding row is negligible). */
function weightBytes(c: MambaConfig): number {
  return 4 * mambaParameterCount(c);
}

/** Mamba-130m's shape, with prompt and token counts small enough for SwiftShader to finish. */
const DEFAULTS = {
  dModel: 768,
  layers: 24,
  vocab: 50280,
  dState: 16,
  batch: 1,
  prompt: 64,
  tokens: 16,
  repeats: 3,
  warmup: 1,
  seed: 1234,
};

/** `longseq bench mamba-decode [...]`. */
export async function benchMambaDecodeCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(
    args,
    {
      backend: { type: 'string' },
      'd-model': { type: 'string' },
      layers: { type: 'string' },
      vocab: { type: 'string' },
      'd-state': { type: 'string' },
      batch: { type: 'string' },
      prompt: { type: 'string' },
      tokens: { type: 'string' },
      repeats: { type: 'string' },
      warmup: { type: 'string' },
      seed: { type: 'string' },
      path: { type: 'string' },
      lanes: { type: 'string' },
      json: { type: 'boolean' },
    },
    'bench mamba-decode',
  );
  if (p.positionals.length > 0)
    throw new UsageError(`bench mamba-decode: unexpected argument '${p.positionals[0]}'`);
  const backends = parseBackends(stringFlag(p, 'backend'), ['webgpu']);
  if (backends.length !== 1) throw new UsageError('bench mamba-decode: --backend takes one backend');
  const pathFlag = stringFlag(p, 'path') ?? 'both';
  if (!['fused', 'composed', 'both'].includes(pathFlag)) {
    throw new UsageError(`--path: expected fused, composed or both, got '${pathFlag}'`);
  }
  const config: MambaDecodeConfig = {
    backend: backends[0]!,
    dModel: intFlag(p, 'd-model', DEFAULTS.dModel),
    layers: intFlag(p, 'layers', DEFAULTS.layers),
    vocab: intFlag(p, 'vocab', DEFAULTS.vocab),
    dState: intFlag(p, 'd-state', DEFAULTS.dState),
    batch: intFlag(p, 'batch', DEFAULTS.batch),
    prompt: intFlag(p, 'prompt', DEFAULTS.prompt),
    tokens: intFlag(p, 'tokens', DEFAULTS.tokens),
    repeats: intFlag(p, 'repeats', DEFAULTS.repeats),
    warmup: intFlag(p, 'warmup', DEFAULTS.warmup, 0),
    seed: intFlag(p, 'seed', DEFAULTS.seed, 0),
    paths: pathFlag === 'both' ? ['fused', 'composed'] : [pathFlag as 'fused' | 'composed'],
    lanes: intFlag(p, 'lanes', 0, 0),
  };
  if (
    config.lanes !== 0 &&
    (config.lanes < 8 || config.lanes > 256 || (config.lanes & (config.lanes - 1)) !== 0)
  ) {
    throw new UsageError(`--lanes: expected 0 (auto) or a power of two from 8 to 256, got ${config.lanes}`);
  }
  const steps = (config.warmup + config.repeats) * (1 + config.paths.length);
  const report: MambaDecodeReport = await withProgress(io, steps, (tick) => benchMambaDecode(config, tick));
  return finishBench(io, {
    name: 'mamba-decode',
    machine: machineInfo(report.adapter),
    json: boolFlag(p, 'json'),
    doc: { config, ...report },
    table: () => renderTable(report, config),
    failed: 0,
  });
}

function renderTable(report: MambaDecodeReport, config: MambaDecodeConfig): string {
  const c = report.model;
  const lines = [
    `mamba-decode on ${report.backend}: d_model ${c.dModel}, ${c.nLayer} layers, vocab ${c.vocabSize}, d_state ${c.dState}, d_inner ${c.dInner}, dt_rank ${c.dtRank} (${(report.parameters / 1e6).toFixed(1)}M parameters, random weights); batch ${config.batch}`,
    `prefill: ${config.prompt} tokens in ${report.prefill.ms.toFixed(1)} ms = ${report.prefill.tokensPerS.toFixed(0)} tokens/s (median of ${config.repeats})${report.prefill.gpuKernelMs === undefined ? '' : `; GPU kernels ${report.prefill.gpuKernelMs.toFixed(1)} ms`}`,
    `decode: ${config.tokens} greedy tokens after the prompt; ms/token with the next token chosen and read back, device-only (steps queued, one sync), and GPU kernel time`,
    '',
    table(
      [
        'path',
        ' tokens/s',
        ' ms/token',
        ' device ms/token',
        ' weight GB/s',
        ' GPU kernel ms',
        ' head ms',
        ' ms/layer',
        ' readback ms',
      ],
      report.decode.map((d) => [
        d.path,
        d.decodeTokensPerS.toFixed(1),
        d.decodeMsPerToken.toFixed(3),
        d.deviceOnlyMsPerToken.toFixed(3),
        d.effectiveGBps.toFixed(1),
        d.gpuKernelMsPerToken === undefined ? '-' : d.gpuKernelMsPerToken.toFixed(3),
        d.breakdown.headMs.toFixed(3),
        d.breakdown.perLayerMs.toFixed(3),
        d.breakdown.readbackMs.toFixed(3),
      ]),
    ),
    '',
    'head = embedding + final norm + LM head (a model without layers); ms/layer = (device - head) / layers;',
    'readback = choosing the token (fused: GPU argmax, one id read back; composed: logits read back, host argmax) = ms/token - device ms/token;',
    'GPU kernel ms = the compute passes alone per token (timestamp queries), the rest of device ms is host recording/submission',
  ];
  if (report.pathsAgree === false)
    lines.push('note: the fused and composed paths chose different greedy ids (near-ties of random weights)');
  return lines.join('\n');
}
