/**
 * WebGPU programs of the diagonal SSM: discretization per (channel, state), the kernel K by a
 * Vandermonde product, and the recurrence. One thread per (channel, state), per (channel,
 * step) and per channel respectively; the float64 references are in ../reference.ts
 * (`diagonalKernelRef`, `diagonalScanRef`).
 */
import { type Backend, type Tensor, type WebGpuProgram, dispatch1d } from '@longseq/backend';
import { WGSL_MATH } from './math';
import {
  SsmDiscretize,
  type SsmDiscretizeAttrs,
  SsmScan,
  type SsmScanAttrs,
  SsmVandermonde,
  type SsmVandermondeAttrs,
  discretizeShape,
  scanShape,
  singleOutputKernel,
  vandermondeShape,
} from '../contract';

const WG = 64;

/** Complex helpers and the linear invocation id, shared by the programs. */
const COMMON = /* wgsl */ `${WGSL_MATH}
fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
fn cdiv(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  return vec2<f32>(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y) / dot(b, b);
}
fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * ${WG}u;
}
`;

function discretizeSource(attrs: SsmDiscretizeAttrs): string {
  const load = (name: string) =>
    attrs.complex ? `vec2<f32>(${name}[2u * i], ${name}[2u * i + 1u])` : `vec2<f32>(${name}[i], 0.0)`;
  return /* wgsl */ `${COMMON}
const METHOD: u32 = ${attrs.methodCode}u;

// (e^z - 1) / z: a Taylor series where e^z - 1 would cancel (|z| < 0.1), else the quotient.
fn expm1_over_z(z: vec2<f32>, ez: vec2<f32>) -> vec2<f32> {
  if (dot(z, z) < 0.01) {
    var s = vec2<f32>(1.0 / 720.0, 0.0);
    s = cmul(z, s) + vec2<f32>(1.0 / 120.0, 0.0);
    s = cmul(z, s) + vec2<f32>(1.0 / 24.0, 0.0);
    s = cmul(z, s) + vec2<f32>(1.0 / 6.0, 0.0);
    s = cmul(z, s) + vec2<f32>(0.5, 0.0);
    return cmul(z, s) + vec2<f32>(1.0, 0.0);
  }
  return cdiv(ez - vec2<f32>(1.0, 0.0), z);
}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= u.count) { return; }
  let h = i / u.n;
  let a = ${load('A')};
  let b = ${load('B')};
  let c = ${load('C')};
  let step = dt[h];
  let z = step * a;
  var abar: vec2<f32>;
  var bbar: vec2<f32>;
  if (METHOD == 2u) {
    // gbt: (1 + (1 - alpha) z) / (1 - alpha z), dt b / (1 - alpha z).
    let den = vec2<f32>(1.0 - u.alpha * z.x, -u.alpha * z.y);
    abar = cdiv(vec2<f32>(1.0 + (1.0 - u.alpha) * z.x, (1.0 - u.alpha) * z.y), den);
    bbar = cdiv(step * b, den);
  } else {
    abar = exp_acc(z.x) * sincos_acc(z.y);
    if (METHOD == 1u) {
      bbar = step * b;
    } else {
      bbar = cmul(step * expm1_over_z(z, abar), b);
    }
  }
  let o = 8u * i;
  params[o] = abar.x;
  params[o + 1u] = abar.y;
  params[o + 2u] = bbar.x;
  params[o + 3u] = bbar.y;
  params[o + 4u] = c.x;
  params[o + 5u] = c.y;
  // log A-bar: exactly z for zoh and mamba (A-bar = e^z), computed for the gbt family.
  if (METHOD == 2u) {
    params[o + 6u] = 0.5 * log_acc(dot(abar, abar));
    params[o + 7u] = atan2_acc(abar.y, abar.x);
  } else {
    params[o + 6u] = z.x;
    params[o + 7u] = z.y;
  }
}`;
}

const VANDERMONDE = /* wgsl */ `${COMMON}
// K[h, l] = factor * Re(sum_n C_n B-bar_n A-bar_n^l), with A-bar^l = exp(l log A-bar).
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= u.count) { return; }
  let h = i / u.len;
  let l = f32(i % u.len);
  var acc = 0.0;
  for (var n = 0u; n < u.n; n++) {
    let p = 8u * (h * u.n + n);
    let w = cmul(vec2<f32>(params[p + 4u], params[p + 5u]), vec2<f32>(params[p + 2u], params[p + 3u]));
    let power = exp_acc(l * params[p + 6u]) * sincos_acc(l * params[p + 7u]);
    acc += u.factor * (w.x * power.x - w.y * power.y);
  }
  K[i] = acc;
}`;

