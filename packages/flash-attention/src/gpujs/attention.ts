/**
 * gpu.js programs for FlashAttention. gpu.js has no workgroup memory and one output value
 * per thread, so:
 *
 *   forward  lse:  one thread per query row: the online softmax over its visible keys
 *                  (running max m and denominator l, rescaled as the max grows) -> m + log l.
 *            out:  one thread per output element (row i, channel e): sum over visible keys
 *                  of exp(s_ij - lse_i) v_je, recomputing s_ij. No score matrix is stored:
 *                  memory beyond inputs and outputs is the lse (O(N)).
 *   backward D:    one thread per query row, D_i = dO_i . O_i.
 *            dq:   one thread per element of dq; dk, dv: one thread per element of dk / dv,
 *                  over the group's query heads and the rows that see the key. P and dS are
 *                  recomputed from the saved lse.
 *
 * Every kernel reads the per-sequence table of ../layout.ts (qBase, qLen, kBase, kLen,
 * lseBase per sequence, then the ALiBi slopes) as floats: exact below 2^24, like every
 * gpu.js index. A NaN or +Infinity score (it fails s < inf) poisons its row.
 */
import type { Backend, GpuJsProgram, Tensor } from '@longseq/backend';
import {
  type FlashAttentionAttrs,
  type FlashAttentionGradOutputs,
  type FlashAttentionOutputs,
  flashAttentionBackwardKernel,
  flashAttentionKernel,
  windowInt,
} from '../contract';
import { SPAN_FIELDS, spanTable } from '../layout';

const LOOP_MAX = 1 << 24;

/** The scalars every kernel takes after its inputs, in this order. */
const SCALARS =
  'seqCount, heads, group, d, qHS, qTS, kHS, kTS, lseHS, wl, wr, scale, softcap, nqPad, nkPad, kvHeads, slopesAt, alibiOn, inf';

function scalarValues(attrs: FlashAttentionAttrs): number[] {
  const l = attrs.layout;
  const packed = l.form === 'packed';
  return [
    l.sequences.length,
    l.heads,
    l.group,
    l.d,
    l.qHeadStride,
    l.qTokenStride,
    l.kHeadStride,
    l.kTokenStride,
    l.lseHeadStride,
    windowInt(attrs.windowLeft),
    windowInt(attrs.windowRight),
    attrs.scale,
    attrs.softcap,
    // padded: Nq, Nk; packed: total query and key tokens
    packed ? l.qShape[0]! : l.qShape[2]!,
    packed ? l.kShape[0]! : l.kShape[2]!,
    l.kvHeads,
    l.sequences.length * SPAN_FIELDS,
    attrs.alibiSlopes ? 1 : 0,
    Number.POSITIVE_INFINITY,
  ];
}

/**
 * From a logsumexp index `t` to (seq, h, i) and the sequence's table entries. Padded:
 * lse [B, H, Nq]; packed: lse [H, totalQ], the sequence found by scanning the offsets.
 */
const ROW_FROM_LSE_INDEX = `
  let seq = 0;
  let h = 0;
  let i = 0;
  if (this.constants.packed > 0) {
    h = Math.floor(t / nqPad);
    const token = t - h * nqPad;
    for (let s = 0; s < seqCount; s++) {
      if (token >= table[s * 5 + 4]) {
        seq = s;
      }
    }
    i = token - table[seq * 5 + 4];
  } else {
    seq = Math.floor(t / (heads * nqPad));
    const r = t - seq * heads * nqPad;
    h = Math.floor(r / nqPad);
    i = r - h * nqPad;
  }
  const qLen = table[seq * 5 + 1];
  const kLen = table[seq * 5 + 3];
  const qRow = table[seq * 5] + h * qHS + i * qTS;
  const kHead = table[seq * 5 + 2] + Math.floor(h / group) * kHS;
  const pos = i + kLen - qLen;
  const lo = Math.max(0, pos - wl);
  const hi = Math.min(kLen - 1, pos + wr);`;

/** s = scale * (q_qRow . k_kRow), softcapped, minus the ALiBi bias of key j. */
const SCORE = `
      let dot = 0;
      for (let e = 0; e < d; e++) {
        dot = dot + q[qRow + e] * k[kRow + e];
      }
      let score = dot * scale;
      let capped = score;
      if (softcap > 0) {
        capped = softcap * tanhStable(score / softcap);
        score = capped;
      }
      if (alibiOn > 0) {
        score = score - table[slopesAt + h] * Math.abs(pos - j);
      }`;

/** tanh for any finite x (exp(-2|x|) cannot overflow), with a series near 0 where 1 - e^(-2|x|) cancels. */
const tanhStable = `function tanhStable(x) {
  const ax = Math.abs(x);
  if (ax < 0.0625) {
    const x2 = x * x;
    return x * (1 + x2 * (-0.3333333333333333 + x2 * (0.13333333333333333 + x2 * -0.05396825396825397)));
  }
  const t = Math.exp(-2 * ax);
  const r = (1 - t) / (1 + t);
  if (x < 0) {
    return -r;
  }
  return r;
}`;

