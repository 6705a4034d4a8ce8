import { type DType, type TypedArray, bytesPerElement, isDType, toTypedArray } from './dtype';
import {
  ArgumentError,
  BackendMismatchError,
  DeviceLimitError,
  DisposedTensorError,
  DTypeError,
  ShapeError,
} from './errors';
import type { Program } from './program';
import { trackTensor } from './scope';
import { type Shape, checkShape, formatShape, sizeOf } from './shape';
import { Tensor } from './tensor';

/** The two families of backend. Op packages provide one program per kind. */
export type BackendKind = 'webgpu' | 'gpujs';

/** Sizes a backend can handle. Ops check these before any GPU work and throw DeviceLimitError. */
export interface BackendLimits {
  /** Largest single allocation in bytes. */
  readonly maxBufferSize: number;
  /** Largest buffer one kernel may bind (WebGPU maxStorageBufferBindingSize). */
  readonly maxStorageBufferBindingSize: number;
  /** Workgroup (shared) memory per workgroup in bytes; 0 where the backend has none (gpu.js). */
  readonly maxWorkgroupStorageSize: number;
  /** Invocations per workgroup; 1 where the backend has no workgroups to speak of. */
  readonly maxWorkgroupInvocations: number;
  /** Workgroups along one dispatch dimension. */
  readonly maxWorkgroupsPerDimension: number;
  /** Subgroup (warp) size when subgroups are available, else 0. */
  readonly subgroupSize: number;
}

export interface MemoryInfo {
  /** Tensor objects alive (views count separately). */
  readonly tensors: number;
  /** Distinct device allocations alive. */
  readonly allocations: number;
  /** Bytes held by live allocations (logical sizes, not pool capacity). */
  readonly bytes: number;
  /** Largest `bytes` seen since the backend was made or `resetPeak()` was called. */
  readonly peakBytes: number;
}

/**
 * What every backend offers. Op packages only see this interface (and the program
 * descriptors): they never import gpu.js or the `webgpu` package.
 */
export interface Backend {
  readonly kind: BackendKind;
  /** Distinct per implementation and mode: 'webgpu', 'gpujs-webgpu', 'gpujs-webgl2', 'gpujs-webasm', 'gpujs-cpu'. */
  readonly name: string;
  readonly limits: BackendLimits;
  /** Optional capabilities present: 'subgroups', 'timestamp-query', 'shader-f16', 'workgroup-memory'. */
  readonly features: ReadonlySet<string>;
  readonly isDisposed: boolean;

  /** Uploads data. `data.length` must equal the shape's size. */
  tensor(data: ArrayLike<number>, shape: Shape, dtype?: DType): Tensor;
  /** Allocates a tensor whose contents are unspecified until a kernel writes it. */
  empty(shape: Shape, dtype?: DType): Tensor;
  /** A view of `t` with a new shape of the same size. */
  reshape(t: Tensor, shape: Shape): Tensor;
  /** Downloads a tensor; waits for the work queued before it. */
  read(t: Tensor): Promise<TypedArray>;
  /** Runs one program (a kernel dispatch) of this backend's kind. */
  run(program: Program): Promise<void>;
  /** Resolves when all queued work has finished on the device. */
  sync(): Promise<void>;
  memory(): MemoryInfo;
  resetPeak(): void;
  /** Called by Tensor.dispose(); not for direct use. */
  releaseTensor(t: Tensor): void;
  /** Frees every tensor and the device. */
  dispose(): void;
}

interface Allocation {
  refs: number;
  readonly bytes: number;
}

/**
 * Bookkeeping shared by the backends: validation of uploads, reference-counted device
 * allocations (views share one), memory accounting and scope tracking. A backend
 * implements the five device primitives below.
 */
export abstract class BackendBase implements Backend {
  abstract readonly kind: BackendKind;
  abstract readonly name: string;
  abstract readonly limits: BackendLimits;
  abstract readonly features: ReadonlySet<string>;

  private readonly allocations = new Map<unknown, Allocation>();
  private readonly live = new Set<Tensor>();
  private bytesInUse = 0;
  private peak = 0;
  private disposed = false;

  protected abstract allocate(bytes: number, dtype: DType, size: number): unknown;
  protected abstract upload(data: TypedArray, dtype: DType): unknown;
  protected abstract download(handle: unknown, dtype: DType, size: number): Promise<TypedArray>;
  protected abstract free(handle: unknown): void;
  protected abstract execute(program: Program): Promise<void>;
  abstract sync(): Promise<void>;
  /** Releases the device itself, after all allocations are freed. */
  protected abstract destroyDevice(): void;

  get isDisposed(): boolean {
    return this.disposed;
  }

