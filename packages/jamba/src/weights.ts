/**
 * Jamba's parameters on the device, loaded from a JambaForCausalLM checkpoint (transformers'
 * hub names: `model.layers.N.mamba.*`, `model.layers.N.self_attn.*`,
 * `model.layers.N.feed_forward.experts.E.gate_proj.weight`, ...) or drawn at random for
 * benchmarks. Projections whose outputs the mixer splits (in_proj -> x, z; x_proj -> dt, B, C)
 * are split on the host at load time, so the model never slices a tensor on the device.
 */
import type { Backend, Tensor } from '@longseq/backend';
import { seededInitReader } from '@longseq/mamba';
import type { Checkpoint } from '@longseq/nn';
import type { JambaConfig } from './config';
import { jambaParamsOffsets } from './webgpu/fused-decode';

/** Host arrays of one checkpoint tensor, by hub name and expected shape (throws MissingTensorError / ShapeError). */
export type JambaTensorReader = (name: string, shape: readonly number[]) => Float32Array;

export interface JambaMambaWeights {
  readonly kind: 'mamba';
  readonly inProjX: Tensor; // [D, M]
  readonly inProjZ: Tensor; // [D, M]
  readonly inProjBiasX?: Tensor; // [D]
  readonly inProjBiasZ?: Tensor; // [D]
  readonly convWeight: Tensor; // [D, K]
  readonly convBias?: Tensor; // [D]
  readonly xProjDt: Tensor; // [R, D]
  readonly xProjB: Tensor; // [N, D]
  readonly xProjC: Tensor; // [N, D]
  /** Jamba's RMSNorms on dt, B and C (dt_layernorm, b_layernorm, c_layernorm). */
  readonly dtNorm: Tensor; // [R]
  readonly bNorm: Tensor; // [N]
  readonly cNorm: Tensor; // [N]
  readonly dtProj: Tensor; // [D, R]
  readonly dtBias: Tensor; // [D]
  /** A = -exp(A_log), [D, N]. */
  readonly A: Tensor;
  readonly D: Tensor; // [D]
  readonly outProj: Tensor; // [M, D]
  readonly outProjBias?: Tensor; // [M]
  /**
   * The small per-channel parameters packed for WebGPU's fused decode (one binding instead of
   * eight): conv weight [D, K], conv bias [D], dt bias [D], D [D], A [D, N], in_proj bias [2D],
   * dt/B/C norm weights [R], [N], [N] (see jambaParamsOffsets).
   */
  readonly decodeParams: Tensor;
}

export interface JambaAttentionWeights {
  readonly kind: 'attention';
  readonly qProj: Tensor; // [H * d, M]
  readonly kProj: Tensor; // [Hkv * d, M]
  readonly vProj: Tensor; // [Hkv * d, M]
  readonly oProj: Tensor; // [M, H * d]
}

/** A SwiGLU MLP: down(silu(gate(x)) * up(x)). Also the shape of one expert. */
export interface JambaMlpWeights {
  readonly kind: 'mlp';
  readonly gateProj: Tensor; // [F, M]
  readonly upProj: Tensor; // [F, M]
  readonly downProj: Tensor; // [M, F]
}

/**
 * A mixture of SwiGLU experts. The experts' weights are held once, in one of two layouts:
 * `stacked` (WebGPU) or `experts` (gpu.js, and WebGPU where a stack would pass the device's
 * binding limit).
 */
export interface JambaMoeWeights {
  readonly kind: 'moe';
  /** [E, M]; E is the number of experts. */
  readonly router: Tensor;
  /** Per expert, its own tensors; absent where `stacked` holds the experts. */
  readonly experts?: readonly JambaMlpWeights[];
  /**
   * The experts stacked along the rows, expert e's block at rows e * F (gate and up
   * [E * F, M]) and e * M (down [E * M, F]): the decode step that routes on the GPU reads only
   * the chosen experts' rows (`JambaMoeDecode`); the host-routed decode reads an expert's
   * rows by offset, and prefill copies each expert with tokens into scratch weights
   * (`copyExpert`). Absent on gpu.js, or where a stack would pass the device's binding limit
   * (then `experts` holds them, and decoding routes on the host).
   */
  readonly stacked?: { readonly gate: Tensor; readonly up: Tensor; readonly down: Tensor };
}

export interface JambaLayerWeights {
  readonly inputNorm: Tensor; // [M]
  readonly mixer: JambaMambaWeights | JambaAttentionWeights;
  readonly preFfNorm: Tensor; // [M]
  readonly feedForward: JambaMlpWeights | JambaMoeWeights;
}

