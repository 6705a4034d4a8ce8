/**
 * Float64 references of Jamba, written to be read: the mixture-of-experts block, and the
 * whole language model run token by token with its states (attention keys and values so far,
 * Mamba conv and SSM states), which is also the forward pass without a cache (attention over
 * all earlier positions is the same sum either way).
 *
 * Letters: B batch, L length, M model width, V vocabulary, H heads, Hkv kv heads, d head dim,
 * D Mamba channels, N states, K conv width, R dt rank, F MLP width, E experts, k top-k.
 */
import { type RefOptions, rounderFor } from '@longseq/backend';
import { type RefRound, matvecRef, mixerStepRef, rmsNormRef } from '@longseq/mamba';
import type { JambaConfig } from './config';
import { type MoeRouting, routeTokens } from './moe';
import type { JambaTensorReader } from './weights';

export interface HostMlp {
  readonly gate: Float32Array;
  readonly up: Float32Array;
  readonly down: Float32Array;
}

/** SwiGLU of one row: down(silu(gate x) * up x). */
function swigluRef(
  w: HostMlp,
  x: ArrayLike<number>,
  M: number,
  F: number,
  r: RefRound = (v) => v,
): Float64Array {
  const g = matvecRef(w.gate, x, M, 0, F, undefined, r);
  const u = matvecRef(w.up, x, M, 0, F, undefined, r);
  const h = g.map((v, i) => r(r(v / r(1 + r(Math.exp(-v)))) * u[i]!));
  return matvecRef(w.down, h, F, 0, M, undefined, r);
}

/**
 * The sparse MoE block on rows x `[T, M]`: router logits, softmax, top-k (weights not
 * renormalized), the weighted sum of the chosen experts' SwiGLU outputs. Returns `[T, M]` and
 * the routing.
 */
export function moeRef(
  x: ArrayLike<number>,
  tokens: number,
  weights: { router: ArrayLike<number>; experts: readonly HostMlp[] },
  sizes: { M: number; F: number; topK: number },
  options: RefOptions = {},
): { output: Float64Array; routing: MoeRouting } {
  const { M, F, topK } = sizes;
  const r = rounderFor(options);
  const E = weights.experts.length;
  const logits = new Float64Array(tokens * E);
  for (let t = 0; t < tokens; t++)
    logits.set(
      matvecRef(weights.router, Array.prototype.slice.call(x, t * M, (t + 1) * M), M, 0, E, undefined, r),
      t * E,
    );
  const routing = routeTokens(logits, tokens, E, topK);
  const output = new Float64Array(tokens * M);
  for (let t = 0; t < tokens; t++) {
    const row = Array.prototype.slice.call(x, t * M, (t + 1) * M) as number[];
    for (let j = 0; j < topK; j++) {
      const y = swigluRef(weights.experts[routing.experts[t * topK + j]!]!, row, M, F, r);
      const w = r(routing.weights[t * topK + j]!);
      for (let m = 0; m < M; m++) output[t * M + m] = r(output[t * M + m]! + r(w * y[m]!));
    }
  }
  return { output, routing };
}

/** The reference model's state of a batch: per layer, attention K/V so far or Mamba conv/SSM states. */
export interface JambaRefState {
  /** Per layer (attention layers; [] for Mamba layers), per sequence: keys and values [t][Hkv * d]. */
  readonly keys: Float64Array[][][];
  readonly values: Float64Array[][][];
  /** Per layer (Mamba layers; empty for attention layers): [B, D, K-1]. */
  readonly conv: Float64Array[];
  /** Per layer: [B, D, N]. */
  readonly ssm: Float64Array[];
}

function hostWeights(config: JambaConfig, read: JambaTensorReader) {
  const { dModel: M, dInner: D, dState: N, dConv: K, dtRank: R, vocabSize: V, intermediateSize: F } = config;
  const qw = config.numHeads * config.headDim;
  const kvw = config.numKvHeads * config.headDim;
  const mlp = (p: string): HostMlp => ({
    gate: read(`${p}gate_proj.weight`, [F, M]),
    up: read(`${p}up_proj.weight`, [F, M]),
    down: read(`${p}down_proj.weight`, [M, F]),
  });
  const layers = config.layerTypes.map((type, i) => {
    const p = `model.layers.${i}.`;
    const m = `${p}mamba.`;
    const a = `${p}self_attn.`;
    const f = `${p}feed_forward.`;
    const experts = config.layerExperts[i]!;
    return {
      type,
      inputNorm: read(`${p}input_layernorm.weight`, [M]),
      preFfNorm: read(`${p}pre_ff_layernorm.weight`, [M]),
      attention:
        type === 'attention'
          ? {
              q: read(`${a}q_proj.weight`, [qw, M]),
              k: read(`${a}k_proj.weight`, [kvw, M]),
              v: read(`${a}v_proj.weight`, [kvw, M]),
              o: read(`${a}o_proj.weight`, [M, qw]),
            }
          : undefined,
      mamba:
        type === 'mamba'
          ? {
              inProj: read(`${m}in_proj.weight`, [2 * D, M]),
              inBias: config.projBias ? read(`${m}in_proj.bias`, [2 * D]) : undefined,
              conv: read(`${m}conv1d.weight`, [D, 1, K]),
              convBias: config.convBias ? read(`${m}conv1d.bias`, [D]) : undefined,
              xProj: read(`${m}x_proj.weight`, [R + 2 * N, D]),
              dtNorm: read(`${m}dt_layernorm.weight`, [R]),
              bNorm: read(`${m}b_layernorm.weight`, [N]),
              cNorm: read(`${m}c_layernorm.weight`, [N]),
              dtProj: read(`${m}dt_proj.weight`, [D, R]),
              dtBias: read(`${m}dt_proj.bias`, [D]),
              A: Float64Array.from(read(`${m}A_log`, [D, N]), (v) => -Math.exp(v)),
              D: read(`${m}D`, [D]),
              outProj: read(`${m}out_proj.weight`, [M, D]),
              outBias: config.projBias ? read(`${m}out_proj.bias`, [M]) : undefined,
            }
          : undefined,
      mlp: experts === 1 ? mlp(f) : undefined,
      moe:
        experts > 1
          ? {
              router: read(`${f}router.weight`, [experts, M]),
              experts: Array.from({ length: experts }, (_, e) => mlp(`${f}experts.${e}.`)),
            }
          : undefined,
    };
  });
  const embeddings = read('model.embed_tokens.weight', [V, M]);
  return {
    embeddings,
    layers,
    finalNorm: read('model.final_layernorm.weight', [M]),
    lmHead: config.tieWordEmbeddings ? embeddings : read('lm_head.weight', [V, M]),
  };
}

