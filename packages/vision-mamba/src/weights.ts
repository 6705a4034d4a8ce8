/**
 * Vim's parameters: the checkpoint names and shapes of a config (hustvl/Vim's layout), and
 * their upload to the device in the form the model runs. The K scan directions of a block are
 * stacked along the channels (K*D), so one causal conv, one selective scan (B and C grouped
 * by direction) and block-diagonal x_proj / dt_proj matmuls serve all directions at once.
 */
import { ArgumentError, type Backend, type Tensor } from '@longseq/backend';
import { ConfigError } from '@longseq/nn';
import type { VimConfig } from './config';
import { DIRECTION_SUFFIX, SCAN_DIRECTIONS, inverseOrder, scanOrder } from './scan-order';

/** Host-side arrays for one checkpoint tensor, by name and expected shape (checks both). */
export type TensorReader = (name: string, shape: readonly number[]) => Float32Array;

/** Every tensor a config needs, by checkpoint name, with its shape. */
export function vimTensorShapes(config: VimConfig): Map<string, number[]> {
  const { embedDim: M, dInner: D, dState: N, dConv: K, dtRank: R, channels, patchSize: p } = config;
  const order = scanOrder(config);
  const shapes = new Map<string, number[]>();
  shapes.set('patch_embed.proj.weight', [M, channels, p, p]);
  shapes.set('patch_embed.proj.bias', [M]);
  if (config.clsToken) shapes.set('cls_token', [1, 1, M]);
  if (config.absPosEmbed) shapes.set('pos_embed', [1, order.length, M]);
  for (let i = 0; i < config.depth; i++) {
    const l = `layers.${i}.`;
    shapes.set(`${l}norm.weight`, [M]);
    if (!config.rmsNorm) shapes.set(`${l}norm.bias`, [M]);
    shapes.set(`${l}mixer.in_proj.weight`, [2 * D, M]);
    if (config.projBias) shapes.set(`${l}mixer.in_proj.bias`, [2 * D]);
    for (const direction of SCAN_DIRECTIONS[config.scan]) {
      const s = DIRECTION_SUFFIX[direction];
      shapes.set(`${l}mixer.conv1d${s}.weight`, [D, 1, K]);
      if (config.convBias) shapes.set(`${l}mixer.conv1d${s}.bias`, [D]);
      shapes.set(`${l}mixer.x_proj${s}.weight`, [R + 2 * N, D]);
      shapes.set(`${l}mixer.dt_proj${s}.weight`, [D, R]);
      shapes.set(`${l}mixer.dt_proj${s}.bias`, [D]);
      shapes.set(`${l}mixer.A${s}_log`, [D, N]);
      shapes.set(`${l}mixer.D${s}`, [D]);
    }
    shapes.set(`${l}mixer.out_proj.weight`, [M, D]);
    if (config.projBias) shapes.set(`${l}mixer.out_proj.bias`, [M]);
    if (config.layerScale) shapes.set(`${l}mixer.gamma`, [M]);
  }
  shapes.set('norm_f.weight', [M]);
  if (!config.rmsNorm) shapes.set('norm_f.bias', [M]);
  shapes.set('head.weight', [config.numClasses, M]);
  shapes.set('head.bias', [config.numClasses]);
  return shapes;
}

/** The config.json field that would make a checkpoint tensor part of the model, for the error. */
function fieldFor(name: string): string | undefined {
  if (/^layers\.\d+\.mixer\.(in|out)_proj\.bias$/.test(name)) return 'bias';
  if (/^layers\.\d+\.mixer\.conv1d\w*\.bias$/.test(name)) return 'conv_bias';
  if (/^layers\.\d+\.mixer\.gamma$/.test(name)) return 'init_layer_scale';
  return undefined;
}

/**
 * Refuses a checkpoint with tensors the config does not use, so none is ignored silently
 * (a bias or layer scale the model would leave out changes every result): a ConfigError
 * naming the field that adds it (`bias`, `conv_bias`, `init_layer_scale`), else an
 * ArgumentError naming `checkpoint` and the first such tensor.
 */
