/**
 * WebGPU's fused decode step: one Mamba layer for one token per sequence in three dispatches
 * instead of the ~13 of the composed ops, with the states and the residual stream updated in
 * place (no allocation per layer):
 *
 *   1. norm_in_proj_conv  xz = in_proj(rmsNorm(h)); the x half goes on through the conv
 *                         step (conv state shifted in place) and is stored as u = silu(conv(x))
 *   2. x_proj_ssm         xdbl = x_proj(u) [R + 2N] in each workgroup's memory, then per
 *                         channel: dt = softplus(dt_proj . dt_low + bias), the N states
 *                         advanced, y = (C . h + D u) silu(z)
 *   3. out_proj           h += out_proj(y)
 *
 * The final norm and LM head are one more norm + matrix-vector kernel, and greedy decoding
 * takes the argmax on the GPU (`MambaArgmax`) so a step reads back B ids, not B x V logits.
 *
 * The matrix-vector products read each row as vec4s, the lanes of a row taking consecutive
 * 16-byte chunks (coalesced), and reduce their partial sums in workgroup memory (`matvecShape`
 * picks lanes and rows per workgroup for the device and the product's size). Decoding reads
 * every weight once per token, so these products are bandwidth-bound and the rest (conv, SSM
 * update) is O(D N) per token.
 *
 * Kernels bind at most 8 storage buffers (WebGPU guarantees 8): the small per-channel
 * parameters are packed into one `params` buffer per layer (`decodeParams`, packed by uploadMambaWeights).
 */
import type { Backend, KernelConfig, Tensor, WebGpuProgram } from '@longseq/backend';
import { WGSL_EXP_ACCURATE } from './ssm-step';

export const MambaFusedDecodeLayer = 'MambaFusedDecodeLayer';
export const MambaNormMatvec = 'MambaNormMatvec';
export const MambaArgmax = 'MambaArgmax';

/**
 * How a matrix-vector product is spread: `lanes` threads per row, `rows` rows per workgroup
 * (workgroup size lanes * rows), and `vec` floats per load. With `vec` 4 a row is read as
 * vec4s, lane i taking vec4 i, i + lanes, ...: the lanes of a row read consecutive 16-byte
 * chunks, so each step of a row group is one fully used run of memory.
 *
 * Decoding reads every weight once per token with ~2 flops per 4 bytes, so the products are
 * bandwidth-bound: what matters is many wide loads in flight on every SM. On a GPU (subgroups
 * of 16 or more) rows get one or two subgroups of lanes (32 up to 256 vec4 per row, then 64)
 * and as many rows per workgroup (up to 256 threads) as keep at least TARGET_WORKGROUPS
 * workgroups, so small products (out_proj's 768 rows) still spread over every SM. On a CPU
 * pretending to be a GPU (SwiftShader, subgroups of 4), where every workgroup barrier is
 * expensive, rows get 8 lanes (3 reduction levels) in workgroups of 64.
 */
export interface MatvecShape {
  readonly lanes: number;
  readonly rows: number;
  readonly wg: number;
  readonly vec: 1 | 4;
}

/** Workgroups a product should at least have: two per SM of a large GPU (an H100 has 132). */
const TARGET_WORKGROUPS = 264;

export function matvecShape(backend: Backend, width: number, rows: number, lanesOverride = 0): MatvecShape {
  const vec: 1 | 4 = width % 4 === 0 ? 4 : 1;
  const maxWg = Math.min(256, backend.limits.maxWorkgroupInvocations);
  if (lanesOverride === 0 && backend.limits.subgroupSize < 16) return { lanes: 8, rows: 8, wg: 64, vec };
  const lanes = lanesOverride > 0 ? lanesOverride : width / vec <= 256 ? 32 : 64;
  let perGroup = Math.max(1, Math.floor(maxWg / lanes));
  while (perGroup > 1 && Math.ceil(rows / perGroup) < TARGET_WORKGROUPS) perGroup >>= 1;
  return { lanes, rows: perGroup, wg: lanes * perGroup, vec };
}

/** Workgroups for `rows` rows: x up to the per-dimension limit, the rest on z; batch on y. */
function rowGrid(
  backend: Backend,
  rows: number,
  shape: MatvecShape,
  batch: number,
): [number, number, number] {
  const groups = Math.ceil(rows / shape.rows);
  const max = backend.limits.maxWorkgroupsPerDimension;
  const z = Math.ceil(groups / max);
  return [Math.ceil(groups / z), batch, z];
}

