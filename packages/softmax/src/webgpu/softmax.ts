/**
 * WebGPU programs for softmax over the last axis.
 *
 * Every pass works on chunks of a row, one workgroup per (row, chunk): each thread loads
 * its values of the chunk into registers with a constant-length loop (all its loads in
 * flight at once), then reduces them across the workgroup or writes them normalized.
 * - fused: the chunk is the whole row (up to 16 values per thread, workgroups of up to
 *   1024 threads), so stats and normalization happen in one kernel: the row is read once
 *   and written once.
 * - multipass: rows are cut into chunks of 256 x 16, and the passes of the lecture stream
 *   through global memory: online = stats, normalize; safe = max, denominator, normalize;
 *   naive = denominator, normalize. Any row length.
 *
 * Every reduction merges (m, d) pairs, where m is a running max and d a sum of exp(z - m):
 * merge((m1, d1), (m2, d2)) = (m, d1 e^(m1 - m) + d2 e^(m2 - m)) with m = max(m1, m2).
 * The safe and naive pre-passes produce pairs too ((M, d_chunk) and (0, d_chunk)), so one
 * normalize kernel finishes all three algorithms.
 *
 * -FLT_MAX stands for "no value yet" as the running max, so e^(m1 - m) never sees
 * -inf - -inf; masked entries (-inf) contribute e^-inf = 0. A row whose denominator is 0
 * (fully masked) writes zeros and logsumexp -inf.
 */
import {
  type Backend,
  type Tensor,
  DeviceLimitError,
  type WebGpuProgram,
  type WgslBinding,
  type WgslUniform,
  dispatch1d,
} from '@longseq/backend';
import type { SoftmaxAlgorithm } from '../reference';
import { type SoftmaxAttrs, type SoftmaxOutputs, softmaxKernel } from '../contract';

const VALUES_PER_THREAD = 16;

/** The workgroup size of the multipass kernels and of fused rows up to 256 x 16. */
function workgroupSize(backend: Backend): number {
  return Math.min(256, backend.limits.maxWorkgroupInvocations);
}

/** The largest power-of-two workgroup the device allows, up to 1024 (fused long rows). */
function maxWorkgroupSize(backend: Backend): number {
  return Math.min(1024, 2 ** Math.floor(Math.log2(backend.limits.maxWorkgroupInvocations)));
}

/** The longest row the fused (row-in-registers) kernel takes on this backend. */
export function maxFusedRowLength(backend: Backend): number {
  return maxWorkgroupSize(backend) * VALUES_PER_THREAD;
}

