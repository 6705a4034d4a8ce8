/**
 * Float64 references of Mamba, written to be read: the one-token SSM update, and the whole
 * language model run token by token through the recurrence (the form `step()` computes; the
 * scan computes the same sums in another order).
 *
 * Letters: B batch, D channels (d_inner), N states, L length, K conv width, R dt rank,
 * M model width (d_model), V vocabulary.
 */
import { type RefOptions, rounderFor } from '@longseq/backend';
import type { MambaConfig } from './config';
import type { TensorReader } from './weights';

/** PyTorch's softplus: log(1 + e^x), and x itself past the threshold 20. */
export function softplusTorch(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

export interface SsmStepRefInputs {
  /** [B, D] the conv output after SiLU. */
  readonly u: ArrayLike<number>;
  /** [B, D] dt_proj's output before its bias. */
  readonly dt: ArrayLike<number>;
  /** [D, N], negative. */
  readonly A: ArrayLike<number>;
  /** [B, N]. */
  readonly B: ArrayLike<number>;
  readonly C: ArrayLike<number>;
  /** [D]. */
  readonly D: ArrayLike<number>;
  /** [B, D] the gate. */
  readonly z: ArrayLike<number>;
  /** [D]. */
  readonly dtBias: ArrayLike<number>;
  /** [B, D, N] the state before this token. */
  readonly state: ArrayLike<number>;
}

/**
 * One token of the selective SSM, per (b, c):
 *   dt' = softplus(dt + dtBias[c]);  h_j = exp(dt' A[c, j]) h_j + dt' B[b, j] u
 *   y = (sum_j C[b, j] h_j + D[c] u) * silu(z)
 */
export function ssmStepRef(
  inputs: SsmStepRefInputs,
  sizes: { batch: number; channels: number; states: number },
  options: RefOptions = {},
): { y: Float64Array; state: Float64Array } {
  const r = rounderFor(options);
  const { batch, channels, states } = sizes;
  const y = new Float64Array(batch * channels);
  const state = new Float64Array(batch * channels * states);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < channels; c++) {
      const bc = b * channels + c;
      const dt = r(softplusTorch(r(inputs.dt[bc]! + inputs.dtBias[c]!)));
      const u = inputs.u[bc]!;
      let acc = 0;
      for (let j = 0; j < states; j++) {
        const decay = r(Math.exp(r(dt * inputs.A[c * states + j]!)));
        const h = r(r(decay * inputs.state[bc * states + j]!) + r(r(dt * u) * inputs.B[b * states + j]!));
        state[bc * states + j] = h;
        acc = r(acc + r(inputs.C[b * states + j]! * h));
      }
      const z = inputs.z[bc]!;
      const gate = r(z / r(1 + r(Math.exp(-z))));
      y[bc] = r(r(acc + r(inputs.D[c]! * u)) * gate);
    }
  }
  return { y, state };
}

/** The recurrent state of the reference model: per layer, conv inputs [B, D, K-1] and SSM states [B, D, N]. */
export interface MambaRefState {
  readonly conv: Float64Array[];
  readonly ssm: Float64Array[];
}

/** Host copies of the weights, by HF name (read once). */
function hostWeights(config: MambaConfig, read: TensorReader) {
  const { dModel: M, dInner: D, dState: N, dConv: K, dtRank: R, vocabSize: V } = config;
  const layers = Array.from({ length: config.nLayer }, (_, i) => {
    const m = `backbone.layers.${i}.mixer.`;
    return {
      norm: read(`backbone.layers.${i}.norm.weight`, [M]),
      inProj: read(`${m}in_proj.weight`, [2 * D, M]),
      inBias: config.useBias ? read(`${m}in_proj.bias`, [2 * D]) : undefined,
      conv: read(`${m}conv1d.weight`, [D, 1, K]),
      convBias: config.useConvBias ? read(`${m}conv1d.bias`, [D]) : undefined,
      xProj: read(`${m}x_proj.weight`, [R + 2 * N, D]),
      dtProj: read(`${m}dt_proj.weight`, [D, R]),
      dtBias: read(`${m}dt_proj.bias`, [D]),
      A: Float64Array.from(read(`${m}A_log`, [D, N]), (v) => -Math.exp(v)),
      D: read(`${m}D`, [D]),
      outProj: read(`${m}out_proj.weight`, [M, D]),
      outBias: config.useBias ? read(`${m}out_proj.bias`, [M]) : undefined,
    };
  });
  const embeddings = read('backbone.embeddings.weight', [V, M]);
  return {
    embeddings,
    layers,
    normF: read('backbone.norm_f.weight', [M]),
    lmHead: config.tieWordEmbeddings ? embeddings : read('lm_head.weight', [V, M]),
  };
}

