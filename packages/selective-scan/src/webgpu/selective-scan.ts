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
  type Backend,
  type WebGpuProgram,
  type WgslBinding,
  type WgslUniform,
  dispatch1d,
} from '@longseq/backend';
import { type ScanInputs, type ScanOutputs, type SelectiveScanAttrs, selectiveScanKernel } from '../contract';

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

/** WGSL shared by both programs: exp, softplus, silu, and where B and C live. */
function commonWgsl(attrs: SelectiveScanAttrs): string {
  return /* wgsl */ `
const N: u32 = ${attrs.states}u;

// e^x to about 1 ulp: x = k ln2 + r with ln2 split so k * ln2_hi is exact, a degree-7
// Taylor polynomial for e^r on |r| <= ln2 / 2, and 2^k applied in two halves so neither
// ldexp leaves the normal range before the other.
fn exp_acc(x: f32) -> f32 {
  if (x > 88.72284) { return bitcast<f32>(0x7f800000u + min(u.batch, 0u)); }
  if (x < -103.97208) { return 0.0; }
  let k = round(x * 1.4426950408889634);
  let r = fma(-k, 1.428606765330187e-6, fma(-k, 0.693145751953125, x));
  var p = 1.0 / 5040.0;
  p = fma(p, r, 1.0 / 720.0);
  p = fma(p, r, 1.0 / 120.0);
  p = fma(p, r, 1.0 / 24.0);
  p = fma(p, r, 1.0 / 6.0);
  p = fma(p, r, 0.5);
  p = fma(p, r, 1.0);
  p = fma(p, r, 1.0);
  let ki = i32(k);
  let half = ki / 2;
  return ldexp(ldexp(p, half), ki - half);
}

// log(1 + y) for y >= 0 that keeps tiny y: the rounding of 1 + y cancels in log(w) y / (w - 1).
fn log1p_pos(y: f32) -> f32 {
  let w = 1.0 + y;
  if (w == 1.0) { return y; }
  return log(w) * (y / (w - 1.0));
}

// PyTorch's softplus with threshold 20, as mamba applies it to dt.
fn softplus_dt(x: f32) -> f32 {
  if (x > 20.0) { return x; }
  return log1p_pos(exp_acc(x));
}

fn silu(z: f32) -> f32 {
  return z * (1.0 / (1.0 + exp_acc(-z)));
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

function uniformsFor(attrs: SelectiveScanAttrs): WgslUniform[] {
  return [
    { name: 'batch', type: 'u32', value: attrs.batch },
    { name: 'd', type: 'u32', value: attrs.channels },
    { name: 'len', type: 'u32', value: attrs.length },
    { name: 'b_groups', type: 'u32', value: attrs.bGroups },
    { name: 'b_heads', type: 'u32', value: attrs.channels / attrs.bGroups },
    { name: 'c_groups', type: 'u32', value: attrs.cGroups },
    { name: 'c_heads', type: 'u32', value: attrs.channels / attrs.cGroups },
  ];
}

function bindings(inputs: ScanInputs, outputs: ScanOutputs): { ins: WgslBinding[]; outs: WgslBinding[] } {
  const ins: WgslBinding[] = [
    { name: 'xs', tensor: inputs.u },
    { name: 'dts', tensor: inputs.delta },
    { name: 'a_mat', tensor: inputs.A },
    { name: 'b_mat', tensor: inputs.B },
    { name: 'c_mat', tensor: inputs.C },
  ];
  if (inputs.D) ins.push({ name: 'd_skip', tensor: inputs.D });
  if (inputs.z) ins.push({ name: 'gate', tensor: inputs.z });
  if (inputs.deltaBias) ins.push({ name: 'dt_bias', tensor: inputs.deltaBias });
  if (inputs.initialState) ins.push({ name: 'h0', tensor: inputs.initialState });
  const outs: WgslBinding[] = [{ name: 'y', tensor: outputs.y }];
  if (outputs.lastState) outs.push({ name: 'h_last', tensor: outputs.lastState });
  return { ins, outs };
}

/** Attribute flags that change the source (never shapes, except n: see commonWgsl). */
function flagsKey(attrs: SelectiveScanAttrs): string {
  return [
    `n${attrs.states}`,
    `B${attrs.bLayout}`,
    `C${attrs.cLayout}`,
    attrs.hasD ? 'D' : '',
    attrs.hasZ ? 'z' : '',
    attrs.hasDeltaBias ? 'bias' : '',
    attrs.deltaSoftplus ? 'sp' : '',
    attrs.hasInitialState ? 'h0' : '',
    attrs.returnLastState ? 'last' : '',
  ].join('-');
}

const sources = new Map<string, string>();

function sequentialSource(attrs: SelectiveScanAttrs): string {
  const wg = SEQUENTIAL_WORKGROUP;
  return /* wgsl */ `${commonWgsl(attrs)}
const WG: u32 = ${wg}u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let bc = (wid.x + wid.y * nwg.x) * WG + lid;
  if (bc >= u.batch * u.d) { return; }
  let b = bc / u.d;
  let c = bc % u.d;
  var h: array<f32, N>;
  var a: array<f32, N>;
  for (var s = 0u; s < N; s++) {
    a[s] = a_mat[c * N + s];
    h[s] = ${attrs.hasInitialState ? 'h0[bc * N + s]' : '0.0'};
  }
  let bias = ${attrs.hasDeltaBias ? 'dt_bias[c]' : '0.0'};
  let skip = ${attrs.hasD ? 'd_skip[c]' : '0.0'};
  let row = bc * u.len;
  for (var t = 0u; t < u.len; t++) {
    let dt = step_dt(dts[row + t], bias);
    let x = xs[row + t];
    let dtx = dt * x;
    var acc = 0.0;
    for (var s = 0u; s < N; s++) {
      h[s] = exp_acc(dt * a[s]) * h[s] + dtx * b_mat[b_index(b, c, s, t)];
      acc += c_mat[c_index(b, c, s, t)] * h[s];
    }
    ${attrs.hasD ? 'acc += skip * x;' : ''}
    ${attrs.hasZ ? 'acc *= silu(gate[row + t]);' : ''}
    y[row + t] = acc;
  }
  ${attrs.returnLastState ? 'for (var s = 0u; s < N; s++) { h_last[bc * N + s] = h[s]; }' : ''}
}`;
}

function parallelSource(attrs: SelectiveScanAttrs, threads: number): string {
  // A vec4 of one expression per channel lane r (0..3).
  const lanes = (f: (r: number) => string) => `vec4<f32>(${[0, 1, 2, 3].map(f).join(', ')})`;
  const vec4Of = (f: string) => lanes((r) => f.replaceAll('$', `ch[${r}]`));
  const exp4 = 'vec4<f32>(exp_acc(v.x), exp_acc(v.y), exp_acc(v.z), exp_acc(v.w))';
  return /* wgsl */ `${commonWgsl(attrs)}
