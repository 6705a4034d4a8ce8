/**
 * Kernel contracts: one name constant and one attribute type per primitive, declared once
 * here and imported by every backend, so an op and its implementations cannot disagree.
 * Attributes are *parsed*: the op has validated inputs and computed every size a kernel
 * needs, so kernels hold no validation and no shape logic.
 */

export const MatMul = 'MatMul';
/** inputs: [a, b]. out[bt, i, j] = sum_p A(bt, i, p) * B(bt, p, j), A/B read through the transposes. */
export interface MatMulAttrs {
  readonly transposeA: boolean;
  readonly transposeB: boolean;
  /** Output batch count (product of broadcast leading dims). */
  readonly batch: number;
  /** Elements between consecutive batch matrices of a and b; 0 where that side is broadcast. */
  readonly batchStrideA: number;
  readonly batchStrideB: number;
  readonly m: number;
  readonly k: number;
  readonly n: number;
  readonly outShape: readonly number[];
}

export const UNARY_OPS = [
  'neg',
  'abs',
  'exp',
  'log',
  'sqrt',
  'rsqrt',
  'square',
  'reciprocal',
  'relu',
  'sigmoid',
  'silu',
  'softplus',
  'tanh',
  'gelu',
] as const;
export type UnaryOp = (typeof UNARY_OPS)[number];

export const Unary = 'Unary';
/** inputs: [x]. out = op(x) elementwise. */
export interface UnaryAttrs {
  readonly op: UnaryOp;
}

export const BINARY_OPS = ['add', 'sub', 'mul', 'div', 'max', 'min', 'pow'] as const;
export type BinaryOp = (typeof BINARY_OPS)[number];

/** The largest rank binary broadcasting handles. */
export const MAX_BROADCAST_RANK = 6;

export const Binary = 'Binary';
/** inputs: [a, b]. out[idx] = op(a[idx . aStrides], b[idx . bStrides]) with broadcast strides of 0. */
export interface BinaryAttrs {
  readonly op: BinaryOp;
  readonly outShape: readonly number[];
  /** Strides of a and b read as outShape (rank = outShape.length, 0 on broadcast dims). */
  readonly aStrides: readonly number[];
  readonly bStrides: readonly number[];
}

export const REDUCE_OPS = ['sum', 'mean', 'max', 'min', 'prod'] as const;
export type ReduceOp = (typeof REDUCE_OPS)[number];

export const Reduce = 'Reduce';
/** inputs: [x] viewed as [outer, reduceSize, inner]. out[o, i] = op over r of x[o, r, i]. */
export interface ReduceAttrs {
  readonly op: ReduceOp;
  readonly outer: number;
  readonly reduceSize: number;
  readonly inner: number;
  readonly outShape: readonly number[];
}

export const Gather = 'Gather';
/** inputs: [table [rows, rowSize], indices (i32/u32)]. out[j, :] = table[indices[j], :], zeros when out of range. */
export interface GatherAttrs {
  readonly rows: number;
  readonly rowSize: number;
  readonly count: number;
  readonly outShape: readonly number[];
}

export const RmsNorm = 'RmsNorm';
/** inputs: [x [rows, cols], weight [cols]]. out = x / sqrt(mean(x^2) + eps) * weight. */
export interface RmsNormAttrs {
  readonly eps: number;
  readonly rows: number;
  readonly cols: number;
}

export const LayerNorm = 'LayerNorm';
/** inputs: [x [rows, cols], weight [cols], bias [cols]]. out = (x - mean) / sqrt(var + eps) * weight + bias. */
export interface LayerNormAttrs {
  readonly eps: number;
  readonly rows: number;
  readonly cols: number;
}

/** The primitives both backends must implement. */
export const PRIMITIVE_KERNELS = [MatMul, Unary, Binary, Reduce, Gather, RmsNorm, LayerNorm] as const;
