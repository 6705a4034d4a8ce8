/**
 * The primitive ops models need, declared here and implemented by every backend. Each op
 * follows the same order: validate inputs, parse attributes, run the registered kernel.
 * Errors are thrown before any GPU work.
 */
import {
  BINARY_OPS,
  Binary,
  type BinaryAttrs,
  type BinaryOp,
  Gather,
  type GatherAttrs,
  LayerNorm,
  type LayerNormAttrs,
  MAX_BROADCAST_RANK,
  MatMul,
  type MatMulAttrs,
  REDUCE_OPS,
  Reduce,
  type ReduceAttrs,
  type ReduceOp,
  RmsNorm,
  type RmsNormAttrs,
  UNARY_OPS,
  Unary,
  type UnaryAttrs,
  type UnaryOp,
} from './kernels';
import { ShapeError } from './errors';
import { runKernel } from './registry';
import { broadcastShapes, broadcastStrides, formatShape, normalizeAxis, shapesEqual, sizeOf } from './shape';
import type { Tensor } from './tensor';
import {
  checkBindingSize,
  checkDType,
  checkOneOf,
  checkPositiveNumber,
  checkRank,
  checkSameBackend,
  checkTensor,
} from './validate';

async function one(p: Promise<Tensor | Tensor[]>): Promise<Tensor> {
  const r = await p;
  return Array.isArray(r) ? r[0]! : r;
}

export interface MatMulOptions {
  readonly transposeA?: boolean;
  readonly transposeB?: boolean;
}

/**
 * Batched matrix product. `a: [...batch, M, K]` (`[..., K, M]` with transposeA),
 * `b: [...batch, K, N]` (`[..., N, K]` with transposeB). Batch dims broadcast when one
 * side's batch is 1 in total (a shared weight matrix) or both are equal. Out: `[...batch, M, N]`.
 */
export async function matmul(a: Tensor, b: Tensor, options: MatMulOptions = {}): Promise<Tensor> {
  checkTensor(a, 'a');
  checkTensor(b, 'b');
  checkSameBackend(a.backend, { b });
  checkDType(a, 'a', ['f32']);
  checkDType(b, 'b', ['f32']);
  checkRank(a, 'a', 2, 8, 'of rank >= 2 ([..., M, K])');
  checkRank(b, 'b', 2, 8, 'of rank >= 2 ([..., K, N])');
  const transposeA = options.transposeA ?? false;
  const transposeB = options.transposeB ?? false;
  const ra = a.rank;
  const rb = b.rank;
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  if (k !== kb) {
    throw new ShapeError('b', `[..., ${transposeB ? `N, ${k}` : `${k}, N`}] to match a's K = ${k}`, b.shape);
  }
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const sizeA = sizeOf(batchA);
  const sizeB = sizeOf(batchB);
  const batchesMatch = sizeA === 1 || sizeB === 1 || shapesEqual(batchA, batchB);
  if (!batchesMatch) {
    throw new ShapeError('b', `batch dims ${formatShape(batchA)} (or a batch of 1) to match a`, b.shape);
  }
  const batchShape = broadcastShapes(batchA, batchB, ['a', 'b']);
  const batch = sizeOf(batchShape);
  const outShape = [...batchShape, m, n];
  checkBindingSize(a.backend, 'a', a.size, a.shape);
  checkBindingSize(b.backend, 'b', b.size, b.shape);
  checkBindingSize(a.backend, 'output', sizeOf(outShape), outShape);
  const attrs: MatMulAttrs = {
    transposeA,
    transposeB,
    batch,
    batchStrideA: sizeA === 1 ? 0 : m * k,
    batchStrideB: sizeB === 1 ? 0 : k * n,
    m,
    k,
    n,
    outShape,
  };
  return one(runKernel(MatMul, a.backend, [a, b], attrs));
}

/** Elementwise `op(x)`; see `unaryScalar` in the reference for each definition. */
export async function unary(x: Tensor, op: UnaryOp): Promise<Tensor> {
  checkTensor(x, 'x');
  checkDType(x, 'x', ['f32']);
  checkOneOf(op, 'op', UNARY_OPS);
  checkBindingSize(x.backend, 'x', x.size, x.shape);
  const attrs: UnaryAttrs = { op };
  return one(runKernel(Unary, x.backend, [x], attrs));
}

export const neg = (x: Tensor) => unary(x, 'neg');
export const exp = (x: Tensor) => unary(x, 'exp');
export const log = (x: Tensor) => unary(x, 'log');
export const sqrt = (x: Tensor) => unary(x, 'sqrt');
export const rsqrt = (x: Tensor) => unary(x, 'rsqrt');
export const relu = (x: Tensor) => unary(x, 'relu');
export const sigmoid = (x: Tensor) => unary(x, 'sigmoid');
export const silu = (x: Tensor) => unary(x, 'silu');
export const softplus = (x: Tensor) => unary(x, 'softplus');
export const tanh = (x: Tensor) => unary(x, 'tanh');
export const gelu = (x: Tensor) => unary(x, 'gelu');

/** Elementwise `op(a, b)` with NumPy broadcasting, up to rank 6. */
export async function binary(a: Tensor, b: Tensor, op: BinaryOp): Promise<Tensor> {
  checkTensor(a, 'a');
  checkTensor(b, 'b');
  checkSameBackend(a.backend, { b });
  checkDType(a, 'a', ['f32']);
  checkDType(b, 'b', ['f32']);
  checkOneOf(op, 'op', BINARY_OPS);
  const outShape = broadcastShapes(a.shape, b.shape, ['a', 'b']);
  if (outShape.length > MAX_BROADCAST_RANK) {
    throw new ShapeError('a', `of rank <= ${MAX_BROADCAST_RANK} after broadcasting`, outShape);
  }
  checkBindingSize(a.backend, 'output', sizeOf(outShape), outShape);
  const attrs: BinaryAttrs = {
    op,
    outShape,
    aStrides: broadcastStrides(a.shape, outShape),
    bStrides: broadcastStrides(b.shape, outShape),
  };
  return one(runKernel(Binary, a.backend, [a, b], attrs));
}

