/**
 * WebGPU programs for the selective scan (see ../reference.ts for the semantics).
 *
 * - sequential (`selective_scan_sequential`): one thread per (batch, channel) walks through
 *   time with its n states in registers (n is compiled in so the state loops unroll). Each
 *   step reads u, dt and z of its channel and B, C of the step (the same addresses for every
 *   channel of a batch, so they are served from cache), and writes y. No barriers, no
 *   workgroup memory: the least work per step, parallel over batch x d only.
 * - parallel (`selective_scan_parallel`): one workgroup per (batch, block of 4 channels, one
 *   per vec4 lane), threads over time. The workgroup walks the sequence in chunks of
 *   THREADS x ITEMS steps; each thread owns ITEMS consecutive steps. For each state s:
 *     1. every thread reduces its steps to one pair (a, b) of h -> a h + b (a local
 *        sequential scan, keeping each step's dA and dBu in registers),
 *     2. a Hillis-Steele inclusive scan of the pairs across the workgroup in workgroup
 *        memory, with the associative operator (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2),
 *     3. the state entering the thread's steps is (exclusive prefix) applied to the carry
 *        (the state entering the chunk); the thread replays its steps from it and adds
 *        C h to y, and the last thread advances the carry by the chunk's total pair.
 *   Parallel over time within a chunk (useful when batch x d is small and L long), B and C
 *   of a step are read once for 4 channels.
 *
 * Both compute dt = softplus(delta + bias) (PyTorch's threshold 20), dA = exp(dt A),
 * dBu = (dt u) B, then y = sum_s C_s h_s + D u, times silu(z). exp is range-reduced with a
 * polynomial (about 1 ulp): WGSL only promises 3 + 2|x| ulp for its builtin exp, and the
 * test rule allows twice plain float32's error.
 */
import {
  ArgumentError,
  type Backend,
  dispatch1d,
  type Tensor,
  WGSL_EXP_ACC,
  WGSL_LOG1P_UNIT,
  type WebGpuProgram,
  type WgslBinding,
  type WgslUniform,
} from '@longseq/backend';
import {
  type ScanInputs,
  type ScanOperandLayout,
  type ScanOutputs,
  type SelectiveScanAttrs,
  selectiveScanKernel,
} from '../contract';

/** Sequential kernel: the state loop is written out per state up to this n. */
const UNROLL_STATES = 32;
/**
 * Launch shape of the sequential kernels, adjustable for benchmarking (setSequentialTuning):
 * tilesInFlight = tiles of 4 steps whose loads are in flight ahead of the arithmetic,
 * quadWorkgroup = threads per workgroup of the quad kernel.
 */
export interface SequentialTuning {
  readonly tilesInFlight: number;
  readonly quadWorkgroup: number;
  /** The quad kernel reads and writes whole 32-step blocks per channel where L allows it. */
  readonly quadBlocks: boolean;
}
// Measured on an H100 (batch 8, d 2048, L 4096, n 16, warm clocks): 32-step blocks 1.40 ms
// with 64-thread workgroups, 1.44 with 128, 1.52 with 256, 3.4 with 512; the 4-step quad
// kernel 1.77-1.83 ms with 2 tiles in flight, 1.86 with 4, 2.8 with 8 (more registers per
// thread, fewer warps). Eight threads per channel (two states each, subgroupShuffle) took 2.61.
let tuning: SequentialTuning = { tilesInFlight: 2, quadWorkgroup: 64, quadBlocks: true };

/** Changes the sequential kernels' launch shape (for benchmarks); returns the previous one. */
export function setSequentialTuning(next: Partial<SequentialTuning>): SequentialTuning {
  const previous = tuning;
  const merged = { ...tuning, ...next };
  if (!Number.isInteger(merged.tilesInFlight) || merged.tilesInFlight < 1 || merged.tilesInFlight > 16)
    throw new ArgumentError('tuning.tilesInFlight', 'an integer in 1..16', merged.tilesInFlight);
  if (![32, 64, 128, 256, 512, 1024].includes(merged.quadWorkgroup))
    throw new ArgumentError('tuning.quadWorkgroup', 'a power of two in 32..1024', merged.quadWorkgroup);
  tuning = merged;
  return previous;
}
/** Threads per workgroup of the sequential kernel (one channel each). */
const SEQUENTIAL_WORKGROUP = 64;
/** Parallel kernel: threads per workgroup and consecutive steps per thread (chunk = product). */
const PARALLEL_THREADS = 64;
const PARALLEL_ITEMS = 4;
/** Channels per workgroup of the parallel kernel: one per vec4 lane. */
const PARALLEL_CHANNELS = 4;

/** The chunk length the parallel kernel scans at once (steps per workgroup pass). */
export function parallelChunkLength(backend: Backend): number {
  return threadsFor(backend) * PARALLEL_ITEMS;
}

function threadsFor(backend: Backend): number {
  return Math.min(PARALLEL_THREADS, 2 ** Math.floor(Math.log2(backend.limits.maxWorkgroupInvocations)));
}

/**
 * e^(dt a) for the discretization, the hottest operation of the scan (batch d L n times).
 * Fast form: through the hardware exp2 (one special-function op on a GPU, where exp_acc
 * costs a dozen fma): a log2(e) comes split as a_hi + a_lo (once per state), the rounding
 * error of dt * a_hi is recovered exactly with fma, and 2^(x + err) = 2^x (1 + err ln2) to
 * first order. The argument is then exact to about 2^-48 relative and only exp2's own error
 * remains, so it is used where a probe finds it within 3 ulp (see exp2IsAccurate).
 * softplus and silu take their exp the same way (exp_step). Accurate form: a_hi = a,
 * a_lo = 0 and exp_acc everywhere.
 */
const EXP_CONSTANTS_WGSL = /* wgsl */ `
const LOG2E: f32 = 1.44269502162933349609375;  // log2(e) rounded to f32, and the rest
const LOG2E_LO: f32 = 1.925963033500659e-8;
const LN2: f32 = 0.6931471805599453;
`;

const FAST_EXP_WGSL = /* wgsl */ `
fn split_hi(a: f32) -> f32 { return a * LOG2E; }
fn split_lo(a: f32, hi: f32) -> f32 { return fma(a, LOG2E_LO, fma(a, LOG2E, -hi)); }
fn exp_dt_a(dt: f32, a_hi: f32, a_lo: f32) -> f32 {
  let x = dt * a_hi;
  let err = fma(dt, a_lo, fma(dt, a_hi, -x));
  let p = exp2(x);
  return fma(p, err * LN2, p);
}
fn exp_dt_a4(dt: vec4<f32>, a_hi: vec4<f32>, a_lo: vec4<f32>) -> vec4<f32> {
  let x = dt * a_hi;
  let err = fma(dt, a_lo, fma(dt, a_hi, -x));
  let p = exp2(x);
  return fma(p, err * LN2, p);
}
// e^x for softplus and silu (once per step, not per state), the same way with a = 1.
fn exp_step(x: f32) -> f32 { return exp_dt_a(x, LOG2E, LOG2E_LO); }
`;

const ACCURATE_EXP_WGSL = /* wgsl */ `
fn split_hi(a: f32) -> f32 { return a; }
fn split_lo(a: f32, hi: f32) -> f32 { return 0.0; }
fn exp_dt_a(dt: f32, a_hi: f32, a_lo: f32) -> f32 { return exp_acc(dt * a_hi); }
fn exp_dt_a4(dt: vec4<f32>, a_hi: vec4<f32>, a_lo: vec4<f32>) -> vec4<f32> {
  let x = dt * a_hi;
  return vec4<f32>(exp_acc(x.x), exp_acc(x.y), exp_acc(x.z), exp_acc(x.w));
}
fn exp_step(x: f32) -> f32 { return exp_acc(x); }
`;