/** One thread per query row: the online softmax's (m, l) over visible keys, then m + log l. */
const forwardLse = `function attentionLse(q, k, table, ${SCALARS}) {
  const t = this.thread.x;${ROW_FROM_LSE_INDEX}
  if (i >= qLen) {
    return -inf;
  }
  let m = -3.4028234e38;
  let l = 0;
  for (let jj = 0; jj < hi - lo + 1; jj++) {
    const j = lo + jj;
    const kRow = kHead + j * kTS;${SCORE}
    if (score < inf) {
      const mNew = Math.max(m, score);
      l = l * Math.exp(m - mNew) + Math.exp(score - mNew);
      m = mNew;
    } else {
      l = inf;
    }
  }
  if (l === 0) {
    return -inf;
  }
  if (l < inf) {
    return m + Math.log(l);
  }
  return inf - inf;
}`;

/** From a flat q index to the logsumexp index t of its row, and the channel e. */
const LSE_INDEX_FROM_Q_INDEX = `
  const x = this.thread.x;
  let t = 0;
  let ch = 0;
  if (this.constants.packed > 0) {
    const token = Math.floor(x / (heads * d));
    const rem = x - token * heads * d;
    const hh = Math.floor(rem / d);
    ch = rem - hh * d;
    t = hh * nqPad + token;
  } else {
    t = Math.floor(x / d);
    ch = x - t * d;
  }`;

/** One thread per output element: sum over visible keys of exp(s_ij - lse_i) v_je. */
const forwardOut = `function attentionOut(q, k, v, table, lse, ${SCALARS}) {${LSE_INDEX_FROM_Q_INDEX}${ROW_FROM_LSE_INDEX}
  if (i >= qLen) {
    return 0;
  }
  const rowLse = lse[t];
  if (rowLse === -inf) {
    return 0;
  }
  if (rowLse < inf) {
    let acc = 0;
    for (let jj = 0; jj < hi - lo + 1; jj++) {
      const j = lo + jj;
      const kRow = kHead + j * kTS;${SCORE}
      acc = acc + Math.exp(score - rowLse) * v[kRow + ch];
    }
    return acc;
  }
  return inf - inf;
}`;

/** Backward pass 1: D_i = dO_i . O_i (0 for rows outside every sequence). */
const backwardDot = `function attentionDot(o, dOut, table, ${SCALARS}) {
  const t = this.thread.x;
  let seq = 0;
  let h = 0;
  let i = 0;
  if (this.constants.packed > 0) {
    h = Math.floor(t / nqPad);
    const token = t - h * nqPad;
    for (let s = 0; s < seqCount; s++) {
      if (token >= table[s * 5 + 4]) {
        seq = s;
      }
    }
    i = token - table[seq * 5 + 4];
  } else {
    seq = Math.floor(t / (heads * nqPad));
    const r = t - seq * heads * nqPad;
    h = Math.floor(r / nqPad);
    i = r - h * nqPad;
  }
  if (i >= table[seq * 5 + 1]) {
    return 0;
  }
  const row = table[seq * 5] + h * qHS + i * qTS;
  let acc = 0;
  for (let e = 0; e < d; e++) {
    acc = acc + dOut[row + e] * o[row + e];
  }
  return acc;
}`;

/** dS_ij / scale-free factor: P (dP - D) times softcap's tanh derivative, times scale. */
const DS = `
      const p = Math.exp(score - rowLse);
      let dp = 0;
      for (let e2 = 0; e2 < d; e2++) {
        dp = dp + dOut[qRow + e2] * v[kRow + e2];
      }
      let ds = p * (dp - rowD) * scale;
      if (softcap > 0) {
        const tc = capped / softcap;
        ds = ds * (1 - tc * tc);
      }`;

/** One thread per element of dq: sum over visible keys of dS_ij k_je. */
const backwardDq = `function attentionDq(q, k, v, dOut, table, lse, delta, ${SCALARS}) {${LSE_INDEX_FROM_Q_INDEX}${ROW_FROM_LSE_INDEX}
  if (i >= qLen) {
    return 0;
  }
  const rowLse = lse[t];
  const rowD = delta[t];
  if (rowLse === -inf) {
    return 0;
  }
  let acc = 0;
  for (let jj = 0; jj < hi - lo + 1; jj++) {
    const j = lo + jj;
    const kRow = kHead + j * kTS;${SCORE}${DS}
    acc = acc + ds * k[kRow + ch];
  }
  return acc;
}`;

/**
 * One thread per element of dk or dv (constant `wantV`): over the group's query heads and
 * the rows i that see key j (p - left <= j <= p + right, p = i + kLen - qLen).
 */
