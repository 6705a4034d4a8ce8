import type { Backend } from './backend';
import type { DType } from './dtype';
import { ArgumentError, BackendMismatchError, DeviceLimitError, DTypeError, ShapeError } from './errors';
import { formatShape } from './shape';
import { Tensor } from './tensor';

/** Throws unless `t` is a live Tensor; returns it. */
export function checkTensor(t: unknown, argument: string): Tensor {
  if (!(t instanceof Tensor)) throw new ArgumentError(argument, 'a Tensor', t);
  return t.assertAlive(argument);
}

export function checkDType(t: Tensor, argument: string, allowed: readonly DType[]): void {
  if (!allowed.includes(t.dtype)) throw new DTypeError(argument, allowed, t.dtype);
}

export function checkRank(t: Tensor, argument: string, min: number, max = min, expected?: string): void {
  if (t.rank < min || t.rank > max) {
    const want = expected ?? (min === max ? `of rank ${min}` : `of rank ${min}..${max}`);
    throw new ShapeError(argument, want, t.shape);
  }
}

/** Throws unless every tensor lives on `backend`. */
export function checkSameBackend(backend: Backend, tensors: Record<string, Tensor>): void {
  for (const [name, t] of Object.entries(tensors)) {
    if (t.backend !== backend) throw new BackendMismatchError(name, backend.name, t.backend.name);
  }
}

/** Throws DeviceLimitError when a tensor of `elements` f32 elements would not fit one binding. */
export function checkBindingSize(
  backend: Backend,
  argument: string,
  elements: number,
  shape?: readonly number[],
): void {
  const bytes = elements * 4;
  if (bytes > backend.limits.maxStorageBufferBindingSize) {
    throw new DeviceLimitError(
      shape ? `${argument} ${formatShape(shape)}` : argument,
      'maxStorageBufferBindingSize (bytes)',
      bytes,
      backend.limits.maxStorageBufferBindingSize,
    );
  }
}

export function checkFiniteNumber(value: unknown, argument: string, expected = 'a finite number'): number {
  if (typeof value !== 'number' || !Number.isFinite(value))
    throw new ArgumentError(argument, expected, value);
  return value;
}

export function checkPositiveNumber(value: unknown, argument: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ArgumentError(argument, 'a finite number > 0', value);
  }
  return value;
}

export function checkOneOf<T extends string>(value: unknown, argument: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw new ArgumentError(argument, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, value);
  }
  return value as T;
}
