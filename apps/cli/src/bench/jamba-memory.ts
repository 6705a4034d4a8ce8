/**
 * `longseq bench jamba-memory`: the cache bytes of a Jamba configuration against a Transformer
 * of the same depth and width as the context grows, from the allocator's own accounting.
 *
 * For each model, the attention layers' keys and values live in blocks of @longseq/paged-kv's
 * BlockManager (one block holds `blockSize` tokens of K and V of every attention layer); the
 * context is appended to one sequence and the bytes are the manager's referenced blocks times
 * the bytes of a block. Mamba layers add their fixed conv `[D, K-1]` and SSM `[D, N]` states
 * (the layout of @longseq/jamba's JambaCache), the same at every length. CPU only: nothing is
 * allocated on a GPU.
 *
 * Defaults: Jamba v0.1 (32 layers, width 4096, 32 heads, 8 KV heads of 128, one attention
 * layer in 8 at offset 4, Mamba N = 16, K = 4, expand 2) in bf16, against a Transformer of
 * 32 attention layers with the same 8 KV heads of 128 (Mixtral-8x7B's attention).
 */
import { jambaLayerPlan } from '@longseq/jamba';
import { BlockManager, bytesPerBlock } from '@longseq/paged-kv';
import { boolFlag, intFlag, intListFlag, parseFlags, stringFlag } from '../args';
import { UsageError } from '../errors';
import { table } from '../format';
import type { Io } from '../io';
import { machineInfo } from '../machine';
import { finishBench } from './report';
import { type PlotSeries, plotSvg } from './svg';

export interface JambaMemoryConfig {
  readonly layers: number;
  readonly hidden: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly attnPeriod: number;
  readonly attnOffset: number;
  readonly dState: number;
  readonly dConv: number;
  readonly expand: number;
  /** Bytes per element (2 for bf16). */
  readonly dtypeBytes: number;
  /** Tokens per KV block. */
  readonly blockSize: number;
  /** Context lengths, ascending. */
  readonly contexts: readonly number[];
}

export const JAMBA_V01: JambaMemoryConfig = {
  layers: 32,
  hidden: 4096,
  kvHeads: 8,
  headDim: 128,
  attnPeriod: 8,
  attnOffset: 4,
  dState: 16,
  dConv: 4,
  expand: 2,
  dtypeBytes: 2,
  blockSize: 16,
  contexts: [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144],
};

export interface JambaMemoryRow {
  readonly model: 'jamba' | 'transformer';
  readonly context: number;
  readonly attentionLayers: number;
  readonly mambaLayers: number;
  /** Bytes of one block: K and V of every attention layer for blockSize tokens. */
  readonly blockBytes: number;
  /** Blocks the BlockManager holds for the sequence (its referenced blocks). */
  readonly kvBlocks: number;
  readonly kvBytes: number;
  /** Conv + SSM states of all Mamba layers (fixed). */
  readonly stateBytes: number;
  readonly totalBytes: number;
}

export interface JambaMemoryReport {
  readonly rows: JambaMemoryRow[];
  /** Per context: transformer bytes / jamba bytes. */
  readonly ratios: { context: number; ratio: number }[];
}

/** Which layers are attention, as transformers' JambaConfig derives it; the Transformer has attention everywhere. */
export function layerKinds(config: JambaMemoryConfig, model: 'jamba' | 'transformer'): string[] {
  if (model === 'transformer') return new Array<string>(config.layers).fill('attention');
  return jambaLayerPlan({
    nLayer: config.layers,
    attnLayerPeriod: config.attnPeriod,
    attnLayerOffset: config.attnOffset,
    expertLayerPeriod: 1,
    expertLayerOffset: 0,
    numExperts: 1,
  }).layerTypes;
}

