/**
 * WebGPU paged attention, split over the context like vLLM's PagedAttention V2.
 *
 * Pass 1 (partition): one workgroup per (query row, kv head, partition of P keys). It
 * handles all G = H / KVH query heads that share the kv head, so each key and value row is
 * read from memory once for the whole group.
 *   - scores: thread t takes keys t, t + WG, ... of the partition, reads each key row
 *     through the block table (vec4 loads when D % 4 == 0) and computes its G dot products
 *     against the group's queries, which sit in workgroup memory (every thread reads the
 *     same address: a broadcast). No cross-thread reduction per key.
 *   - the partition's max and sum of exp per head: one tree reduction of G values per thread.
 *   - values: thread (token group tg, column c) accumulates p * v over keys tg, tg + TG, ...
 *     (a warp reads whole contiguous value rows), then the TG partial sums are added in
 *     workgroup memory. Writes the unnormalized partial output and (max, sum).
 * Pass 2 (reduce): one workgroup per (row, head) merges the partitions by the online-softmax
 * rule: out = sum_p e^(m_p - M) o_p / sum_p e^(m_p - M) l_p.
 *
 * Partitions past a sequence's length see no keys and report (max -FLT_MAX, sum 0), which the
 * merge weighs by 0. Head dim and group size are compile-time constants (register arrays
 * are sized by them); every shape else is a uniform.
 */
import { type Backend, type Tensor, type WebGpuProgram, dispatch1d } from '@longseq/backend';
import type { PagedAttentionAttrs } from '../contract';

/** Threads per partition workgroup. */
export function attentionWorkgroupSize(backend: Backend): number {
  return Math.min(256, 2 ** Math.floor(Math.log2(backend.limits.maxWorkgroupInvocations)));
}

/** Workgroup memory the partition kernel needs, in bytes. */
export function partitionSharedBytes(
  attrs: Pick<PagedAttentionAttrs, 'heads' | 'kvHeads' | 'headDim' | 'partitionSize'>,
  wg: number,
): number {
  const group = attrs.heads / attrs.kvHeads;
  const vec = attrs.headDim % 4 === 0 ? 4 : 1;
  const columns = attrs.headDim / vec;
  // queries, scores, reduction scratch, value partial sums (one group head at a time)
  return (
    4 *
    (group * attrs.headDim +
      group * attrs.partitionSize +
      group * wg +
      Math.floor(wg / columns) * columns * vec)
  );
}

/** Thread-per-key scores: thread t reads whole key rows t, t + WG, ... (no cross-thread reduction). */
const threadScores = /* wgsl */ `
  for (var j = lid; j < P; j += WG) {
    if (j < count) {
      let base = (slot_of(seq, start + j) * u.kv_heads + kvh) * C;
      var s: array<f32, G>;
      for (var g = 0u; g < G; g++) { s[g] = 0.0; }
      for (var c = 0u; c < C; c++) {
        let k = key_cache[base + c];
        for (var g = 0u; g < G; g++) { s[g] += dot_kv(q_sh[g * C + c], k); }
      }
      for (var g = 0u; g < G; g++) {
        var score = s[g];
        if (u.softcap > 0.0) { score = u.softcap * tanh(score / u.softcap); }
        score -= slope[g] * f32(len - 1 - i32(start + j));
        p_sh[g * P + j] = score;
        m[g] = max(m[g], score);
      }
    }
  }`;

/**
 * Subgroup scores: L lanes share a key, each reading every L-th vec4 of its row, so a
 * subgroup's load instruction covers L consecutive vec4s of sgSize / L rows (whole cache
 * lines: coalesced); the L partial dot products are summed with shuffle-xor. Subgroups are
 * numbered through a workgroup atomic (WebGPU does not promise which invocations form a
 * subgroup), and every loop has a constant trip count so the shuffles stay in uniform
 * control flow.
 */