export const add = (a: Tensor, b: Tensor) => binary(a, b, 'add');
export const sub = (a: Tensor, b: Tensor) => binary(a, b, 'sub');
export const mul = (a: Tensor, b: Tensor) => binary(a, b, 'mul');
export const div = (a: Tensor, b: Tensor) => binary(a, b, 'div');
export const maximum = (a: Tensor, b: Tensor) => binary(a, b, 'max');
export const minimum = (a: Tensor, b: Tensor) => binary(a, b, 'min');

export interface ReduceOptions {
  /** The axis reduced; default -1 (the last). */
  readonly axis?: number;
  readonly keepDims?: boolean;
}

/** Reduces one axis with sum, mean, max, min or prod. NaN propagates. */
export async function reduce(x: Tensor, op: ReduceOp, options: ReduceOptions = {}): Promise<Tensor> {
  checkTensor(x, 'x');
  checkDType(x, 'x', ['f32']);
  checkOneOf(op, 'op', REDUCE_OPS);
  checkRank(x, 'x', 1, 16, 'of rank >= 1');
  const axis = normalizeAxis(options.axis ?? -1, x.rank, 'options.axis');
  const outShape = options.keepDims
    ? x.shape.map((d, i) => (i === axis ? 1 : d))
    : x.shape.filter((_, i) => i !== axis);
  checkBindingSize(x.backend, 'x', x.size, x.shape);
  const attrs: ReduceAttrs = {
    op,
    outer: sizeOf(x.shape.slice(0, axis)),
    reduceSize: x.shape[axis]!,
    inner: sizeOf(x.shape.slice(axis + 1)),
    outShape,
  };
  return one(runKernel(Reduce, x.backend, [x], attrs));
}

export const sum = (x: Tensor, options?: ReduceOptions) => reduce(x, 'sum', options);
export const mean = (x: Tensor, options?: ReduceOptions) => reduce(x, 'mean', options);
export const max = (x: Tensor, options?: ReduceOptions) => reduce(x, 'max', options);
export const min = (x: Tensor, options?: ReduceOptions) => reduce(x, 'min', options);

/**
 * Embedding lookup: `table: [rows, rowSize]` f32, `indices` i32/u32 of any shape;
 * out `[...indices.shape, rowSize]`. Ids outside [0, rows) give rows of zeros (ids live on
 * the device, so they cannot be checked without a readback).
 */
export async function gather(table: Tensor, indices: Tensor): Promise<Tensor> {
  checkTensor(table, 'table');
  checkTensor(indices, 'indices');
  checkSameBackend(table.backend, { indices });
  checkDType(table, 'table', ['f32']);
  checkDType(indices, 'indices', ['i32', 'u32']);
  checkRank(table, 'table', 2, 2, '[rows, rowSize]');
  const outShape = [...indices.shape, table.shape[1]!];
  checkBindingSize(table.backend, 'output', sizeOf(outShape), outShape);
  const attrs: GatherAttrs = {
    rows: table.shape[0]!,
    rowSize: table.shape[1]!,
    count: indices.size,
    outShape,
  };
  return one(runKernel(Gather, table.backend, [table, indices], attrs));
}

export const embedding = gather;

export interface NormOptions {
  /** Added to the variance (mean square for RMSNorm). Default 1e-5. */
  readonly eps?: number;
}

function checkNormInputs(x: Tensor, params: Record<string, Tensor>): { rows: number; cols: number } {
  checkTensor(x, 'x');
  checkDType(x, 'x', ['f32']);
  checkRank(x, 'x', 1, 16, 'of rank >= 1 ([..., C])');
  const cols = x.shape[x.rank - 1]!;
  for (const [name, p] of Object.entries(params)) {
    checkTensor(p, name);
    checkDType(p, name, ['f32']);
    if (p.rank !== 1 || p.shape[0] !== cols) throw new ShapeError(name, `[${cols}] (x's last dim)`, p.shape);
  }
  checkSameBackend(x.backend, params);
  checkBindingSize(x.backend, 'x', x.size, x.shape);
  return { rows: cols === 0 ? 0 : x.size / cols, cols };
}

/** RMSNorm over the last axis: `x / sqrt(mean(x^2) + eps) * weight`. */
export async function rmsNorm(x: Tensor, weight: Tensor, options: NormOptions = {}): Promise<Tensor> {
  const { rows, cols } = checkNormInputs(x, { weight });
  const eps = options.eps === undefined ? 1e-5 : checkPositiveNumber(options.eps, 'options.eps');
  const attrs: RmsNormAttrs = { eps, rows, cols };
  return one(runKernel(RmsNorm, x.backend, [x, weight], attrs));
}

/** LayerNorm over the last axis (biased variance): `(x - mean) / sqrt(var + eps) * weight + bias`. */
export async function layerNorm(
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
  options: NormOptions = {},
): Promise<Tensor> {
  const { rows, cols } = checkNormInputs(x, { weight, bias });
  const eps = options.eps === undefined ? 1e-5 : checkPositiveNumber(options.eps, 'options.eps');
  const attrs: LayerNormAttrs = { eps, rows, cols };
  return one(runKernel(LayerNorm, x.backend, [x, weight, bias], attrs));
}
