/**
 * gpu.js programs of the diagonal SSM (the twins of ../webgpu/ssm.ts). gpu.js writes one
 * value per thread, so:
 * - discretize: thread x computes (channel, state) floor(x / 8) and returns component x mod 8
 *   of (A-bar, B-bar, C, log A-bar);
 * - Vandermonde: one thread per K[h, l], a loop over the N states;
 * - recurrence: one thread per y[h, k], which runs the recurrence of every state from step 0
 *   to k (O(L^2 N) work in all: gpu.js cannot carry a state across outputs; this form exists
 *   to check the convolution against an independent computation, not for speed).
 * Indices are float32 in gpu.js' GL modes: exact while tensors stay under 2^24 elements.
 */
import type { Tensor } from '@longseq/backend';
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
import { MATH_FUNCTIONS } from './math';

/** A GL loop needs a static bound: large enough for any gpu.js tensor. */
const LOOP_MAX = 1 << 24;

const DISCRETIZE = `function ssmDiscretize(A, B, C, dt, nStates, alpha) {
  const x = this.thread.x;
  const i = Math.floor(x / 8);
  const comp = x - i * 8;
  const h = Math.floor(i / nStates);
  let ar = 0.0;
  let ai = 0.0;
  let br = 0.0;
  let bi = 0.0;
  let cr = 0.0;
  let ci = 0.0;
  if (this.constants.complex > 0) {
    ar = A[2 * i];
    ai = A[2 * i + 1];
    br = B[2 * i];
    bi = B[2 * i + 1];
    cr = C[2 * i];
    ci = C[2 * i + 1];
  } else {
    ar = A[i];
    br = B[i];
    cr = C[i];
  }
  const step = dt[h];
  const zr = step * ar;
  const zi = step * ai;
  let abr = 0.0;
  let abi = 0.0;
  let bbr = 0.0;
  let bbi = 0.0;
  if (this.constants.method > 1.5) {
    const dr = 1.0 - alpha * zr;
    const di = 0.0 - alpha * zi;
    const d2 = dr * dr + di * di;
    const nr = 1.0 + (1.0 - alpha) * zr;
    const ni = (1.0 - alpha) * zi;
    abr = (nr * dr + ni * di) / d2;
    abi = (ni * dr - nr * di) / d2;
    bbr = (step * (br * dr + bi * di)) / d2;
    bbi = (step * (bi * dr - br * di)) / d2;
  } else {
    const mag = expAcc(zr);
    abr = mag * cosAcc(zi);
    abi = mag * sinAcc(zi);
    let fr = 1.0;
    let fi = 0.0;
    if (this.constants.method < 0.5) {
      if (zr * zr + zi * zi < 0.01) {
        let sr = 1.0 / 720.0;
        let si = 0.0;
        let tr = zr * sr - zi * si + 1.0 / 120.0;
        si = zr * si + zi * sr;
        sr = tr;
        tr = zr * sr - zi * si + 1.0 / 24.0;
        si = zr * si + zi * sr;
        sr = tr;
        tr = zr * sr - zi * si + 1.0 / 6.0;
        si = zr * si + zi * sr;
        sr = tr;
        tr = zr * sr - zi * si + 0.5;
        si = zr * si + zi * sr;
        sr = tr;
        tr = zr * sr - zi * si + 1.0;
        si = zr * si + zi * sr;
        sr = tr;
        fr = sr;
        fi = si;
      } else {
        const er = abr - 1.0;
        const mod = zr * zr + zi * zi;
        fr = (er * zr + abi * zi) / mod;
        fi = (abi * zr - er * zi) / mod;
      }
    }
    fr = fr * step;
    fi = fi * step;
    bbr = fr * br - fi * bi;
    bbi = fr * bi + fi * br;
  }
  if (comp < 0.5) {
    return abr;
  }
  if (comp < 1.5) {
    return abi;
  }
  if (comp < 2.5) {
    return bbr;
  }
  if (comp < 3.5) {
    return bbi;
  }
  if (comp < 4.5) {
    return cr;
  }
  if (comp < 5.5) {
    return ci;
  }
  if (this.constants.method < 1.5) {
    if (comp < 6.5) {
      return zr;
    }
    return zi;
  }
  if (comp < 6.5) {
    return 0.5 * logAcc(abr * abr + abi * abi);
  }
  return atan2Acc(abi, abr);
}`;

