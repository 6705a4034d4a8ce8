/**
 * Float64 references of Vision Mamba, written to be read: the three data-movement kernels
 * and the whole model, image by image, token by token. `precision: 'f32'` rounds every
 * intermediate to float32 (the test rule's baseline).
 *
 * Letters: B images, C image channels, S image side, p patch side, s stride, g patches per
 * side, P = g^2 patches, L tokens, M model width (embed_dim), D mixer channels (d_inner),
 * N states, K scan directions (2 for 'bi', 4 for 'cross4'), R dt rank, k conv width.
 */
import { type HostTensor, type RefOptions, type RefResult, type Rounder, rounderFor } from '@longseq/backend';
import type { VimConfig } from './config';
import { DIRECTION_SUFFIX, inverseOrder, scanOrder } from './scan-order';
import { type TensorReader, vimTensorShapes } from './weights';

/** out[b, j] = x[b, index[j]] (0 where index[j] < 0); x viewed as [batch, inner]. */
export function vimGatherRef(x: HostTensor, index: HostTensor): RefResult {
  const batch = x.shape[0]!;
  const inner = batch === 0 ? 0 : x.data.length / batch;
  const count = index.data.length;
  const data = new Float64Array(batch * count);
  for (let b = 0; b < batch; b++)
    for (let j = 0; j < count; j++) {
      const src = index.data[j]!;
      data[b * count + j] = src < 0 ? 0 : x.data[b * inner + src]!;
    }
  return { shape: [batch, ...index.shape], data };
}

/** Tokens [B, L, M]: the class token at clsIndex (-1: none), patches + bias elsewhere, + pos. */
export function vimTokensRef(
  patches: HostTensor,
  bias: ArrayLike<number>,
  options: { cls?: ArrayLike<number>; clsIndex?: number; pos?: ArrayLike<number> } = {},
  ref: RefOptions = {},
): RefResult {
  const r = rounderFor(ref);
  const [B, P, M] = patches.shape as [number, number, number];
  const clsIndex = options.cls ? (options.clsIndex ?? 0) : -1;
  const L = P + (clsIndex >= 0 ? 1 : 0);
  const data = new Float64Array(B * L * M);
  for (let b = 0; b < B; b++)
    for (let l = 0; l < L; l++) {
      const p = clsIndex >= 0 && l > clsIndex ? l - 1 : l;
      for (let m = 0; m < M; m++) {
        let v = l === clsIndex ? options.cls![m]! : r(patches.data[(b * P + p) * M + m]! + bias[m]!);
        if (options.pos) v = r(v + options.pos[l * M + m]!);
        data[(b * L + l) * M + m] = v;
      }
    }
  return { shape: [B, L, M], data };
}

/** out[b, c, l] = scale * sum_k y[b, k, c, inverse[k, l]] ([B, D, L]; with tokenMajor [B, L, D]). */
export function vimScanMergeRef(
  y: HostTensor,
  inverse: HostTensor,
  scale = 1,
  ref: RefOptions & { tokenMajor?: boolean } = {},
): RefResult {
  const r = rounderFor(ref);
  const [B, K, D, L] = y.shape as [number, number, number, number];
  const data = new Float64Array(B * D * L);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < D; c++)
      for (let l = 0; l < L; l++) {
        let acc = 0;
        for (let k = 0; k < K; k++)
          acc = r(acc + y.data[((b * K + k) * D + c) * L + inverse.data[k * L + l]!]!);
        data[ref.tokenMajor ? (b * L + l) * D + c : (b * D + c) * L + l] = r(acc * scale);
      }
  return { shape: ref.tokenMajor ? [B, L, D] : [B, D, L], data };
}

export interface VimRefResult {
  /** [B, M]: the final-normed class token (or the pooled tokens). */
  readonly features: Float64Array;
  /** [B, numClasses]. */
  readonly logits: Float64Array;
  /** [B, L, M]: every token's final-normed state. */
  readonly tokens: Float64Array;
}

/** sum_i w[i] x[i] in order, rounded by r after each step. */
function dot(
  w: ArrayLike<number>,
  wOff: number,
  x: ArrayLike<number>,
  xOff: number,
  n: number,
  r: Rounder,
): number {
  let acc = 0;
  for (let i = 0; i < n; i++) acc = r(acc + r(w[wOff + i]! * x[xOff + i]!));
  return acc;
}

function normRow(
  x: Float64Array,
  weight: ArrayLike<number>,
  bias: ArrayLike<number> | undefined,
  eps: number,
  r: Rounder,
): Float64Array {
  const n = x.length;
  const out = new Float64Array(n);
  if (!bias) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss = r(ss + r(x[i]! * x[i]!));
    const inv = r(1 / r(Math.sqrt(r(r(ss / n) + eps))));
    for (let i = 0; i < n; i++) out[i] = r(r(x[i]! * inv) * weight[i]!);
    return out;
  }
  let mu = 0;
  for (let i = 0; i < n; i++) mu = r(mu + x[i]!);
  mu = r(mu / n);
  let v = 0;
  for (let i = 0; i < n; i++) v = r(v + r(r(x[i]! - mu) * r(x[i]! - mu)));
  const inv = r(1 / r(Math.sqrt(r(r(v / n) + eps))));
  for (let i = 0; i < n; i++) out[i] = r(r(r(r(x[i]! - mu) * inv) * weight[i]!) + bias[i]!);
  return out;
}