/** WGSL shared by both programs: exp, softplus, silu, and where B and C live. */
function commonWgsl(attrs: SelectiveScanAttrs, fastExp: boolean): string {
  return /* wgsl */ `
const N: u32 = ${attrs.states}u;

${WGSL_EXP_ACC}
${EXP_CONSTANTS_WGSL}
${fastExp ? FAST_EXP_WGSL : ACCURATE_EXP_WGSL}
${WGSL_LOG1P_UNIT}
// PyTorch's softplus with threshold 20, as mamba applies it to dt, in the overflow-free form
// max(x, 0) + log(1 + e^-|x|) (the log's argument stays in (1, 2]).
fn softplus_dt(x: f32) -> f32 {
  if (x > 20.0) { return x; }
  return max(x, 0.0) + log1p_unit(exp_step(-abs(x)));
}

fn silu(z: f32) -> f32 {
  return z * (1.0 / (1.0 + exp_step(-z)));
}

// dt of one step: delta (+ bias) (through softplus), as configured.
fn step_dt(raw: f32, bias: f32) -> f32 {
  let v = ${attrs.hasDeltaBias ? 'raw + bias' : 'raw'};
  return ${attrs.deltaSoftplus ? 'softplus_dt(v)' : 'v'};
}

// B and C of (batch b, channel c, state s, step t) in their layout.
fn b_index(b: u32, c: u32, s: u32, t: u32) -> u32 {
  ${
    attrs.bLayout === 'invariant'
      ? 'return c * N + s;'
      : 'return ((b * u.b_groups + c / u.b_heads) * N + s) * u.len + t;'
  }
}
fn c_index(b: u32, c: u32, s: u32, t: u32) -> u32 {
  ${
    attrs.cLayout === 'invariant'
      ? 'return c * N + s;'
      : 'return ((b * u.c_groups + c / u.c_heads) * N + s) * u.len + t;'
  }
}
`;
}

function uniformsFor(
  attrs: SelectiveScanAttrs,
  seg: Segmentation = { segments: 1, segLen: attrs.length },
): WgslUniform[] {
  return [
    { name: 'segments', type: 'u32', value: seg.segments },
    { name: 'seg_len', type: 'u32', value: seg.segLen },
    { name: 'batch', type: 'u32', value: attrs.batch },
    { name: 'd', type: 'u32', value: attrs.channels },
    { name: 'len', type: 'u32', value: attrs.length },
    { name: 'b_groups', type: 'u32', value: attrs.bGroups },
    { name: 'b_heads', type: 'u32', value: attrs.channels / attrs.bGroups },
    { name: 'c_groups', type: 'u32', value: attrs.cGroups },
    { name: 'c_heads', type: 'u32', value: attrs.channels / attrs.cGroups },
    ...paramsLayout(attrs),
  ];
}

/** How the parallel kernel cuts sequences: `segments` pieces of `segLen` steps (a multiple of the chunk). */
interface Segmentation {
  readonly segments: number;
  readonly segLen: number;
}

/** Workgroups the parallel kernel aims for before it splits sequences into segments. */
const SEGMENT_TARGET_WORKGROUPS = 1024;

/**
 * Segments per sequence: with few (batch, 4-channel) blocks the single pass would leave most
 * of a GPU idle while each workgroup walks its sequence alone, so long sequences are cut
 * until there are about SEGMENT_TARGET_WORKGROUPS workgroups (or one segment per chunk).
 */
export function parallelSegments(backend: Backend, attrs: SelectiveScanAttrs): Segmentation {
  const chunk = parallelChunkLength(backend);
  const chunks = Math.ceil(attrs.length / chunk);
  const blocks = attrs.batch * Math.ceil(attrs.channels / PARALLEL_CHANNELS);
  const wanted =
    attrs.segments === 'auto'
      ? Math.max(1, Math.floor(SEGMENT_TARGET_WORKGROUPS / Math.max(blocks, 1)))
      : attrs.segments;
  const perSegment = Math.ceil(chunks / Math.min(Math.max(1, wanted), chunks));
  const segLen = perSegment * chunk;
  return { segments: Math.ceil(attrs.length / segLen), segLen };
}

/**
 * Where A, D, the dt bias and the initial state sit in the packed per-channel buffer
 * `params` ([A (d n) | D (d) | bias (d) | h0 (batch d n)], absent parts left out of use).
 * One binding instead of four keeps the largest program at 8 storage buffers, WebGPU's
 * default limit (with z and the last state: u, delta, params, B, C, z, y, last state).
 */
function paramsLayout(attrs: SelectiveScanAttrs): WgslUniform[] {
  const dn = attrs.channels * attrs.states;
  return [
    { name: 'd_off', type: 'u32', value: dn },
    { name: 'bias_off', type: 'u32', value: dn + attrs.channels },
    { name: 'h0_off', type: 'u32', value: dn + 2 * attrs.channels },
  ];
}