/** Sizes of one layer, batch B, model width M, channels D, states N, dt rank R, conv width K. */
export interface FusedDecodeAttrs {
  readonly batch: number;
  readonly dModel: number;
  readonly dInner: number;
  readonly dState: number;
  readonly dtRank: number;
  readonly dConv: number;
  readonly eps: number;
  readonly hasInBias: boolean;
  readonly hasConvBias: boolean;
  readonly hasOutBias: boolean;
  /** Threads per matrix row (a power of two, 8..256); 0 lets `matvecShape` choose for the device. */
  readonly lanes: number;
}

/**
 * Offsets into the packed per-layer params: conv weight [D, K], conv bias [D], dt bias [D],
 * D skip [D], A [D, N], in_proj bias [2D] (zeros without one).
 */
export function paramsOffsets(dInner: number, dConv: number, dState: number) {
  const convW = 0;
  const convB = convW + dInner * dConv;
  const dtB = convB + dInner;
  const dSkip = dtB + dInner;
  const a = dSkip + dInner;
  const inB = a + dInner * dState;
  return { convW, convB, dtB, dSkip, a, inB, size: inB + 2 * dInner };
}

/** The WGSL type of one load, and how two of them multiply-add into an f32. */
const vecType = (vec: 1 | 4) => (vec === 4 ? 'vec4<f32>' : 'f32');
const elementType = (vec: 1 | 4) => (vec === 4 ? { elementType: 'vec4<f32>' } : {});

/** Row-group reduction shared by the matrix-vector kernels, and the row this thread works on. */
const reduceWgsl = ({ lanes, rows, wg, vec }: MatvecShape) => /* wgsl */ `
const WG: u32 = ${wg}u;
const LANES: u32 = ${lanes}u;
const ROWS: u32 = ${rows}u;
alias VT = ${vecType(vec)};
fn dotv(a: VT, b: VT) -> f32 { return ${vec === 4 ? 'dot(a, b)' : 'a * b'}; }
var<workgroup> partial: array<vec2<f32>, ${wg}>;
// The first row of this workgroup: groups run along x, then z.
fn group_row(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return (wid.x + wid.z * nwg.x) * ROWS; }
// Sums the lanes of each row group into partial[group * LANES] (two sums at once). Every thread calls it.
fn reduce_lanes(li: u32, value: vec2<f32>) {
  partial[li] = value;
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
    if (li % LANES < s) { partial[li] = partial[li] + partial[li + s]; }
    workgroupBarrier();
  }
}`;

/** SiLU with the accurate exp (torch's). */
const SILU = /* wgsl */ `
fn silu_acc(x: f32) -> f32 { return x / (1.0 + exp_acc(-x)); }`;

/**
 * out[b, r] = W_r . (h[b] * inv_rms(h[b]) * norm_w) (+ bias_r), rows r < rows0 from w0 and
 * the next rows1 from w1 (in_proj's x and z halves; the LM head uses w0 only). With `conv`
 * (in_proj), row c < rows0 is channel c's x: the thread that finishes it also runs the conv
 * step on it (the channel's conv state is its alone: shifted in place) and writes
 * u = silu(conv) instead of x, so later kernels read u without recomputing the conv.
 */
