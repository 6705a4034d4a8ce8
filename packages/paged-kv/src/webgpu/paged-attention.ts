/**
 * WebGPU paged attention, split over the context like vLLM's PagedAttention V2.
 *
 * Pass 1 (partition), two kernels. Both handle all G = H / KVH query heads that share a kv
 * head together, so each key and value row is read from memory once for the whole group.
 *
 * The subgroup kernel (variant 'subgroup', the default where the device has subgroups): one
 * workgroup per (query row, HW kv heads, partition of P keys), a single pass over keys and
 * values with an online softmax in registers and no barrier until the final merge; see
 * onlinePartitionProgram. On an H100 (64 seqs x 4096, 8 kv heads, d = 128, f32) it took
 * 2.36 ms where the earlier two-phase kernel took 5.90 ms.
 *
 * The thread kernel (variant 'thread', and devices without subgroups): one workgroup per
 * (query row, kv head, partition).
 *   - scores: thread t takes keys t, t + WG, ... of the partition, reads each key row
 *     through the block table (vec4 loads when D % 4 == 0) and computes its G dot products
 *     against the group's queries, which sit in workgroup memory (every thread reads the
 *     same address: a broadcast). No cross-thread reduction per key.
 *   - the partition's max and sum of exp per head: one tree reduction of G values per thread.
 *   - values: thread (token group tg, column c) accumulates p * v over keys tg, tg + TG, ...
 *     (a warp reads whole contiguous value rows), then the TG partial sums are added in
 *     workgroup memory.
 * Both write the unnormalized partial output and (max, sum) per (row, head, partition).
 *
 * Pass 2 (reduce): one workgroup per (row, head) merges the partitions by the online-softmax
 * rule: out = sum_p e^(m_p - M) o_p / sum_p e^(m_p - M) l_p.
 *
 * Partitions past a sequence's length see no keys and report (max -FLT_MAX, sum 0), which the
 * merge weighs by 0. Head dim and group size are compile-time constants (register arrays
 * are sized by them); every shape else is a uniform.
 */
import { type Backend, type Tensor, type WebGpuProgram, dispatch1d } from '@longseq/backend';
import type { PagedAttentionAttrs } from '../contract';

/** Threads per partition workgroup: `requested` (validated by the op), else 256 capped by the device. */
export function attentionWorkgroupSize(backend: Backend, requested?: number): number {
  return requested ?? Math.min(256, 2 ** Math.floor(Math.log2(backend.limits.maxWorkgroupInvocations)));
}