export function checkVimTensorNames(config: VimConfig, names: readonly string[]): void {
  const shapes = vimTensorShapes(config);
  const unused = names.filter((n) => !shapes.has(n)).sort();
  if (unused.length === 0) return;
  const first = unused[0]!;
  const field = fieldFor(first);
  const more = unused.length > 1 ? ` (and ${unused.length - 1} more)` : '';
  if (field) {
    throw new ConfigError(
      field,
      `a value that uses ${first}, which the checkpoint holds${more}`,
      field === 'bias' ? config.projBias : field === 'conv_bias' ? config.convBias : null,
    );
  }
  throw new ArgumentError(
    'checkpoint',
    `only the tensors of a Vim with this config.json`,
    `unexpected tensor ${first}${more}`,
  );
}

export interface VimLayerWeights {
  readonly norm: Tensor; // [M]
  readonly normBias?: Tensor; // [M] (LayerNorm)
  readonly inProjX: Tensor; // [D, M]
  readonly inProjZ: Tensor; // [D, M]
  /** in_proj whole, [2D, M] (the 'tokens' layout's one GEMM). */
  readonly inProj: Tensor;
  /** in_proj's bias (config.projBias): whole [2D], and its x and z halves as [D, 1] columns. */
  readonly inProjBias?: Tensor;
  readonly inProjBiasX?: Tensor;
  readonly inProjBiasZ?: Tensor;
  readonly convWeight: Tensor; // [K*D, dConv]
  readonly convBias?: Tensor; // [K*D] (config.convBias)
  /** Block-diagonal over directions: [K*R, K*D], [K*N, K*D], [K*N, K*D]. */
  readonly xProjDt: Tensor;
  readonly xProjB: Tensor;
  readonly xProjC: Tensor;
  /** Block-diagonal [K*D, K*R]. */
  readonly dtProj: Tensor;
  readonly dtBias: Tensor; // [K*D]
  /** -exp(A_log) per direction, [K*D, N]. */
  readonly A: Tensor;
  readonly D: Tensor; // [K*D]
  readonly outProj: Tensor; // [M, D]
  readonly outProjBias?: Tensor; // [M] (config.projBias)
  /** The mixer output's per-channel scale, [M] (config.layerScale). */
  readonly gamma?: Tensor;
}

export interface VimWeights {
  /** The conv as a matrix [M, C*p*p] (im2col order: channel, row, column). */
  readonly patchWeight: Tensor;
  readonly patchBias: Tensor; // [M]
  readonly cls?: Tensor; // [M]
  readonly pos?: Tensor; // [L, M]
  readonly layers: readonly VimLayerWeights[];
  readonly normF: Tensor;
  readonly normFBias?: Tensor;
  readonly head: Tensor; // [classes, M]
  readonly headBias: Tensor; // [classes]
  /** i32 [P, C*p*p]: the pixel of each patch feature within one image [C, H, W]. */
  readonly patchIndex: Tensor;
  /** i32 [K, D, L]: c * L + order_k[t], gathering each direction's sequence from [D, L]. */
  readonly scanIndex: Tensor;
  /** i32 [K, L]: the inverse orders, for the merge. */
  readonly scanInverse: Tensor;
  /**
   * i32 [K, D, L]: order_k[t] * 2D + c (+ D for z): each direction's channels-first sequence
   * gathered from in_proj's token-major output [L, 2D] (the 'tokens' layout).
   */
  readonly scanIndexX: Tensor;
  readonly scanIndexZ: Tensor;
}

/** im2col indices of one image [C, H, W]: feature (c, i, j) of patch (r, q) reads pixel (c, r*s+i, q*s+j). */
export function patchIndices(config: VimConfig): Int32Array {
  const { channels: C, patchSize: p, stride: s, imgSize: S } = config;
  const g = scanOrder(config).grid;
  const out = new Int32Array(g * g * C * p * p);
  let o = 0;
  for (let r = 0; r < g; r++)
    for (let q = 0; q < g; q++)
      for (let c = 0; c < C; c++)
        for (let i = 0; i < p; i++)
          for (let j = 0; j < p; j++) out[o++] = (c * S + r * s + i) * S + q * s + j;
  return out;
}