const normMatvecWgsl = (
  shape: MatvecShape,
  conv: boolean,
) => /* wgsl */ `${WGSL_EXP_ACCURATE}${SILU}${reduceWgsl(shape)}
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = wid.y;
  let base = b * u.nvec;
  let lane = li % LANES;
  let r = group_row(wid, nwg) + li / LANES;
  let rows = u.rows0 + u.rows1;
  // Each row group sums h^2 (for its own copy of the RMS) alongside its dot product.
  var acc = vec2<f32>(0.0, 0.0);
  if (r < u.rows0) {
    let row = r * u.nvec;
    for (var k = lane; k < u.nvec; k = k + LANES) {
      let h = hidden[base + k];
      acc = acc + vec2<f32>(dotv(w0[row + k], h * norm_w[k]), dotv(h, h));
    }
  } else if (r < rows) {
    let row = (r - u.rows0) * u.nvec;
    for (var k = lane; k < u.nvec; k = k + LANES) {
      let h = hidden[base + k];
      acc = acc + vec2<f32>(dotv(w1[row + k], h * norm_w[k]), dotv(h, h));
    }
  }
  reduce_lanes(li, acc);
  if (lane == 0u && r < rows) {
    let sums = partial[li];
    var v = sums.x / sqrt(sums.y / f32(u.width) + u.eps);
    ${
      conv
        ? 'if (u.has_bias == 1u) { v = v + params[u.off_in_b + r]; }'
        : 'if (u.has_bias == 1u) { v = v + select(bias1[r - u.rows0], bias0[r], r < u.rows0); }'
    }
    ${
      conv
        ? `if (r < u.rows0) {
      // The conv step of channel r: the K-1 past inputs, then this token's x.
      let past = u.conv_width - 1u;
      let st = (b * u.rows0 + r) * past;
      var a = 0.0;
      if (u.has_conv_bias == 1u) { a = params[u.off_conv_b + r]; }
      for (var j = 0u; j < past; j = j + 1u) {
        a = a + params[u.off_conv_w + r * u.conv_width + j] * conv_state[st + j];
      }
      a = a + params[u.off_conv_w + r * u.conv_width + past] * v;
      for (var j = 0u; j + 1u < past; j = j + 1u) { conv_state[st + j] = conv_state[st + j + 1u]; }
      if (past > 0u) { conv_state[st + past - 1u] = v; }
      v = silu_acc(a);
    }`
        : ''
    }
    out[b * rows + r] = v;
  }
}`;

/**
 * The x_proj product and the SSM step in one kernel. Every workgroup first computes all of
 * xdbl[b] = x_proj . u[b] (dt_low, B, C: R + 2N rows, few, and every channel needs them) into
 * workgroup memory, ROWS rows at a time with LANES lanes each reading vec4s; then each thread
 * takes one channel: dt = softplus(dt_proj . dt_low + bias), the N states advanced, y = (C . h
 * + D u) silu(z). Recomputing xdbl per workgroup costs a few microseconds of L2 reads and
 * saves a dispatch per layer, which is what a decode step is short of (host time per
 * dispatch, not bandwidth).
 */
const xProjSsmWgsl = (
  shape: MatvecShape,
  xRows: number,
) => /* wgsl */ `${WGSL_EXP_ACCURATE}${SILU}${reduceWgsl(shape)}
const XROWS: u32 = ${xRows}u;
var<workgroup> xd: array<f32, ${xRows}>;
fn xz_at(i: u32) -> f32 { return ${shape.vec === 4 ? 'xz[i >> 2u][i & 3u]' : 'xz[i]'}; }
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.y;
  let lane = li % LANES;
  let group = li / LANES;
  // u of sequence b: the first half of its xz row (2 * nvec loads wide).
  let ub = b * 2u * u.nvec;
  for (var r0 = 0u; r0 < XROWS; r0 = r0 + ROWS) {
    let r = r0 + group;
    var acc = 0.0;
    if (r < u.dt_rank) {
      for (var k = lane; k < u.nvec; k = k + LANES) { acc = acc + dotv(w_dt[r * u.nvec + k], xz[ub + k]); }
    } else if (r < u.dt_rank + u.states) {
      let row = (r - u.dt_rank) * u.nvec;
      for (var k = lane; k < u.nvec; k = k + LANES) { acc = acc + dotv(w_b[row + k], xz[ub + k]); }
    } else if (r < XROWS) {
      let row = (r - u.dt_rank - u.states) * u.nvec;
      for (var k = lane; k < u.nvec; k = k + LANES) { acc = acc + dotv(w_c[row + k], xz[ub + k]); }
    }
    reduce_lanes(li, vec2<f32>(acc, 0.0));
    if (lane == 0u && r < XROWS) { xd[r] = partial[li].x; }
    workgroupBarrier();
  }
  let c = wid.x * WG + li;
  if (c >= u.channels) { return; }
  let bc = b * u.channels + c;
  let uv = xz_at(b * 2u * u.channels + c);
  let zv = xz_at(b * 2u * u.channels + u.channels + c);
  var dt = params[u.off_dt_b + c];
  for (var r = 0u; r < u.dt_rank; r = r + 1u) { dt = dt + dt_proj[c * u.dt_rank + r] * xd[r]; }
  dt = softplus_acc(dt);
  let dtu = dt * uv;
  var acc = 0.0;
  for (var j = 0u; j < u.states; j = j + 1u) {
    let h = exp_acc(dt * params[u.off_a + c * u.states + j]) * ssm_state[bc * u.states + j]
      + dtu * xd[u.dt_rank + j];
    ssm_state[bc * u.states + j] = h;
    acc = acc + xd[u.dt_rank + u.states + j] * h;
  }
  y[bc] = (acc + params[u.off_d + c] * uv) * silu_acc(zv);
}`;

