/**
 * WGSL and host helpers shared by the WebGPU FlashAttention programs (forward in
 * attention.ts, backward in backward.ts): the uniforms every pass binds, the score function
 * with softcap and ALiBi, special-value tests, the per-sequence span table, and the
 * generators that unroll micro-tiles.
 */
import type { Backend, Tensor, WgslUniform } from '@longseq/backend';
import { type FlashAttentionAttrs, windowInt } from '../contract';
import { SPAN_FIELDS, spanTable } from '../layout';

/** Private arrays of the row-per-thread programs hold a power of two of vec4s (4..64), so few head dims compile apart. */
export function capacity(d4: number): number {
  return Math.max(4, 2 ** Math.ceil(Math.log2(d4)));
}

/** D4, the vec4s per head row: a constant when it fills the capacity, else read from the uniform. */
export function d4Decl(d4: number, cap: number): string {
  return d4 === cap ? `const D4: u32 = ${cap}u;` : 'var<private> D4: u32;';
}

export function d4Init(d4: number, cap: number): string {
  return d4 === cap ? '' : 'D4 = u.d4;';
}

export function d4Key(d4: number, cap: number): string {
  return `d4cap${cap}|${d4 === cap ? 'exact' : 'uniform'}`;
}

export function commonUniforms(attrs: FlashAttentionAttrs): WgslUniform[] {
  const l = attrs.layout;
  return [
    { name: 'heads', type: 'u32', value: l.heads },
    { name: 'group', type: 'u32', value: l.group },
    { name: 'd', type: 'u32', value: l.d },
    { name: 'd4', type: 'u32', value: Math.ceil(l.d / 4) },
    { name: 'q_head_stride', type: 'u32', value: l.qHeadStride },
    { name: 'q_token_stride', type: 'u32', value: l.qTokenStride },
    { name: 'k_head_stride', type: 'u32', value: l.kHeadStride },
    { name: 'k_token_stride', type: 'u32', value: l.kTokenStride },
    { name: 'lse_head_stride', type: 'u32', value: l.lseHeadStride },
    { name: 'window_left', type: 'i32', value: windowInt(attrs.windowLeft) },
    { name: 'window_right', type: 'i32', value: windowInt(attrs.windowRight) },
    { name: 'scale', type: 'f32', value: attrs.scale },
    { name: 'softcap', type: 'f32', value: attrs.softcap },
    { name: 'slopes_at', type: 'u32', value: l.sequences.length * SPAN_FIELDS },
    { name: 'alibi', type: 'u32', value: attrs.alibiSlopes ? 1 : 0 },
  ];
}

/** WGSL shared by every program: special values and the score of one (query, key) pair after softcap and ALiBi. */
export function commonWgsl(): string {
  return /* wgsl */ `
const NO_MAX: f32 = -3.40282346e38;
var<private> INF_BITS: u32 = 0x7f800000u;
var<private> NEG_INF_BITS: u32 = 0xff800000u;
var<private> NAN_BITS: u32 = 0x7fc00000u;
fn pos_inf() -> f32 { return bitcast<f32>(INF_BITS); }
fn neg_inf() -> f32 { return bitcast<f32>(NEG_INF_BITS); }
fn nan() -> f32 { return bitcast<f32>(NAN_BITS); }
// NaN or +inf: the score poisons its row (WGSL lets compilers assume neither exists, so test bits).
fn poisons(z: f32) -> bool {
  let bits = bitcast<u32>(z);
  return (bits & 0x7f800000u) == 0x7f800000u && bits != 0xff800000u;
}
fn is_finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
fn is_neg_inf(x: f32) -> bool { return bitcast<u32>(x) == 0xff800000u; }

// tanh for any finite x: exp(-2|x|) cannot overflow; a series near 0 where 1 - e^(-2|x|) cancels.
fn tanh_stable(x: f32) -> f32 {
  let ax = abs(x);
  if (ax < 0.0625) {
    let x2 = x * x;
    return x * (1.0 + x2 * (-0.33333333 + x2 * (0.13333333 + x2 * -0.053968254)));
  }
  let t = exp(-2.0 * ax);
  return sign(x) * (1.0 - t) / (1.0 + t);
}

// scale * dot, then softcap, then ALiBi, as the reference orders them. Both options are
// uniform branches, so one program serves every combination.
fn finish_score(dot: f32, head: u32, pos: i32, key: i32) -> f32 {
  var s = dot * u.scale;
  if (u.softcap > 0.0) { s = u.softcap * tanh_stable(s / u.softcap); }
  if (u.alibi != 0u) { s = s - bitcast<f32>(spans[u.slopes_at + head]) * f32(abs(pos - key)); }
  return s;
}
`;
}

/**
 * The per-sequence table (SPAN_FIELDS u32 per sequence) followed by the ALiBi slopes as
 * float bits: one binding, so no pass needs more than 8 storage buffers.
 */
export function spanBinding(backend: Backend, attrs: FlashAttentionAttrs): Tensor {
  const table = spanTable(attrs.layout);
  const slopes = new Uint32Array(Float32Array.from(attrs.alibiSlopes ?? []).buffer);
  const data = new Uint32Array(table.length + slopes.length + 1);
  data.set(table);
  data.set(slopes, table.length);
  return backend.tensor(data, [data.length], 'u32');
}

/** `count` copies of `line(i)`, for the unrolled micro-tile code (the compilers then keep it in registers). */
export function unroll(count: number, line: (i: number) => string, sep = '\n'): string {
  return Array.from({ length: count }, (_, i) => line(i)).join(sep);
}

/** Every (row a, column c) pair of a TR x TC micro-tile. */
export function pairs(tr: number, tc: number, line: (a: number, c: number) => string, sep = '\n'): string {
  return unroll(tr, (a) => unroll(tc, (c) => line(a, c), sep), sep);
}

/** Workgroup size of the row-per-thread programs (split decode, backward passes). */
export const ROW_WG = 64;