/** The cache bytes of both models at each context, appended token by token range to one sequence. */
export function jambaMemory(config: JambaMemoryConfig): JambaMemoryReport {
  const rows: JambaMemoryRow[] = [];
  const maxContext = Math.max(...config.contexts);
  for (const model of ['jamba', 'transformer'] as const) {
    const kinds = layerKinds(config, model);
    const attentionLayers = kinds.filter((k) => k === 'attention').length;
    const mambaLayers = kinds.length - attentionLayers;
    const dInner = config.expand * config.hidden;
    const stateBytes = mambaLayers * dInner * (config.dConv - 1 + config.dState) * config.dtypeBytes;
    const blockBytes =
      attentionLayers === 0
        ? 0
        : bytesPerBlock({
            blockSize: config.blockSize,
            layers: attentionLayers,
            kvHeads: config.kvHeads,
            headDim: config.headDim,
            dtypeBytes: config.dtypeBytes,
          });
    const manager = new BlockManager({
      numBlocks: Math.ceil(maxContext / config.blockSize),
      blockSize: config.blockSize,
      prefixCaching: false,
    });
    let seqId = -1;
    let length = 0;
    for (const context of config.contexts) {
      // token ids only name the content for prefix caching (off here); the text grows to `context`
      const tokens = new Array<number>(context - length).fill(0).map((_, i) => (length + i) % 65536);
      if (seqId < 0) seqId = manager.add(tokens).seqId;
      else if (tokens.length > 0) manager.append(seqId, tokens);
      length = context;
      const kvBlocks = attentionLayers === 0 ? 0 : manager.device.numReferenced;
      rows.push({
        model,
        context,
        attentionLayers,
        mambaLayers,
        blockBytes,
        kvBlocks,
        kvBytes: kvBlocks * blockBytes,
        stateBytes,
        totalBytes: kvBlocks * blockBytes + stateBytes,
      });
    }
  }
  const ratios = config.contexts.map((context) => {
    const of = (m: string) => rows.find((r) => r.model === m && r.context === context)!.totalBytes;
    return { context, ratio: of('transformer') / of('jamba') };
  });
  return { rows, ratios };
}

const GIB = 2 ** 30;

function fmtBytes(b: number): string {
  if (b >= GIB) return `${(b / GIB).toFixed(2)} GiB`;
  if (b >= 2 ** 20) return `${(b / 2 ** 20).toFixed(1)} MiB`;
  return `${(b / 1024).toFixed(1)} KiB`;
}

