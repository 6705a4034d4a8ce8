/**
 * Mamba's parameters on the device, loaded from a MambaForCausalLM checkpoint (transformers'
 * names) or drawn at random for benchmarks. Projections whose outputs the mixer splits
 * (in_proj -> x, z; x_proj -> dt, B, C) are split on the host at load time, so the model
 * never slices a tensor on the device.
 */
import type { Backend, Tensor } from '@longseq/backend';
import type { Checkpoint } from '@longseq/nn';
import type { MambaConfig } from './config';
import { seededRandom } from './sampler';
import { paramsOffsets } from './webgpu/fused-decode';

export interface MambaLayerWeights {
  readonly norm: Tensor; // [dModel]
  readonly inProjX: Tensor; // [dInner, dModel]
  readonly inProjZ: Tensor; // [dInner, dModel]
  readonly inProjBiasX?: Tensor; // [dInner]
  readonly inProjBiasZ?: Tensor; // [dInner]
  readonly convWeight: Tensor; // [dInner, dConv]
  readonly convBias?: Tensor; // [dInner]
  readonly xProjDt: Tensor; // [dtRank, dInner]
  readonly xProjB: Tensor; // [dState, dInner]
  readonly xProjC: Tensor; // [dState, dInner]
  readonly dtProj: Tensor; // [dInner, dtRank]
  readonly dtBias: Tensor; // [dInner]
  /** A = -exp(A_log), [dInner, dState]. */
  readonly A: Tensor;
  readonly D: Tensor; // [dInner]
  readonly outProj: Tensor; // [dModel, dInner]
  readonly outProjBias?: Tensor; // [dModel]
  /**
   * The small per-channel parameters packed for the fused decode kernels (one binding instead
   * of five): conv weight [D, K], conv bias [D], dt bias [D], D [D], A [D, N].
   */
  readonly decodeParams: Tensor;
}

export interface MambaWeights {
  readonly embeddings: Tensor; // [vocab, dModel]
  readonly layers: readonly MambaLayerWeights[];
  readonly normF: Tensor; // [dModel]
  /** [vocab, dModel]; the embeddings tensor itself when tied. */
  readonly lmHead: Tensor;
}

/** Host-side arrays for one checkpoint tensor, by name and expected shape. */
export type TensorReader = (name: string, shape: readonly number[]) => Float32Array;

/** Rows [from, to) of a row-major [rows, cols] matrix. */
function rows(data: Float32Array, cols: number, from: number, to: number): Float32Array {
  return data.slice(from * cols, to * cols);
}

/** -exp(A_log) in float64, rounded once to f32. */
function negExp(aLog: Float32Array): Float32Array {
  return Float32Array.from(aLog, (v) => -Math.exp(v));
}

/**
 * Uploads every parameter, reading each through `read` (which checks names and shapes). On
 * an error partway, the tensors already uploaded are disposed.
 */
export function uploadMambaWeights(backend: Backend, config: MambaConfig, read: TensorReader): MambaWeights {
  const { dModel, dInner, dState, dConv, dtRank, vocabSize } = config;
  const made: Tensor[] = [];
  const up = (data: Float32Array, shape: readonly number[]): Tensor => {
    const t = backend.tensor(data, shape);
    made.push(t);
    return t;
  };
  try {
    const embeddings = up(read('backbone.embeddings.weight', [vocabSize, dModel]), [vocabSize, dModel]);
    const layers: MambaLayerWeights[] = [];
    for (let i = 0; i < config.nLayer; i++) {
      const p = `backbone.layers.${i}.`;
      const m = `${p}mixer.`;
      const inProj = read(`${m}in_proj.weight`, [2 * dInner, dModel]);
      const xProj = read(`${m}x_proj.weight`, [dtRank + 2 * dState, dInner]);
      const inBias = config.useBias ? read(`${m}in_proj.bias`, [2 * dInner]) : undefined;
      const convW = read(`${m}conv1d.weight`, [dInner, 1, dConv]);
      const convB = config.useConvBias ? read(`${m}conv1d.bias`, [dInner]) : undefined;
      const dtB = read(`${m}dt_proj.bias`, [dInner]);
      const dSkip = read(`${m}D`, [dInner]);
      const A = negExp(read(`${m}A_log`, [dInner, dState]));
      const off = paramsOffsets(dInner, dConv, dState);
      const packed = new Float32Array(off.size);
      packed.set(convW, off.convW);
      if (convB) packed.set(convB, off.convB);
      packed.set(dtB, off.dtB);
      packed.set(dSkip, off.dSkip);
      packed.set(A, off.a);
      if (inBias) packed.set(inBias, off.inB);
      layers.push({
        norm: up(read(`${p}norm.weight`, [dModel]), [dModel]),
        inProjX: up(rows(inProj, dModel, 0, dInner), [dInner, dModel]),
        inProjZ: up(rows(inProj, dModel, dInner, 2 * dInner), [dInner, dModel]),
        ...(inBias
          ? {
              inProjBiasX: up(inBias.slice(0, dInner), [dInner]),
              inProjBiasZ: up(inBias.slice(dInner), [dInner]),
            }
          : {}),
        convWeight: up(convW, [dInner, dConv]),
        ...(convB ? { convBias: up(convB, [dInner]) } : {}),
        xProjDt: up(rows(xProj, dInner, 0, dtRank), [dtRank, dInner]),
        xProjB: up(rows(xProj, dInner, dtRank, dtRank + dState), [dState, dInner]),
        xProjC: up(rows(xProj, dInner, dtRank + dState, dtRank + 2 * dState), [dState, dInner]),
        dtProj: up(read(`${m}dt_proj.weight`, [dInner, dtRank]), [dInner, dtRank]),
        dtBias: up(dtB, [dInner]),
        A: up(A, [dInner, dState]),
        D: up(dSkip, [dInner]),
        outProj: up(read(`${m}out_proj.weight`, [dModel, dInner]), [dModel, dInner]),
        ...(config.useBias ? { outProjBias: up(read(`${m}out_proj.bias`, [dModel]), [dModel]) } : {}),
        decodeParams: up(packed, [packed.length]),
      });
    }
    const normF = up(read('backbone.norm_f.weight', [dModel]), [dModel]);
    const lmHead = config.tieWordEmbeddings
      ? embeddings
      : up(read('lm_head.weight', [vocabSize, dModel]), [vocabSize, dModel]);
    return { embeddings, layers, normF, lmHead };
  } catch (err) {
    for (const t of made) t.dispose();
    throw err;
  }
}

