/**
 * Float64 references of the primitives, written to be read. Each takes host arrays with the
 * same meaning as the op, and `precision: 'f32'` rounds every intermediate to float32
 * (`Math.fround`), which gives the "straightforward float32 computation" that the test rule
 * measures kernels against.
 */
import type { BinaryOp, ReduceOp, UnaryOp } from './kernels';
import { type Shape, broadcastShapes, broadcastStrides, normalizeAxis, sizeOf, stridesOf } from './shape';

export interface HostTensor {
  readonly shape: Shape;
  readonly data: ArrayLike<number>;
}

export interface RefResult {
  readonly shape: number[];
  readonly data: Float64Array;
}

export interface RefOptions {
  /** 'f64' (default) computes exactly in float64; 'f32' rounds every intermediate to float32. */
  readonly precision?: 'f64' | 'f32';
}

export type Rounder = (x: number) => number;
const identity: Rounder = (x) => x;
export function rounderFor(options: RefOptions = {}): Rounder {
  return options.precision === 'f32' ? Math.fround : identity;
}

/** The scalar definitions every backend follows. `r` rounds intermediates. */
export function unaryScalar(op: UnaryOp, x: number, r: Rounder = identity): number {
  switch (op) {
    case 'neg':
      return -x;
    case 'abs':
      return Math.abs(x);
    case 'exp':
      return r(Math.exp(x));
    case 'log':
      return r(Math.log(x));
    case 'sqrt':
      return r(Math.sqrt(x));
    case 'rsqrt':
      return r(1 / r(Math.sqrt(x)));
    case 'square':
      return r(x * x);
    case 'reciprocal':
      return r(1 / x);
    case 'relu':
      return x > 0 ? x : 0;
    case 'sigmoid':
      return r(1 / r(1 + r(Math.exp(-x))));
    case 'silu':
      return r(x * r(1 / r(1 + r(Math.exp(-x)))));
    case 'softplus':
      // log(1 + e^x) written so it neither overflows for large x nor loses x for small:
      // max(x, 0) + log1p(e^-|x|). PyTorch's threshold (x > 20 returns x) agrees within float32.
      return r(Math.max(x, 0) + r(Math.log1p(r(Math.exp(-Math.abs(x))))));
    case 'tanh':
      return r(Math.tanh(x));
    case 'gelu': {
      // The tanh approximation (GPT-2's "gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
      const inner = r(Math.sqrt(2 / Math.PI) * r(x + r(0.044715 * r(x * r(x * x)))));
      return r(0.5 * r(x * r(1 + r(Math.tanh(inner)))));
    }
  }
}

export function binaryScalar(op: BinaryOp, a: number, b: number, r: Rounder = identity): number {
  switch (op) {
    case 'add':
      return r(a + b);
    case 'sub':
      return r(a - b);
    case 'mul':
      return r(a * b);
    case 'div':
      return r(a / b);
    case 'max':
      return Number.isNaN(a) || Number.isNaN(b) ? Number.NaN : Math.max(a, b);
    case 'min':
      return Number.isNaN(a) || Number.isNaN(b) ? Number.NaN : Math.min(a, b);
    case 'pow':
      // In float32, pow is computed as exp(b log a) (how GPUs evaluate it), so the
      // baseline carries the rounding of log a amplified by b; negative bases keep a ** b.
      return r === identity || a < 0 ? r(a ** b) : r(Math.exp(r(b * r(Math.log(a)))));
  }
}

export function unaryRef(x: HostTensor, op: UnaryOp, options: RefOptions = {}): RefResult {
  const r = rounderFor(options);
  const data = new Float64Array(x.data.length);
  for (let i = 0; i < data.length; i++) data[i] = unaryScalar(op, x.data[i]!, r);
  return { shape: [...x.shape], data };
}

/** NumPy-broadcast elementwise binary op. */
export function binaryRef(a: HostTensor, b: HostTensor, op: BinaryOp, options: RefOptions = {}): RefResult {
  const r = rounderFor(options);
  const shape = broadcastShapes(a.shape, b.shape);
  const sa = broadcastStrides(a.shape, shape);
  const sb = broadcastStrides(b.shape, shape);
  const outStrides = stridesOf(shape);
  const data = new Float64Array(sizeOf(shape));
  for (let i = 0; i < data.length; i++) {
    let ia = 0;
    let ib = 0;
    let rest = i;
    for (let d = 0; d < shape.length; d++) {
      const coord = Math.floor(rest / outStrides[d]!);
      rest -= coord * outStrides[d]!;
      ia += coord * sa[d]!;
      ib += coord * sb[d]!;
    }
    data[i] = binaryScalar(op, a.data[ia]!, b.data[ib]!, r);
  }
  return { shape, data };
}