const THREADS: u32 = ${threads}u;
const ITEMS: u32 = ${PARALLEL_ITEMS}u;
const CHUNK: u32 = THREADS * ITEMS;

// The pairs being scanned (one per thread) and the state entering the current chunk.
var<workgroup> scan_a: array<vec4<f32>, THREADS>;
var<workgroup> scan_b: array<vec4<f32>, THREADS>;
var<workgroup> carry: array<vec4<f32>, N>;

fn exp4(v: vec4<f32>) -> vec4<f32> { return ${exp4}; }
fn softplus4(v: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(softplus_dt(v.x), softplus_dt(v.y), softplus_dt(v.z), softplus_dt(v.w));
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let blocks = (u.d + 3u) / 4u;
  let group = wid.x + wid.y * nwg.x;
  let b = group / blocks;
  // Uniform across the workgroup, so returning here keeps the barriers below uniform.
  if (b >= u.batch) { return; }
  let c0 = (group % blocks) * 4u;
  // One channel per vec4 lane; lanes past d repeat channel d - 1 and are never written.
  var ch: array<u32, 4>;
  for (var r = 0u; r < 4u; r++) { ch[r] = min(c0 + r, u.d - 1u); }
  var row: array<u32, 4>;
  for (var r = 0u; r < 4u; r++) { row[r] = (b * u.d + ch[r]) * u.len; }
  let bias = ${attrs.hasDeltaBias ? vec4Of('dt_bias[$]') : 'vec4<f32>(0.0)'};
  let skip = ${attrs.hasD ? vec4Of('d_skip[$]') : 'vec4<f32>(0.0)'};

  for (var s = lid; s < N; s += THREADS) {
    carry[s] = ${attrs.hasInitialState ? vec4Of('h0[(b * u.d + $) * N + s]') : 'vec4<f32>(0.0)'};
  }
  workgroupBarrier();

  for (var start = 0u; start < u.len; start += CHUNK) {
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
      dt[k] = select(vec4<f32>(0.0), stepdt, first + k < u.len);
      x[k] = ${lanes((r) => `xs[row[${r}] + t]`)};
      dtx[k] = dt[k] * x[k];
      acc[k] = vec4<f32>(0.0);
    }
    for (var s = 0u; s < N; s++) {
      let a_s = ${vec4Of('a_mat[$ * N + s]')};
      var dA: array<vec4<f32>, ITEMS>;
      var dBu: array<vec4<f32>, ITEMS>;
      // 1. This thread's steps reduced to one pair, (pa, pb): h -> pa h + pb.
      var pa = vec4<f32>(1.0);
      var pb = vec4<f32>(0.0);
      for (var k = 0u; k < ITEMS; k++) {
        let t = min(first + k, u.len - 1u);
        let bv = ${vec4Of('b_mat[b_index(b, $, s, t)]')};
        dA[k] = exp4(dt[k] * a_s);
        dBu[k] = dtx[k] * bv;
        pa = pa * dA[k];
        pb = dA[k] * pb + dBu[k];
      }
      // 2. Hillis-Steele: after the level with offset o, thread i holds the pair of steps
      //    (i - 2o, i], so after log2(THREADS) levels it holds the prefix through itself.
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
      // 3. The state entering this thread's steps: the exclusive prefix applied to the carry.
      let h_in = carry[s];
      var h = h_in;
      if (lid > 0u) { h = scan_a[lid - 1u] * h_in + scan_b[lid - 1u]; }
      for (var k = 0u; k < ITEMS; k++) {
        let t = min(first + k, u.len - 1u);
        let cv = ${vec4Of('c_mat[c_index(b, $, s, t)]')};
        h = dA[k] * h + dBu[k];
        acc[k] += cv * h;
      }
      workgroupBarrier();
      // The chunk's total pair (the last thread's inclusive prefix) advances the carry.
      if (lid == THREADS - 1u) { carry[s] = pa * h_in + pb; }
    }
    for (var k = 0u; k < ITEMS; k++) {
      let t = first + k;
      if (t < u.len) {
        var out = acc[k];
        ${attrs.hasD ? 'out += skip * x[k];' : ''}
        ${attrs.hasZ ? `out *= ${lanes((r) => `silu(gate[row[${r}] + t])`)};` : ''}
        for (var r = 0u; r < 4u; r++) {
          if (c0 + r < u.d) { y[row[r] + t] = out[r]; }
        }
      }
    }
  }
  ${
    attrs.returnLastState
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
): WebGpuProgram {
  const { ins, outs } = bindings(inputs, outputs);
  const parallel = attrs.algorithm === 'parallel';
  const threads = threadsFor(backend);
  const name = parallel ? 'selective_scan_parallel' : 'selective_scan_sequential';
  const cacheKey = `${flagsKey(attrs)}${parallel ? `-t${threads}` : ''}`;
  let source = sources.get(`${name}|${cacheKey}`);
  if (source === undefined) {
    source = parallel ? parallelSource(attrs, threads) : sequentialSource(attrs);
    sources.set(`${name}|${cacheKey}`, source);
  }
  const workgroups = parallel
    ? attrs.batch * Math.ceil(attrs.channels / PARALLEL_CHANNELS)
    : Math.ceil((attrs.batch * attrs.channels) / SEQUENTIAL_WORKGROUP);
  return {
    kind: 'webgpu',
    name,
    cacheKey,
    inputs: ins,
    outputs: outs,
    uniforms: uniformsFor(attrs),
    source,
    dispatch: dispatch1d(workgroups, backend.limits.maxWorkgroupsPerDimension),
  };
}

async function writeScan(
  backend: Backend,
  inputs: ScanInputs,
  attrs: SelectiveScanAttrs,
  outputs: ScanOutputs,
): Promise<void> {
  if (attrs.batch === 0) return;
  await backend.run(program(backend, attrs, inputs, outputs));
}

export const selectiveScanWebGpuKernel = selectiveScanKernel('webgpu', writeScan);