/** The x_proj + SSM kernel's shape: LANES per x_proj row, the workgroup one channel per thread. */
function xProjSsmShape(backend: Backend, channels: number, lanesOverride: number): MatvecShape {
  const vec: 1 | 4 = channels % 4 === 0 ? 4 : 1;
  if (lanesOverride === 0 && backend.limits.subgroupSize < 16) return { lanes: 8, rows: 8, wg: 64, vec };
  const lanes = lanesOverride > 0 ? lanesOverride : 32;
  const wg = Math.max(lanes, Math.min(256, backend.limits.maxWorkgroupInvocations));
  return { lanes, rows: wg / lanes, wg, vec };
}

/** h[b, m] += out_proj_m . y[b] (+ bias_m), in place. */
const outProjWgsl = (shape: MatvecShape) => /* wgsl */ `${reduceWgsl(shape)}
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = wid.y;
  let lane = li % LANES;
  let m = group_row(wid, nwg) + li / LANES;
  var acc = 0.0;
  if (m < u.width) {
    for (var k = lane; k < u.nvec; k = k + LANES) { acc = acc + dotv(w_out[m * u.nvec + k], y[b * u.nvec + k]); }
  }
  reduce_lanes(li, vec2<f32>(acc, 0.0));
  if (lane == 0u && m < u.width) {
    var v = partial[li].x;
    if (u.has_bias == 1u) { v = v + bias[m]; }
    hidden[b * u.width + m] = hidden[b * u.width + m] + v;
  }
}`;

/**
 * ids[b] = argmax of logits row b (first index on ties, NaN never wins; all NaN gives the last
 * index), as the host `argmax`: one workgroup per row, each thread a strided slice, then a
 * tree over the workgroup.
 */
const argmaxWgsl = (wg: number) => /* wgsl */ `
var<workgroup> best_v: array<f32, ${wg}>;
var<workgroup> best_i: array<u32, ${wg}>;
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
// Whether (v, i) should replace (bv, bi).
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  if (i == 0xffffffffu) { return false; }
  if (bi == 0xffffffffu) { return true; }
  let vn = is_nan(v);
  let bn = is_nan(bv);
  if (vn && bn) { return i > bi; }
  if (vn) { return false; }
  if (bn) { return true; }
  return v > bv || (v == bv && i < bi);
}
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.x;
  var bv = 0.0;
  var bi = 0xffffffffu;
  for (var k = li; k < u.vocab; k = k + ${wg}u) {
    let v = logits[b * u.vocab + k];
    if (beats(v, k, bv, bi)) { bv = v; bi = k; }
  }
  best_v[li] = bv;
  best_i[li] = bi;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (li < s && beats(best_v[li + s], best_i[li + s], best_v[li], best_i[li])) {
      best_v[li] = best_v[li + s];
      best_i[li] = best_i[li + s];
    }
    workgroupBarrier();
  }
  if (li == 0u) { ids[b] = i32(best_i[0]); }
}`;

/**
 * Generated WGSL by variant: a decode step records ~100 dispatches, and rebuilding each
 * program's source string every time is host time the GPU waits for.
 */
const sources = new Map<string, string>();
function cachedSource(key: string, build: () => string): string {
  let source = sources.get(key);
  if (source === undefined) {
    source = build();
    sources.set(key, source);
  }
  return source;
}
const shapeKey = (s: MatvecShape) => `${s.lanes}x${s.rows}v${s.vec}`;

type U = { name: string; type: 'u32' | 'f32'; value: number };
const u32 = (name: string, value: number): U => ({ name, type: 'u32', value });

/** The conv step's extra bindings and sizes in `norm_in_proj` (the layer's first kernel). */
interface ConvStep {
  readonly convState: Tensor;
  readonly params: Tensor;
  /** Whether params holds an in_proj bias (at off_in_b). */
  readonly hasBias: boolean;
  readonly uniforms: readonly U[];
}