/** Rounds each step of a reference (`rounderFor`: identity in float64, Math.fround for the f32 baseline). */
export type RefRound = (v: number) => number;
const exact: RefRound = (v) => v;

/**
 * Float64 reference pieces shared by the models built on this package (@longseq/jamba):
 * out[o] = sum_i W[o, i] x[i] (+ bias[o]) for rows [from, to) of a row-major W with `cols`
 * columns; `r` rounds each step (the f32 baseline), exact by default.
 */
export function matvecRef(
  W: ArrayLike<number>,
  x: ArrayLike<number>,
  cols: number,
  from: number,
  to: number,
  bias?: ArrayLike<number>,
  r: RefRound = exact,
): Float64Array {
  const out = new Float64Array(to - from);
  for (let o = from; o < to; o++) {
    let acc = bias ? bias[o]! : 0;
    for (let i = 0; i < cols; i++) acc = r(acc + r(W[o * cols + i]! * x[i]!));
    out[o - from] = acc;
  }
  return out;
}

/** RMSNorm of one row in float64: x / sqrt(mean(x^2) + eps) * w. */
export function rmsNormRef(x: ArrayLike<number>, w: ArrayLike<number>, eps: number): Float64Array {
  let sq = 0;
  for (let i = 0; i < x.length; i++) sq += x[i]! ** 2;
  const inv = 1 / Math.sqrt(sq / x.length + eps);
  return Float64Array.from({ length: x.length }, (_, i) => x[i]! * inv * w[i]!);
}

/** SiLU in float64: v * sigmoid(v). */
export const siluRef = (v: number): number => v / (1 + Math.exp(-v));

/**
 * One token of Mamba's causal depthwise conv and its SiLU, in float64: for sequence b,
 * u[c] = silu(bias[c] + sum_j weight[c, j] (state[b, c], x[c])[j]) over the K - 1 inputs kept
 * in `state` ([B, D, K-1], channel-major) and this token's x [D]; x is then shifted into the
 * state (in place). weight [D, K] (or [D, 1, K]). Returns u [D].
 */
export function convStepRef(
  state: Float64Array,
  b: number,
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number> | undefined,
  channels: number,
  width: number,
): Float64Array {
  const D = channels;
  const K = width;
  const u = new Float64Array(D);
  for (let c = 0; c < D; c++) {
    const past = state.subarray((b * D + c) * (K - 1), (b * D + c + 1) * (K - 1));
    let acc = bias ? bias[c]! : 0;
    for (let j = 0; j < K - 1; j++) acc += weight[c * K + j]! * past[j]!;
    acc += weight[c * K + K - 1]! * x[c]!;
    past.copyWithin(0, 1);
    past[K - 2] = x[c]!;
    u[c] = siluRef(acc);
  }
  return u;
}

/** One Mamba mixer's weights on the host, as the float64 references read them (HF layouts). */
export interface MixerRefWeights {
  readonly inProj: ArrayLike<number>; // [2D, M]
  readonly inBias?: ArrayLike<number>; // [2D]
  readonly conv: ArrayLike<number>; // [D, K]
  readonly convBias?: ArrayLike<number>; // [D]
  readonly xProj: ArrayLike<number>; // [R + 2N, D]
  /** Jamba's RMSNorm weights of dt, B and C between x_proj and dt_proj / the scan (Mamba has none). */
  readonly dtNorm?: ArrayLike<number>; // [R]
  readonly bNorm?: ArrayLike<number>; // [N]
  readonly cNorm?: ArrayLike<number>; // [N]
  readonly dtProj: ArrayLike<number>; // [D, R]
  readonly dtBias: ArrayLike<number>; // [D]
  /** -exp(A_log), [D, N]. */
  readonly A: ArrayLike<number>;
  readonly D: ArrayLike<number>; // [D]
  readonly outProj: ArrayLike<number>; // [M, D]
  readonly outBias?: ArrayLike<number>; // [M]
}

