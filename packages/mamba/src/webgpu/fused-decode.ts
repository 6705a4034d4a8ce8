/**
 * WebGPU's fused decode step: one Mamba layer for one token per sequence in four dispatches
 * instead of the ~13 of the composed ops, with the states and the residual stream updated in
 * place (no allocation per layer):
 *
 *   1. norm_in_proj   xz = in_proj(rmsNorm(h))                          [B, 2D]
 *   2. conv_x_proj    xdbl = x_proj(silu(conv_step(x)))                 [B, R + 2N]
 *                     (each workgroup recomputes the conv + SiLU of the channels it reads)
 *   3. ssm            per channel: the conv output again, conv state shifted, dt = softplus(
 *                     dt_proj . dt_low + bias), the N states advanced, y = (C . h + D u) silu(z)
 *   4. out_proj       h += out_proj(y)
 *
 * The matrix-vector products give each row a group of threads ("lanes") reading it in
 * contiguous runs and reduce their partial sums in workgroup memory (`matvecShape` picks the
 * group size for the device). Decoding reads every weight once per token, so these products
 * are bandwidth-bound and the rest (conv, SSM update) is O(D N) per token.
 *
 * Kernels bind at most 7 storage buffers (WebGPU guarantees 8): the small per-channel
 * parameters are packed into one `params` buffer per layer (`decodeParams`, packed by uploadMambaWeights).
 */
import type { Backend, KernelConfig, Tensor, WebGpuProgram } from '@longseq/backend';
import { WGSL_EXP_ACCURATE } from './ssm-step';

export const MambaFusedDecodeLayer = 'MambaFusedDecodeLayer';
export const MambaNormMatvec = 'MambaNormMatvec';

/**
 * How a matrix-vector product is spread: `lanes` threads per row (each reads every
 * lanes-th element, so a row group reads contiguous runs) and `wg / lanes` rows per
 * workgroup. On a GPU (subgroups of 16 or more) rows get enough lanes that each thread makes
 * at most ~16 steps: decoding is one pass over the weights with little work per byte, so what
 * matters is having many loads in flight, not the cost of the reduction. On a CPU pretending
 * to be a GPU (SwiftShader, subgroups of 4), where every workgroup barrier is expensive, rows
 * get 8 lanes (3 reduction levels) in workgroups of 64.
 */
export interface MatvecShape {
  readonly lanes: number;
  readonly wg: number;
}

export function matvecShape(backend: Backend, width: number, lanesOverride = 0): MatvecShape {
  const wg = Math.min(256, backend.limits.maxWorkgroupInvocations);
  if (lanesOverride > 0) return { lanes: lanesOverride, wg: Math.max(lanesOverride, wg) };
  if (backend.limits.subgroupSize < 16) return { lanes: 8, wg: 64 };
  let lanes = 32;
  while (lanes < wg && lanes * 16 < width) lanes *= 2;
  return { lanes, wg };
}

