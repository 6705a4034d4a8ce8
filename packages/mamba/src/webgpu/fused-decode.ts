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
 * 16-byte chunks (coalesced), and reduce their partial sums in workgroup memory (./matvec's `matvecShape`
 * picks lanes and rows per workgroup for the device and the product's size). Decoding reads
 * every weight once per token, so these products are bandwidth-bound and the rest (conv, SSM
 * update) is O(D N) per token.
 *
 * Kernels bind at most 8 storage buffers (WebGPU guarantees 8): the small per-channel
 * parameters are packed into one `params` buffer per layer (`decodeParams`, packed by uploadMambaWeights).
 */
import type { Backend, KernelConfig, Tensor } from '@longseq/backend';
import {
  type DecodeLayerSizes,
  type MatvecShape,
  type NormMatvecAttrs,
  WGSL_SILU_ACC,
  runDecodeLayer,
  runNormMatvec,
  sourceCache,
  u32,
  xProjWgsl,
} from './matvec';
import { WGSL_EXP_ACCURATE } from './ssm-step';

export const MambaFusedDecodeLayer = 'MambaFusedDecodeLayer';
export const MambaNormMatvec = 'MambaNormMatvec';
export const MambaArgmax = 'MambaArgmax';

/** Sizes of one layer, batch B, model width M, channels D, states N, dt rank R, conv width K. */
export type FusedDecodeAttrs = DecodeLayerSizes;

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
) => /* wgsl */ `${WGSL_EXP_ACCURATE}${WGSL_SILU_ACC}${xProjWgsl(shape, xRows)}
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

/** Generated WGSL by variant (see `sourceCache`). */
const cachedSource = sourceCache();

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
  // The in_proj biases (inputs 4 and 5) are read from params, packed with them.
  await runDecodeLayer(
    backend,
    [...inputs.slice(0, 4), ...inputs.slice(6)],
    a,
    paramsOffsets(a.dInner, a.dConv, a.dState),
    'mamba',
    { name: 'mamba_x_proj_ssm', source: xProjSsmWgsl },
  );
  return [];
}

export const mambaFusedDecodeWebGpuKernel: KernelConfig<FusedDecodeAttrs> = {
  kernelName: MambaFusedDecodeLayer,
  backendKind: 'webgpu',
  run: runFusedLayer,
};

/** The final norm and LM head for decoding: logits [B, V] = lm_head . rmsNorm(h). */
export const mambaNormMatvecWebGpuKernel: KernelConfig<NormMatvecAttrs> = {
  kernelName: MambaNormMatvec,
  backendKind: 'webgpu',
  run: (backend, inputs, a) => runNormMatvec(backend, inputs, a),
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
