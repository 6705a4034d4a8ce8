import type { Backend } from './backend';
import type { DType, TypedArray } from './dtype';
import { DisposedTensorError } from './errors';
import { type Shape, sizeOf } from './shape';

let nextTensorId = 1;

/**
 * A device-resident n-dimensional array. Created by a backend (`backend.tensor(...)`,
 * `backend.empty(...)`, or an op), read back with `await t.read()`, freed with `t.dispose()`
 * or by the `scope()` it was created in. Several tensors may share one device allocation
 * (`reshape` makes a view); the allocation is freed when the last of them is disposed.
 */
export class Tensor {
  readonly id: number = nextTensorId++;
  readonly size: number;
  private disposedFlag = false;

  constructor(
    readonly shape: Shape,
    readonly dtype: DType,
    readonly backend: Backend,
    /** The backend's device handle (a GPUBuffer wrapper on WebGPU, a texture/array box on gpu.js). */
    readonly handle: unknown,
  ) {
    this.shape = Object.freeze([...shape]);
    this.size = sizeOf(shape);
  }

  get rank(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.disposedFlag;
  }

  /** Throws a DisposedTensorError naming `argument` if this tensor has been disposed. */
  assertAlive(argument = 'tensor'): this {
    if (this.disposedFlag) throw new DisposedTensorError(argument, this.id);
    return this;
  }

  /** Downloads the contents (asynchronously: GPU readback waits for queued work). */
  async read(): Promise<TypedArray> {
    this.assertAlive('tensor');
    return this.backend.read(this);
  }

  /** Downloads as a plain nested-free number array. */
  async array(): Promise<number[]> {
    return Array.from(await this.read());
  }

  /** A view with a new shape of the same size, sharing the device allocation. */
  reshape(shape: Shape): Tensor {
    this.assertAlive('tensor');
    return this.backend.reshape(this, shape);
  }

  /** Frees this tensor (idempotent). The device allocation goes when its last view goes. */
  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    this.backend.releaseTensor(this);
  }

  toString(): string {
    return `Tensor#${this.id}(${this.dtype}[${this.shape.join(', ')}] on ${this.backend.name}${this.disposedFlag ? ', disposed' : ''})`;
  }
}

export function isTensor(value: unknown): value is Tensor {
  return value instanceof Tensor;
}