/** A fresh (empty) reference state for `batch` sequences. */
export function jambaRefState(config: JambaConfig, batch: number): JambaRefState {
  const { dInner: D, dConv: K, dState: N } = config;
  return {
    keys: config.layerTypes.map(() => Array.from({ length: batch }, () => [])),
    values: config.layerTypes.map(() => Array.from({ length: batch }, () => [])),
    conv: config.layerTypes.map((t) => new Float64Array(t === 'mamba' ? batch * D * (K - 1) : 0)),
    ssm: config.layerTypes.map((t) => new Float64Array(t === 'mamba' ? batch * D * N : 0)),
  };
}

function cloneState(s: JambaRefState): JambaRefState {
  return {
    keys: s.keys.map((l) => l.map((seq) => [...seq])),
    values: s.values.map((l) => l.map((seq) => [...seq])),
    conv: s.conv.map((c) => c.slice()),
    ssm: s.ssm.map((c) => c.slice()),
  };
}

/**
 * The language model in float64, one token at a time: for each sequence of `ids` (all the
 * same length), the logits `[L, V]` at every position, and the state after the last token (to
 * continue with `jambaRef(..., { state })`; the given state is not modified). `onRouting`
 * sees each MoE layer's routing of each token.
 */
export function jambaRef(
  config: JambaConfig,
  read: JambaTensorReader,
  ids: readonly (readonly number[])[],
  options: {
    state?: JambaRefState;
    onRouting?: (layer: number, seq: number, routing: MoeRouting) => void;
  } = {},
): { logits: Float64Array[]; state: JambaRefState } {
  const w = hostWeights(config, read);
  const { dModel: M, dInner: D, dState: N, dConv: K, dtRank: R, vocabSize: V, intermediateSize: F } = config;
  const { numHeads: H, numKvHeads: Hkv, headDim: d, eps } = config;
  const batch = ids.length;
  const state = options.state ? cloneState(options.state) : jambaRefState(config, batch);
  const logits = ids.map((seq) => new Float64Array(seq.length * V));
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < ids[b]!.length; t++) {
      const id = ids[b]![t]!;
      let hidden = Float64Array.from(w.embeddings.subarray(id * M, (id + 1) * M));
      w.layers.forEach((layer, l) => {
        const normed = rmsNormRef(hidden, layer.inputNorm, eps);
        let mixed: Float64Array;
        if (layer.attention) {
          // GQA without positional encoding: query head h reads kv head floor(h / (H / Hkv))
          const q = matvecRef(layer.attention.q, normed, M, 0, H * d);
          state.keys[l]![b]!.push(matvecRef(layer.attention.k, normed, M, 0, Hkv * d));
          state.values[l]![b]!.push(matvecRef(layer.attention.v, normed, M, 0, Hkv * d));
          const keys = state.keys[l]![b]!;
          const values = state.values[l]![b]!;
          const o = new Float64Array(H * d);
          for (let h = 0; h < H; h++) {
            const g = Math.floor(h / (H / Hkv));
            const scores = keys.map((k) => {
              let s = 0;
              for (let i = 0; i < d; i++) s += q[h * d + i]! * k[g * d + i]!;
              return s / Math.sqrt(d);
            });
            const max = Math.max(...scores);
            const p = scores.map((s) => Math.exp(s - max));
            const total = p.reduce((x, y) => x + y, 0);
            for (let j = 0; j < keys.length; j++)
              for (let i = 0; i < d; i++) o[h * d + i]! += (p[j]! / total) * values[j]![g * d + i]!;
          }
          mixed = matvecRef(layer.attention.o, o, H * d, 0, M);
        } else {
          const sizes = { M, D, N, K, R, eps };
          mixed = mixerStepRef(layer.mamba!, normed, { conv: state.conv[l]!, ssm: state.ssm[l]! }, b, sizes);
        }
        hidden = hidden.map((h, i) => h + mixed[i]!);
        const n2 = rmsNormRef(hidden, layer.preFfNorm, eps);
        let ff: Float64Array;
        if (layer.moe) {
          const r = moeRef(n2, 1, layer.moe, { M, F, topK: config.topK });
          options.onRouting?.(l, b, r.routing);
          ff = r.output;
        } else ff = swigluRef(layer.mlp!, n2, M, F);
        hidden = hidden.map((h, i) => h + ff[i]!);
      });
      const final = rmsNormRef(hidden, w.finalNorm, eps);
      logits[b]!.set(matvecRef(w.lmHead, final, M, 0, V), t * V);
    }
  }
  return { logits, state };
}