/** Packs A, D, the dt bias and the initial state into `params` (one thread per element). */
async function packParams(backend: Backend, inputs: ScanInputs, attrs: SelectiveScanAttrs): Promise<Tensor> {
  const d = attrs.channels;
  const dn = d * attrs.states;
  const h0n = inputs.initialState ? inputs.initialState.size : 0;
  const params = backend.empty([dn + 2 * d + h0n]);
  const ins: WgslBinding[] = [{ name: 'a_mat', tensor: inputs.A }];
  if (inputs.D) ins.push({ name: 'd_skip', tensor: inputs.D });
  if (inputs.deltaBias) ins.push({ name: 'dt_bias', tensor: inputs.deltaBias });
  if (inputs.initialState) ins.push({ name: 'h0', tensor: inputs.initialState });
  try {
    await backend.run({
      kind: 'webgpu',
      name: 'selective_scan_pack_params',
      cacheKey: `D${!!inputs.D}-bias${!!inputs.deltaBias}-h0${!!inputs.initialState}`,
      inputs: ins,
      outputs: [{ name: 'params', tensor: params }],
      uniforms: [
        { name: 'dn', type: 'u32', value: dn },
        { name: 'd', type: 'u32', value: d },
        { name: 'total', type: 'u32', value: params.size },
      ],
      source: /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (i >= u.total) { return; }
  var v = 0.0;
  if (i < u.dn) {
    v = a_mat[i];
  } else if (i < u.dn + u.d) {
    ${inputs.D ? 'v = d_skip[i - u.dn];' : ''}
  } else if (i < u.dn + 2u * u.d) {
    ${inputs.deltaBias ? 'v = dt_bias[i - u.dn - u.d];' : ''}
  } else {
    ${inputs.initialState ? 'v = h0[i - u.dn - 2u * u.d];' : ''}
  }
  params[i] = v;
}`,
      dispatch: dispatch1d(Math.ceil(params.size / 64), backend.limits.maxWorkgroupsPerDimension),
    });
  } catch (err) {
    params.dispose();
    throw err;
  }
  return params;
}

/** Storage bindings; with `vec4`, the [batch, d, L]-shaped ones (and variable B, C) are read as vec4 along L. */
function bindings(
  inputs: ScanInputs,
  params: Tensor,
  outputs: ScanOutputs,
  attrs: SelectiveScanAttrs,
  vec4: boolean,
): { ins: WgslBinding[]; outs: WgslBinding[] } {
  const along = vec4 ? { elementType: 'vec4<f32>' } : {};
  const ins: WgslBinding[] = [
    { name: 'xs', tensor: inputs.u, ...along },
    { name: 'dts', tensor: inputs.delta, ...along },
    { name: 'params', tensor: params },
    { name: 'b_mat', tensor: inputs.B, ...(attrs.bLayout === 'variable' ? along : {}) },
    { name: 'c_mat', tensor: inputs.C, ...(attrs.cLayout === 'variable' ? along : {}) },
  ];
  if (inputs.z) ins.push({ name: 'gate', tensor: inputs.z, ...along });
  const outs: WgslBinding[] = [{ name: 'y', tensor: outputs.y, ...along }];
  if (outputs.lastState) outs.push({ name: 'h_last', tensor: outputs.lastState });
  return { ins, outs };
}

/** Whether the 4 channels of a parallel workgroup read the same B (or C): one group, or groups of 4k channels. */
function sharedByLanes(layout: ScanOperandLayout, groups: number, channels: number): boolean {
  return layout === 'variable' && (groups === 1 || (channels / groups) % 4 === 0);
}

/** Attribute flags that change the source (never shapes, except n: see commonWgsl). */
function flagsKey(attrs: SelectiveScanAttrs): string {
  return [
    `n${attrs.states}`,
    `B${attrs.bLayout}${sharedByLanes(attrs.bLayout, attrs.bGroups, attrs.channels) ? 'shared' : ''}`,
    `C${attrs.cLayout}${sharedByLanes(attrs.cLayout, attrs.cGroups, attrs.channels) ? 'shared' : ''}`,
    attrs.hasD ? 'D' : '',
    attrs.hasZ ? 'z' : '',
    attrs.hasDeltaBias ? 'bias' : '',
    attrs.deltaSoftplus ? 'sp' : '',
    attrs.hasInitialState ? 'h0' : '',
    attrs.returnLastState ? 'last' : '',
  ].join('-');
}

const sources = new Map<string, string>();

/** The sequential kernel reads u, dt, z and writes y four steps at a time when L % 4 == 0. */
function sequentialVec4(attrs: SelectiveScanAttrs): boolean {
  return attrs.length % 4 === 0;
}

function sequentialSource(attrs: SelectiveScanAttrs, fastExp: boolean): string {
  const wg = SEQUENTIAL_WORKGROUP;
  const head = /* wgsl */ `${commonWgsl(attrs, fastExp)}
const WG: u32 = ${wg}u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let bc = (wid.x + wid.y * nwg.x) * WG + lid;
  if (bc >= u.batch * u.d) { return; }
  let b = bc / u.d;
  let c = bc % u.d;
  // Per state: h, and a log2(e) split in two so e^(dt a) can go through exp2 (see exp_dt_a).
  var h: array<f32, N>;
  var a_hi: array<f32, N>;
  var a_lo: array<f32, N>;
  for (var s = 0u; s < N; s++) {
    let a = params[c * N + s];
    a_hi[s] = split_hi(a);
    a_lo[s] = split_lo(a, a_hi[s]);
    h[s] = ${attrs.hasInitialState ? 'params[u.h0_off + bc * N + s]' : '0.0'};
  }
  let bias = ${attrs.hasDeltaBias ? 'params[u.bias_off + c]' : '0.0'};
  let skip = ${attrs.hasD ? 'params[u.d_off + c]' : '0.0'};`;
  const tail = `
  ${attrs.returnLastState ? 'for (var s = 0u; s < N; s++) { h_last[bc * N + s] = h[s]; }' : ''}
}`;
  if (!sequentialVec4(attrs)) {
    return `${head}
  let row = bc * u.len;
  for (var t = 0u; t < u.len; t++) {
    let dt = step_dt(dts[row + t], bias);
    let x = xs[row + t];
    let dtx = dt * x;
    var acc = 0.0;
    for (var s = 0u; s < N; s++) {
      h[s] = exp_dt_a(dt, a_hi[s], a_lo[s]) * h[s] + dtx * b_mat[b_index(b, c, s, t)];
      acc += c_mat[c_index(b, c, s, t)] * h[s];
    }
    ${attrs.hasD ? 'acc += skip * x;' : ''}
    ${attrs.hasZ ? 'acc *= silu(gate[row + t]);' : ''}
    y[row + t] = acc;
  }${tail}`;
  }
  // Four steps per tile: u, dt, z and y move as vec4 (one 16-byte access per thread instead
  // of four), and variable B / C are read as vec4 over time too. Tiles go in groups of
  // tuning.tilesInFlight: the loads of the next group are issued before the current group's
  // arithmetic, so each thread has that many tiles of every stream in flight (with one
  // thread per channel there are few warps per SM to hide memory latency otherwise). The
  // group is unrolled here, so its tiles live in registers.
  const operand4 = (name: string, layout: string, index: string) =>
    layout === 'invariant' ? `vec4<f32>(${name}[c * N + s])` : `${name}[(${index} + s) * len4 + t4]`;
  const tiles = Array.from({ length: tuning.tilesInFlight }, (_, k) => k);
  // The per-state update, written out once per state for small n (constant indices keep h,
  // a_hi and a_lo in registers whatever the driver's unroller decides), a loop beyond.
  const stateLoop = (stateBody: string) =>
    attrs.states <= UNROLL_STATES
      ? Array.from(
          { length: attrs.states },
          (_, st) => `{\n          const s = ${st}u;${stateBody}        }`,
        ).join(' ')
      : `for (var s = 0u; s < N; s++) {${stateBody}        }`;
  const streams: [string, string][] = [
    ['x', 'xs'],
    ['dtr', 'dts'],
    ...(attrs.hasZ ? ([['zv', 'gate']] as [string, string][]) : []),
  ];
  const load = (prefix: string, group: string) =>
    streams
      .flatMap(([v, buf]) =>
        tiles.map(
          (k) =>
            `${prefix} ${v}${k}${prefix === 'let' ? '_next' : ''} = ${buf}[row4 + min(${group} + ${k}u, last4)];`,
        ),
      )
      .join('\n    ');
  const tile = (k: number) => `
    {
      let t4 = group + ${k}u;
      if (t4 < len4) {
        let dt = vec4<f32>(step_dt(dtr${k}.x, bias), step_dt(dtr${k}.y, bias), step_dt(dtr${k}.z, bias), step_dt(dtr${k}.w, bias));
        let dtx = dt * x${k};
        var acc = vec4<f32>(0.0);
        ${stateLoop(`
          let bv = ${operand4('b_mat', attrs.bLayout, 'b_base')};
          let cv = ${operand4('c_mat', attrs.cLayout, 'c_base')};
          let dA = exp_dt_a4(dt, vec4<f32>(a_hi[s]), vec4<f32>(a_lo[s]));
          let dBu = dtx * bv;
          var hs = h[s];
          hs = fma(dA.x, hs, dBu.x);
          acc.x = fma(cv.x, hs, acc.x);
          hs = fma(dA.y, hs, dBu.y);
          acc.y = fma(cv.y, hs, acc.y);
          hs = fma(dA.z, hs, dBu.z);
          acc.z = fma(cv.z, hs, acc.z);
          hs = fma(dA.w, hs, dBu.w);
          acc.w = fma(cv.w, hs, acc.w);
          h[s] = hs;
`)}
        ${attrs.hasD ? `acc += skip * x${k};` : ''}
        ${attrs.hasZ ? `acc *= vec4<f32>(silu(zv${k}.x), silu(zv${k}.y), silu(zv${k}.z), silu(zv${k}.w));` : ''}
        y[row4 + t4] = acc;
      }
    }`;
  return `${head}
  let len4 = u.len / 4u;
  let last4 = len4 - 1u;
  let row4 = bc * len4;
  let b_base = ${attrs.bLayout === 'invariant' ? '0u' : '(b * u.b_groups + c / u.b_heads) * N'};
  let c_base = ${attrs.cLayout === 'invariant' ? '0u' : '(b * u.c_groups + c / u.c_heads) * N'};
  ${load('var', '0u')}
  for (var group = 0u; group < len4; group += ${tuning.tilesInFlight}u) {
    ${load('let', `group + ${tuning.tilesInFlight}u`)}
    ${tiles.map(tile).join('')}
    ${streams.flatMap(([v]) => tiles.map((k) => `${v}${k} = ${v}${k}_next;`)).join('\n    ')}
  }${tail}`;
}

/** Whether the sequential scan runs as quads: L a multiple of 4, subgroups on, and n >= 8. */
function useQuads(backend: Backend, attrs: SelectiveScanAttrs): boolean {
  return sequentialVec4(attrs) && attrs.subgroups && attrs.states >= 8 && backend.features.has('subgroups');
}

/**
 * The sequential scan with each channel's states split over a quad (4 adjacent subgroup
 * lanes): thread q of a channel keeps states q, q + 4, q + 8, ... in registers, so the same
 * batch x d channels make four times as many threads (one thread per channel leaves a large
 * GPU with a warp or two per SM). Per tile of 4 steps, thread q computes the dt (softplus)
 * and the gate (silu) of step q only and shares dt with quadBroadcast; the quad adds up its
 * partial y with two quadSwaps, and thread q finishes and writes step q.
 * Lanes are numbered from subgroup slots handed out by an atomic counter, so channels map to
 * quads whatever order the device gives subgroups.
 */
function quadSource(attrs: SelectiveScanAttrs, fastExp: boolean): string {
  const perThread = Math.ceil(attrs.states / 4);
  const slots = Array.from({ length: perThread }, (_, j) => j);
  const operand4 = (name: string, layout: string, index: string) =>
    layout === 'invariant' ? `vec4<f32>(${name}[c * N + s])` : `${name}[(${index} + s) * len4 + t4]`;
  const tiles = Array.from({ length: tuning.tilesInFlight }, (_, k) => k);
  const streams: [string, string][] = [
    ['x', 'xs'],
    ['dtr', 'dts'],
    ...(attrs.hasZ ? ([['zv', 'gate']] as [string, string][]) : []),
  ];
  const load = (prefix: string, group: string) =>
    streams
      .flatMap(([v, buf]) =>
        tiles.map(
          (k) =>
            `${prefix} ${v}${k}${prefix === 'let' ? '_next' : ''} = ${buf}[row4 + min(${group} + ${k}u, last4)];`,
        ),
      )
      .join('\n    ');
  const state = (j: number) => `
        {
          const j = ${j}u;
          let s = q + 4u * j;
          if (s < N) {
            let bv = ${operand4('b_mat', attrs.bLayout, 'b_base')};
            let cv = ${operand4('c_mat', attrs.cLayout, 'c_base')};
            let dA = exp_dt_a4(dt, vec4<f32>(a_hi[j]), vec4<f32>(a_lo[j]));
            let dBu = dtx * bv;
            var hs = h[j];
            hs = fma(dA.x, hs, dBu.x);
            acc.x = fma(cv.x, hs, acc.x);
            hs = fma(dA.y, hs, dBu.y);
            acc.y = fma(cv.y, hs, acc.y);
            hs = fma(dA.z, hs, dBu.z);
            acc.z = fma(cv.z, hs, acc.z);
            hs = fma(dA.w, hs, dBu.w);
            acc.w = fma(cv.w, hs, acc.w);
            h[j] = hs;
          }
        }`;
  const tile = (k: number) => `
    {
      let t4 = group + ${k}u;
      if (t4 < len4) {
        let my_dt = step_dt(dtr${k}[q], bias);
        let dt = vec4<f32>(quadBroadcast(my_dt, 0u), quadBroadcast(my_dt, 1u), quadBroadcast(my_dt, 2u), quadBroadcast(my_dt, 3u));
        let dtx = dt * x${k};
        var acc = vec4<f32>(0.0);
        ${slots.map(state).join('')}
        acc += quadSwapX(acc);
        acc += quadSwapY(acc);
        var out = acc[q];
        ${attrs.hasD ? `out += skip * x${k}[q];` : ''}
        ${attrs.hasZ ? `out *= silu(zv${k}[q]);` : ''}
        if (valid) { y[(row4 + t4) * 4u + q] = out; }
      }
    }`;
  return /* wgsl */ `${commonWgsl(attrs, fastExp)}
const WG: u32 = ${tuning.quadWorkgroup}u;
const PER_THREAD: u32 = ${perThread}u;
var<workgroup> next_slot: atomic<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
  if (lid == 0u) { atomicStore(&next_slot, 0u); }
  workgroupBarrier();
  // This subgroup's lanes take the next run of slots: lane order decides the quads.
  let lanes_running = subgroupAdd(1u);
  var first_slot = 0u;
  if (subgroupElect()) { first_slot = atomicAdd(&next_slot, lanes_running); }
  let slot = subgroupBroadcastFirst(first_slot) + subgroupExclusiveAdd(1u);
  let thread = (wid.x + wid.y * nwg.x) * WG + slot;
  // Threads past the last channel keep going (quad operations need their whole quad) but
  // compute on channel 0 and write nothing.
  let valid = thread / 4u < u.batch * u.d;
  let bc = select(0u, thread / 4u, valid);
  let q = thread % 4u;
  let b = bc / u.d;
  let c = bc % u.d;
  var h: array<f32, PER_THREAD>;
  var a_hi: array<f32, PER_THREAD>;
  var a_lo: array<f32, PER_THREAD>;
  for (var j = 0u; j < PER_THREAD; j++) {
    let s = min(q + 4u * j, N - 1u);
    let a = params[c * N + s];
    a_hi[j] = split_hi(a);
    a_lo[j] = split_lo(a, a_hi[j]);
    h[j] = ${attrs.hasInitialState ? 'params[u.h0_off + bc * N + s]' : '0.0'};
  }
  let bias = ${attrs.hasDeltaBias ? 'params[u.bias_off + c]' : '0.0'};
  let skip = ${attrs.hasD ? 'params[u.d_off + c]' : '0.0'};
  let len4 = u.len / 4u;
  let last4 = len4 - 1u;
  let row4 = bc * len4;
  let b_base = ${attrs.bLayout === 'invariant' ? '0u' : '(b * u.b_groups + c / u.b_heads) * N'};
  let c_base = ${attrs.cLayout === 'invariant' ? '0u' : '(b * u.c_groups + c / u.c_heads) * N'};
  ${load('var', '0u')}
  for (var group = 0u; group < len4; group += ${tuning.tilesInFlight}u) {
    ${load('let', `group + ${tuning.tilesInFlight}u`)}
    ${tiles.map(tile).join('')}
    ${streams.flatMap(([v]) => tiles.map((k) => `${v}${k} = ${v}${k}_next;`)).join('\n    ')}
  }
  ${
    attrs.returnLastState
      ? `for (var j = 0u; j < PER_THREAD; j++) {
    let s = q + 4u * j;
    if (valid && s < N) { h_last[bc * N + s] = h[j]; }
  }`
      : ''
  }
}`;
}

/** Steps per block of the quad-block kernel: 32 (a 128-byte line of each stream per channel). */
const QUAD_BLOCK = 32;

/** Whether the quad kernel runs in blocks of QUAD_BLOCK steps (L a multiple of it). */
function useQuadBlocks(attrs: SelectiveScanAttrs): boolean {
  return tuning.quadBlocks && attrs.length % QUAD_BLOCK === 0;
}

/**
 * The quad kernel (see quadSource) with coalesced streams: a channel's rows of u, dt and z
 * are 4 L bytes apart from the next channel's, so a 16-byte vec4 per channel per warp load
 * uses half of each 32-byte sector and scatters the DRAM traffic over every row at once.
 * Here a quad reads a block of 32 steps of its channel together: thread q loads steps
 * 8q .. 8q + 7 of each stream (two vec4s; the quad's four threads cover one whole 128-byte
 * line), computes dt (softplus) and the gate (silu) of those steps, and for each tile of 4
 * steps the owner hands x and dt to the quad with quadBroadcast. The quad's partial y of a
 * tile is summed with two quadSwaps, the owner keeps it, and each thread writes its 8 steps
 * of y as two vec4s (again one line per quad). The next block's loads are issued before the
 * current block's arithmetic.
 */
function quadBlockSource(attrs: SelectiveScanAttrs, fastExp: boolean): string {
  const perThread = Math.ceil(attrs.states / 4);
  // vec4s of each stream per thread per block (8 tiles of 4 steps over the quad).
  const perLane = QUAD_BLOCK / 16;
  const halves = Array.from({ length: perLane }, (_, i) => i);
  const slots = Array.from({ length: perThread }, (_, j) => j);
  const operand4 = (name: string, layout: string, index: string) =>
    layout === 'invariant' ? `vec4<f32>(${name}[c * N + s])` : `${name}[(${index} + s) * len4 + t4]`;
  const state = (j: number) => `
        {
          let s = q + ${4 * j}u;
          if (s < N) {
            let bv = ${operand4('b_mat', attrs.bLayout, 'b_base')};
            let cv = ${operand4('c_mat', attrs.cLayout, 'c_base')};
            let dA = exp_dt_a4(dt, vec4<f32>(a_hi[${j}]), vec4<f32>(a_lo[${j}]));
            let dBu = dtx * bv;
            var hs = h[${j}];
            hs = fma(dA.x, hs, dBu.x);
            acc.x = fma(cv.x, hs, acc.x);
            hs = fma(dA.y, hs, dBu.y);
            acc.y = fma(cv.y, hs, acc.y);
            hs = fma(dA.z, hs, dBu.z);
            acc.z = fma(cv.z, hs, acc.z);
            hs = fma(dA.w, hs, dBu.w);
            acc.w = fma(cv.w, hs, acc.w);
            h[${j}] = hs;
          }
        }`;
  // Tile k (steps 4k .. 4k + 3 of the block) is owned by thread k / 2, in its vec4 k % 2.
  const tile = (k: number) => {
    const owner = Math.floor(k / perLane);
    const half = k % perLane;
    return `
    {
      let t4 = blk4 + ${k}u;
      let xv = quadBroadcast(x${half}, ${owner}u);
      let dt = quadBroadcast(dt${half}, ${owner}u);
      let dtx = dt * xv;
      var acc = vec4<f32>(0.0);
      ${slots.map(state).join('')}
      acc += quadSwapX(acc);
      acc += quadSwapY(acc);
      ${attrs.hasD ? 'acc += skip * xv;' : ''}
      if (q == ${owner}u) { y${half} = acc${attrs.hasZ ? ` * g${half}` : ''}; }
    }`;
  };
  const streams: [string, string][] = [
    ['x', 'xs'],
    ['dtr', 'dts'],
    ...(attrs.hasZ ? ([['zv', 'gate']] as [string, string][]) : []),
  ];
  const load = (prefix: string, block4: string) =>
    streams
      .flatMap(([v, buf]) =>
        halves.map(
          (i) =>
            `${prefix} ${v}${i}${prefix === 'let' ? '_next' : ''} = ${buf}[row4 + min(${block4} + ${perLane}u * q + ${i}u, last4)];`,
        ),
      )
      .join('\n    ');
  const perStep4 = (fn: string, v: string) =>
    `vec4<f32>(${fn}(${v}.x), ${fn}(${v}.y), ${fn}(${v}.z), ${fn}(${v}.w))`;
  return /* wgsl */ `${commonWgsl(attrs, fastExp)}
const WG: u32 = ${tuning.quadWorkgroup}u;
const PER_THREAD: u32 = ${perThread}u;
var<workgroup> next_slot: atomic<u32>;

fn dt_of(raw: f32) -> f32 { return step_dt(raw, dt_bias_value); }
var<private> dt_bias_value: f32;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
  if (lid == 0u) { atomicStore(&next_slot, 0u); }
  workgroupBarrier();
  // This subgroup's lanes take the next run of slots: lane order decides the quads.
  let lanes_running = subgroupAdd(1u);
  var first_slot = 0u;
  if (subgroupElect()) { first_slot = atomicAdd(&next_slot, lanes_running); }
  let slot = subgroupBroadcastFirst(first_slot) + subgroupExclusiveAdd(1u);
  let thread = (wid.x + wid.y * nwg.x) * WG + slot;
  // Threads past the last channel keep going (quad operations need their whole quad) but
  // compute on channel 0 and write nothing.
  let valid = thread / 4u < u.batch * u.d;
  let bc = select(0u, thread / 4u, valid);
  let q = thread % 4u;
  let b = bc / u.d;
  let c = bc % u.d;
  var h: array<f32, PER_THREAD>;
  var a_hi: array<f32, PER_THREAD>;
  var a_lo: array<f32, PER_THREAD>;
  for (var j = 0u; j < PER_THREAD; j++) {
    let s = min(q + 4u * j, N - 1u);
    let a = params[c * N + s];
    a_hi[j] = split_hi(a);
    a_lo[j] = split_lo(a, a_hi[j]);
    h[j] = ${attrs.hasInitialState ? 'params[u.h0_off + bc * N + s]' : '0.0'};
  }
  dt_bias_value = ${attrs.hasDeltaBias ? 'params[u.bias_off + c]' : '0.0'};
  let skip = ${attrs.hasD ? 'params[u.d_off + c]' : '0.0'};
  let len4 = u.len / 4u;
  let last4 = len4 - 1u;
  let row4 = bc * len4;
  let b_base = ${attrs.bLayout === 'invariant' ? '0u' : '(b * u.b_groups + c / u.b_heads) * N'};
  let c_base = ${attrs.cLayout === 'invariant' ? '0u' : '(b * u.c_groups + c / u.c_heads) * N'};
  ${load('var', '0u')}
  for (var blk4 = 0u; blk4 < len4; blk4 += ${QUAD_BLOCK / 4}u) {
    ${load('let', `blk4 + ${QUAD_BLOCK / 4}u`)}
    ${halves.map((i) => `let dt${i} = ${perStep4('dt_of', `dtr${i}`)};`).join('\n    ')}
    ${attrs.hasZ ? halves.map((i) => `let g${i} = ${perStep4('silu', `zv${i}`)};`).join('\n    ') : ''}
    ${halves.map((i) => `var y${i} = vec4<f32>(0.0);`).join('\n    ')}
    ${Array.from({ length: QUAD_BLOCK / 4 }, (_, k) => tile(k)).join('')}
    if (valid) {
      ${halves.map((i) => `y[row4 + blk4 + ${perLane}u * q + ${i}u] = y${i};`).join('\n      ')}
    }
    ${streams.flatMap(([v]) => halves.map((i) => `${v}${i} = ${v}${i}_next;`)).join('\n    ')}
  }
  ${
    attrs.returnLastState
      ? `for (var j = 0u; j < PER_THREAD; j++) {
    let s = q + 4u * j;
    if (valid && s < N) { h_last[bc * N + s] = h[j]; }
  }`
      : ''
  }
}`;
}

/**
 * The workgroup scan of the parallel kernel in workgroup memory (Hillis-Steele): after the
 * level with offset o, thread i holds the pair of its steps and those of the 2o - 1 threads
 * before it, so after log2(THREADS) levels the prefix through itself. 2 log2(THREADS)
 * barriers. Leaves the exclusive prefix in (xa, xb).
 */
const TREE_SCAN_WGSL = `
        scan_a[lid] = pa;
        scan_b[lid] = pb;
        workgroupBarrier();
        for (var offset = 1u; offset < THREADS; offset *= 2u) {
          if (lid >= offset) {
            let left_a = scan_a[lid - offset];
            let left_b = scan_b[lid - offset];
            pb = pa * left_b + pb;
            pa = left_a * pa;
          }
          workgroupBarrier();
          scan_a[lid] = pa;
          scan_b[lid] = pb;
          workgroupBarrier();
        }
        if (lid > 0u) {
          xa = scan_a[lid - 1u];
          xb = scan_b[lid - 1u];
        }`;

/**
 * The same scan with subgroup shuffles: Hillis-Steele within each subgroup through
 * subgroupShuffleUp (no barriers), one total per subgroup in workgroup memory (one
 * barrier), then each thread folds the totals of the subgroups before its own in front of
 * its in-subgroup exclusive prefix.
 */
const SUBGROUP_SCAN_WGSL = `
        for (var offset = 1u; offset < sg_size; offset *= 2u) {
          let left_a = subgroupShuffleUp(pa, offset);
          let left_b = subgroupShuffleUp(pb, offset);
          if (lane >= offset) {
            pb = pa * left_b + pb;
            pa = left_a * pa;
          }
        }
        var ea = subgroupShuffleUp(pa, 1u);
        var eb = subgroupShuffleUp(pb, 1u);
        if (lane == 0u) {
          ea = vec4<f32>(1.0);
          eb = vec4<f32>(0.0);
        }
        let sg = lid / sg_size;
        if (lane == sg_size - 1u) {
          totals_a[sg] = pa;
          totals_b[sg] = pb;
        }
        workgroupBarrier();
        for (var k = 0u; k < sg; k++) {
          xb = totals_a[k] * xb + totals_b[k];
          xa = totals_a[k] * xa;
        }
        xb = ea * xb + eb;
        xa = xa * ea;`;

/**
 * The parallel kernel's passes. 'single': one workgroup walks a whole sequence (its 4
 * channels) chunk by chunk. With segments, each sequence is cut into segments scanned by
 * separate workgroups: 'totals' scans each segment from h = 0 and writes its total pair
 * (the product of its dA, and the state it ends in); selective_scan_segment_carries folds
 * those into the state entering each segment; 'output' rescans each segment from that
 * state and writes y.
 */
type ParallelMode = 'single' | 'totals' | 'output';

function parallelSource(
  attrs: SelectiveScanAttrs,
  threads: number,
  fastExp: boolean,
  subgroups: boolean,
  mode: ParallelMode,
): string {
  const totals = mode === 'totals';
  // A vec4 of one expression per channel lane r (0..3).
  const lanes = (f: (r: number) => string) => `vec4<f32>(${[0, 1, 2, 3].map(f).join(', ')})`;
  const vec4Of = (f: string) => lanes((r) => f.replaceAll('$', `ch[${r}]`));
  // B or C of step t for the 4 lanes: one load splatted when the 4 channels share a group
  // (one group, or groups of a multiple of 4 channels), else one load per lane.
  const operand = (m: 'b' | 'c', layout: ScanOperandLayout, groups: number) =>
    sharedByLanes(layout, groups, attrs.channels)
      ? `vec4<f32>(${m}_mat[${m}_index(b, c0, s, t)])`
      : vec4Of(`${m}_mat[${m}_index(b, $, s, t)]`);
  return /* wgsl */ `${commonWgsl(attrs, fastExp)}
