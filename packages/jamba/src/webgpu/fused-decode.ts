/**
 * WebGPU's fused decode step of a Jamba Mamba layer: one token per sequence in three
 * dispatches instead of the ~17 of the composed ops, the conv and SSM states and the residual
 * stream updated in place. The layout follows @longseq/mamba's fused decode and uses its
 * matrix-vector pieces (@longseq/mamba's webgpu/matvec: shapes, the lanes reduction, the
 * norm + in_proj + conv and out_proj programs, the x_proj head); the x_proj + SSM kernel is
 * Jamba's own, since Jamba normalizes dt, B and C between x_proj and the scan:
 *
 *   1. norm_in_proj_conv  xz = in_proj(rmsNorm(h)); the x half goes on through the conv step
 *                         (conv state shifted in place) and is stored as u = silu(conv(x))
 *   2. x_proj_norm_ssm    xdbl = x_proj(u) [R + 2N] in each workgroup's memory; the RMSNorms
 *                         of dt, B and C (each over its own part of xdbl); then per channel:
 *                         dt = softplus(dt_proj . dt_low + bias), the N states advanced,
 *                         y = (C . h + D u) silu(z)
 *   3. out_proj           h += out_proj(y)
 *
 * `JambaNormMatvec` (rmsNorm then a matrix-vector product) is the final norm + LM head of a
 * decode step. The products read each row as vec4s, the lanes of a row taking consecutive
 * 16-byte chunks, and reduce in workgroup memory. At most 8 storage buffers per kernel: the
 * small per-channel parameters and the dt/B/C norm weights are packed into one buffer per
 * layer (`decodeParams`).
 */
import type { Backend, KernelConfig, Tensor } from '@longseq/backend';
import { WGSL_EXP_ACC, WGSL_SOFTPLUS_ACC } from '@longseq/backend';
import {
  type DecodeLayerSizes,
  type MatvecShape,
  type NormMatvecAttrs,
  elementType,
  matvecShape,
  reduceWgsl,
  rowGrid,
  runDecodeLayer,
  runNormMatvec,
  shapeKey,
  sourceCache,
  u32,
  xProjSsmShape,
  xProjWgsl,
} from '@longseq/mamba';

export const JambaMambaDecodeLayer = 'JambaMambaDecodeLayer';
export const JambaNormMatvec = 'JambaNormMatvec';
export const JambaSwigluDecode = 'JambaSwigluDecode';
export const JambaMoeDecode = 'JambaMoeDecode';

/** Offsets into a Mamba layer's packed decode params. */
export function jambaParamsOffsets(dInner: number, dConv: number, dState: number, dtRank: number) {
  const convW = 0;
  const convB = convW + dInner * dConv;
  const dtB = convB + dInner;
  const dSkip = dtB + dInner;
  const a = dSkip + dInner;
  const inB = a + dInner * dState;
  const dtNorm = inB + 2 * dInner;
  const bNorm = dtNorm + dtRank;
  const cNorm = bNorm + dState;
  return { convW, convB, dtB, dSkip, a, inB, dtNorm, bNorm, cNorm, size: cNorm + dState };
}

const MATH = /* wgsl */ `
${WGSL_EXP_ACC}
${WGSL_SOFTPLUS_ACC}
fn silu_acc(x: f32) -> f32 { return x / (1.0 + exp_acc(-x)); }`;

/**
 * x_proj, Jamba's dt/B/C RMSNorms and the SSM step in one kernel. Every workgroup computes
 * all of xdbl[b] = x_proj . u[b] (R + 2N rows) into workgroup memory, then each thread takes
 * one channel: the three inverse RMS values (over dt_low, B, C), dt = softplus(dt_proj .
 * norm(dt_low) + bias), the N states advanced with norm(B), y = (norm(C) . h + D u) silu(z).
 */