/**
 * A reader over a loaded checkpoint. mamba_ssm's own checkpoints name the embedding
 * `backbone.embedding.weight`; transformers renames it on load, and so does this reader.
 */
export function checkpointReader(checkpoint: Checkpoint): TensorReader {
  return (name, shape) => {
    if (
      name === 'backbone.embeddings.weight' &&
      !checkpoint.has(name) &&
      checkpoint.has('backbone.embedding.weight')
    ) {
      return checkpoint.read('backbone.embedding.weight', shape);
    }
    return checkpoint.read(name, shape);
  };
}

/**
 * A reader that draws every tensor at random from a seed, initialized the way transformers
 * initializes MambaForCausalLM closely enough for benchmarks: small normal-ish weights, A_log
 * = log(1..N), D = 1, dt bias = softplus^-1 of a dt in [1e-3, 1e-1].
 */
export function randomReader(config: MambaConfig, seed: number): TensorReader {
  return seededInitReader(seed, config.dState, {
    ones: ['norm.weight', 'norm_f.weight', '.D'],
    embeddings: ['embeddings', 0.02],
  });
}

/** How `seededInitReader` tells the tensors apart by hub name. */
export interface SeededInitNames {
  /** Names ending with one of these are all ones (norm weights, D). */
  readonly ones: readonly string[];
  /** The token embeddings (names containing the string), uniform in [-scale, scale]. */
  readonly embeddings: readonly [name: string, scale: number];
}

/**
 * The random initialization of a Mamba-style checkpoint by tensor name, shared by the models
 * built on this package (their `fromRandom`): ones where `names.ones` say; A_log = log(1..N), N = dState;
 * dt_proj.bias = softplus^-1 of a dt log-uniform in [1e-3, 1e-1]; other biases uniform in
 * [-0.02, 0.02]; the embeddings uniform in [-scale, scale]; other weights
 * uniform in [-1/sqrt(fan in), 1/sqrt(fan in)]. One seeded generator (`seededRandom`) draws
 * them in the order they are read, so the same seed and order give the same weights.
 */
export function seededInitReader(seed: number, dState: number, names: SeededInitNames): TensorReader {
  const random = seededRandom(seed);
  const uniform = (count: number, scale: number) =>
    Float32Array.from({ length: count }, () => (2 * random() - 1) * scale);
  return (name, shape) => {
    const count = shape.reduce((x, y) => x * y, 1);
    if (names.ones.some((suffix) => name.endsWith(suffix))) return new Float32Array(count).fill(1);
    if (name.endsWith('A_log'))
      return Float32Array.from({ length: count }, (_, i) => Math.log((i % dState) + 1));
    if (name.endsWith('dt_proj.bias')) {
      return Float32Array.from({ length: count }, () => {
        const dt = Math.exp(random() * (Math.log(0.1) - Math.log(0.001)) + Math.log(0.001));
        return dt + Math.log(-Math.expm1(-dt));
      });
    }
    if (name.endsWith('.bias')) return uniform(count, 0.02);
    const fanIn = shape[shape.length - 1]!;
    const [embeddings, scale] = names.embeddings;
    return uniform(count, name.includes(embeddings) ? scale : 1 / Math.sqrt(fanIn));
  };
}

/** Every tensor of a set of weights once (lmHead may be the embeddings). */
export function weightTensors(weights: MambaWeights): Tensor[] {
  const all = new Set<Tensor>([weights.embeddings, weights.normF, weights.lmHead]);
  for (const layer of weights.layers) for (const t of Object.values(layer)) if (t) all.add(t as Tensor);
  return [...all];
}