const THREADS: u32 = ${threads}u;
const ITEMS: u32 = ${PARALLEL_ITEMS}u;
const CHUNK: u32 = THREADS * ITEMS;

// The pairs being scanned (one per thread) and the state entering the current chunk.
var<workgroup> scan_a: array<vec4<f32>, THREADS>;
var<workgroup> scan_b: array<vec4<f32>, THREADS>;
var<workgroup> carry: array<vec4<f32>, N>;
${totals ? '// The product of dA over the segment so far, per state (the a of its total pair).\nvar<workgroup> carry_a: array<vec4<f32>, N>;' : ''}
${
  subgroups
    ? `// Subgroup path: one total pair per subgroup, and whether the subgroups are contiguous
// full runs of lid (checked at run time; WebGPU does not promise it).
var<workgroup> totals_a: array<vec4<f32>, THREADS>;
var<workgroup> totals_b: array<vec4<f32>, THREADS>;
var<workgroup> layout_broken: atomic<u32>;
var<workgroup> use_subgroups: u32;`
    : ''
}

fn softplus4(v: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(softplus_dt(v.x), softplus_dt(v.y), softplus_dt(v.z), softplus_dt(v.w));
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32${
          subgroups
            ? `,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sg_size: u32`
            : ''
        }) {
  let blocks = (u.d + 3u) / 4u;
  let group = wid.x + wid.y * nwg.x;
  let seg = group % u.segments;
  let b = group / u.segments / blocks;
  // Uniform across the workgroup, so returning here keeps the barriers below uniform.
  if (b >= u.batch) { return; }
  let c0 = (group / u.segments % blocks) * 4u;
  let seg_start = seg * u.seg_len;
  let seg_end = min(u.len, seg_start + u.seg_len);
  // One channel per vec4 lane; lanes past d repeat channel d - 1 and are never written.
  var ch: array<u32, 4>;
  for (var r = 0u; r < 4u; r++) { ch[r] = min(c0 + r, u.d - 1u); }
  var row: array<u32, 4>;
  for (var r = 0u; r < 4u; r++) { row[r] = (b * u.d + ch[r]) * u.len; }
  let bias = ${attrs.hasDeltaBias ? vec4Of('params[u.bias_off + $]') : 'vec4<f32>(0.0)'};
  let skip = ${attrs.hasD ? vec4Of('params[u.d_off + $]') : 'vec4<f32>(0.0)'};

  for (var s = lid; s < N; s += THREADS) {
    carry[s] = ${
      mode === 'output'
        ? vec4Of('carries_in[((b * u.d + $) * u.segments + seg) * N + s]')
        : mode === 'single' && attrs.hasInitialState
          ? vec4Of('params[u.h0_off + (b * u.d + $) * N + s]')
          : 'vec4<f32>(0.0)'
    };
    ${totals ? 'carry_a[s] = vec4<f32>(1.0);' : ''}
  }
  ${
    subgroups
      ? `// The subgroup scan needs each subgroup to be a full, contiguous run of lid (lane = lid
  // - first lid), so that lanes order time the way lid does. Where that fails anywhere in
  // the workgroup, the whole workgroup takes the tree in workgroup memory instead.
  if (lid == 0u) { atomicStore(&layout_broken, 0u); }
  workgroupBarrier();
  let first_lid = subgroupBroadcastFirst(lid);
  let lanes_running = subgroupAdd(1u);
  let contiguous = first_lid + lane == lid && lanes_running == sg_size && THREADS % sg_size == 0u;
  if (!contiguous) { atomicStore(&layout_broken, 1u); }
  workgroupBarrier();
  if (lid == 0u) { use_subgroups = 1u - atomicLoad(&layout_broken); }
  let subgroup_scan = workgroupUniformLoad(&use_subgroups) == 1u;`
      : 'workgroupBarrier();'
  }

  for (var start = seg_start; start < seg_end; start += CHUNK) {
    let first = start + lid * ITEMS;
    // This thread's steps: dt, dt * u and the running y. Steps past the end get dt = 0,
    // the identity step (dA = 1, dBu = 0), so they leave the carry alone.
    var dt: array<vec4<f32>, ITEMS>;
    var dtx: array<vec4<f32>, ITEMS>;
    var x: array<vec4<f32>, ITEMS>;
    var acc: array<vec4<f32>, ITEMS>;
    for (var k = 0u; k < ITEMS; k++) {
      let t = min(first + k, u.len - 1u);
      let raw = ${lanes((r) => `dts[row[${r}] + t]`)};
      let v = raw${attrs.hasDeltaBias ? ' + bias' : ''};
      let stepdt = ${attrs.deltaSoftplus ? 'softplus4(v)' : 'v'};
      dt[k] = select(vec4<f32>(0.0), stepdt, first + k < seg_end);
      x[k] = ${lanes((r) => `xs[row[${r}] + t]`)};
      dtx[k] = dt[k] * x[k];
      acc[k] = vec4<f32>(0.0);
    }
    for (var s = 0u; s < N; s++) {
      let a_s = ${vec4Of('params[$ * N + s]')};
      let a_hi = ${lanes((r) => `split_hi(a_s[${r}])`)};
      let a_lo = ${lanes((r) => `split_lo(a_s[${r}], a_hi[${r}])`)};
      var dA: array<vec4<f32>, ITEMS>;
      var dBu: array<vec4<f32>, ITEMS>;
      // 1. This thread's steps reduced to one pair, (pa, pb): h -> pa h + pb.
      var pa = vec4<f32>(1.0);
      var pb = vec4<f32>(0.0);
      for (var k = 0u; k < ITEMS; k++) {
        let t = min(first + k, u.len - 1u);
        let bv = ${operand('b', attrs.bLayout, attrs.bGroups)};
        dA[k] = exp_dt_a4(dt[k], a_hi, a_lo);
        dBu[k] = dtx[k] * bv;
        pa = pa * dA[k];
        pb = dA[k] * pb + dBu[k];
      }
      let local_a = pa;
      // 2. The exclusive prefix (xa, xb) of this thread's pair across the workgroup.
      var xa = vec4<f32>(1.0);
      var xb = vec4<f32>(0.0);
      ${subgroups ? `if (subgroup_scan) {${SUBGROUP_SCAN_WGSL}} else {${TREE_SCAN_WGSL}}` : TREE_SCAN_WGSL}
      // 3. The state entering this thread's steps: the exclusive prefix applied to the carry.
      let h_in = carry[s];
      var h = xa * h_in + xb;
      for (var k = 0u; k < ITEMS; k++) {
        h = dA[k] * h + dBu[k];
        ${
          totals
            ? ''
            : `let t = min(first + k, u.len - 1u);
        let cv = ${operand('c', attrs.cLayout, attrs.cGroups)};
        acc[k] += cv * h;`
        }
      }
      workgroupBarrier();
      // The last thread's state after its steps is the state after the chunk: the next carry.
      if (lid == THREADS - 1u) {
        carry[s] = h;
        ${totals ? "// The chunk's product of dA: every thread's before it (xa), then its own.\n        carry_a[s] = carry_a[s] * (xa * local_a);" : ''}
      }
    }
    ${
      totals
        ? ''
        : `for (var k = 0u; k < ITEMS; k++) {
      let t = first + k;
      if (t < seg_end) {
        var out = acc[k];
        ${attrs.hasD ? 'out += skip * x[k];' : ''}
        ${attrs.hasZ ? `out *= ${lanes((r) => `silu(gate[row[${r}] + t])`)};` : ''}
        for (var r = 0u; r < 4u; r++) {
          if (c0 + r < u.d) { y[row[r] + t] = out[r]; }
        }
      }
    }`
    }
  }
  ${
    totals
      ? `workgroupBarrier();
  for (var s = lid; s < N; s += THREADS) {
    for (var r = 0u; r < 4u; r++) {
      if (c0 + r < u.d) {
        let j = ((b * u.d + c0 + r) * u.segments + seg) * N + s;
        seg_a[j] = carry_a[s][r];
        seg_b[j] = carry[s][r];
      }
    }
  }`
      : ''
  }
  ${
    mode === 'single' && attrs.returnLastState
      ? `workgroupBarrier();
  for (var s = lid; s < N; s += THREADS) {
    let h = carry[s];
    for (var r = 0u; r < 4u; r++) {
      if (c0 + r < u.d) { h_last[(b * u.d + c0 + r) * N + s] = h[r]; }
    }
  }`
      : ''
  }
}`;
}

function program(
  backend: Backend,
  attrs: SelectiveScanAttrs,
  inputs: ScanInputs,
  outputs: ScanOutputs,
  params: Tensor,
  fastExp: boolean,
  mode: ParallelMode = 'single',
  seg?: Segmentation,
  segmentBuffers?: { segA: Tensor; segB: Tensor; carriesIn: Tensor },
): WebGpuProgram {
  const parallel = attrs.algorithm === 'parallel';
  const vec4 = !parallel && sequentialVec4(attrs);
  const quads = !parallel && useQuads(backend, attrs);
  let { ins, outs } = bindings(inputs, params, outputs, attrs, vec4);
  const blocks = quads && useQuadBlocks(attrs);
  // The quad kernel writes y one step per thread (the block form, as vec4s).
  if (quads && !blocks) outs = outs.map((b) => (b.name === 'y' ? { name: 'y', tensor: b.tensor } : b));
  if (mode === 'totals') {
    // Only what the segment totals need: u, dt, A (params) and B in; the pairs out.
    ins = ins.filter((b) => b.name !== 'c_mat' && b.name !== 'gate');
    outs = [
      { name: 'seg_a', tensor: segmentBuffers!.segA },
      { name: 'seg_b', tensor: segmentBuffers!.segB },
    ];
  } else if (mode === 'output') {
    ins = [...ins, { name: 'carries_in', tensor: segmentBuffers!.carriesIn }];
    outs = outs.filter((b) => b.name === 'y');
  }
  const threads = threadsFor(backend);
  const subgroups = parallel && attrs.subgroups && backend.features.has('subgroups');
  const name = parallel
    ? `selective_scan_parallel${mode === 'single' ? '' : `_${mode}`}`
    : quads
      ? `selective_scan_sequential_quads${blocks ? '_blocks' : ''}`
      : 'selective_scan_sequential';
  const cacheKey = `${flagsKey(attrs)}-exp${fastExp ? 'fast' : 'acc'}${parallel ? `-t${threads}-sg${subgroups}` : `-v${vec4 ? 4 : 1}-quads${quads}-f${tuning.tilesInFlight}-w${tuning.quadWorkgroup}-blocks${blocks}`}`;
  let source = sources.get(`${name}|${cacheKey}`);
  if (source === undefined) {
    source = parallel
      ? parallelSource(attrs, threads, fastExp, subgroups, mode)
      : blocks
        ? quadBlockSource(attrs, fastExp)
        : quads
          ? quadSource(attrs, fastExp)
          : sequentialSource(attrs, fastExp);
    sources.set(`${name}|${cacheKey}`, source);
  }
  const segments = seg?.segments ?? 1;
  const workgroups = parallel
    ? attrs.batch * Math.ceil(attrs.channels / PARALLEL_CHANNELS) * segments
    : quads
      ? Math.ceil((4 * attrs.batch * attrs.channels) / tuning.quadWorkgroup)
      : Math.ceil((attrs.batch * attrs.channels) / SEQUENTIAL_WORKGROUP);
  return {
    kind: 'webgpu',
    name,
    cacheKey,
    inputs: ins,
    outputs: outs,
    uniforms: uniformsFor(attrs, seg),
    source,
    dispatch: dispatch1d(workgroups, backend.limits.maxWorkgroupsPerDimension),
    enables: subgroups || quads ? ['subgroups'] : [],
  };
}

/** Pass 2 of the segmented scan: thread per (batch, channel, state) folds the segment pairs in order. */
function segmentCarriesProgram(
  backend: Backend,
  attrs: SelectiveScanAttrs,
  params: Tensor,
  seg: Segmentation,
  buffers: { segA: Tensor; segB: Tensor; carriesIn: Tensor },
  lastState: Tensor | undefined,
): WebGpuProgram {
  const count = attrs.batch * attrs.channels * attrs.states;
  return {
    kind: 'webgpu',
    name: 'selective_scan_segment_carries',
    cacheKey: `n${attrs.states}-h0${attrs.hasInitialState}-last${!!lastState}`,
    inputs: [
      { name: 'params', tensor: params },
      { name: 'seg_a', tensor: buffers.segA },
      { name: 'seg_b', tensor: buffers.segB },
    ],
    outputs: [
      { name: 'carries_in', tensor: buffers.carriesIn },
      ...(lastState ? [{ name: 'h_last', tensor: lastState }] : []),
    ],
    uniforms: [...uniformsFor(attrs, seg), { name: 'count', type: 'u32', value: count }],
    source: /* wgsl */ `