/** WGSL shared by all softmax programs: constants, loading z, and merging (m, d) pairs. */
function commonWgsl(wg: number, hasMask: boolean, subgroups: boolean): string {
  return /* wgsl */ `
const WG: u32 = ${wg}u;
const NO_MAX: f32 = -3.40282346e38;

// z = x / temperature + mask, the logits the softmax normalizes.
fn logit(i: u32) -> f32 {
  let z = x[i] * u.inv_temperature;
  ${hasMask ? 'return z + mask[i % u.mask_size];' : 'return z;'}
}

// e^(m_old - m_new), written so that a "no value" max never produces NaN.
fn rescale(m_old: f32, m_new: f32) -> f32 {
  return select(exp(m_old - m_new), 1.0, m_old == m_new);
}

fn merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  let m = max(a.x, b.x);
  return vec2<f32>(m, a.y * rescale(a.x, m) + b.y * rescale(b.x, m));
}

// Special values are built at run time (WGSL rejects them in constant expressions) and
// tested through their bits: WGSL lets compilers assume no NaN or infinity in arithmetic,
// so IEEE semantics are made explicit. A NaN or +inf logit marks its row with d = +inf
// (kept out of the max), and a row whose d is not finite is written as NaN.
fn neg_inf() -> f32 {
  return bitcast<f32>(0xff800000u + min(u.rows, 0u));
}
fn pos_inf() -> f32 {
  return bitcast<f32>(0x7f800000u + min(u.rows, 0u));
}
fn nan() -> f32 {
  return bitcast<f32>(0x7fc00000u + min(u.rows, 0u));
}
fn poisons_row(z: f32) -> bool {
  let bits = bitcast<u32>(z);
  return (bits & 0x7f800000u) == 0x7f800000u && bits != 0xff800000u;
}
fn is_finite(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}
// The logit as the running max sees it, and its term of the denominator given a max m.
fn max_candidate(z: f32) -> f32 {
  return select(z, NO_MAX, poisons_row(z));
}
fn term(z: f32, m: f32) -> f32 {
  return select(exp(z - m), pos_inf(), poisons_row(z));
}

fn row_and_chunk(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
  let linear = wid.x + wid.y * nwg.x;
  return vec2<u32>(linear / u.chunks, linear % u.chunks);
}

${
  subgroups
    ? `var<workgroup> shared_pairs: array<vec2<f32>, ${wg}>;
var<workgroup> subgroup_count: atomic<u32>;
var<private> lane: u32;

// Subgroup reduction first (no barrier), then one slot per subgroup in workgroup memory,
// merged by every thread. Slots come from an atomic counter rather than lid / subgroup
// size, because WebGPU does not promise subgroups are contiguous ranges of lid.
fn reduce_pairs(pair: vec2<f32>, lid: u32) -> vec2<f32> {
  let m = subgroupMax(pair.x);
  let d = subgroupAdd(pair.y * rescale(pair.x, m));
  if (lid == 0u) { atomicStore(&subgroup_count, 0u); }
  workgroupBarrier();
  if (lane == 0u) {
    let slot = atomicAdd(&subgroup_count, 1u);
    shared_pairs[slot] = vec2<f32>(m, d);
  }
  workgroupBarrier();
  let count = atomicLoad(&subgroup_count);
  var result = vec2<f32>(NO_MAX, 0.0);
  for (var i = 0u; i < count; i++) { result = merge(result, shared_pairs[i]); }
  workgroupBarrier();
  return result;
}
`
    : `var<workgroup> shared_pairs: array<vec2<f32>, ${wg}>;

// Tree reduction of one (m, d) pair per thread; every thread gets the row's pair.
fn reduce_pairs(pair: vec2<f32>, lid: u32) -> vec2<f32> {
  shared_pairs[lid] = pair;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) {
      shared_pairs[lid] = merge(shared_pairs[lid], shared_pairs[lid + stride]);
    }
    workgroupBarrier();
  }
  let result = shared_pairs[0];
  workgroupBarrier();
  return result;
}
`
}
fn reduce_max(value: f32, lid: u32) -> f32 {
  return reduce_pairs(vec2<f32>(value, 0.0), lid).x;
}

fn reduce_sum(value: f32, lid: u32) -> f32 {
  // Pairs with equal m merge as plain sums.
  return reduce_pairs(vec2<f32>(0.0, value), lid).y;
}
`;
}