const backwardDkv = `function attentionDkv(q, k, v, dOut, table, lse, delta, ${SCALARS}) {
  const x = this.thread.x;
  let seq = 0;
  let kvh = 0;
  let j = 0;
  let ch = 0;
  if (this.constants.packed > 0) {
    const token = Math.floor(x / (kvHeads * d));
    const rem = x - token * kvHeads * d;
    kvh = Math.floor(rem / d);
    ch = rem - kvh * d;
    for (let s = 0; s < seqCount; s++) {
      if (token * kvHeads * d >= table[s * 5 + 2]) {
        seq = s;
      }
    }
    j = token - table[seq * 5 + 2] / (kvHeads * d);
  } else {
    const r = Math.floor(x / d);
    ch = x - r * d;
    seq = Math.floor(r / (kvHeads * nkPad));
    const rr = r - seq * kvHeads * nkPad;
    kvh = Math.floor(rr / nkPad);
    j = rr - kvh * nkPad;
  }
  const qLen = table[seq * 5 + 1];
  const kLen = table[seq * 5 + 3];
  if (j >= kLen) {
    return 0;
  }
  const kRow = table[seq * 5 + 2] + kvh * kHS + j * kTS;
  const offset = kLen - qLen;
  const iLo = Math.max(0, j - wr - offset);
  const iHi = Math.min(qLen - 1, j + wl - offset);
  let acc = 0;
  for (let g = 0; g < group; g++) {
    const h = kvh * group + g;
    for (let ii = 0; ii < iHi - iLo + 1; ii++) {
      const i = iLo + ii;
      const pos = i + offset;
      const qRow = table[seq * 5] + h * qHS + i * qTS;
      const stat = table[seq * 5 + 4] + h * lseHS + i;
      const rowLse = lse[stat];
      const rowD = delta[stat];
      if (rowLse > -inf) {${SCORE}${DS}
        if (this.constants.wantV > 0) {
          acc = acc + p * dOut[qRow + ch];
        } else {
          acc = acc + ds * q[qRow + ch];
        }
      } else if (!(rowLse < inf)) {
        // A poisoned row (lse NaN or +inf) sees this key: the gradient is NaN, as in the
        // reference. Added explicitly, since exp of NaN need not stay NaN in a shader.
        acc = acc + (inf - inf);
      }
    }
  }
  return acc;
}`;

function constantsOf(attrs: FlashAttentionAttrs, extra: Record<string, number> = {}): Record<string, number> {
  return {
    packed: attrs.layout.form === 'packed' ? 1 : 0,
    ...extra,
  };
}

function program(
  name: string,
  kernel: string,
  inputs: Tensor[],
  output: Tensor,
  attrs: FlashAttentionAttrs,
  extra: Record<string, number> = {},
): GpuJsProgram {
  const constants = constantsOf(attrs, extra);
  return {
    kind: 'gpujs',
    name,
    cacheKey: Object.entries(constants)
      .map(([key, value]) => `${key}${value}`)
      .join('|'),
    kernel,
    inputs,
    scalars: scalarValues(attrs),
    output,
    constants,
    loopMaxIterations: LOOP_MAX,
    functions: [tanhStable],
  };
}

/** The table of ../layout.ts followed by the slopes, as floats. */
function tableTensor(backend: Backend, attrs: FlashAttentionAttrs): Tensor {
  const data = [...spanTable(attrs.layout), ...(attrs.alibiSlopes ?? []), 0];
  return backend.tensor(data, [data.length]);
}

async function writeForward(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: FlashAttentionAttrs,
  { out, lse }: FlashAttentionOutputs,
): Promise<void> {
  if (lse.size === 0) return;
  const [q, k, v] = inputs as [Tensor, Tensor, Tensor];
  const table = tableTensor(backend, attrs);
  try {
    await backend.run(program('attention_lse', forwardLse, [q, k, table], lse, attrs));
    if (out.size > 0)
      await backend.run(program('attention_out', forwardOut, [q, k, v, table, lse], out, attrs));
  } finally {
    table.dispose();
  }
}

export const flashAttentionGpuJsKernel = flashAttentionKernel('gpujs', writeForward);

async function writeBackward(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: FlashAttentionAttrs,
  { dq, dk, dv }: FlashAttentionGradOutputs,
): Promise<void> {
  const [q, k, v, o, dOut, lse] = inputs as Tensor[];
  const table = tableTensor(backend, attrs);
  const delta = lse!.size > 0 ? backend.empty(lse!.shape) : undefined;
  try {
    if (delta) await backend.run(program('attention_dot', backwardDot, [o!, dOut!, table], delta, attrs));
    const operands = [q!, k!, v!, dOut!, table, lse!, delta ?? lse!];
    if (dq.size > 0) await backend.run(program('attention_dq', backwardDq, operands, dq, attrs));
    if (dk.size > 0) {
      await backend.run(program('attention_dk', backwardDkv, operands, dk, attrs, { wantV: 0 }));
      await backend.run(program('attention_dv', backwardDkv, operands, dv, attrs, { wantV: 1 }));
    }
  } finally {
    table.dispose();
    delta?.dispose();
  }
}

export const flashAttentionBackwardGpuJsKernel = flashAttentionBackwardKernel('gpujs', writeBackward);