const xProjSsmWgsl = (shape: MatvecShape, xRows: number) => /* wgsl */ `${MATH}${xProjWgsl(shape, xRows)}
  // Jamba's RMSNorms of dt_low, B and C (transformers' JambaRMSNorm: x * rsqrt(mean(x^2) + eps) * w)
  var sdt = 0.0;
  for (var r = 0u; r < u.dt_rank; r = r + 1u) { sdt = sdt + xd[r] * xd[r]; }
  var sb = 0.0;
  var sc = 0.0;
  for (var j = 0u; j < u.states; j = j + 1u) {
    let bv = xd[u.dt_rank + j];
    let cv = xd[u.dt_rank + u.states + j];
    sb = sb + bv * bv;
    sc = sc + cv * cv;
  }
  let idt = 1.0 / sqrt(sdt / f32(u.dt_rank) + u.eps);
  let ib = 1.0 / sqrt(sb / f32(u.states) + u.eps);
  let ic = 1.0 / sqrt(sc / f32(u.states) + u.eps);
  let bc = b * u.channels + c;
  let uv = xz_at(b * 2u * u.channels + c);
  let zv = xz_at(b * 2u * u.channels + u.channels + c);
  var dt = params[u.off_dt_b + c];
  for (var r = 0u; r < u.dt_rank; r = r + 1u) {
    dt = dt + dt_proj[c * u.dt_rank + r] * (xd[r] * idt * params[u.off_dt_n + r]);
  }
  dt = softplus_acc(dt);
  let dtu = dt * uv;
  var acc = 0.0;
  for (var j = 0u; j < u.states; j = j + 1u) {
    let bj = xd[u.dt_rank + j] * ib * params[u.off_b_n + j];
    let cj = xd[u.dt_rank + u.states + j] * ic * params[u.off_c_n + j];
    let h = exp_acc(dt * params[u.off_a + c * u.states + j]) * ssm_state[bc * u.states + j] + dtu * bj;
    ssm_state[bc * u.states + j] = h;
    acc = acc + cj * h;
  }
  y[bc] = (acc + params[u.off_d + c] * uv) * silu_acc(zv);
}`;

/**
 * A SwiGLU's first half on the token rows it serves, with the pre-feed-forward RMSNorm:
 * out[i, f] = silu(gate_f . n) * (up_f . n), n = rmsNorm(hidden[t]) for t = rows[off + i]
 * (indexed: an expert's tokens) or t = i (a dense MLP). One row group per (i, f). The weights'
 * rows start at expert * F (one expert of stacked weights; 0 for an expert's own tensors).
 */
const normGateUpWgsl = (shape: MatvecShape) => /* wgsl */ `${MATH}${reduceWgsl(shape, 4)}
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = wid.y;
  var t = i;
  if (u.indexed == 1u) { t = u32(rows[u.row_off + i]); }
  let base = t * u.nvec;
  let lane = li % LANES;
  let f = group_row(wid, nwg) + li / LANES;
  var acc = vec4<f32>(0.0, 0.0, 0.0, 0.0);
  if (f < u.rows) {
    let row = (u.expert * u.rows + f) * u.nvec;
    for (var k = lane; k < u.nvec; k = k + LANES) {
      let h = hidden[base + k];
      let n = h * norm_w[k];
      acc = acc + vec4<f32>(dotv(gate[row + k], n), dotv(up[row + k], n), dotv(h, h), 0.0);
    }
  }
  reduce_lanes(li, acc);
  if (lane == 0u && f < u.rows) {
    let sums = partial[li];
    let inv = 1.0 / sqrt(sums.z / f32(u.width) + u.eps);
    out[i * u.rows + f] = silu_acc(sums.x * inv) * (sums.y * inv);
  }
}`;

/**
 * A SwiGLU's second half added into the residual stream in place: hidden[t, m] +=
 * w_i * (down_m . act[i]) for t = rows[off + i] and w_i = weights[off + i] (an expert's tokens
 * and routing weights), or t = i and w = 1 (a dense MLP). The rows of one call are distinct.
 * down's rows start at expert * M (as the gate/up half's).
 */