const N: u32 = ${attrs.states}u;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (i >= u.count) { return; }
  let bc = i / N;
  let s = i % N;
  var h = ${attrs.hasInitialState ? 'params[u.h0_off + i]' : '0.0'};
  for (var seg = 0u; seg < u.segments; seg++) {
    let j = (bc * u.segments + seg) * N + s;
    carries_in[j] = h;
    h = seg_a[j] * h + seg_b[j];
  }
  ${lastState ? 'h_last[i] = h;' : ''}
}`,
    dispatch: dispatch1d(Math.ceil(count / 64), backend.limits.maxWorkgroupsPerDimension),
  };
}

async function writeScan(
  backend: Backend,
  inputs: ScanInputs,
  attrs: SelectiveScanAttrs,
  outputs: ScanOutputs,
): Promise<void> {
  if (attrs.batch === 0) return;
  const fastExp = attrs.exp === 'auto' ? await exp2IsAccurate(backend) : attrs.exp === 'fast';
  const params = await packParams(backend, inputs, attrs);
  const temporaries: Tensor[] = [params];
  try {
    const seg = attrs.algorithm === 'parallel' ? parallelSegments(backend, attrs) : undefined;
    if (!seg || seg.segments === 1) {
      await backend.run(program(backend, attrs, inputs, outputs, params, fastExp, 'single', seg));
      return;
    }
    // Three passes: segment totals, the state entering each segment, then y.
    const size = attrs.batch * attrs.channels * seg.segments * attrs.states;
    const buffers = {
      segA: backend.empty([size]),
      segB: backend.empty([size]),
      carriesIn: backend.empty([size]),
    };
    temporaries.push(buffers.segA, buffers.segB, buffers.carriesIn);
    await backend.run(program(backend, attrs, inputs, outputs, params, fastExp, 'totals', seg, buffers));
    await backend.run(segmentCarriesProgram(backend, attrs, params, seg, buffers, outputs.lastState));
    await backend.run(program(backend, attrs, inputs, outputs, params, fastExp, 'output', seg, buffers));
  } finally {
    for (const t of temporaries) t.dispose();
  }
}

/**
 * The fast e^(dt a) within this relative error (3 ulp of float32) counts as accurate: about
 * what the float32 baseline itself loses per step (the rounding of dt a, of the exp, of the
 * product and the sum), so the scan stays within the test rule's 2x.
 */
export const FAST_EXP_TOLERANCE = 3 * 2 ** -23;
const probes = new WeakMap<Backend, Promise<boolean>>();

/**
 * Whether the fast e^(dt a) (hardware exp2 plus the split argument) is within 3 ulp on this
 * device: measured once per backend on a grid of dt in (0, 2] and a in [-16, 0) against
 * float64. GPUs' exp2 should pass (NVIDIA's is about 2 ulp); SwiftShader's does not, and gets the
 * accurate polynomial.
 */
export function exp2IsAccurate(backend: Backend): Promise<boolean> {
  let probe = probes.get(backend);
  if (!probe) {
    probe = measureFastExpError(backend).then((error) => error <= FAST_EXP_TOLERANCE);
    probes.set(backend, probe);
    // A probe that failed to run (a lost device) is tried again next time.
    probe.catch(() => probes.delete(backend));
  }
  return probe;
}

/** The largest relative error of the fast e^(dt a) over the probe grid. */
export async function measureFastExpError(backend: Backend): Promise<number> {
  const side = 64;
  const dts = new Float32Array(side * side);
  const as = new Float32Array(side * side);
  for (let i = 0; i < side; i++) {
    for (let j = 0; j < side; j++) {
      dts[i * side + j] = ((i + 1) / side) * 2 * (1 + j / 997);
      as[i * side + j] = ((-16 * (j + 1)) / side) * (1 - i / 1013);
    }
  }
  const dt = backend.tensor(dts, [dts.length]);
  const a = backend.tensor(as, [as.length]);
  const out = backend.empty([dts.length]);
  try {
    await backend.run({
      kind: 'webgpu',
      name: 'selective_scan_exp_probe',
      cacheKey: '',
      inputs: [
        { name: 'dts', tensor: dt },
        { name: 'a_vals', tensor: a },
      ],
      outputs: [{ name: 'out', tensor: out }],
      uniforms: [{ name: 'count', type: 'u32', value: dts.length }],
      source: `${EXP_CONSTANTS_WGSL}${FAST_EXP_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < u.count) {
    let hi = split_hi(a_vals[i]);
    out[i] = exp_dt_a(dts[i], hi, split_lo(a_vals[i], hi));
  }
}`,
      dispatch: [Math.ceil(dts.length / 64), 1, 1],
    });
    const got = await out.read();
    let worst = 0;
    for (let i = 0; i < got.length; i++) {
      const exact = Math.exp(dts[i]! * as[i]!);
      worst = Math.max(worst, Math.abs(got[i]! - exact) / exact);
    }
    return Number.isNaN(worst) ? Number.POSITIVE_INFINITY : worst;
  } finally {
    dt.dispose();
    a.dispose();
    out.dispose();
  }
}

export const selectiveScanWebGpuKernel = selectiveScanKernel('webgpu', writeScan);