/**
 * One token of a Mamba mixer in float64, shared by the models' references: `normed` [M] ->
 * [M] for sequence b, its conv state ([B, D, K-1]) and SSM state ([B, D, N]) advanced in
 * place. in_proj -> x, z; the conv step and SiLU; x_proj -> dt, B, C (each RMSNormed with
 * `eps` where the weights have the norms); dt_proj; the SSM step; out_proj.
 */
export function mixerStepRef(
  w: MixerRefWeights,
  normed: ArrayLike<number>,
  state: { readonly conv: Float64Array; readonly ssm: Float64Array },
  b: number,
  sizes: { M: number; D: number; N: number; K: number; R: number; eps?: number },
): Float64Array {
  const { M, D, N, K, R } = sizes;
  const x = matvecRef(w.inProj, normed, M, 0, D, w.inBias);
  const z = matvecRef(w.inProj, normed, M, D, 2 * D, w.inBias);
  // causal conv over (state, x), then shift x into the state
  const u = convStepRef(state.conv, b, x, w.conv, w.convBias, D, K);
  const norm = (v: Float64Array, g: ArrayLike<number> | undefined) =>
    g ? rmsNormRef(v, g, sizes.eps ?? 0) : v;
  const dtLow = norm(matvecRef(w.xProj, u, D, 0, R), w.dtNorm);
  const Bt = norm(matvecRef(w.xProj, u, D, R, R + N), w.bNorm);
  const Ct = norm(matvecRef(w.xProj, u, D, R + N, R + 2 * N), w.cNorm);
  const dt = matvecRef(w.dtProj, dtLow, R, 0, D);
  const ssm = state.ssm.subarray(b * D * N, (b + 1) * D * N);
  const step = ssmStepRef(
    { u, dt, A: w.A, B: Bt, C: Ct, D: w.D, z, dtBias: w.dtBias, state: ssm },
    { batch: 1, channels: D, states: N },
  );
  ssm.set(step.state);
  return matvecRef(w.outProj, step.y, D, 0, M, w.outBias);
}

/**
 * The language model in float64, one token at a time through the recurrence: for each
 * sequence of `ids` (all the same length), the logits `[L, V]` at every position, and the
 * state after the last token (to continue with `mambaRef(..., { state })`).
 */
export function mambaRef(
  config: MambaConfig,
  read: TensorReader,
  ids: readonly (readonly number[])[],
  options: { state?: MambaRefState } = {},
): { logits: Float64Array[]; state: MambaRefState } {
  const w = hostWeights(config, read);
  const { dModel: M, dInner: D, dState: N, dConv: K, dtRank: R, vocabSize: V } = config;
  const batch = ids.length;
  const state: MambaRefState = options.state
    ? { conv: options.state.conv.map((s) => s.slice()), ssm: options.state.ssm.map((s) => s.slice()) }
    : {
        conv: w.layers.map(() => new Float64Array(batch * D * (K - 1))),
        ssm: w.layers.map(() => new Float64Array(batch * D * N)),
      };
  const logits = ids.map((seq) => new Float64Array(seq.length * V));
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < ids[b]!.length; t++) {
      const id = ids[b]![t]!;
      let hidden = Float64Array.from(w.embeddings.subarray(id * M, (id + 1) * M));
      w.layers.forEach((layer, l) => {
        const normed = rmsNormRef(hidden, layer.norm, config.eps);
        const conv = state.conv[l]!;
        const out = mixerStepRef(layer, normed, { conv, ssm: state.ssm[l]! }, b, { M, D, N, K, R });
        hidden = hidden.map((h, i) => h + out[i]!);
      });
      const final = rmsNormRef(hidden, w.normF, config.eps);
      logits[b]!.set(matvecRef(w.lmHead, final, M, 0, V), t * V);
    }
  }
  return { logits, state };
}