  tensor(data: ArrayLike<number>, shape: Shape, dtype: DType = 'f32'): Tensor {
    this.assertUsable();
    checkShape(shape, 'shape');
    if (!isDType(dtype)) throw new DTypeError('dtype', ['f32', 'i32', 'u32'], String(dtype));
    if (data === null || typeof data !== 'object' || typeof data.length !== 'number') {
      throw new ArgumentError('data', 'an array or typed array of numbers', data);
    }
    const size = sizeOf(shape);
    if (data.length !== size) {
      throw new ShapeError(
        'data',
        `${size} elements for shape ${formatShape(shape)}`,
        `${data.length} elements`,
      );
    }
    const bytes = size * bytesPerElement(dtype);
    this.checkAllocation(bytes, shape);
    const handle = this.upload(toTypedArray(data, dtype), dtype);
    return this.adopt(handle, shape, dtype, bytes);
  }

  empty(shape: Shape, dtype: DType = 'f32'): Tensor {
    this.assertUsable();
    checkShape(shape, 'shape');
    if (!isDType(dtype)) throw new DTypeError('dtype', ['f32', 'i32', 'u32'], String(dtype));
    const size = sizeOf(shape);
    const bytes = size * bytesPerElement(dtype);
    this.checkAllocation(bytes, shape);
    return this.adopt(this.allocate(bytes, dtype, size), shape, dtype, bytes);
  }

  reshape(t: Tensor, shape: Shape): Tensor {
    this.assertOwn(t, 'tensor');
    checkShape(shape, 'shape');
    if (sizeOf(shape) !== t.size) {
      throw new ShapeError('shape', `${t.size} elements (the size of ${formatShape(t.shape)})`, shape);
    }
    const alloc = this.allocations.get(t.handle)!;
    alloc.refs++;
    const view = new Tensor(shape, t.dtype, this, t.handle);
    this.live.add(view);
    trackTensor(view);
    return view;
  }

  async read(t: Tensor): Promise<TypedArray> {
    this.assertUsable();
    this.assertOwn(t, 'tensor');
    return this.download(t.handle, t.dtype, t.size);
  }

  async run(program: Program): Promise<void> {
    this.assertUsable();
    if (program.kind !== this.kind) {
      throw new ArgumentError('program.kind', `'${this.kind}' for backend ${this.name}`, program.kind);
    }
    for (const t of programTensors(program)) this.assertOwn(t, `${program.name} binding`);
    await this.execute(program);
  }

  memory(): MemoryInfo {
    return {
      tensors: this.live.size,
      allocations: this.allocations.size,
      bytes: this.bytesInUse,
      peakBytes: this.peak,
    };
  }

  resetPeak(): void {
    this.peak = this.bytesInUse;
  }

  releaseTensor(t: Tensor): void {
    if (!this.live.delete(t)) return;
    const alloc = this.allocations.get(t.handle);
    if (!alloc) return;
    if (--alloc.refs === 0) {
      this.allocations.delete(t.handle);
      this.bytesInUse -= alloc.bytes;
      this.free(t.handle);
    }
  }

  dispose(): void {
    if (this.disposed) return;
    for (const t of [...this.live]) t.dispose();
    this.disposed = true;
    this.destroyDevice();
  }

  /** Wraps a fresh device handle in a tracked tensor. For backends and kernels that allocate themselves. */
  protected adopt(handle: unknown, shape: Shape, dtype: DType, bytes: number): Tensor {
    this.allocations.set(handle, { refs: 1, bytes });
    this.bytesInUse += bytes;
    if (this.bytesInUse > this.peak) this.peak = this.bytesInUse;
    const t = new Tensor(shape, dtype, this, handle);
    this.live.add(t);
    trackTensor(t);
    return t;
  }

  /** Throws unless `t` is a live tensor of this backend. */
  protected assertOwn(t: Tensor, argument: string): void {
    if (!(t instanceof Tensor)) throw new ArgumentError(argument, 'a Tensor', t);
    if (t.isDisposed) throw new DisposedTensorError(argument, t.id);
    if (t.backend !== this) throw new BackendMismatchError(argument, this.name, t.backend.name);
  }

  protected assertUsable(): void {
    if (this.disposed)
      throw new ArgumentError('backend', `a live backend (${this.name} was disposed)`, 'disposed');
  }

  private checkAllocation(bytes: number, shape: Shape): void {
    if (bytes > this.limits.maxBufferSize) {
      throw new DeviceLimitError(
        `shape ${formatShape(shape)}`,
        'maxBufferSize (bytes)',
        bytes,
        this.limits.maxBufferSize,
      );
    }
  }
}

function programTensors(program: Program): Tensor[] {
  if (program.kind === 'webgpu') return [...program.inputs, ...program.outputs].map((b) => b.tensor);
  return [...program.inputs, program.output];
}