const downAddWgsl = (shape: MatvecShape) => /* wgsl */ `${reduceWgsl(shape)}
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = wid.y;
  var t = i;
  var w = 1.0;
  if (u.indexed == 1u) {
    t = u32(rows[u.row_off + i]);
    w = weights[u.row_off + i];
  }
  let lane = li % LANES;
  let m = group_row(wid, nwg) + li / LANES;
  var acc = 0.0;
  if (m < u.width) {
    let row = (u.expert * u.width + m) * u.nvec;
    for (var k = lane; k < u.nvec; k = k + LANES) { acc = acc + dotv(down[row + k], act[i * u.nvec + k]); }
  }
  reduce_lanes(li, vec2<f32>(acc, 0.0));
  if (lane == 0u && m < u.width) {
    hidden[t * u.width + m] = hidden[t * u.width + m] + w * partial[li].x;
  }
}`;

/**
 * The MoE router on the GPU, one workgroup per token: logits[e] = router_e . rmsNorm(h[t])
 * into workgroup memory, then one thread takes the softmax and the top k (largest first, the
 * lower expert on ties) and writes the experts and their probabilities (not renormalized).
 */
const moeRouteWgsl = (
  shape: MatvecShape,
  experts: number,
  topK: number,
) => /* wgsl */ `${MATH}${reduceWgsl(shape)}
const NE: u32 = ${experts}u;
const TOPK: u32 = ${topK}u;
var<workgroup> lg: array<f32, ${experts}>;
var<workgroup> sumsq: f32;
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = wid.y;
  let base = t * u.nvec;
  let lane = li % LANES;
  let group = li / LANES;
  for (var r0 = 0u; r0 < NE; r0 = r0 + ROWS) {
    let e = r0 + group;
    var acc = vec2<f32>(0.0, 0.0);
    if (e < NE) {
      for (var k = lane; k < u.nvec; k = k + LANES) {
        let h = hidden[base + k];
        acc = acc + vec2<f32>(dotv(router[e * u.nvec + k], h * norm_w[k]), dotv(h, h));
      }
    }
    reduce_lanes(li, acc);
    if (lane == 0u && e < NE) {
      lg[e] = partial[li].x;
      if (e == 0u) { sumsq = partial[li].y; }
    }
    workgroupBarrier();
  }
  if (li != 0u) { return; }
  let inv = 1.0 / sqrt(sumsq / f32(u.width) + u.eps);
  var mx = lg[0] * inv;
  for (var e = 0u; e < NE; e = e + 1u) {
    lg[e] = lg[e] * inv;
    mx = max(mx, lg[e]);
  }
  var total = 0.0;
  for (var e = 0u; e < NE; e = e + 1u) {
    let p = exp_acc(lg[e] - mx);
    lg[e] = p;
    total = total + p;
  }
  for (var j = 0u; j < TOPK; j = j + 1u) {
    var best = NE;
    for (var e = 0u; e < NE; e = e + 1u) {
      if (lg[e] >= 0.0 && (best == NE || lg[e] > lg[best])) { best = e; }
    }
    experts_out[t * TOPK + j] = i32(best);
    weights_out[t * TOPK + j] = lg[best] / total;
    lg[best] = -1.0;
  }
}`;

/**
 * The chosen experts' gate/up halves, one row group per (token t, choice j, row f):
 * act[t * k + j, f] = silu(gate[e, f] . n) * (up[e, f] . n), n = rmsNorm(h[t]), e the expert
 * of choice j. Only the chosen experts' rows of the stacked weights are read.
 */
const moeGateUpWgsl = (shape: MatvecShape, topK: number) => /* wgsl */ `${MATH}${reduceWgsl(shape, 4)}
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let pair = wid.y;
  let t = pair / ${topK}u;
  let e = u32(experts[pair]);
  let base = t * u.nvec;
  let lane = li % LANES;
  let f = group_row(wid, nwg) + li / LANES;
  var acc = vec4<f32>(0.0, 0.0, 0.0, 0.0);
  if (f < u.rows) {
    let row = (e * u.rows + f) * u.nvec;
    for (var k = lane; k < u.nvec; k = k + LANES) {
      let h = hidden[base + k];
      let n = h * norm_w[k];
      acc = acc + vec4<f32>(dotv(gate[row + k], n), dotv(up[row + k], n), dotv(h, h), 0.0);
    }
  }
  reduce_lanes(li, acc);
  if (lane == 0u && f < u.rows) {
    let sums = partial[li];
    let inv = 1.0 / sqrt(sums.z / f32(u.width) + u.eps);
    out[pair * u.rows + f] = silu_acc(sums.x * inv) * (sums.y * inv);
  }
}`;