function fmtContext(n: number): string {
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024}K` : String(n);
}

function describe(config: JambaMemoryConfig): string {
  return (
    `${config.layers} layers, width ${config.hidden}, ${config.kvHeads} KV heads x ${config.headDim}, ` +
    `attention 1 in ${config.attnPeriod} (offset ${config.attnOffset}), Mamba N ${config.dState} K ${config.dConv} ` +
    `expand ${config.expand}, ${config.dtypeBytes} bytes per element, blocks of ${config.blockSize} tokens`
  );
}

export function renderJambaMemory(report: JambaMemoryReport, config: JambaMemoryConfig): string {
  const jamba = report.rows.filter((r) => r.model === 'jamba');
  const transformer = report.rows.filter((r) => r.model === 'transformer');
  const j0 = jamba[0]!;
  const t0 = transformer[0]!;
  const rows = config.contexts.map((context, i) => [
    fmtContext(context),
    String(jamba[i]!.kvBlocks),
    fmtBytes(jamba[i]!.kvBytes),
    fmtBytes(jamba[i]!.totalBytes),
    String(transformer[i]!.kvBlocks),
    fmtBytes(transformer[i]!.totalBytes),
    `${report.ratios[i]!.ratio.toFixed(2)}x`,
  ]);
  const lines = [
    `Cache bytes of one sequence: ${describe(config)}`,
    `jamba: ${j0.attentionLayers} attention layers (${fmtBytes(j0.blockBytes)} a block) + ${j0.mambaLayers} Mamba layers (states ${fmtBytes(j0.stateBytes)}, fixed); ` +
      `transformer: ${t0.attentionLayers} attention layers (${fmtBytes(t0.blockBytes)} a block)`,
    'KV blocks and bytes from @longseq/paged-kv BlockManager accounting (referenced blocks x block bytes)',
    '',
    table(
      [
        ' context',
        ' jamba blocks',
        ' jamba KV',
        ' jamba total',
        ' transf. blocks',
        ' transf. total',
        ' ratio',
      ],
      rows,
    ),
  ];
  const last = config.contexts.length - 1;
  lines.push(
    '',
    `At ${fmtContext(config.contexts[last]!)}: jamba KV ${fmtBytes(jamba[last]!.kvBytes)}, transformer KV ${fmtBytes(transformer[last]!.kvBytes)} ` +
      '(the Jamba paper, table 1: 4 GB against Mixtral 32 GB at 256K in 16-bit)',
  );
  return lines.join('\n');
}

export function jambaMemorySvg(report: JambaMemoryReport, config: JambaMemoryConfig, date: string): string {
  const series: PlotSeries[] = [
    {
      label: 'transformer (all attention)',
      color: '#d62728',
      points: report.rows
        .filter((r) => r.model === 'transformer')
        .map((r) => ({ x: r.context, y: r.totalBytes / GIB, note: `${r.kvBlocks} blocks` })),
    },
    {
      label: `jamba (attention 1 in ${config.attnPeriod})`,
      color: '#1f77b4',
      points: report.rows
        .filter((r) => r.model === 'jamba')
        .map((r) => ({ x: r.context, y: r.totalBytes / GIB, note: `${r.kvBlocks} blocks` })),
    },
    {
      label: 'jamba Mamba states (fixed)',
      color: '#2ca02c',
      dash: '4 3',
      points: report.rows
        .filter((r) => r.model === 'jamba')
        .map((r) => ({ x: r.context, y: r.stateBytes / GIB })),
    },
  ];
  return plotSvg(series, {
    title: `Cache memory of one sequence: Jamba vs Transformer (${config.layers} layers)`,
    subtitle: `${config.kvHeads} KV heads x ${config.headDim}, ${config.dtypeBytes}-byte elements, blocks of ${config.blockSize}; paged-kv accounting; ${date}`,
    xLabel: 'context (tokens)',
    yLabel: 'cache GiB',
    xName: 'context',
    yUnit: 'GiB',
    logY: true,
  });
}

export async function benchJambaMemoryCommand(args: string[], io: Io): Promise<number> {
  const p = parseFlags(
    args,
    {
      contexts: { type: 'string' },
      'block-size': { type: 'string' },
      layers: { type: 'string' },
      hidden: { type: 'string' },
      'kv-heads': { type: 'string' },
      'head-dim': { type: 'string' },
      'attn-period': { type: 'string' },
      'attn-offset': { type: 'string' },
      'd-state': { type: 'string' },
      'd-conv': { type: 'string' },
      expand: { type: 'string' },
      'dtype-bytes': { type: 'string' },
      json: { type: 'boolean' },
      svg: { type: 'string' },
    },
    'bench jamba-memory',
  );
  if (p.positionals.length > 0)
    throw new UsageError(`bench jamba-memory: unexpected argument '${p.positionals[0]}'`);
  const d = JAMBA_V01;
  const config: JambaMemoryConfig = {
    layers: intFlag(p, 'layers', d.layers),
    hidden: intFlag(p, 'hidden', d.hidden),
    kvHeads: intFlag(p, 'kv-heads', d.kvHeads),
    headDim: intFlag(p, 'head-dim', d.headDim),
    attnPeriod: intFlag(p, 'attn-period', d.attnPeriod),
    attnOffset: intFlag(p, 'attn-offset', d.attnOffset, 0),
    dState: intFlag(p, 'd-state', d.dState),
    dConv: intFlag(p, 'd-conv', d.dConv, 2),
    expand: intFlag(p, 'expand', d.expand),
    dtypeBytes: intFlag(p, 'dtype-bytes', d.dtypeBytes),
    blockSize: intFlag(p, 'block-size', d.blockSize),
    contexts: [...intListFlag(p, 'contexts', [...d.contexts])].sort((a, b) => a - b),
  };
  if (config.attnOffset >= config.attnPeriod)
    throw new UsageError(
      `--attn-offset: expected an integer in [0, --attn-period = ${config.attnPeriod}), got ${config.attnOffset}`,
    );
  const report = jambaMemory(config);
  const machine = machineInfo();
  return finishBench(io, {
    name: 'jamba-memory',
    machine,
    json: boolFlag(p, 'json'),
    doc: { config, ...report },
    table: () => renderJambaMemory(report, config),
    svgPath: stringFlag(p, 'svg'),
    svg: () => jambaMemorySvg(report, config, machine.date.slice(0, 10)),
    failed: 0,
  });
}