function subgroupScores(lanes: number, wg: number, group: number, p: number): string {
  const keyGroups = wg / lanes;
  const iterations = Math.ceil(p / keyGroups);
  const shuffles: string[] = [];
  for (let offset = lanes / 2; offset >= 1; offset /= 2) {
    shuffles.push(`for (var g = 0u; g < G; g++) { s[g] += subgroupShuffleXor(s[g], ${offset}u); }`);
  }
  return /* wgsl */ `
  var first = 0u;
  if (sg_lane == 0u) { first = atomicAdd(&subgroup_count, 1u); }
  let sg_index = subgroupMax(first);
  let key_group = sg_index * (sg_size / ${lanes}u) + sg_lane / ${lanes}u;
  let lane_in_key = sg_lane % ${lanes}u;
  for (var it = 0u; it < ${iterations}u; it++) {
    let j = key_group + it * ${keyGroups}u;
    // zeroed explicitly: SwiftShader was seen keeping the previous iteration's values
    var s: array<f32, ${group}>;
    for (var g = 0u; g < G; g++) { s[g] = 0.0; }
    if (j < count) {
      let base = (slot_of(seq, start + j) * u.kv_heads + kvh) * C;
      for (var i = 0u; i < C / ${lanes}u; i++) {
        let c = i * ${lanes}u + lane_in_key;
        let k = key_cache[base + c];
        for (var g = 0u; g < G; g++) { s[g] += dot_kv(q_sh[g * C + c], k); }
      }
    }
    ${shuffles.join('\n    ')}
    if (j < count && lane_in_key == 0u) {
      for (var g = 0u; g < G; g++) {
        var score = s[g];
        if (u.softcap > 0.0) { score = u.softcap * tanh(score / u.softcap); }
        score -= slope[g] * f32(len - 1 - i32(start + j));
        p_sh[g * P + j] = score;
        m[g] = max(m[g], score);
      }
    }
  }`;
}

/**
 * Lanes per key for the subgroup scores: the largest of 8, 4, 2 that divides the row's
 * vec4 count and the device's subgroup size (and leaves whole subgroups in a workgroup);
 * 1 (thread-per-key) without subgroups.
 */
export function lanesPerKey(backend: Backend, headDim: number, wg: number): number {
  const sg = backend.limits.subgroupSize;
  if (!backend.features.has('subgroups') || sg < 2 || wg % sg !== 0) return 1;
  const columns = headDim % 4 === 0 ? headDim / 4 : headDim;
  for (const l of [8, 4, 2]) if (l <= sg && sg % l === 0 && columns % l === 0) return l;
  return 1;
}