/** A block-diagonal matrix from K blocks of [rows, cols]. */
function blockDiagonal(blocks: readonly Float32Array[], rows: number, cols: number): Float32Array {
  const K = blocks.length;
  const out = new Float32Array(K * rows * K * cols);
  blocks.forEach((block, k) => {
    for (let r = 0; r < rows; r++)
      out.set(block.subarray(r * cols, (r + 1) * cols), (k * rows + r) * K * cols + k * cols);
  });
  return out;
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Uploads every parameter, reading each through `read` (which checks names and shapes), and
 * the host-made index tensors. On an error partway, what was uploaded is disposed.
 */
export function uploadVimWeights(backend: Backend, config: VimConfig, read: TensorReader): VimWeights {
  const shapes = vimTensorShapes(config);
  const get = (name: string) => read(name, shapes.get(name)!);
  const { embedDim: M, dInner: D, dState: N, dConv: Kc, dtRank: R, channels, patchSize: p } = config;
  const order = scanOrder(config);
  const L = order.length;
  const K = order.directions.length;
  const made: Tensor[] = [];
  const up = (data: ArrayLike<number>, shape: readonly number[], dtype: 'f32' | 'i32' = 'f32'): Tensor => {
    const t = backend.tensor(data, shape, dtype);
    made.push(t);
    return t;
  };
  try {
    const layers: VimLayerWeights[] = [];
    for (let i = 0; i < config.depth; i++) {
      const l = `layers.${i}.`;
      const m = `${l}mixer.`;
      const inProj = get(`${m}in_proj.weight`);
      const dirs = order.directions.map(({ name }) => {
        const s = DIRECTION_SUFFIX[name];
        const xProj = get(`${m}x_proj${s}.weight`);
        return {
          conv: get(`${m}conv1d${s}.weight`),
          convBias: config.convBias ? get(`${m}conv1d${s}.bias`) : undefined,
          xDt: xProj.subarray(0, R * D),
          xB: xProj.subarray(R * D, (R + N) * D),
          xC: xProj.subarray((R + N) * D, (R + 2 * N) * D),
          dtProj: get(`${m}dt_proj${s}.weight`),
          dtBias: get(`${m}dt_proj${s}.bias`),
          A: Float32Array.from(get(`${m}A${s}_log`), (v) => -Math.exp(v)),
          D: get(`${m}D${s}`),
        };
      });
      const inBias = config.projBias ? get(`${m}in_proj.bias`) : undefined;
      layers.push({
        norm: up(get(`${l}norm.weight`), [M]),
        ...(config.rmsNorm ? {} : { normBias: up(get(`${l}norm.bias`), [M]) }),
        inProjX: up(inProj.subarray(0, D * M), [D, M]),
        inProjZ: up(inProj.subarray(D * M), [D, M]),
        inProj: up(inProj, [2 * D, M]),
        ...(inBias
          ? {
              inProjBias: up(inBias, [2 * D]),
              inProjBiasX: up(inBias.subarray(0, D), [D, 1]),
              inProjBiasZ: up(inBias.subarray(D), [D, 1]),
            }
          : {}),
        convWeight: up(concat(dirs.map((d) => d.conv)), [K * D, Kc]),
        ...(config.convBias
          ? { convBias: up(concat(dirs.map((d) => d.convBias as Float32Array)), [K * D]) }
          : {}),
        xProjDt: up(
          blockDiagonal(
            dirs.map((d) => d.xDt),
            R,
            D,
          ),
          [K * R, K * D],
        ),
        xProjB: up(
          blockDiagonal(
            dirs.map((d) => d.xB),
            N,
            D,
          ),
          [K * N, K * D],
        ),
        xProjC: up(
          blockDiagonal(
            dirs.map((d) => d.xC),
            N,
            D,
          ),
          [K * N, K * D],
        ),
        dtProj: up(
          blockDiagonal(
            dirs.map((d) => d.dtProj),
            D,
            R,
          ),
          [K * D, K * R],
        ),
        dtBias: up(concat(dirs.map((d) => d.dtBias)), [K * D]),
        A: up(concat(dirs.map((d) => d.A)), [K * D, N]),
        D: up(concat(dirs.map((d) => d.D)), [K * D]),
        outProj: up(get(`${m}out_proj.weight`), [M, D]),
        ...(config.projBias ? { outProjBias: up(get(`${m}out_proj.bias`), [M]) } : {}),
        ...(config.layerScale ? { gamma: up(get(`${m}gamma`), [M]) } : {}),
      });
    }
    const scanIdx = new Int32Array(K * D * L);
    const scanIdxX = new Int32Array(K * D * L);
    const scanIdxZ = new Int32Array(K * D * L);
    order.directions.forEach(({ order: o }, k) => {
      for (let c = 0; c < D; c++)
        for (let t = 0; t < L; t++) {
          const i = (k * D + c) * L + t;
          scanIdx[i] = c * L + o[t]!;
          scanIdxX[i] = o[t]! * 2 * D + c;
          scanIdxZ[i] = o[t]! * 2 * D + D + c;
        }
    });
    return {
      patchWeight: up(get('patch_embed.proj.weight'), [M, channels * p * p]),
      patchBias: up(get('patch_embed.proj.bias'), [M]),
      ...(config.clsToken ? { cls: up(get('cls_token'), [M]) } : {}),
      ...(config.absPosEmbed ? { pos: up(get('pos_embed'), [L, M]) } : {}),
      layers,
      normF: up(get('norm_f.weight'), [M]),
      ...(config.rmsNorm ? {} : { normFBias: up(get('norm_f.bias'), [M]) }),
      head: up(get('head.weight'), [config.numClasses, M]),
      headBias: up(get('head.bias'), [config.numClasses]),
      patchIndex: up(patchIndices(config), [order.patches, channels * p * p], 'i32'),
      scanIndex: up(scanIdx, [K, D, L], 'i32'),
      scanIndexX: up(scanIdxX, [K, D, L], 'i32'),
      scanIndexZ: up(scanIdxZ, [K, D, L], 'i32'),
      scanInverse: up(
        order.directions.flatMap(({ order: o }) => inverseOrder(o)),
        [K, L],
        'i32',
      ),
    };
  } catch (err) {
    for (const t of made) t.dispose();
    throw err;
  }
}

/** Every tensor of a set of weights once. */
export function vimWeightTensors(weights: VimWeights): Tensor[] {
  const all: Tensor[] = [];
  for (const [key, value] of Object.entries(weights)) {
    if (key === 'layers') continue;
    if (value) all.push(value as Tensor);
  }
  for (const layer of weights.layers) for (const t of Object.values(layer)) if (t) all.push(t as Tensor);
  return all;
}

/**
 * A reader that draws every tensor at random, from its own stream seeded by (seed, name), so
 * a tensor's values do not depend on the order tensors are read in (the model and vimRef read
 * in different orders). Close to Vim's initialization for benchmarks and tests: small uniform
 * weights scaled by fan-in, A_log = log(1..N), D = 1, dt bias = softplus^-1 of a dt in
 * [1e-3, 1e-1], norms and gamma 1 (each with a little noise, so a test that mixes two up
 * fails), other biases uniform in [-0.02, 0.02].
 */
export function vimRandomReader(config: VimConfig, seed: number): TensorReader {
  return (name, shape) => {
    // FNV-1a of the name, mixed with the seed: the stream of this tensor.
    let h = 0x811c9dc5 ^ (seed >>> 0);
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
    let a = h >>> 0;
    const random = () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const uniform = (count: number, scale: number, center = 0) =>
      Float32Array.from({ length: count }, () => center + (2 * random() - 1) * scale);
    const count = shape.reduce((x, y) => x * y, 1);
    if (name.endsWith('norm.weight') || name.endsWith('norm_f.weight')) return uniform(count, 0.1, 1);
    if (name.endsWith('.gamma')) return uniform(count, 0.2, 1);
    if (/\.D(_\w+)?$/.test(name)) return uniform(count, 0.1, 1);
    if (name.endsWith('_log')) {
      return Float32Array.from({ length: count }, (_, i) => Math.log((i % config.dState) + 1));
    }
    if (/dt_proj(_\w+)?\.bias$/.test(name)) {
      return Float32Array.from({ length: count }, () => {
        const dt = Math.exp(random() * (Math.log(0.1) - Math.log(0.001)) + Math.log(0.001));
        return dt + Math.log(-Math.expm1(-dt));
      });
    }
    if (name === 'cls_token' || name === 'pos_embed') return uniform(count, 0.02);
    if (name.endsWith('.bias')) return uniform(count, 0.02);
    const fanIn = shape.slice(1).reduce((x, y) => x * y, 1);
    return uniform(count, 1 / Math.sqrt(fanIn));
  };
}