export interface JambaWeights {
  readonly embeddings: Tensor; // [V, M]
  readonly layers: readonly JambaLayerWeights[];
  readonly finalNorm: Tensor; // [M]
  /** [V, M]; the embeddings tensor itself when tied. */
  readonly lmHead: Tensor;
}

function rows(data: Float32Array, cols: number, from: number, to: number): Float32Array {
  return data.slice(from * cols, to * cols);
}

/**
 * Uploads every parameter, reading each through `read` (which checks names and shapes). On
 * an error partway, the tensors already uploaded are disposed.
 */
export function uploadJambaWeights(
  backend: Backend,
  config: JambaConfig,
  read: JambaTensorReader,
): JambaWeights {
  const { dModel: M, dInner: D, dState: N, dConv: K, dtRank: R, vocabSize: V, intermediateSize: F } = config;
  const qWidth = config.numHeads * config.headDim;
  const kvWidth = config.numKvHeads * config.headDim;
  const made: Tensor[] = [];
  const up = (data: Float32Array, shape: readonly number[]): Tensor => {
    const t = backend.tensor(data, shape);
    made.push(t);
    return t;
  };
  const load = (name: string, shape: readonly number[]) => up(read(name, shape), shape);
  const mlp = (p: string): JambaMlpWeights => ({
    kind: 'mlp',
    gateProj: load(`${p}gate_proj.weight`, [F, M]),
    upProj: load(`${p}up_proj.weight`, [F, M]),
    downProj: load(`${p}down_proj.weight`, [M, F]),
  });
  try {
    const embeddings = load('model.embed_tokens.weight', [V, M]);
    const layers: JambaLayerWeights[] = [];
    for (let i = 0; i < config.nLayer; i++) {
      const p = `model.layers.${i}.`;
      let mixer: JambaMambaWeights | JambaAttentionWeights;
      if (config.layerTypes[i] === 'attention') {
        const a = `${p}self_attn.`;
        mixer = {
          kind: 'attention',
          qProj: load(`${a}q_proj.weight`, [qWidth, M]),
          kProj: load(`${a}k_proj.weight`, [kvWidth, M]),
          vProj: load(`${a}v_proj.weight`, [kvWidth, M]),
          oProj: load(`${a}o_proj.weight`, [M, qWidth]),
        };
      } else {
        const m = `${p}mamba.`;
        const inProj = read(`${m}in_proj.weight`, [2 * D, M]);
        const inBias = config.projBias ? read(`${m}in_proj.bias`, [2 * D]) : undefined;
        const xProj = read(`${m}x_proj.weight`, [R + 2 * N, D]);
        const convW = read(`${m}conv1d.weight`, [D, 1, K]);
        const convB = config.convBias ? read(`${m}conv1d.bias`, [D]) : undefined;
        const dtNorm = read(`${m}dt_layernorm.weight`, [R]);
        const bNorm = read(`${m}b_layernorm.weight`, [N]);
        const cNorm = read(`${m}c_layernorm.weight`, [N]);
        const dtB = read(`${m}dt_proj.bias`, [D]);
        const dSkip = read(`${m}D`, [D]);
        // -exp(A_log) in float64, rounded once to f32
        const A = Float32Array.from(read(`${m}A_log`, [D, N]), (v) => -Math.exp(v));
        const off = jambaParamsOffsets(D, K, N, R);
        const packed = new Float32Array(off.size);
        packed.set(convW, off.convW);
        if (convB) packed.set(convB, off.convB);
        packed.set(dtB, off.dtB);
        packed.set(dSkip, off.dSkip);
        packed.set(A, off.a);
        if (inBias) packed.set(inBias, off.inB);
        packed.set(dtNorm, off.dtNorm);
        packed.set(bNorm, off.bNorm);
        packed.set(cNorm, off.cNorm);
        mixer = {
          kind: 'mamba',
          inProjX: up(rows(inProj, M, 0, D), [D, M]),
          inProjZ: up(rows(inProj, M, D, 2 * D), [D, M]),
          ...(inBias
            ? { inProjBiasX: up(inBias.slice(0, D), [D]), inProjBiasZ: up(inBias.slice(D), [D]) }
            : {}),
          convWeight: up(convW, [D, K]),
          ...(convB ? { convBias: up(convB, [D]) } : {}),
          xProjDt: up(rows(xProj, D, 0, R), [R, D]),
          xProjB: up(rows(xProj, D, R, R + N), [N, D]),
          xProjC: up(rows(xProj, D, R + N, R + 2 * N), [N, D]),
          dtNorm: up(dtNorm, [R]),
          bNorm: up(bNorm, [N]),
          cNorm: up(cNorm, [N]),
          dtProj: load(`${m}dt_proj.weight`, [D, R]),
          dtBias: up(dtB, [D]),
          A: up(A, [D, N]),
          D: up(dSkip, [D]),
          outProj: load(`${m}out_proj.weight`, [M, D]),
          ...(config.projBias ? { outProjBias: load(`${m}out_proj.bias`, [M]) } : {}),
          decodeParams: up(packed, [packed.length]),
        };
      }
      const f = `${p}feed_forward.`;
      const experts = config.layerExperts[i]!;
      let feedForward: JambaMlpWeights | JambaMoeWeights;
      if (experts > 1) {
        const router = load(`${f}router.weight`, [experts, M]);
        const stackBytes = experts * F * M * 4;
        const stack =
          backend.kind === 'webgpu' &&
          stackBytes <= backend.limits.maxStorageBufferBindingSize &&
          stackBytes <= backend.limits.maxBufferSize;
        if (stack) {
          // each expert's tensors read in the same order as unstacked (a random reader draws
          // anew on every read), into the stacks
          const gate = new Float32Array(experts * F * M);
          const upW = new Float32Array(experts * F * M);
          const down = new Float32Array(experts * M * F);
          for (let e = 0; e < experts; e++) {
            const x = `${f}experts.${e}.`;
            gate.set(read(`${x}gate_proj.weight`, [F, M]), e * F * M);
            upW.set(read(`${x}up_proj.weight`, [F, M]), e * F * M);
            down.set(read(`${x}down_proj.weight`, [M, F]), e * M * F);
          }
          feedForward = {
            kind: 'moe',
            router,
            stacked: {
              gate: up(gate, [experts * F, M]),
              up: up(upW, [experts * F, M]),
              down: up(down, [experts * M, F]),
            },
          };
        } else {
          const list = Array.from({ length: experts }, (_, e) => mlp(`${f}experts.${e}.`));
          feedForward = { kind: 'moe', router, experts: list };
        }
      } else feedForward = mlp(f);
      layers.push({
        inputNorm: load(`${p}input_layernorm.weight`, [M]),
        mixer,
        preFfNorm: load(`${p}pre_ff_layernorm.weight`, [M]),
        feedForward,
      });
    }
    const finalNorm = load('model.final_layernorm.weight', [M]);
    const lmHead = config.tieWordEmbeddings ? embeddings : load('lm_head.weight', [V, M]);
    return { embeddings, layers, finalNorm, lmHead };
  } catch (err) {
    for (const t of made) t.dispose();
    throw err;
  }
}

