/**
 * gpu.js paged attention: three one-thread-per-output kernels (gpu.js has no workgroup
 * memory), the portable form of the WGSL kernel:
 *   scores [N, H, L]  one thread per (row, head, key): q . k through the block table, scaled
 *                     (and soft-capped); keys past the row's length get -FLT_MAX
 *   stats  [N, H, 2]  one thread per (row, head) and parity: the running max and the sum of
 *                     exp (online softmax), computed twice, once per parity
 *   out    [N, H, D]  one thread per output element: sum_t e^(s_t - m) v_t / l
 * L is maxContextLen. Indices are float32 in gpu.js: exact below 2^24 elements (the op checks).
 * Sources are strings: gpu.js compiles from source, and minifiers break functions.
 */
import type { GpuJsProgram, Tensor } from '@longseq/backend';
import type { PagedAttentionAttrs } from '../contract';

// Row r's length: the sequence's length minus the queries of its chunk after r (causal).
const LENGTH = `
  const seq = Math.floor(row / chunk);
  const len = contextLens[seq] - (chunk - 1 - (row - seq * chunk));`;

const scores = `function pagedScores(q, keyCache, blockTables, contextLens, alibiSlopes, heads, kvHeads, headLen, blockLen, maxBlocks, maxLen, chunk, scale, softcap) {
  const x = this.thread.x;
  const rh = Math.floor(x / maxLen);
  const t = x - rh * maxLen;
  const row = Math.floor(rh / heads);
  const h = rh - row * heads;${LENGTH}
  if (t >= len) {
    return -3.4028234e38;
  }
  const kvh = Math.floor(h / (heads / kvHeads));
  const logical = Math.floor(t / blockLen);
  const block = blockTables[seq * maxBlocks + logical];
  const slot = block * blockLen + (t - logical * blockLen);
  const kBase = (slot * kvHeads + kvh) * headLen;
  const qBase = rh * headLen;
  let dot = 0;
  for (let i = 0; i < headLen; i++) {
    dot = dot + q[qBase + i] * keyCache[kBase + i];
  }
  let s = dot * scale;
  if (softcap > 0) {
    const e = Math.exp(2 * s / softcap);
    s = softcap * (1 - 2 / (e + 1));
  }
  s = s - alibiSlopes[h] * (len - 1 - t);
  return s;
}`;

const stats = `function pagedStats(scores, maxLen) {
  const rh = Math.floor(this.thread.x / 2);
  let m = -3.4028234e38;
  let l = 0;
  for (let t = 0; t < maxLen; t++) {
    const s = scores[rh * maxLen + t];
    if (s > -3.4028234e38) {
      const mNew = Math.max(m, s);
      l = l * Math.exp(m - mNew) + Math.exp(s - mNew);
      m = mNew;
    }
  }
  if (this.thread.x - rh * 2 < 0.5) {
    return m;
  }
  return l;
}`;

const output = `function pagedOutput(scores, stats, valueCache, blockTables, contextLens, heads, kvHeads, headLen, blockLen, maxBlocks, maxLen, chunk) {
  const x = this.thread.x;
  const rh = Math.floor(x / headLen);
  const c = x - rh * headLen;
  const row = Math.floor(rh / heads);
  const h = rh - row * heads;${LENGTH}
  const kvh = Math.floor(h / (heads / kvHeads));
  const m = stats[rh * 2];
  const l = stats[rh * 2 + 1];
  if (l === 0) {
    return 0;
  }
  let acc = 0;
  for (let t = 0; t < maxLen; t++) {
    if (t < len) {
      const logical = Math.floor(t / blockLen);
      const block = blockTables[seq * maxBlocks + logical];
      const slot = block * blockLen + (t - logical * blockLen);
      acc = acc + Math.exp(scores[rh * maxLen + t] - m) * valueCache[(slot * kvHeads + kvh) * headLen + c];
    }
  }
  return acc / l;
}`;

export function pagedAttentionPrograms(
  attrs: PagedAttentionAttrs,
  t: {
    q: Tensor;
    keyCache: Tensor;
    valueCache: Tensor;
    blockTables: Tensor;
    contextLens: Tensor;
    alibiSlopes: Tensor;
    scores: Tensor;
    stats: Tensor;
    out: Tensor;
  },
): GpuJsProgram[] {
  const shape = [
    attrs.heads,
    attrs.kvHeads,
    attrs.headDim,
    attrs.blockSize,
    attrs.maxBlocks,
    attrs.maxContextLen,
    attrs.chunk,
  ];
  return [
    {
      kind: 'gpujs',
      name: 'pagedScores',
      cacheKey: '',
      kernel: scores,
      inputs: [t.q, t.keyCache, t.blockTables, t.contextLens, t.alibiSlopes],
      scalars: [...shape, attrs.scale, attrs.softcap],
      output: t.scores,
    },
    {
      kind: 'gpujs',
      name: 'pagedStats',
      cacheKey: '',
      kernel: stats,
      inputs: [t.scores],
      scalars: [attrs.maxContextLen],
      output: t.stats,
    },
    {
      kind: 'gpujs',
      name: 'pagedOutput',
      cacheKey: '',
      kernel: output,
      inputs: [t.scores, t.stats, t.valueCache, t.blockTables, t.contextLens],
      scalars: shape,
      output: t.out,
    },
  ];
}