const softplus = (x: number, r: Rounder) => (x > 20 ? x : r(Math.log1p(r(Math.exp(x)))));
const silu = (x: number, r: Rounder) => r(x * r(1 / r(1 + r(Math.exp(-x)))));

/**
 * The whole model on the host, image by image. images `[B, C, S, S]`. Each block:
 *   residual += hidden (the first block takes the tokens as the residual); h = norm(residual)
 *   x = in_proj_x h (+ its bias), z = in_proj_z h (+ its bias)           [L, D] each
 *   for each direction k with order o_k (scanOrder):
 *     x_k[t] = x[o_k[t]], z_k[t] = z[o_k[t]]                          the direction's sequence
 *     u = silu(causal_conv_k(x_k) (+ its bias));  (dt, B, C) = x_proj_k u
 *     delta = softplus(dt_proj_k dt + dt_bias_k);  A = -exp(A_k_log)
 *     h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t;  y_k[t] = (C_t . h_t + D_k u_t) silu(z_k[t])
 *   y[j] = scale * sum_k y_k[inverse_k[j]]   (scale 1/K with if_devide_out, else 1)
 *   hidden = out_proj y (+ its bias), times gamma per channel with a layer scale
 * then residual += hidden, norm_f, the class token (or the pool), head; with final_pool_type
 * 'max' the head runs on every token and each class keeps its largest logit (hustvl's forward).
 */