export function partitionProgram(
  backend: Backend,
  attrs: PagedAttentionAttrs,
  tensors: {
    q: Tensor;
    keyCache: Tensor;
    valueCache: Tensor;
    blockTables: Tensor;
    contextLens: Tensor;
    alibiSlopes: Tensor;
    partialOut: Tensor;
    partialStats: Tensor;
  },
): WebGpuProgram {
  const wg = attentionWorkgroupSize(backend);
  const group = attrs.heads / attrs.kvHeads;
  const vec = attrs.headDim % 4 === 0 ? 4 : 1;
  const kv = vec === 4 ? 'vec4<f32>' : 'f32';
  const columns = attrs.headDim / vec;
  const tokenGroups = Math.floor(wg / columns);
  const p = attrs.partitionSize;
  const partitions = Math.ceil(attrs.maxContextLen / p);
  const dotExpr = vec === 4 ? 'dot(a, b)' : 'a * b';
  const lanes = attrs.lanesPerKey;
  const source = /* wgsl */ `
const WG: u32 = ${wg}u;
const G: u32 = ${group}u;
const C: u32 = ${columns}u;
const P: u32 = ${p}u;
const TG: u32 = ${tokenGroups}u;
const NO_MAX: f32 = -3.40282346e38;

var<workgroup> q_sh: array<${kv}, ${group * columns}>;
var<workgroup> p_sh: array<f32, ${group * p}>;
var<workgroup> red: array<f32, ${group * wg}>;
var<workgroup> acc_sh: array<${kv}, ${tokenGroups * columns}>;
${lanes > 1 ? 'var<workgroup> subgroup_count: atomic<u32>;' : ''}

fn dot_kv(a: ${kv}, b: ${kv}) -> f32 { return ${dotExpr}; }

// The slot (row of the cache) of token t of sequence seq.
fn slot_of(seq: u32, t: u32) -> u32 {
  let block = u32(block_tables[seq * u.max_blocks + t / u.block_size]);
  return block * u.block_size + t % u.block_size;
}

// Tree reduction of G values per thread (max when is_max, else sum); every thread gets the results.
fn reduce_group(vals: ptr<function, array<f32, ${group}>>, lid: u32, is_max: bool) {
  for (var g = 0u; g < G; g++) { red[g * WG + lid] = (*vals)[g]; }
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) {
      for (var g = 0u; g < G; g++) {
        let a = red[g * WG + lid];
        let b = red[g * WG + lid + stride];
        red[g * WG + lid] = select(a + b, max(a, b), is_max);
      }
    }
    workgroupBarrier();
  }
  for (var g = 0u; g < G; g++) { (*vals)[g] = red[g * WG]; }
  workgroupBarrier();
}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32${
          lanes > 1
            ? `,
        @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32`
            : ''
        }) {
  let linear = wid.x + wid.y * nwg.x;
  // ids past the grid still reach every barrier; they just write nothing
  let in_grid = linear < u.rows * u.kv_heads * u.partitions;
  let part = linear % u.partitions;
  let kvh = (linear / u.partitions) % u.kv_heads;
  let row = min(linear / (u.partitions * u.kv_heads), max(u.rows, 1u) - 1u);
  let seq = row / u.chunk;
  // causal within the chunk, bottom-right aligned: query i of C sees keys < len - (C - 1 - i)
  let len = max(i32(context_lens[seq]) - i32(u.chunk - 1u - row % u.chunk), 0);
  let start = part * P;
  let end = min(start + P, min(u32(len), u.max_context));
  let count = select(0u, end - start, end > start);

${lanes > 1 ? '  if (lid == 0u) { atomicStore(&subgroup_count, 0u); }\n' : ''}  for (var i = lid; i < G * C; i += WG) {
    let g = i / C;
    q_sh[i] = q[((row * u.heads) + kvh * G + g) * C + i % C] * u.scale;
  }
  workgroupBarrier();

  // scores: all G heads of the group at once for each key
  var slope: array<f32, ${group}>;
  for (var g = 0u; g < G; g++) { slope[g] = alibi_slopes[kvh * G + g]; }
  var m: array<f32, ${group}>;
  for (var g = 0u; g < G; g++) { m[g] = NO_MAX; }
${lanes > 1 ? subgroupScores(lanes, wg, group, p) : threadScores}
  reduce_group(&m, lid, true);
  var l: array<f32, ${group}>;
  for (var j = lid; j < P; j += WG) {
    for (var g = 0u; g < G; g++) {
      let w = select(0.0, exp(p_sh[g * P + j] - m[g]), j < count);
      p_sh[g * P + j] = w;
      l[g] += w;
    }
  }
  reduce_group(&l, lid, false);

  // values: thread (tg, c) sums p * v over keys tg, tg + TG, ...; whole rows per warp
  let c = lid % C;
  let tg = lid / C;
  var acc: array<${kv}, ${group}>;
  if (tg < TG) {
    for (var j = tg; j < count; j += TG) {
      let v = value_cache[(slot_of(seq, start + j) * u.kv_heads + kvh) * C + c];
      for (var g = 0u; g < G; g++) { acc[g] += p_sh[g * P + j] * v; }
    }
  }
  let out_base = (row * u.heads + kvh * G) * u.partitions + part;
  for (var g = 0u; g < G; g++) {
    if (tg < TG) { acc_sh[tg * C + c] = acc[g]; }
    workgroupBarrier();
    if (in_grid && lid < C) {
      var total = acc_sh[lid];
      for (var t = 1u; t < TG; t++) { total += acc_sh[t * C + lid]; }
      partial_out[(out_base + g * u.partitions) * C + lid] = total;
    }
    workgroupBarrier();
  }
  if (in_grid && lid < G) {
    partial_stats[(out_base + lid * u.partitions) * 2u] = m[lid];
    partial_stats[(out_base + lid * u.partitions) * 2u + 1u] = l[lid];
  }
}`;
  return {
    kind: 'webgpu',
    name: 'paged_attention_partition',
    cacheKey: `wg${wg}:g${group}:d${attrs.headDim}:p${p}:l${lanes}`,
    inputs: [
      { name: 'q', tensor: tensors.q, elementType: kv },
      { name: 'key_cache', tensor: tensors.keyCache, elementType: kv },
      { name: 'value_cache', tensor: tensors.valueCache, elementType: kv },
      { name: 'block_tables', tensor: tensors.blockTables },
      { name: 'context_lens', tensor: tensors.contextLens },
      { name: 'alibi_slopes', tensor: tensors.alibiSlopes },
    ],
    outputs: [
      { name: 'partial_out', tensor: tensors.partialOut, elementType: kv },
      { name: 'partial_stats', tensor: tensors.partialStats },
    ],
    uniforms: [
      { name: 'rows', type: 'u32', value: attrs.rows },
      { name: 'chunk', type: 'u32', value: attrs.chunk },
      { name: 'heads', type: 'u32', value: attrs.heads },
      { name: 'kv_heads', type: 'u32', value: attrs.kvHeads },
      { name: 'block_size', type: 'u32', value: attrs.blockSize },
      { name: 'max_blocks', type: 'u32', value: attrs.maxBlocks },
      { name: 'max_context', type: 'u32', value: attrs.maxContextLen },
      { name: 'partitions', type: 'u32', value: partitions },
      { name: 'scale', type: 'f32', value: attrs.scale },
      { name: 'softcap', type: 'f32', value: attrs.softcap },
    ],
    source,
    enables: lanes > 1 ? ['subgroups'] : [],
    dispatch: dispatch1d(attrs.rows * attrs.kvHeads * partitions, backend.limits.maxWorkgroupsPerDimension),
  };
}