/** Workgroup memory the partition kernel needs, in bytes (`lanes` > 1: the subgroup kernel). */
export function partitionSharedBytes(
  attrs: Pick<PagedAttentionAttrs, 'heads' | 'kvHeads' | 'headDim' | 'partitionSize'>,
  wg: number,
  lanes = 1,
): number {
  const group = attrs.heads / attrs.kvHeads;
  const vec = attrs.headDim % 4 === 0 ? 4 : 1;
  const columns = attrs.headDim / vec;
  // subgroup kernel: one head's (max, sum, output row) per key group for the merge, and the subgroup counter
  if (lanes > 1) return (wg / lanes) * (attrs.headDim + 2) * 4 + 4;
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

interface PartitionTensors {
  q: Tensor;
  keyCache: Tensor;
  valueCache: Tensor;
  blockTables: Tensor;
  contextLens: Tensor;
  alibiSlopes: Tensor;
  partialOut: Tensor;
  partialStats: Tensor;
}

/** Pass 1: the subgroup kernel where `attrs.lanesPerKey` > 1, else the thread-per-key kernel. */
export function partitionProgram(
  backend: Backend,
  attrs: PagedAttentionAttrs,
  tensors: PartitionTensors,
): WebGpuProgram {
  const wg = attentionWorkgroupSize(backend, attrs.workgroupSize);
  const group = attrs.heads / attrs.kvHeads;
  const vec = attrs.headDim % 4 === 0 ? 4 : 1;
  const kv = vec === 4 ? 'vec4<f32>' : 'f32';
  const columns = attrs.headDim / vec;
  const tokenGroups = Math.floor(wg / columns);
  const p = attrs.partitionSize;
  const dotExpr = vec === 4 ? 'dot(a, b)' : 'a * b';
  const lanes = attrs.lanesPerKey;
  if (lanes > 1) return onlinePartitionProgram(backend, attrs, tensors);
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
        @builtin(local_invocation_index) lid: u32) {
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

  for (var i = lid; i < G * C; i += WG) {
    let g = i / C;
    q_sh[i] = q[((row * u.heads) + kvh * G + g) * C + i % C] * u.scale;
  }
  workgroupBarrier();

  // scores: all G heads of the group at once for each key
  var slope: array<f32, ${group}>;
  for (var g = 0u; g < G; g++) { slope[g] = alibi_slopes[kvh * G + g]; }
  var m: array<f32, ${group}>;
  for (var g = 0u; g < G; g++) { m[g] = NO_MAX; }
${threadScores}
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
  return partitionDescriptor(backend, attrs, tensors, {
    cacheKey: `thread:wg${wg}:g${group}:d${attrs.headDim}:p${p}`,
    source,
    enables: [],
  });
}

/** Bindings, uniforms and grid shared by both partition kernels. */
function partitionDescriptor(
  backend: Backend,
  attrs: PagedAttentionAttrs,
  tensors: PartitionTensors,
  kernel: { cacheKey: string; source: string; enables: string[]; kvHeadsPerWorkgroup?: number },
): WebGpuProgram {
  const kv = attrs.headDim % 4 === 0 ? 'vec4<f32>' : 'f32';
  const partitions = Math.ceil(attrs.maxContextLen / attrs.partitionSize);
  return {
    kind: 'webgpu',
    name: 'paged_attention_partition',
    cacheKey: kernel.cacheKey,
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
    source: kernel.source,
    ...(kernel.enables.length > 0 ? { enables: kernel.enables } : {}),
    dispatch: dispatch1d(
      attrs.rows * (attrs.kvHeads / (kernel.kvHeadsPerWorkgroup ?? 1)) * partitions,
      backend.limits.maxWorkgroupsPerDimension,
    ),
  };
}

/**
 * KV heads one subgroup-kernel workgroup covers: the largest power of two dividing kvHeads
 * with at least one key group per head and one merge thread per (head, column). Workgroups
 * covering all kv heads of a token read each cache row [KVH, D] whole, so a block's bytes
 * are contiguous reads of one workgroup instead of D-sized pieces spread over KVH of them.
 */
export function kvHeadsPerWorkgroup(
  attrs: Pick<PagedAttentionAttrs, 'kvHeads' | 'headDim'>,
  wg: number,
  lanes: number,
): number {
  const columns = attrs.headDim % 4 === 0 ? attrs.headDim / 4 : attrs.headDim;
  let heads = 1;
  while (heads * 2 * lanes <= wg && heads * 2 * columns <= wg && attrs.kvHeads % (heads * 2) === 0)
    heads *= 2;
  return heads;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * The subgroup partition kernel: one pass over the partition's keys and values with an
 * online softmax, no workgroup barrier until the final merge.
 *
 * L lanes of a subgroup form a key group that shares one key at a time: lane l holds columns
 * l, l + L, ... (vec4s) of the G queries in registers and reads the same columns of the key
 * and value rows, so one load instruction of the subgroup covers L consecutive vec4s of each
 * of its sgSize / L rows (whole 128-byte lines). The L partial dot products are summed with
 * shuffle-xor, after which every lane of the group has the G scores and updates its own
 * running (max, sum, output columns) per head. Key groups step through the partition
 * interleaved (group k takes keys k, k + KG, ...), so a workgroup step reads KG consecutive
 * tokens. The key and value rows of U steps are loaded before any of them is used, so a lane
 * has 2 U C / L vec4 loads in flight, and V never waits for the scores. At the end the KG key
 * groups are merged by the online-softmax rule through workgroup memory, one head at a time.
 *
 * The main loop has a constant trip count and no branch around a shuffle (subgroup
 * operations need uniform control flow): keys past the partition's count are clamped to
 * its last key (a cache hit) and masked out with select, never multiplied by 0 (the rows a
 * block table points past the length may hold anything). Subgroups are numbered through a
 * workgroup atomic because WebGPU does not promise which invocations form one.
 */
function onlinePartitionProgram(
  backend: Backend,
  attrs: PagedAttentionAttrs,
  tensors: PartitionTensors,
): WebGpuProgram {
  const wg = attentionWorkgroupSize(backend, attrs.workgroupSize);
  const group = attrs.heads / attrs.kvHeads;
  const vec = attrs.headDim % 4 === 0 ? 4 : 1;
  const kv = vec === 4 ? 'vec4<f32>' : 'f32';
  const columns = attrs.headDim / vec;
  const lanes = attrs.lanesPerKey;
  const perLane = columns / lanes;
  const keyGroups = wg / lanes;
  const p = attrs.partitionSize;
  const headsPerWg = kvHeadsPerWorkgroup(attrs, wg, lanes);
  const groupsPerHead = keyGroups / headsPerWg;
  const steps = Math.ceil(p / groupsPerHead);
  // two steps per iteration where the registers allow (queries + outputs + 2 x 2 steps of rows)
  const unroll = steps % 2 === 0 && group * perLane <= 16 ? 2 : 1;
  const dot = (a: string, b: string) => (vec === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`);
  const G = range(group);
  const I = range(perLane);
  const X = range(unroll);
  const shuffleOffsets: number[] = [];
  for (let o = lanes / 2; o >= 1; o /= 2) shuffleOffsets.push(o);

  const rowBase = (j: string) => `(slot_of(seq, start + min(${j}, last)) * u.kv_heads + kvh) * C + lane`;
  // the rows of step `it * U + x` (names k{x}_{i}, v{x}_{i}), loaded with `decl` (let or assignment)
  const loadRows = (decl: (name: string) => string, ref: (name: string) => string, it: string) =>
    X.map(
      (x) => `
    ${decl(`j${x}`)} = (${it} * ${unroll}u + ${x}u) * KGH + key_in_head;
    let base${x}_${it.length} = ${rowBase(ref(`j${x}`))};
${I.map((i) => `    ${decl(`k${x}_${i}`)} = key_cache[base${x}_${it.length} + ${i * lanes}u];`).join('\n')}
${I.map((i) => `    ${decl(`v${x}_${i}`)} = value_cache[base${x}_${it.length} + ${i * lanes}u];`).join('\n')}`,
    ).join('');
  const updates = X.map(
    (x) => `
    {
      let j = cur_j${x};
      let valid = j < count;
      let distance = f32(len - 1 - i32(start + j));
${G.map((g) => `      var s${g} = ${I.map((i) => dot(`q${g}_${i}`, `cur_k${x}_${i}`)).join(' + ')};`).join('\n')}
${shuffleOffsets.map((o) => G.map((g) => `      s${g} += subgroupShuffleXor(s${g}, ${o}u);`).join('\n')).join('\n')}
${G.map(
  (g) => `      {
        var score = s${g};
        if (u.softcap > 0.0) { score = u.softcap * tanh(score / u.softcap); }
        score -= slope${g} * distance;
        let m_new = select(m${g}, max(m${g}, score), valid);
        let rescale = exp(m${g} - m_new);
        let w = select(0.0, exp(score - m_new), valid);
        m${g} = m_new;
        l${g} = l${g} * rescale + w;
${I.map((i) => `        acc${g}_${i} = acc${g}_${i} * rescale + w * select(${kv}(0.0), cur_v${x}_${i}, valid);`).join('\n')}
      }`,
).join('\n')}
    }`,
  ).join('');
  const names = X.flatMap((x) => [`j${x}`, ...I.flatMap((i) => [`k${x}_${i}`, `v${x}_${i}`])]);
  const typeOf = (n: string) => (n.startsWith('j') ? 'u32' : kv);
  // prefetch: the next step's rows are requested before this step's arithmetic, so a
  // lane always has loads in flight; the last step requests a clamped row (a cache hit)
  const mainLoop = `${names.map((n) => `  var ${n}: ${typeOf(n)};`).join('\n')}${loadRows(
    (n) => n,
    (n) => n,
    '0u',
  )}
  for (var it = 0u; it < ${steps / unroll}u; it++) {
${names.map((n) => `    let cur_${n} = ${n};`).join('\n')}${loadRows(
  (n) => n,
  (n) => n,
  '(it + 1u)',
)}
${updates}
  }`;
  const merges = G.map(
    (g) => `
  if (lane == 0u) { merge_m[key_group] = m${g}; merge_l[key_group] = l${g}; }
${I.map((i) => `  merge_acc[key_group * C + ${i * lanes}u + lane] = acc${g}_${i};`).join('\n')}
  workgroupBarrier();
  if (lid < HW * C) {
    // column c of head g of kv head kv_first + h, from that head's KGH key groups
    let h = lid / C;
    let c = lid % C;
    var big_m = NO_MAX;
    for (var k = h * KGH; k < (h + 1u) * KGH; k++) { big_m = max(big_m, merge_m[k]); }
    var big_l = 0.0;
    var o: ${kv};
    for (var k = h * KGH; k < (h + 1u) * KGH; k++) {
      let w = exp(merge_m[k] - big_m);
      big_l += merge_l[k] * w;
      o += merge_acc[k * C + c] * w;
    }
    if (in_grid) {
      let at = (row * u.heads + (kv_first + h) * G + ${g}u) * u.partitions + part;
      partial_out[at * C + c] = o;
      if (c == 0u) {
        partial_stats[at * 2u] = big_m;
        partial_stats[at * 2u + 1u] = big_l;
      }
    }
  }
  workgroupBarrier();`,
  ).join('');

  const source = /* wgsl */ `
const G: u32 = ${group}u;
const C: u32 = ${columns}u;
const L: u32 = ${lanes}u;
const KG: u32 = ${keyGroups}u;
const HW: u32 = ${headsPerWg}u;
const KGH: u32 = ${groupsPerHead}u;
const NO_MAX: f32 = -3.40282346e38;

var<workgroup> subgroup_count: atomic<u32>;
var<workgroup> merge_m: array<f32, ${keyGroups}>;
var<workgroup> merge_l: array<f32, ${keyGroups}>;
var<workgroup> merge_acc: array<${kv}, ${keyGroups * columns}>;

// The slot (row of the cache) of token t of sequence seq.
fn slot_of(seq: u32, t: u32) -> u32 {
  let block = u32(block_tables[seq * u.max_blocks + t / u.block_size]);
  return block * u.block_size + t % u.block_size;
}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32) {
  let linear = wid.x + wid.y * nwg.x;
  // ids past the grid still reach every barrier; they just write nothing
  let kv_groups = u.kv_heads / HW;
  let in_grid = linear < u.rows * kv_groups * u.partitions;
  let part = linear % u.partitions;
  let kv_first = ((linear / u.partitions) % kv_groups) * HW;
  let row = min(linear / (u.partitions * kv_groups), max(u.rows, 1u) - 1u);
  let seq = row / u.chunk;
  // causal within the chunk, bottom-right aligned: query i of C sees keys < len - (C - 1 - i)
  let len = max(i32(context_lens[seq]) - i32(u.chunk - 1u - row % u.chunk), 0);
  let start = part * ${p}u;
  let end = min(start + ${p}u, min(u32(len), u.max_context));
  let count = select(0u, end - start, end > start);
  let last = max(count, 1u) - 1u;

  if (lid == 0u) { atomicStore(&subgroup_count, 0u); }
  workgroupBarrier();
  var first = 0u;
  if (sg_lane == 0u) { first = atomicAdd(&subgroup_count, 1u); }
  let sg_index = subgroupMax(first);
  let key_group = sg_index * (sg_size / L) + sg_lane / L;
  let lane = sg_lane % L;
  let kvh = kv_first + key_group / KGH;
  let key_in_head = key_group % KGH;

  // this lane's columns of the group's queries, pre-scaled, and the running softmax state
  let q_base = (row * u.heads + kvh * G) * C + lane;
${G.map((g) => I.map((i) => `  let q${g}_${i} = q[q_base + ${g * columns + i * lanes}u] * u.scale;`).join('\n')).join('\n')}
${G.map((g) => `  let slope${g} = alibi_slopes[kvh * G + ${g}u];`).join('\n')}
${G.map((g) => `  var m${g} = NO_MAX;\n  var l${g} = 0.0;`).join('\n')}
${G.map((g) => I.map((i) => `  var acc${g}_${i}: ${kv};`).join('\n')).join('\n')}

${mainLoop}
${merges}
}`;
  return partitionDescriptor(backend, attrs, tensors, {
    cacheKey: `subgroup:wg${wg}:g${group}:d${attrs.headDim}:p${p}:l${lanes}:k${attrs.kvHeads}`,
    source,
    enables: ['subgroups'],
    kvHeadsPerWorkgroup: headsPerWg,
  });
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