export function vimRef(
  config: VimConfig,
  read: TensorReader,
  images: HostTensor,
  options: RefOptions = {},
): VimRefResult {
  const r = rounderFor(options);
  const shapes = vimTensorShapes(config);
  const w = (name: string) => read(name, shapes.get(name)!);
  const {
    embedDim: M,
    dInner: D,
    dState: N,
    dConv: kw,
    dtRank: R,
    channels: Ch,
    patchSize: p,
    stride: s,
  } = config;
  const S = config.imgSize;
  const order = scanOrder(config);
  const { grid: g, length: L, clsIndex } = order;
  const B = images.shape[0]!;
  const scale = config.divideOut ? 1 / order.directions.length : 1;
  const convW = w('patch_embed.proj.weight');
  const convB = w('patch_embed.proj.bias');
  const cls = config.clsToken ? w('cls_token') : undefined;
  const pos = config.absPosEmbed ? w('pos_embed') : undefined;
  const layers = Array.from({ length: config.depth }, (_, i) => {
    const l = `layers.${i}.`;
    const m = `${l}mixer.`;
    return {
      norm: w(`${l}norm.weight`),
      normBias: config.rmsNorm ? undefined : w(`${l}norm.bias`),
      inProj: w(`${m}in_proj.weight`),
      inBias: config.projBias ? w(`${m}in_proj.bias`) : undefined,
      outProj: w(`${m}out_proj.weight`),
      outBias: config.projBias ? w(`${m}out_proj.bias`) : undefined,
      gamma: config.layerScale ? w(`${m}gamma`) : undefined,
      dirs: order.directions.map(({ name, order: o }) => {
        const sfx = DIRECTION_SUFFIX[name];
        return {
          order: o,
          inverse: inverseOrder(o),
          conv: w(`${m}conv1d${sfx}.weight`),
          convBias: config.convBias ? w(`${m}conv1d${sfx}.bias`) : undefined,
          xProj: w(`${m}x_proj${sfx}.weight`),
          dtProj: w(`${m}dt_proj${sfx}.weight`),
          dtBias: w(`${m}dt_proj${sfx}.bias`),
          A: Array.from(w(`${m}A${sfx}_log`), (v) => r(-Math.exp(v))),
          D: w(`${m}D${sfx}`),
        };
      }),
    };
  });
  const normF = w('norm_f.weight');
  const normFBias = config.rmsNorm ? undefined : w('norm_f.bias');
  const head = w('head.weight');
  const headBias = w('head.bias');

  const features = new Float64Array(B * M);
  const logits = new Float64Array(B * config.numClasses);
  const tokensOut = new Float64Array(B * L * M);
  for (let b = 0; b < B; b++) {
    const img = (c: number, y: number, x: number) => images.data[((b * Ch + c) * S + y) * S + x]!;
    // Patch embedding: a conv with kernel p and stride s; tokens [L][M].
    const residual: Float64Array[] = [];
    for (let t = 0; t < L; t++) {
      const row = new Float64Array(M);
      if (t === clsIndex) for (let m = 0; m < M; m++) row[m] = cls![m]!;
      else {
        const patch = clsIndex >= 0 && t > clsIndex ? t - 1 : t;
        const [pr, pc] = [Math.floor(patch / g), patch % g];
        for (let m = 0; m < M; m++) {
          let acc = 0;
          for (let c = 0; c < Ch; c++)
            for (let i = 0; i < p; i++)
              for (let j = 0; j < p; j++)
                acc = r(acc + r(convW[((m * Ch + c) * p + i) * p + j]! * img(c, pr * s + i, pc * s + j)));
          row[m] = r(acc + convB[m]!);
        }
      }
      if (pos) for (let m = 0; m < M; m++) row[m] = r(row[m]! + pos[t * M + m]!);
      residual.push(row);
    }
    let hidden: Float64Array[] | undefined;
    for (const layer of layers) {
      if (hidden)
        for (let t = 0; t < L; t++)
          for (let m = 0; m < M; m++) residual[t]![m] = r(residual[t]![m]! + hidden[t]![m]!);
      const h = residual.map((row) => normRow(row, layer.norm, layer.normBias, config.eps, r));
      const inBias = (o: number) => (layer.inBias ? layer.inBias[o]! : 0);
      const x = h.map((row) =>
        Float64Array.from({ length: D }, (_, c) => r(dot(layer.inProj, c * M, row, 0, M, r) + inBias(c))),
      );
      const z = h.map((row) =>
        Float64Array.from({ length: D }, (_, c) =>
          r(dot(layer.inProj, (D + c) * M, row, 0, M, r) + inBias(D + c)),
        ),
      );
      const merged = Array.from({ length: L }, () => new Float64Array(D));
      for (const dir of layer.dirs) {
        const xk = dir.order.map((tok) => x[tok]!);
        const zk = dir.order.map((tok) => z[tok]!);
        // Causal depthwise conv over the direction's steps, then SiLU.
        const u = xk.map((_, t) =>
          Float64Array.from({ length: D }, (_, c) => {
            let acc = dir.convBias ? dir.convBias[c]! : 0;
            for (let j = 0; j < kw; j++) {
              const src = t - (kw - 1) + j;
              if (src >= 0) acc = r(acc + r(dir.conv[c * kw + j]! * xk[src]![c]!));
            }
            return silu(acc, r);
          }),
        );
        const state = new Float64Array(D * N);
        const yk: Float64Array[] = [];
        for (let t = 0; t < L; t++) {
          const dbl = Float64Array.from({ length: R + 2 * N }, (_, o) =>
            dot(dir.xProj, o * D, u[t]!, 0, D, r),
          );
          const y = new Float64Array(D);
          for (let c = 0; c < D; c++) {
            const delta = softplus(r(dot(dir.dtProj, c * R, dbl, 0, R, r) + dir.dtBias[c]!), r);
            const du = r(delta * u[t]![c]!);
            let acc = 0;
            for (let n = 0; n < N; n++) {
              const dA = r(Math.exp(r(delta * dir.A[c * N + n]!)));
              const hs = r(r(dA * state[c * N + n]!) + r(du * dbl[R + n]!));
              state[c * N + n] = hs;
              acc = r(acc + r(dbl[R + N + n]! * hs));
            }
            y[c] = r(r(acc + r(dir.D[c]! * u[t]![c]!)) * silu(zk[t]![c]!, r));
          }
          yk.push(y);
        }
        for (let tok = 0; tok < L; tok++) {
          const src = yk[dir.inverse[tok]!]!;
          for (let c = 0; c < D; c++) merged[tok]![c] = r(merged[tok]![c]! + src[c]!);
        }
      }
      hidden = merged.map((row) => {
        const scaled = row.map((v) => r(v * scale));
        return Float64Array.from({ length: M }, (_, m) => {
          let v = dot(layer.outProj, m * D, scaled, 0, D, r);
          if (layer.outBias) v = r(v + layer.outBias[m]!);
          return layer.gamma ? r(v * layer.gamma[m]!) : v;
        });
      });
    }
    if (hidden)
      for (let t = 0; t < L; t++)
        for (let m = 0; m < M; m++) residual[t]![m] = r(residual[t]![m]! + hidden[t]![m]!);
    const normed = residual.map((row) => normRow(row, normF, normFBias, config.eps, r));
    normed.forEach((row, t) => {
      tokensOut.set(row, (b * L + t) * M);
    });
    let feat: Float64Array;
    if (clsIndex >= 0) feat = normed[clsIndex]!;
    else if (config.finalPool === 'none') feat = normed[L - 1]!;
    else if (config.finalPool === 'max')
      feat = Float64Array.from({ length: M }, (_, m) => Math.max(...normed.map((row) => row[m]!)));
    else
      feat = Float64Array.from({ length: M }, (_, m) => {
        let acc = 0;
        for (const row of normed) acc = r(acc + row[m]!);
        return r(acc / L);
      });
    features.set(feat, b * M);
    // hustvl's 'max' pools the logits, not the features: the head on every token, then each
    // class's largest logit
    const pooled = clsIndex < 0 && config.finalPool === 'max' ? normed : [feat];
    for (let o = 0; o < config.numClasses; o++) {
      logits[b * config.numClasses + o] = Math.max(
        ...pooled.map((row) => r(dot(head, o * M, row, 0, M, r) + headBias[o]!)),
      );
    }
  }
  return { features, logits, tokens: tokensOut };
}