/**
 * The chosen experts' down halves summed with their routing weights and added into the
 * residual stream in place, one row group per (token t, row m): h[t, m] += sum_j w[t, j] *
 * (down[e_j, m] . act[t * k + j]). Each output row is written by one thread (no conflicts).
 */
const moeDownAddWgsl = (shape: MatvecShape, topK: number) => /* wgsl */ `${reduceWgsl(shape)}
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = wid.y;
  let lane = li % LANES;
  let m = group_row(wid, nwg) + li / LANES;
  var acc = 0.0;
  if (m < u.width) {
    for (var j = 0u; j < ${topK}u; j = j + 1u) {
      let pair = t * ${topK}u + j;
      let e = u32(experts[pair]);
      let w = weights[pair];
      let row = (e * u.width + m) * u.nvec;
      var part = 0.0;
      for (var k = lane; k < u.nvec; k = k + LANES) { part = part + dotv(down[row + k], act[pair * u.nvec + k]); }
      acc = acc + w * part;
    }
  }
  reduce_lanes(li, vec2<f32>(acc, 0.0));
  if (lane == 0u && m < u.width) {
    hidden[t * u.width + m] = hidden[t * u.width + m] + partial[li].x;
  }
}`;

/** Generated sources by variant (see `sourceCache`). */
const cachedSource = sourceCache();

/** Sizes of one Mamba layer's decode step: batch B, width M, channels D, states N, dt rank R, conv K. */
export type JambaMambaDecodeAttrs = DecodeLayerSizes;

/**
 * Inputs (in order): hidden [B, M] (updated in place), input norm [M], in_proj x [D, M],
 * in_proj z [D, M], conv state [B, D, K-1] (in place), params (packed), x_proj dt [R, D],
 * x_proj B [N, D], x_proj C [N, D], dt_proj [D, R], ssm state [B, D, N] (in place), out_proj
 * [M, D], out bias [M] (or any tensor without one). Outputs nothing: the results are the
 * updated hidden and states.
 */
async function runLayer(
  backend: Backend,
  inputs: readonly Tensor[],
  a: JambaMambaDecodeAttrs,
): Promise<Tensor[]> {
  const off = jambaParamsOffsets(a.dInner, a.dConv, a.dState, a.dtRank);
  await runDecodeLayer(backend, inputs, a, off, 'jamba', {
    name: 'jamba_x_proj_norm_ssm',
    source: xProjSsmWgsl,
    uniforms: [
      u32('off_dt_n', off.dtNorm),
      u32('off_b_n', off.bNorm),
      u32('off_c_n', off.cNorm),
      { name: 'eps', type: 'f32', value: a.eps },
    ],
  });
  return [];
}

export const jambaMambaDecodeWebGpuKernel: KernelConfig<JambaMambaDecodeAttrs> = {
  kernelName: JambaMambaDecodeLayer,
  backendKind: 'webgpu',
  run: runLayer,
};

/** logits [B, rows] = W . rmsNorm(h) (the final norm and LM head of a decode step). */
export const jambaNormMatvecWebGpuKernel: KernelConfig<NormMatvecAttrs> = {
  kernelName: JambaNormMatvec,
  backendKind: 'webgpu',
  run: async (backend, inputs, a) => [await runNormMatvec(backend, inputs, a, 'jamba')],
};

/**
 * One SwiGLU (a dense MLP, or one expert on the tokens routed to it) of a decode step, added
 * into the residual stream in place. Attributes: `tokens` rows served (n), `batch` rows of
 * hidden, M, F, eps, `indexed` (rows/weights give the tokens and their routing weights, from
 * `rowOffset`), `expert` (the block of stacked weights [E * F, M] / [E * M, F] to read; 0 for
 * an MLP's or an expert's own tensors), lanes.
 */