/** `norm + matvec` program: out [B, rows0 + rows1]; with `conv`, the x half becomes u = silu(conv(x)). */
export function normMatvecProgram(
  backend: Backend,
  hidden: Tensor,
  normW: Tensor,
  w0: Tensor,
  w1: Tensor,
  bias0: Tensor | undefined,
  bias1: Tensor | undefined,
  out: Tensor,
  sizes: { batch: number; width: number; rows0: number; rows1: number; eps: number; lanes: number },
  conv?: ConvStep,
): WebGpuProgram {
  const shape = matvecShape(backend, sizes.width, sizes.rows0 + sizes.rows1, sizes.lanes);
  const v = elementType(shape.vec);
  return {
    kind: 'webgpu',
    name: conv ? 'mamba_norm_in_proj_conv' : 'mamba_norm_matvec',
    cacheKey: shapeKey(shape),
    inputs: [
      { name: 'hidden', tensor: hidden, ...v },
      { name: 'norm_w', tensor: normW, ...v },
      { name: 'w0', tensor: w0, ...v },
      { name: 'w1', tensor: w1, ...v },
      // The conv variant reads its bias from params (9 bindings would pass WebGPU's guaranteed 8).
      ...(conv
        ? [{ name: 'params', tensor: conv.params }]
        : [
            { name: 'bias0', tensor: bias0 ?? normW },
            { name: 'bias1', tensor: bias1 ?? normW },
          ]),
    ],
    outputs: [
      { name: 'out', tensor: out },
      ...(conv ? [{ name: 'conv_state', tensor: conv.convState }] : []),
    ],
    uniforms: [
      u32('width', sizes.width),
      u32('nvec', sizes.width / shape.vec),
      u32('rows0', sizes.rows0),
      u32('rows1', sizes.rows1),
      u32('has_bias', bias0 || conv?.hasBias ? 1 : 0),
      { name: 'eps', type: 'f32', value: sizes.eps },
      ...(conv?.uniforms ?? []),
    ],
    source: cachedSource(`norm${conv ? '_conv' : ''}:${shapeKey(shape)}`, () =>
      normMatvecWgsl(shape, conv !== undefined),
    ),
    dispatch: rowGrid(backend, sizes.rows0 + sizes.rows1, shape, sizes.batch),
  };
}

/**
 * Inputs (in order): hidden [B, M] (updated in place), norm, in_proj x, in_proj z, in bias x,
 * in bias z, conv state [B, D, K-1] (in place), params, x_proj dt, x_proj B, x_proj C,
 * dt_proj, ssm state [B, D, N] (in place), out_proj, out bias. Absent biases are stood in by
 * the norm weight. Returns nothing: the step's results are the updated hidden and states.
 */