/** Workgroups for `rows` rows: x up to the per-dimension limit, the rest on z; batch on y. */
function rowGrid(
  backend: Backend,
  rows: number,
  shape: MatvecShape,
  batch: number,
): [number, number, number] {
  const groups = Math.ceil(rows / (shape.wg / shape.lanes));
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
 * D skip [D], A [D, N].
 */
export function paramsOffsets(dInner: number, dConv: number) {
  const convW = 0;
  const convB = convW + dInner * dConv;
  const dtB = convB + dInner;
  const dSkip = dtB + dInner;
  const a = dSkip + dInner;
  return { convW, convB, dtB, dSkip, a };
}

/** Row-group reduction shared by the matrix-vector kernels, and the row this thread works on. */
const reduceWgsl = ({ lanes, wg }: MatvecShape) => /* wgsl */ `
const WG: u32 = ${wg}u;
const LANES: u32 = ${lanes}u;
const ROWS: u32 = ${wg / lanes}u;
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

/**
 * out[b, r] = W_r . (h[b] * inv_rms(h[b]) * norm_w) (+ bias_r), rows r < rows0 from w0 and
 * the next rows1 from w1 (in_proj's x and z halves; the LM head uses w0 only).
 */
const normMatvecWgsl = (shape: MatvecShape) => /* wgsl */ `${reduceWgsl(shape)}
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = wid.y;
  let base = b * u.width;
  let lane = li % LANES;
  let r = group_row(wid, nwg) + li / LANES;
  let rows = u.rows0 + u.rows1;
  // Each row group sums h^2 (for its own copy of the RMS) alongside its dot product.
  var acc = vec2<f32>(0.0, 0.0);
  if (r < u.rows0) {
    for (var k = lane; k < u.width; k = k + LANES) {
      let h = hidden[base + k];
      acc = acc + vec2<f32>(w0[r * u.width + k] * h * norm_w[k], h * h);
    }
  } else if (r < rows) {
    let r1 = r - u.rows0;
    for (var k = lane; k < u.width; k = k + LANES) {
      let h = hidden[base + k];
      acc = acc + vec2<f32>(w1[r1 * u.width + k] * h * norm_w[k], h * h);
    }
  }
  reduce_lanes(li, acc);
  if (lane == 0u && r < rows) {
    let sums = partial[li];
    var v = sums.x / sqrt(sums.y / f32(u.width) + u.eps);
    if (u.has_bias == 1u) { v = v + select(bias1[r - u.rows0], bias0[r], r < u.rows0); }
    out[b * rows + r] = v;
  }
}`;

/** The conv step + SiLU of channel c of sequence b (reads the state before this token). */
const CONV_U = /* wgsl */ `
fn silu_acc(x: f32) -> f32 { return x / (1.0 + exp_accurate(-x)); }
fn conv_u(b: u32, c: u32) -> f32 {
  let past = u.conv_width - 1u;
  var a = 0.0;
  if (u.has_conv_bias == 1u) { a = params[u.off_conv_b + c]; }
  for (var j = 0u; j < past; j = j + 1u) {
    a = a + params[u.off_conv_w + c * u.conv_width + j] * conv_state[(b * u.channels + c) * past + j];
  }
  a = a + params[u.off_conv_w + c * u.conv_width + past] * xz[b * 2u * u.channels + c];
  return silu_acc(a);
}`;

/** xdbl[b, r] = x_proj_r . silu(conv(x[b])), rows split as dt (R), B (N), C (N). */
const convXProjWgsl = (shape: MatvecShape) => /* wgsl */ `${WGSL_EXP_ACCURATE}${reduceWgsl(shape)}${CONV_U}
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = wid.y;
  let lane = li % LANES;
  let r = group_row(wid, nwg) + li / LANES;
  let rows = u.dt_rank + 2u * u.states;
  var acc = 0.0;
  if (r < rows) {
    for (var k = lane; k < u.channels; k = k + LANES) {
      var w = 0.0;
      if (r < u.dt_rank) { w = w_dt[r * u.channels + k]; }
      else if (r < u.dt_rank + u.states) { w = w_b[(r - u.dt_rank) * u.channels + k]; }
      else { w = w_c[(r - u.dt_rank - u.states) * u.channels + k]; }
      acc = acc + w * conv_u(b, k);
    }
  }
  reduce_lanes(li, vec2<f32>(acc, 0.0));
  if (lane == 0u && r < rows) { xdbl[b * rows + r] = partial[li].x; }
}`;

/** One thread per (b, c): conv output, conv state shift, dt, N state updates, gated y. */
const SSM = /* wgsl */ `${WGSL_EXP_ACCURATE}${CONV_U}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let b = gid.y;
  if (c >= u.channels) { return; }
  let bc = b * u.channels + c;
  let x = xz[b * 2u * u.channels + c];
  let zv = xz[b * 2u * u.channels + u.channels + c];
  let uv = conv_u(b, c);
  // The conv state of this channel is this thread's alone: shift it in place.
  let past = u.conv_width - 1u;
  for (var j = 0u; j + 1u < past; j = j + 1u) {
    conv_state[bc * past + j] = conv_state[bc * past + j + 1u];
  }
  conv_state[bc * past + past - 1u] = x;
  let xrow = b * (u.dt_rank + 2u * u.states);
  var dt = params[u.off_dt_b + c];
  for (var r = 0u; r < u.dt_rank; r = r + 1u) { dt = dt + dt_proj[c * u.dt_rank + r] * xdbl[xrow + r]; }
  dt = softplus_torch(dt);
  let dtu = dt * uv;
  var acc = 0.0;
  for (var j = 0u; j < u.states; j = j + 1u) {
    let h = exp_accurate(dt * params[u.off_a + c * u.states + j]) * ssm_state[bc * u.states + j]
      + dtu * xdbl[xrow + u.dt_rank + j];
    ssm_state[bc * u.states + j] = h;
    acc = acc + xdbl[xrow + u.dt_rank + u.states + j] * h;
  }
  y[bc] = (acc + params[u.off_d + c] * uv) * silu_acc(zv);
}`;

/** h[b, m] += out_proj_m . y[b] (+ bias_m), in place. */
const outProjWgsl = (shape: MatvecShape) => /* wgsl */ `${reduceWgsl(shape)}
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = wid.y;
  let lane = li % LANES;
  let m = group_row(wid, nwg) + li / LANES;
  var acc = 0.0;
  if (m < u.width) {
    for (var k = lane; k < u.channels; k = k + LANES) { acc = acc + w_out[m * u.channels + k] * y[b * u.channels + k]; }
  }
  reduce_lanes(li, vec2<f32>(acc, 0.0));
  if (lane == 0u && m < u.width) {
    var v = partial[li].x;
    if (u.has_bias == 1u) { v = v + bias[m]; }
    hidden[b * u.width + m] = hidden[b * u.width + m] + v;
  }
}`;

type U = { name: string; type: 'u32' | 'f32'; value: number };
const u32 = (name: string, value: number): U => ({ name, type: 'u32', value });

/** `norm + matvec` program: out [B, rows0 + rows1]. */
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
): WebGpuProgram {
  const shape = matvecShape(backend, sizes.width, sizes.lanes);
  return {
    kind: 'webgpu',
    name: 'mamba_norm_matvec',
    cacheKey: `${shape.lanes}x${shape.wg}`,
    inputs: [
      { name: 'hidden', tensor: hidden },
      { name: 'norm_w', tensor: normW },
      { name: 'w0', tensor: w0 },
      { name: 'w1', tensor: w1 },
      { name: 'bias0', tensor: bias0 ?? normW },
      { name: 'bias1', tensor: bias1 ?? normW },
    ],
    outputs: [{ name: 'out', tensor: out }],
    uniforms: [
      u32('width', sizes.width),
      u32('rows0', sizes.rows0),
      u32('rows1', sizes.rows1),
      u32('has_bias', bias0 ? 1 : 0),
      { name: 'eps', type: 'f32', value: sizes.eps },
    ],
    source: normMatvecWgsl(shape),
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
    inBX,
    inBZ,
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
  const off = paramsOffsets(D, K);
  const xz = backend.empty([B, 2 * D]);
  const xdbl = backend.empty([B, R + 2 * N]);
  const y = backend.empty([B, D]);
  try {
    await backend.run(
      normMatvecProgram(
        backend,
        hidden!,
        norm!,
        inX!,
        inZ!,
        a.hasInBias ? inBX : undefined,
        a.hasInBias ? inBZ : undefined,
        xz,
        {
          batch: B,
          width: M,
          rows0: D,
          rows1: D,
          eps: a.eps,
          lanes: a.lanes,
        },
      ),
    );
    const convUniforms = [
      u32('channels', D),
      u32('states', N),
      u32('dt_rank', R),
      u32('conv_width', K),
      u32('has_conv_bias', a.hasConvBias ? 1 : 0),
      u32('off_conv_w', off.convW),
      u32('off_conv_b', off.convB),
      u32('off_dt_b', off.dtB),
      u32('off_d', off.dSkip),
      u32('off_a', off.a),
    ];
    const xProjShape = matvecShape(backend, D, a.lanes);
    await backend.run({
      kind: 'webgpu',
      name: 'mamba_conv_x_proj',
      cacheKey: `${xProjShape.lanes}x${xProjShape.wg}`,
      inputs: [
        { name: 'xz', tensor: xz },
        { name: 'conv_state', tensor: convState! },
        { name: 'params', tensor: params! },
        { name: 'w_dt', tensor: wDt! },
        { name: 'w_b', tensor: wB! },
        { name: 'w_c', tensor: wC! },
      ],
      outputs: [{ name: 'xdbl', tensor: xdbl }],
      uniforms: convUniforms,
      source: convXProjWgsl(xProjShape),
      dispatch: rowGrid(backend, R + 2 * N, xProjShape, B),
    });
    await backend.run({
      kind: 'webgpu',
      name: 'mamba_ssm_decode',
      cacheKey: '',
      inputs: [
        { name: 'xz', tensor: xz },
        { name: 'xdbl', tensor: xdbl },
        { name: 'dt_proj', tensor: dtProj! },
        { name: 'params', tensor: params! },
      ],
      outputs: [
        { name: 'conv_state', tensor: convState! },
        { name: 'ssm_state', tensor: ssmState! },
        { name: 'y', tensor: y },
      ],
      uniforms: convUniforms,
      source: SSM,
      dispatch: [Math.ceil(D / 64), B, 1],
    });
    const outShape = matvecShape(backend, D, a.lanes);
    await backend.run({
      kind: 'webgpu',
      name: 'mamba_out_proj',
      cacheKey: `${outShape.lanes}x${outShape.wg}`,
      inputs: [
        { name: 'y', tensor: y },
        { name: 'w_out', tensor: outProj! },
        { name: 'bias', tensor: a.hasOutBias ? outB! : norm! },
      ],
      outputs: [{ name: 'hidden', tensor: hidden! }],
      uniforms: [u32('width', M), u32('channels', D), u32('has_bias', a.hasOutBias ? 1 : 0)],
      source: outProjWgsl(outShape),
      dispatch: rowGrid(backend, M, outShape, B),
    });
  } finally {
    // Released now, reused by the next layer: the pool hands the same buffers back.
    xz.dispose();
    xdbl.dispose();
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