const REDUCE_WG = 64;

export function reduceProgram(
  backend: Backend,
  attrs: PagedAttentionAttrs,
  tensors: { partialOut: Tensor; partialStats: Tensor; out: Tensor },
): WebGpuProgram {
  const vec = attrs.headDim % 4 === 0 ? 4 : 1;
  const kv = vec === 4 ? 'vec4<f32>' : 'f32';
  const partitions = Math.ceil(attrs.maxContextLen / attrs.partitionSize);
  const source = /* wgsl */ `
const NO_MAX: f32 = -3.40282346e38;

@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let rh = wid.x + wid.y * nwg.x;
  if (rh >= u.row_heads) { return; }
  var big_m = NO_MAX;
  for (var p = 0u; p < u.partitions; p++) { big_m = max(big_m, partial_stats[(rh * u.partitions + p) * 2u]); }
  var big_l = 0.0;
  for (var p = 0u; p < u.partitions; p++) {
    let s = (rh * u.partitions + p) * 2u;
    big_l += partial_stats[s + 1u] * exp(partial_stats[s] - big_m);
  }
  // a row with no keys at all (length 0) is zero
  let inv_l = select(0.0, 1.0 / big_l, big_l > 0.0);
  for (var c = lid; c < u.columns; c += ${REDUCE_WG}u) {
    var acc: ${kv};
    for (var p = 0u; p < u.partitions; p++) {
      let w = exp(partial_stats[(rh * u.partitions + p) * 2u] - big_m);
      acc += partial_out[(rh * u.partitions + p) * u.columns + c] * w;
    }
    out[rh * u.columns + c] = acc * inv_l;
  }
}`;
  return {
    kind: 'webgpu',
    name: 'paged_attention_reduce',
    cacheKey: `v${vec}`,
    inputs: [
      { name: 'partial_out', tensor: tensors.partialOut, elementType: kv },
      { name: 'partial_stats', tensor: tensors.partialStats },
    ],
    outputs: [{ name: 'out', tensor: tensors.out, elementType: kv }],
    uniforms: [
      { name: 'row_heads', type: 'u32', value: attrs.rows * attrs.heads },
      { name: 'partitions', type: 'u32', value: partitions },
      { name: 'columns', type: 'u32', value: attrs.headDim / vec },
    ],
    source,
    dispatch: dispatch1d(attrs.rows * attrs.heads, backend.limits.maxWorkgroupsPerDimension),
  };
}