async function runFusedLayer(
  backend: Backend,
  inputs: readonly Tensor[],
  a: FusedDecodeAttrs,
): Promise<Tensor[]> {
  const [
    hidden,
    norm,
    inX,
    inZ,
    _inBiasX, // the in_proj biases are read from params (packed with them)
    _inBiasZ,
    convState,
    params,
    wDt,
    wB,
    wC,
    dtProj,
    ssmState,
    outProj,
    outB,
  ] = inputs as Tensor[];
  const { batch: B, dModel: M, dInner: D, dState: N, dtRank: R, dConv: K } = a;
  const off = paramsOffsets(D, K, N);
  const xz = backend.empty([B, 2 * D]);
  const y = backend.empty([B, D]);
  try {
    // 1. xz = in_proj(rmsNorm(h)), the x half through the conv step: u = silu(conv(x)).
    await backend.run(
      normMatvecProgram(
        backend,
        hidden!,
        norm!,
        inX!,
        inZ!,
        undefined,
        undefined,
        xz,
        { batch: B, width: M, rows0: D, rows1: D, eps: a.eps, lanes: a.lanes },
        {
          convState: convState!,
          params: params!,
          hasBias: a.hasInBias,
          uniforms: [
            u32('off_in_b', off.inB),
            u32('conv_width', K),
            u32('has_conv_bias', a.hasConvBias ? 1 : 0),
            u32('off_conv_w', off.convW),
            u32('off_conv_b', off.convB),
          ],
        },
      ),
    );
    // 2. xdbl = x_proj(u) (per workgroup), then dt, the SSM state update and the gated y.
    const ssmShape = xProjSsmShape(backend, D, a.lanes);
    const sv = elementType(ssmShape.vec);
    await backend.run({
      kind: 'webgpu',
      name: 'mamba_x_proj_ssm',
      cacheKey: `${shapeKey(ssmShape)}r${R + 2 * N}`,
      inputs: [
        { name: 'xz', tensor: xz, ...sv },
        { name: 'w_dt', tensor: wDt!, ...sv },
        { name: 'w_b', tensor: wB!, ...sv },
        { name: 'w_c', tensor: wC!, ...sv },
        { name: 'dt_proj', tensor: dtProj! },
        { name: 'params', tensor: params! },
      ],
      outputs: [
        { name: 'ssm_state', tensor: ssmState! },
        { name: 'y', tensor: y },
      ],
      uniforms: [
        u32('nvec', D / ssmShape.vec),
        u32('channels', D),
        u32('states', N),
        u32('dt_rank', R),
        u32('off_dt_b', off.dtB),
        u32('off_d', off.dSkip),
        u32('off_a', off.a),
      ],
      source: cachedSource(`x_proj_ssm:${shapeKey(ssmShape)}r${R + 2 * N}`, () =>
        xProjSsmWgsl(ssmShape, R + 2 * N),
      ),
      dispatch: [Math.ceil(D / ssmShape.wg), B, 1],
    });
    // 4. h += out_proj(y).
    const outShape = matvecShape(backend, D, M, a.lanes);
    const ov = elementType(outShape.vec);
    await backend.run({
      kind: 'webgpu',
      name: 'mamba_out_proj',
      cacheKey: shapeKey(outShape),
      inputs: [
        { name: 'y', tensor: y, ...ov },
        { name: 'w_out', tensor: outProj!, ...ov },
        { name: 'bias', tensor: a.hasOutBias ? outB! : norm! },
      ],
      outputs: [{ name: 'hidden', tensor: hidden! }],
      uniforms: [u32('width', M), u32('nvec', D / outShape.vec), u32('has_bias', a.hasOutBias ? 1 : 0)],
      source: cachedSource(`out_proj:${shapeKey(outShape)}`, () => outProjWgsl(outShape)),
      dispatch: rowGrid(backend, M, outShape, B),
    });
  } finally {
    // Released now, reused by the next layer: the pool hands the same buffers back.
    xz.dispose();
    y.dispose();
  }
  return [];
}

export const mambaFusedDecodeWebGpuKernel: KernelConfig<FusedDecodeAttrs> = {
  kernelName: MambaFusedDecodeLayer,
  backendKind: 'webgpu',
  run: runFusedLayer,
};

/** The final norm and LM head for decoding: logits [B, V] = lm_head . rmsNorm(h). */
export const mambaNormMatvecWebGpuKernel: KernelConfig<{
  batch: number;
  width: number;
  rows: number;
  eps: number;
  lanes: number;
}> = {
  kernelName: MambaNormMatvec,
  backendKind: 'webgpu',
  async run(backend, inputs, a) {
    const [hidden, norm, w] = inputs as Tensor[];
    const out = backend.empty([a.batch, a.rows]);
    try {
      await backend.run(
        normMatvecProgram(backend, hidden!, norm!, w!, w!, undefined, undefined, out, {
          batch: a.batch,
          width: a.width,
          rows0: a.rows,
          rows1: 0,
          eps: a.eps,
          lanes: a.lanes,
        }),
      );
    } catch (err) {
      out.dispose();
      throw err;
    }
    return out;
  },
};

/** Greedy decoding on the GPU: ids [B] (i32) = the argmax of each row of logits [B, V]. */
export const mambaArgmaxWebGpuKernel: KernelConfig<{ batch: number; vocab: number }> = {
  kernelName: MambaArgmax,
  backendKind: 'webgpu',
  async run(backend, inputs, a) {
    const [logits] = inputs as Tensor[];
    const ids = backend.empty([a.batch], 'i32');
    // One workgroup per row, as wide as the device allows (a power of two for the tree).
    let wg = 1;
    while (wg * 2 <= Math.min(1024, backend.limits.maxWorkgroupInvocations)) wg *= 2;
    try {
      await backend.run({
        kind: 'webgpu',
        name: 'mamba_argmax',
        cacheKey: `${wg}`,
        inputs: [{ name: 'logits', tensor: logits! }],
        outputs: [{ name: 'ids', tensor: ids }],
        uniforms: [u32('vocab', a.vocab)],
        source: cachedSource(`argmax:${wg}`, () => argmaxWgsl(wg)),
        dispatch: [a.batch, 1, 1],
      });
    } catch (err) {
      ids.dispose();
      throw err;
    }
    return ids;
  },
};