export interface MatMulRefOptions extends RefOptions {
  readonly transposeA?: boolean;
  readonly transposeB?: boolean;
}

/**
 * Batched matmul. a: [...batchA, M, K] (or [..., K, M] with transposeA), b: [...batchB, K, N]
 * (or [..., N, K] with transposeB); batch dims broadcast. Out: [...batch, M, N].
 */
export function matmulRef(a: HostTensor, b: HostTensor, options: MatMulRefOptions = {}): RefResult {
  const r = rounderFor(options);
  const ra = a.shape.length;
  const rb = b.shape.length;
  const [m, k] = options.transposeA
    ? [a.shape[ra - 1]!, a.shape[ra - 2]!]
    : [a.shape[ra - 2]!, a.shape[ra - 1]!];
  const n = options.transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  const batchShape = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = sizeOf(batchShape);
  const sa = broadcastStrides(a.shape.slice(0, -2), batchShape);
  const sb = broadcastStrides(b.shape.slice(0, -2), batchShape);
  const bStrides = stridesOf(batchShape);
  const data = new Float64Array(batch * m * n);
  for (let bt = 0; bt < batch; bt++) {
    let offA = 0;
    let offB = 0;
    let rest = bt;
    for (let d = 0; d < batchShape.length; d++) {
      const c = Math.floor(rest / bStrides[d]!);
      rest -= c * bStrides[d]!;
      offA += c * sa[d]! * m * k;
      offB += c * sb[d]! * k * n;
    }
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p = 0; p < k; p++) {
          const av = a.data[offA + (options.transposeA ? p * m + i : i * k + p)]!;
          const bv = b.data[offB + (options.transposeB ? j * k + p : p * n + j)]!;
          acc = r(acc + r(av * bv));
        }
        data[(bt * m + i) * n + j] = acc;
      }
    }
  }
  return { shape: [...batchShape, m, n], data };
}

export interface ReduceRefOptions extends RefOptions {
  readonly axis?: number;
  readonly keepDims?: boolean;
}

/** Reduces one axis (default the last). */
export function reduceRef(x: HostTensor, op: ReduceOp, options: ReduceRefOptions = {}): RefResult {
  const r = rounderFor(options);
  const axis = normalizeAxis(options.axis ?? -1, x.shape.length);
  const outer = sizeOf(x.shape.slice(0, axis));
  const size = x.shape[axis]!;
  const inner = sizeOf(x.shape.slice(axis + 1));
  const data = new Float64Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let acc = op === 'max' ? -Infinity : op === 'min' ? Infinity : op === 'prod' ? 1 : 0;
      for (let j = 0; j < size; j++) {
        const v = x.data[(o * size + j) * inner + i]!;
        if (op === 'sum' || op === 'mean') acc = r(acc + v);
        else if (op === 'prod') acc = r(acc * v);
        else if (Number.isNaN(v) || Number.isNaN(acc)) acc = Number.NaN;
        else acc = op === 'max' ? Math.max(acc, v) : Math.min(acc, v);
      }
      data[o * inner + i] = op === 'mean' ? r(acc / size) : acc;
    }
  }
  const shape = options.keepDims
    ? x.shape.map((d, i) => (i === axis ? 1 : d))
    : x.shape.filter((_, i) => i !== axis);
  return { shape, data };
}

/** Embedding lookup: out[..., :] = table[indices[...], :]; out-of-range ids give zero rows. */
export function gatherRef(table: HostTensor, indices: HostTensor): RefResult {
  const [rows, rowSize] = [table.shape[0]!, table.shape[1]!];
  const data = new Float64Array(indices.data.length * rowSize);
  for (let j = 0; j < indices.data.length; j++) {
    const id = indices.data[j]!;
    if (id < 0 || id >= rows) continue;
    for (let c = 0; c < rowSize; c++) data[j * rowSize + c] = table.data[id * rowSize + c]!;
  }
  return { shape: [...indices.shape, rowSize], data };
}

/** RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * weight. */
export function rmsNormRef(
  x: HostTensor,
  weight: HostTensor,
  eps = 1e-5,
  options: RefOptions = {},
): RefResult {
  const r = rounderFor(options);
  const cols = x.shape[x.shape.length - 1]!;
  const rows = cols === 0 ? 0 : x.data.length / cols;
  const data = new Float64Array(x.data.length);
  for (let i = 0; i < rows; i++) {
    let sumSq = 0;
    for (let c = 0; c < cols; c++) sumSq = r(sumSq + r(x.data[i * cols + c]! ** 2));
    const inv = r(1 / r(Math.sqrt(r(r(sumSq / cols) + eps))));
    for (let c = 0; c < cols; c++) data[i * cols + c] = r(r(x.data[i * cols + c]! * inv) * weight.data[c]!);
  }
  return { shape: [...x.shape], data };
}

/** LayerNorm over the last axis with biased variance: (x - mean) / sqrt(var + eps) * weight + bias. */
export function layerNormRef(
  x: HostTensor,
  weight: HostTensor,
  bias: HostTensor,
  eps = 1e-5,
  options: RefOptions = {},
): RefResult {
  const r = rounderFor(options);
  const cols = x.shape[x.shape.length - 1]!;
  const rows = cols === 0 ? 0 : x.data.length / cols;
  const data = new Float64Array(x.data.length);
  for (let i = 0; i < rows; i++) {
    let sum = 0;
    for (let c = 0; c < cols; c++) sum = r(sum + x.data[i * cols + c]!);
    const mean = r(sum / cols);
    let sq = 0;
    for (let c = 0; c < cols; c++) sq = r(sq + r((x.data[i * cols + c]! - mean) ** 2));
    const inv = r(1 / r(Math.sqrt(r(r(sq / cols) + eps))));
    for (let c = 0; c < cols; c++) {
      data[i * cols + c] = r(r(r(r(x.data[i * cols + c]! - mean) * inv) * weight.data[c]!) + bias.data[c]!);
    }
  }
  return { shape: [...x.shape], data };
}

/**
 * The float32 baseline of a reduction, as the worst of several straightforward float32
 * computations that differ only in the order of the reduced axis (as given, reversed, then
 * seeded shuffles); per output, the result farthest from float64 is kept. Each multiply of
 * a product rounds by the same relative amount in any order, so one order's error is a
 * single random sample, and a kernel reducing in a tree draws another sample of the same
 * size: comparing against one sample fails by chance. The worst of `orders` samples is the
 * error a straightforward float32 reduction can actually make.
 */
export function reduceRefF32Worst(
  x: HostTensor,
  op: ReduceOp,
  options: Omit<ReduceRefOptions, 'precision'> = {},
  orders = 8,
): RefResult {
  const exact = reduceRef(x, op, options);
  const axis = normalizeAxis(options.axis ?? -1, x.shape.length);
  const outer = sizeOf(x.shape.slice(0, axis));
  const size = x.shape[axis]!;
  const inner = sizeOf(x.shape.slice(axis + 1));
  const worst = new Float64Array(exact.data.length).fill(Number.NaN);
  let seed = 0x9e3779b9;
  for (let k = 0; k < orders; k++) {
    const order = Array.from({ length: size }, (_, j) => j);
    if (k === 1) order.reverse();
    if (k > 1) {
      for (let j = size - 1; j > 0; j--) {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
        const swap = seed % (j + 1);
        [order[j], order[swap]] = [order[swap]!, order[j]!];
      }
    }
    const permuted = new Float64Array(x.data.length);
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < size; j++) {
        for (let i = 0; i < inner; i++)
          permuted[(o * size + j) * inner + i] = x.data[(o * size + order[j]!) * inner + i]!;
      }
    }
    const sample = reduceRef({ shape: x.shape, data: permuted }, op, { ...options, precision: 'f32' });
    for (let i = 0; i < worst.length; i++) {
      const w = worst[i]!;
      const v = sample.data[i]!;
      if (Number.isNaN(w) || Math.abs(v - exact.data[i]!) > Math.abs(w - exact.data[i]!)) worst[i] = v;
    }
  }
  return { shape: exact.shape, data: worst };
}