function mainHeader(wg: number, subgroups: boolean): string {
  const lane = subgroups ? ',\n        @builtin(subgroup_invocation_id) sg_lane: u32' : '';
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32${lane}) {${subgroups ? '\n  lane = sg_lane;' : ''}`;
}

/** Subgroup reductions when asked for (default) and the device has them. */
function useSubgroups(backend: Backend, attrs: SoftmaxAttrs): boolean {
  return attrs.subgroups && backend.features.has('subgroups');
}

function uniformsFor(attrs: SoftmaxAttrs, chunks: number, chunkLen: number): WgslUniform[] {
  return [
    { name: 'rows', type: 'u32', value: attrs.rows },
    { name: 'n', type: 'u32', value: attrs.n },
    { name: 'chunks', type: 'u32', value: chunks },
    { name: 'chunk_len', type: 'u32', value: chunkLen },
    { name: 'mask_size', type: 'u32', value: Math.max(attrs.maskSize, 1) },
    { name: 'inv_temperature', type: 'f32', value: attrs.invTemperature },
  ];
}

function outputWrites(attrs: SoftmaxAttrs): { out: string; lse: string } {
  return {
    out: attrs.returnOutput ? 'out[i] = value;' : '',
    lse: attrs.returnLse
      ? 'lse[row] = select(select(stats.x + log(stats.y), neg_inf(), stats.y == 0.0), nan(), !is_finite(stats.y));'
      : '',
  };
}

/**
 * The programs' passes. Every pass works on one chunk of a row per workgroup: each thread
 * loads VPT values into registers (a loop of constant length, so the loads of a thread are
 * all in flight at once), then reduces or writes them. The fused kernel is the chunk that
 * holds the whole row, running the algorithm's reductions and the normalization in one go.
 */
type Pass = 'fused' | 'online_stats' | 'safe_max' | 'safe_sum' | 'naive_sum' | 'normalize';

/** The row's (m, d) from the values in registers, per algorithm, as WGSL statements ending in `let stats`. */
const LOCAL_STATS: Record<SoftmaxAlgorithm, string> = {
  // Online across threads: each thread's values sit in registers, so it takes their max and
  // then their sum against it (one exp per value, no per-value rescaling), and the (m, d)
  // pairs of the threads merge with the online rule, rescaling d whenever m grows. The row
  // is read from memory once: max and denominator in one pass.
  online: `
  var m = NO_MAX;
  for (var k = 0u; k < VPT; k++) { m = max(m, max_candidate(vals[k])); }
  var d = 0.0;
  for (var k = 0u; k < VPT; k++) { d += term(vals[k], m); }
  let stats = reduce_pairs(vec2<f32>(m, d), lid);`,
  // The max first (one reduction), then the denominator against it (a second reduction).
  safe: `
  var local_max = NO_MAX;
  for (var k = 0u; k < VPT; k++) { local_max = max(local_max, max_candidate(vals[k])); }
  let row_max = reduce_max(local_max, lid);
  var local_sum = 0.0;
  for (var k = 0u; k < VPT; k++) { local_sum += term(vals[k], row_max); }
  let stats = vec2<f32>(row_max, reduce_sum(local_sum, lid));`,
  naive: `
  var local_sum = 0.0;
  for (var k = 0u; k < VPT; k++) { local_sum += term(vals[k], 0.0); }
  let stats = vec2<f32>(0.0, reduce_sum(local_sum, lid));`,
};

/** WGSL sources by program name and cache key. */
const sources = new Map<string, string>();

function passProgram(
  backend: Backend,
  pass: Pass,
  attrs: SoftmaxAttrs,
  inputs: readonly Tensor[],
  shape: ChunkShape,
  buffers: { partials?: Tensor; maxes?: Tensor; out?: Tensor; lse?: Tensor },
): WebGpuProgram {
  const { wg, vpt, chunks } = shape;
  const subgroups = useSubgroups(backend, attrs);
  const hasMask = attrs.maskSize > 0;
  const name = pass === 'fused' ? `softmax_fused_${attrs.algorithm}` : `softmax_${pass}`;
  const cacheKey = `wg${wg}-vpt${vpt}-sg${subgroups}-mask${hasMask}-out${attrs.returnOutput}-lse${attrs.returnLse}`;
  // The source depends only on the name and the cache key: build it once, not per call.
  let source = sources.get(`${name}|${cacheKey}`);
  if (source === undefined) {
    const writes = outputWrites(attrs);
    // Writing the normalized chunk from the registers, and the row's logsumexp once.
    const finish = `
    let inv_d = 1.0 / stats.y;
    ${
      attrs.returnOutput
        ? `for (var k = 0u; k < VPT; k++) {
      let j = first + k * WG;
      if (j < limit) {
        let i = base + j;
        let value = select(select(exp(vals[k] - stats.x) * inv_d, 0.0, stats.y == 0.0), nan(), !is_finite(stats.y));
        ${writes.out}
      }
    }`
        : ''
    }
    if (lid == 0u && chunk == 0u) { ${writes.lse} }`;
    // Merging this row's chunk pairs: every thread does it (chunks are few), no barrier needed.
    const rowStats = `
    var stats = vec2<f32>(NO_MAX, 0.0);
    for (var c = 0u; c < u.chunks; c++) { stats = merge(stats, partials[row * u.chunks + c]); }`;
    const bodies: Record<Pass, string> = {
      fused: `${LOCAL_STATS[attrs.algorithm]}${finish}`,
      online_stats: `${LOCAL_STATS.online}
    if (lid == 0u) { partials[slot] = stats; }`,
      safe_max: `
    var local_max = NO_MAX;
    for (var k = 0u; k < VPT; k++) { local_max = max(local_max, max_candidate(vals[k])); }
    let chunk_max = reduce_max(local_max, lid);
    if (lid == 0u) { maxes[slot] = chunk_max; }`,
      safe_sum: `
    var row_max = NO_MAX;
    for (var c = 0u; c < u.chunks; c++) { row_max = max(row_max, maxes[row * u.chunks + c]); }
    var local_sum = 0.0;
    for (var k = 0u; k < VPT; k++) { local_sum += term(vals[k], row_max); }
    let chunk_sum = reduce_sum(local_sum, lid);
    if (lid == 0u) { partials[slot] = vec2<f32>(row_max, chunk_sum); }`,
      naive_sum: `${LOCAL_STATS.naive}
    if (lid == 0u) { partials[slot] = stats; }`,
      normalize: `${rowStats}${finish}`,
    };
    source = `${commonWgsl(wg, hasMask, subgroups)}
  const VPT: u32 = ${vpt}u;

  ${mainHeader(wg, subgroups)}
    let rc = row_and_chunk(wid, nwg);
    let row = rc.x;
    let chunk = rc.y;
    if (row >= u.rows) { return; }
    let base = row * u.n;
    let first = chunk * u.chunk_len + lid;
    let limit = min((chunk + 1u) * u.chunk_len, u.n);
    let slot = row * u.chunks + chunk;
    var vals: array<f32, ${vpt}>;
    for (var k = 0u; k < VPT; k++) {
      let j = first + k * WG;
      vals[k] = select(neg_inf(), logit(base + min(j, u.n - 1u)), j < limit);
    }${bodies[pass]}
  }`;
    sources.set(`${name}|${cacheKey}`, source);
  }
  const ins = bindInputs(inputs);
  const outs: WgslBinding[] = [];
  if (pass === 'safe_sum') ins.push({ name: 'maxes', tensor: buffers.maxes! });
  if (pass === 'normalize')
    ins.push({ name: 'partials', tensor: buffers.partials!, elementType: 'vec2<f32>' });
  if (pass === 'fused' || pass === 'normalize') outs.push(...bindOutputs(buffers.out, buffers.lse));
  else if (pass === 'safe_max') outs.push({ name: 'maxes', tensor: buffers.maxes! });
  else outs.push({ name: 'partials', tensor: buffers.partials!, elementType: 'vec2<f32>' });
  return {
    kind: 'webgpu',
    name,
    cacheKey,
    inputs: ins,
    outputs: outs,
    uniforms: uniformsFor(attrs, chunks, wg * vpt),
    source,
    dispatch: dispatch1d(attrs.rows * chunks, backend.limits.maxWorkgroupsPerDimension),
    enables: subgroups ? ['subgroups'] : [],
  };
}

function bindInputs(inputs: readonly Tensor[]): WgslBinding[] {
  const bindings: WgslBinding[] = [{ name: 'x', tensor: inputs[0]! }];
  if (inputs[1]) bindings.push({ name: 'mask', tensor: inputs[1] });
  return bindings;
}

function bindOutputs(out: Tensor | undefined, lse: Tensor | undefined): WgslBinding[] {
  const bindings: WgslBinding[] = [];
  if (out) bindings.push({ name: 'out', tensor: out });
  if (lse) bindings.push({ name: 'lse', tensor: lse });
  return bindings;
}

interface ChunkShape {
  /** Threads per workgroup, values per thread, chunks per row (chunk length wg * vpt). */
  readonly wg: number;
  readonly vpt: number;
  readonly chunks: number;
}

/**
 * Fused: the whole row in one workgroup, VPT a power of two up to 16, and the workgroup
 * as large as the device allows (up to 1024) when 256 threads would not hold the row.
 */
function fusedShape(backend: Backend, n: number): ChunkShape {
  const base = workgroupSize(backend);
  const wg =
    n <= base * VALUES_PER_THREAD
      ? base
      : Math.min(maxWorkgroupSize(backend), nextPow2(Math.ceil(n / VALUES_PER_THREAD)));
  const vpt = Math.min(VALUES_PER_THREAD, nextPow2(Math.ceil(n / wg)));
  return { wg, vpt, chunks: 1 };
}

/** Multipass: chunks of 256 x 16 values, one workgroup each. */
function multipassShape(backend: Backend, n: number): ChunkShape {
  const wg = workgroupSize(backend);
  return { wg, vpt: VALUES_PER_THREAD, chunks: Math.ceil(n / (wg * VALUES_PER_THREAD)) };
}

function nextPow2(v: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, v)));
}

const PASSES: Record<SoftmaxAlgorithm, Pass[]> = {
  online: ['online_stats', 'normalize'],
  safe: ['safe_max', 'safe_sum', 'normalize'],
  naive: ['naive_sum', 'normalize'],
};

async function writeSoftmax(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: SoftmaxAttrs,
  { out, lse }: SoftmaxOutputs,
): Promise<void> {
  if (attrs.rows === 0) return;
  if (attrs.n === 0) {
    // Empty rows: nothing to normalize; logsumexp of nothing is -inf.
    if (lse) await fillNegInf(backend, lse);
    return;
  }
  const fused =
    attrs.variant === 'fused' || (attrs.variant === 'auto' && attrs.n <= maxFusedRowLength(backend));
  if (fused) {
    if (attrs.n > maxFusedRowLength(backend)) {
      throw new DeviceLimitError(
        'x row length (variant: fused)',
        'maxFusedRowLength',
        attrs.n,
        maxFusedRowLength(backend),
      );
    }
    await backend.run(
      passProgram(backend, 'fused', attrs, inputs, fusedShape(backend, attrs.n), { out, lse }),
    );
    return;
  }
  const shape = multipassShape(backend, attrs.n);
  const partials = backend.empty([attrs.rows * shape.chunks * 2]);
  const maxes = attrs.algorithm === 'safe' ? backend.empty([attrs.rows * shape.chunks]) : undefined;
  try {
    for (const pass of PASSES[attrs.algorithm]) {
      await backend.run(passProgram(backend, pass, attrs, inputs, shape, { partials, maxes, out, lse }));
    }
  } finally {
    partials.dispose();
    maxes?.dispose();
  }
}

async function fillNegInf(backend: Backend, t: Tensor): Promise<void> {
  await backend.run({
    kind: 'webgpu',
    name: 'softmax_fill_neg_inf',
    cacheKey: '',
    inputs: [],
    outputs: [{ name: 'lse', tensor: t }],
    uniforms: [{ name: 'count', type: 'u32', value: t.size }],
    source: `@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  // -inf, built at run time: WGSL rejects infinities in constant expressions.
  if (i < u.count) { lse[i] = bitcast<f32>(0xff800000u + min(u.count, 0u)); }
}`,
    dispatch: dispatch1d(Math.ceil(t.size / 64), backend.limits.maxWorkgroupsPerDimension),
  });
}

export const softmaxWebGpuKernel = softmaxKernel('webgpu', writeSoftmax);