export interface JambaSwigluDecodeAttrs {
  readonly tokens: number;
  readonly batch: number;
  readonly dModel: number;
  readonly intermediate: number;
  readonly eps: number;
  readonly indexed: boolean;
  readonly rowOffset: number;
  readonly expert: number;
  readonly lanes: number;
}

/**
 * The gate/up half of a SwiGLU decode: act [n, F] from hidden (normed) for n token rows. Inputs
 * (in order): hidden [B, M], pre-FF norm [M], gate [F, M], up [F, M], rows i32. Returns act.
 */
export const jambaSwigluGateUpWebGpuKernel: KernelConfig<JambaSwigluDecodeAttrs> = {
  kernelName: `${JambaSwigluDecode}GateUp`,
  backendKind: 'webgpu',
  async run(backend, inputs, a) {
    const [hidden, norm, gate, up, rows] = inputs as Tensor[];
    const act = backend.empty([a.tokens, a.intermediate]);
    const shape = matvecShape(backend, a.dModel, a.intermediate, a.lanes);
    const v = elementType(shape.vec);
    try {
      await backend.run({
        kind: 'webgpu',
        name: 'jamba_norm_gate_up',
        cacheKey: shapeKey(shape),
        inputs: [
          { name: 'hidden', tensor: hidden!, ...v },
          { name: 'norm_w', tensor: norm!, ...v },
          { name: 'gate', tensor: gate!, ...v },
          { name: 'up', tensor: up!, ...v },
          { name: 'rows', tensor: rows! },
        ],
        outputs: [{ name: 'out', tensor: act }],
        uniforms: [
          u32('width', a.dModel),
          u32('nvec', a.dModel / shape.vec),
          u32('rows', a.intermediate),
          u32('indexed', a.indexed ? 1 : 0),
          u32('row_off', a.rowOffset),
          u32('expert', a.expert),
          { name: 'eps', type: 'f32', value: a.eps },
        ],
        source: cachedSource(`gate_up:${shapeKey(shape)}`, () => normGateUpWgsl(shape)),
        dispatch: rowGrid(backend, a.intermediate, shape, a.tokens),
      });
    } catch (err) {
      act.dispose();
      throw err;
    }
    return [act];
  },
};

/**
 * The down half: hidden[t] += w * down . act[i] in place. Inputs (in order): act [n, F], down
 * [M, F], rows i32, weights f32, hidden [B, M] (written). Returns nothing.
 */
export const jambaSwigluDownWebGpuKernel: KernelConfig<JambaSwigluDecodeAttrs> = {
  kernelName: `${JambaSwigluDecode}Down`,
  backendKind: 'webgpu',
  async run(backend, inputs, a) {
    const [act, down, rows, weights, hidden] = inputs as Tensor[];
    const shape = matvecShape(backend, a.intermediate, a.dModel, a.lanes);
    const v = elementType(shape.vec);
    await backend.run({
      kind: 'webgpu',
      name: 'jamba_down_add',
      cacheKey: shapeKey(shape),
      inputs: [
        { name: 'act', tensor: act!, ...v },
        { name: 'down', tensor: down!, ...v },
        { name: 'rows', tensor: rows! },
        { name: 'weights', tensor: weights! },
      ],
      outputs: [{ name: 'hidden', tensor: hidden! }],
      uniforms: [
        u32('width', a.dModel),
        u32('nvec', a.intermediate / shape.vec),
        u32('indexed', a.indexed ? 1 : 0),
        u32('row_off', a.rowOffset),
        u32('expert', a.expert),
      ],
      source: cachedSource(`down_add:${shapeKey(shape)}`, () => downAddWgsl(shape)),
      dispatch: rowGrid(backend, a.dModel, shape, a.tokens),
    });
    return [];
  },
};

/** Sizes of the GPU-routed MoE of a decode step. */
export interface JambaMoeDecodeAttrs {
  readonly batch: number;
  readonly dModel: number;
  readonly intermediate: number;
  readonly experts: number;
  readonly topK: number;
  readonly eps: number;
  readonly lanes: number;
}