/** A reader over a loaded checkpoint (names and shapes checked by Checkpoint.read). */
export function jambaCheckpointReader(checkpoint: Checkpoint): JambaTensorReader {
  return (name, shape) => checkpoint.read(name, shape);
}

/**
 * A reader that draws every tensor at random from a seed, initialized closely enough to
 * transformers' JambaForCausalLM for benchmarks: weights uniform with scale 1/sqrt(fan in),
 * norms 1, A_log = log(1..N), D = 1, dt bias = softplus^-1 of a dt in [1e-3, 1e-1].
 */
export function jambaRandomReader(config: JambaConfig, seed: number): JambaTensorReader {
  return seededInitReader(seed, config.dState, {
    ones: ['norm.weight', 'layernorm.weight', '.D'],
    embeddings: ['embed_tokens', 1],
  });
}

/** Every tensor of a set of weights once (lmHead may be the embeddings). */
export function jambaWeightTensors(weights: JambaWeights): Tensor[] {
  const all = new Set<Tensor>([weights.embeddings, weights.finalNorm, weights.lmHead]);
  const addAll = (o: object) => {
    for (const t of Object.values(o)) if (t && typeof t === 'object' && 'shape' in t) all.add(t as Tensor);
  };
  for (const layer of weights.layers) {
    all.add(layer.inputNorm);
    all.add(layer.preFfNorm);
    addAll(layer.mixer);
    if (layer.feedForward.kind === 'moe') {
      all.add(layer.feedForward.router);
      for (const e of layer.feedForward.experts ?? []) addAll(e);
      if (layer.feedForward.stacked) addAll(layer.feedForward.stacked);
    } else addAll(layer.feedForward);
  }
  return [...all];
}