/** The largest state count the recurrence keeps in registers (private memory). */
export const MAX_SCAN_STATES = 256;

function scanSource(capacity: number): string {
  return /* wgsl */ `${COMMON}
// One thread per channel walks the sequence; its N complex states live in private memory.
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let h = linear_id(gid, nwg);
  if (h >= u.h) { return; }
  var x: array<vec2<f32>, ${capacity}>;
  for (var n = 0u; n < u.n; n++) { x[n] = vec2<f32>(0.0, 0.0); }
  for (var k = 0u; k < u.len; k++) {
    let uk = u_in[h * u.len + k];
    var acc = 0.0;
    for (var n = 0u; n < u.n; n++) {
      let p = 8u * (h * u.n + n);
      let xn = cmul(vec2<f32>(params[p], params[p + 1u]), x[n]) + vec2<f32>(params[p + 2u], params[p + 3u]) * uk;
      x[n] = xn;
      acc += u.factor * (params[p + 4u] * xn.x - params[p + 5u] * xn.y);
    }
    y[h * u.len + k] = acc;
  }
}`;
}

function grid(backend: Backend, threads: number): [number, number, number] {
  return dispatch1d(Math.ceil(threads / WG), backend.limits.maxWorkgroupsPerDimension);
}

export const ssmDiscretizeWebGpuKernel = singleOutputKernel<SsmDiscretizeAttrs>(
  SsmDiscretize,
  'webgpu',
  discretizeShape,
  async (backend, inputs, attrs, params) => {
    const [A, B, C, dt] = inputs as [Tensor, Tensor, Tensor, Tensor];
    const program: WebGpuProgram = {
      kind: 'webgpu',
      name: 'ssm_discretize',
      cacheKey: `complex${attrs.complex ? 1 : 0}_method${attrs.methodCode}`,
      inputs: [
        { name: 'A', tensor: A },
        { name: 'B', tensor: B },
        { name: 'C', tensor: C },
        { name: 'dt', tensor: dt },
      ],
      outputs: [{ name: 'params', tensor: params }],
      uniforms: [
        { name: 'count', type: 'u32', value: attrs.H * attrs.N },
        { name: 'n', type: 'u32', value: attrs.N },
        { name: 'alpha', type: 'f32', value: attrs.alpha },
      ],
      source: discretizeSource(attrs),
      dispatch: grid(backend, attrs.H * attrs.N),
    };
    await backend.run(program);
  },
);

export const ssmVandermondeWebGpuKernel = singleOutputKernel<SsmVandermondeAttrs>(
  SsmVandermonde,
  'webgpu',
  vandermondeShape,
  async (backend, inputs, attrs, K) => {
    await backend.run({
      kind: 'webgpu',
      name: 'ssm_vandermonde',
      cacheKey: '',
      inputs: [{ name: 'params', tensor: inputs[0]! }],
      outputs: [{ name: 'K', tensor: K }],
      uniforms: [
        { name: 'count', type: 'u32', value: attrs.H * attrs.L },
        { name: 'len', type: 'u32', value: attrs.L },
        { name: 'n', type: 'u32', value: attrs.N },
        { name: 'factor', type: 'f32', value: attrs.factor },
      ],
      source: VANDERMONDE,
      dispatch: grid(backend, attrs.H * attrs.L),
    });
  },
);

export const ssmScanWebGpuKernel = singleOutputKernel<SsmScanAttrs>(
  SsmScan,
  'webgpu',
  scanShape,
  async (backend, inputs, attrs, y) => {
    // Private arrays need a constant length: the next power of two >= N (at least 8).
    const capacity = Math.max(8, 2 ** Math.ceil(Math.log2(attrs.N)));
    await backend.run({
      kind: 'webgpu',
      name: 'ssm_scan',
      cacheKey: `states${capacity}`,
      inputs: [
        { name: 'params', tensor: inputs[0]! },
        { name: 'u_in', tensor: inputs[1]! },
      ],
      outputs: [{ name: 'y', tensor: y }],
      uniforms: [
        { name: 'h', type: 'u32', value: attrs.H },
        { name: 'len', type: 'u32', value: attrs.L },
        { name: 'n', type: 'u32', value: attrs.N },
        { name: 'factor', type: 'f32', value: attrs.factor },
      ],
      source: scanSource(capacity),
      dispatch: grid(backend, attrs.H),
    });
  },
);