/**
 * The MoE of a decode step with the routing on the GPU, in three dispatches whatever the
 * routing: route (norm + router + softmax + top-k), the chosen experts' gate/up, their down
 * halves added into hidden in place. Inputs (in order): hidden [B, M] (written), pre-FF norm
 * [M], router [E, M], stacked gate [E * F, M], stacked up [E * F, M], stacked down [E * M, F].
 * Returns the routing: experts [B, k] i32 and weights [B, k] f32 (for inspection; the caller
 * disposes them). An expert no token chose has none of its rows read.
 */
export const jambaMoeDecodeWebGpuKernel: KernelConfig<JambaMoeDecodeAttrs> = {
  kernelName: JambaMoeDecode,
  backendKind: 'webgpu',
  async run(backend, inputs, a) {
    const [hidden, norm, router, gate, up, down] = inputs as Tensor[];
    const { batch: B, dModel: M, intermediate: F, experts: E, topK: K } = a;
    const experts = backend.empty([B, K], 'i32');
    const weights = backend.empty([B, K]);
    const act = backend.empty([B * K, F]);
    try {
      const rShape = xProjSsmShape(backend, M, a.lanes);
      const rv = elementType(rShape.vec);
      await backend.run({
        kind: 'webgpu',
        name: 'jamba_moe_route',
        cacheKey: `${shapeKey(rShape)}e${E}k${K}`,
        inputs: [
          { name: 'hidden', tensor: hidden!, ...rv },
          { name: 'norm_w', tensor: norm!, ...rv },
          { name: 'router', tensor: router!, ...rv },
        ],
        outputs: [
          { name: 'experts_out', tensor: experts },
          { name: 'weights_out', tensor: weights },
        ],
        uniforms: [u32('width', M), u32('nvec', M / rShape.vec), { name: 'eps', type: 'f32', value: a.eps }],
        source: cachedSource(`moe_route:${shapeKey(rShape)}e${E}k${K}`, () => moeRouteWgsl(rShape, E, K)),
        dispatch: [1, B, 1],
      });
      const gShape = matvecShape(backend, M, F, a.lanes);
      const gv = elementType(gShape.vec);
      await backend.run({
        kind: 'webgpu',
        name: 'jamba_moe_gate_up',
        cacheKey: `${shapeKey(gShape)}k${K}`,
        inputs: [
          { name: 'hidden', tensor: hidden!, ...gv },
          { name: 'norm_w', tensor: norm!, ...gv },
          { name: 'gate', tensor: gate!, ...gv },
          { name: 'up', tensor: up!, ...gv },
          { name: 'experts', tensor: experts },
        ],
        outputs: [{ name: 'out', tensor: act }],
        uniforms: [
          u32('width', M),
          u32('nvec', M / gShape.vec),
          u32('rows', F),
          { name: 'eps', type: 'f32', value: a.eps },
        ],
        source: cachedSource(`moe_gate_up:${shapeKey(gShape)}k${K}`, () => moeGateUpWgsl(gShape, K)),
        dispatch: rowGrid(backend, F, gShape, B * K),
      });
      const dShape = matvecShape(backend, F, M, a.lanes);
      const dv = elementType(dShape.vec);
      await backend.run({
        kind: 'webgpu',
        name: 'jamba_moe_down_add',
        cacheKey: `${shapeKey(dShape)}k${K}`,
        inputs: [
          { name: 'act', tensor: act, ...dv },
          { name: 'down', tensor: down!, ...dv },
          { name: 'experts', tensor: experts },
          { name: 'weights', tensor: weights },
        ],
        outputs: [{ name: 'hidden', tensor: hidden! }],
        uniforms: [u32('width', M), u32('nvec', F / dShape.vec)],
        source: cachedSource(`moe_down_add:${shapeKey(dShape)}k${K}`, () => moeDownAddWgsl(dShape, K)),
        dispatch: rowGrid(backend, M, dShape, B),
      });
    } catch (err) {
      experts.dispose();
      weights.dispose();
      throw err;
    } finally {
      act.dispose();
    }
    return [experts, weights];
  },
};