const VANDERMONDE = `function ssmVandermonde(params, nStates, len, factor) {
  const x = this.thread.x;
  const h = Math.floor(x / len);
  const l = x - h * len;
  let acc = 0.0;
  for (let n = 0; n < nStates; n++) {
    const p = 8 * (h * nStates + n);
    const wr = params[p + 4] * params[p + 2] - params[p + 5] * params[p + 3];
    const wi = params[p + 4] * params[p + 3] + params[p + 5] * params[p + 2];
    const mag = expAcc(l * params[p + 6]);
    const angle = l * params[p + 7];
    acc = acc + factor * (wr * (mag * cosAcc(angle)) - wi * (mag * sinAcc(angle)));
  }
  return acc;
}`;

const SCAN = `function ssmScan(params, uIn, nStates, len, factor) {
  const x = this.thread.x;
  const h = Math.floor(x / len);
  const k = x - h * len;
  let acc = 0.0;
  for (let n = 0; n < nStates; n++) {
    const p = 8 * (h * nStates + n);
    const ar = params[p];
    const ai = params[p + 1];
    const br = params[p + 2];
    const bi = params[p + 3];
    let xr = 0.0;
    let xi = 0.0;
    for (let t = 0; t <= k; t++) {
      const ut = uIn[h * len + t];
      const nr = ar * xr - ai * xi + br * ut;
      const ni = ar * xi + ai * xr + bi * ut;
      xr = nr;
      xi = ni;
    }
    acc = acc + factor * (params[p + 4] * xr - params[p + 5] * xi);
  }
  return acc;
}`;

export const ssmDiscretizeGpuJsKernel = singleOutputKernel<SsmDiscretizeAttrs>(
  SsmDiscretize,
  'gpujs',
  discretizeShape,
  async (backend, inputs, attrs, params) => {
    await backend.run({
      kind: 'gpujs',
      name: 'ssm_discretize',
      cacheKey: '',
      kernel: DISCRETIZE,
      inputs: inputs as Tensor[],
      scalars: [attrs.N, attrs.alpha],
      output: params,
      constants: { complex: attrs.complex ? 1 : 0, method: attrs.methodCode },
      loopMaxIterations: LOOP_MAX,
      functions: MATH_FUNCTIONS,
    });
  },
);

export const ssmVandermondeGpuJsKernel = singleOutputKernel<SsmVandermondeAttrs>(
  SsmVandermonde,
  'gpujs',
  vandermondeShape,
  async (backend, inputs, attrs, K) => {
    if (attrs.H * attrs.L === 0) return;
    await backend.run({
      kind: 'gpujs',
      name: 'ssm_vandermonde',
      cacheKey: '',
      kernel: VANDERMONDE,
      inputs: [inputs[0]!],
      scalars: [attrs.N, attrs.L, attrs.factor],
      output: K,
      loopMaxIterations: LOOP_MAX,
      functions: MATH_FUNCTIONS,
    });
  },
);

export const ssmScanGpuJsKernel = singleOutputKernel<SsmScanAttrs>(
  SsmScan,
  'gpujs',
  scanShape,
  async (backend, inputs, attrs, y) => {
    if (attrs.H * attrs.L === 0) return;
    await backend.run({
      kind: 'gpujs',
      name: 'ssm_scan',
      cacheKey: '',
      kernel: SCAN,
      inputs: [inputs[0]!, inputs[1]!],
      scalars: [attrs.N, attrs.L, attrs.factor],
      output: y,
      loopMaxIterations: LOOP_MAX,
    });
  },
);
