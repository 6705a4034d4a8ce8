import { ArgumentError, ShapeError } from './errors';

export type Shape = readonly number[];

/** Number of elements of a shape (1 for a scalar shape []). */
export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of a shape. */
export function stridesOf(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

/** Throws unless `shape` is an array of non-negative integers. */
export function checkShape(shape: unknown, argument = 'shape'): Shape {
  if (!Array.isArray(shape)) throw new ArgumentError(argument, 'an array of non-negative integers', shape);
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) {
      throw new ArgumentError(argument, 'an array of non-negative integers', shape);
    }
  }
  return shape as Shape;
}

/** Resolves a possibly negative axis against a rank, throwing a typed error when out of range. */
export function normalizeAxis(axis: number, rank: number, argument = 'axis'): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new ArgumentError(argument, `an integer in [${-rank}, ${rank - 1}]`, axis);
  }
  return axis < 0 ? axis + rank : axis;
}

/** NumPy broadcasting of two shapes; throws a ShapeError naming both arguments when they do not broadcast. */
export function broadcastShapes(a: Shape, b: Shape, names: [string, string] = ['a', 'b']): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(
        names[1],
        `broadcastable with ${names[0]} [${a.join(', ')}] (each dim equal or 1)`,
        b,
      );
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/**
 * Strides that read `shape` as if it had been broadcast to `outShape`: a broadcast dim
 * gets stride 0. The result has outShape's rank.
 */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const own = stridesOf(shape);
  const rank = outShape.length;
  const out = new Array<number>(rank).fill(0);
  for (let i = 0; i < shape.length; i++) {
    const o = rank - shape.length + i;
    out[o] = shape[i] === 1 && outShape[o] !== 1 ? 0 : own[i]!;
  }
  return out;
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}
