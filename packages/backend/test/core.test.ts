/**
 * The core without a GPU: a host-memory backend exercises the bookkeeping every backend
 * inherits (allocations, views, memory(), scopes), the registry, validation and the
 * references.
 */
import { describe, expect, it } from 'vitest';
import {
  ArgumentError,
  BackendBase,
  type BackendLimits,
  BackendMismatchError,
  type DType,
  DeviceLimitError,
  DisposedTensorError,
  KernelNotFoundError,
  KernelRegisteredError,
  type Program,
  ShapeError,
  type TypedArray,
  allocTypedArray,
  binaryRef,
  broadcastShapes,
  broadcastStrides,
  compareToReference,
  dispatch1d,
  getKernel,
  keep,
  matmul,
  matmulRef,
  reduceRef,
  reduceRefF32Worst,
  registerKernel,
  scope,
  unaryScalar,
  unregisterKernel,
  wgslHeader,
} from '../src';

class HostBackend extends BackendBase {
  readonly kind = 'webgpu' as const;
  readonly name: string;
  readonly features = new Set<string>();
  readonly limits: BackendLimits = {
    maxBufferSize: 1 << 20,
    maxStorageBufferBindingSize: 1 << 20,
    maxWorkgroupStorageSize: 0,
    maxWorkgroupInvocations: 1,
    maxWorkgroupsPerDimension: 65535,
    subgroupSize: 0,
  };
  freed = 0;
  constructor(name = 'host') {
    super();
    this.name = name;
  }
  protected allocate(_bytes: number, dtype: DType, size: number): unknown {
    return { data: allocTypedArray(dtype, size) };
  }
  protected upload(data: TypedArray): unknown {
    return { data: data.slice() };
  }
  protected async download(handle: unknown): Promise<TypedArray> {
    return (handle as { data: TypedArray }).data.slice();
  }
  protected free(): void {
    this.freed++;
  }
  protected async execute(_program: Program): Promise<void> {}
  async sync(): Promise<void> {}
  protected destroyDevice(): void {}
}

const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);

describe('tensors and memory accounting', () => {
  it('uploads, reads back, and counts bytes, allocations and peak', async () => {
    const b = new HostBackend();
    const data = random(6);
    const t = b.tensor(data, [2, 3]);
    expect(t.shape).toEqual([2, 3]);
    expect(Array.from(await t.read())).toEqual(Array.from(data));
    const u = b.empty([10], 'i32');
    expect(b.memory()).toEqual({ tensors: 2, allocations: 2, bytes: 64, peakBytes: 64 });
    u.dispose();
    expect(b.memory()).toMatchObject({ tensors: 1, bytes: 24, peakBytes: 64 });
    b.resetPeak();
    expect(b.memory().peakBytes).toBe(24);
    t.dispose();
    t.dispose(); // idempotent
    expect(b.memory()).toMatchObject({ tensors: 0, allocations: 0, bytes: 0 });
    expect(b.freed).toBe(2);
  });

  it('views share one allocation, freed with the last view', async () => {
    const b = new HostBackend();
    const data = random(12);
    const t = b.tensor(data, [3, 4]);
    const v = t.reshape([2, 6]);
    expect(b.memory()).toMatchObject({ tensors: 2, allocations: 1, bytes: 48 });
    t.dispose();
    expect(Array.from(await v.read())).toEqual(Array.from(data));
    expect(b.freed).toBe(0);
    v.dispose();
    expect(b.freed).toBe(1);
    expect(() => b.tensor(data, [3, 4]).reshape([5])).toThrow(ShapeError);
  });

  it('rejects bad uploads and disposed or foreign tensors with typed errors', async () => {
    const b = new HostBackend();
    expect(() => b.tensor(random(5), [2, 3])).toThrow(
      /data: expected shape 6 elements for shape \[2, 3\], got 5 elements/,
    );
    expect(() => b.tensor(random(2), [2, -1] as number[])).toThrow(ArgumentError);
    expect(() => b.tensor(random(2), [2], 'f64' as DType)).toThrow(
      /dtype: expected dtype f32 or i32 or u32, got f64/,
    );
    expect(() => b.empty([1 << 19])).toThrow(DeviceLimitError);
    const t = b.tensor(random(2), [2]);
    t.dispose();
    await expect(t.read()).rejects.toBeInstanceOf(DisposedTensorError);
    const other = new HostBackend('other');
    const foreign = other.tensor(random(2), [2]);
    await expect(b.read(foreign)).rejects.toBeInstanceOf(BackendMismatchError);
    b.dispose();
    expect(() => b.tensor([1], [1])).toThrow(/backend: expected a live backend/);
  });
});

describe('scope', () => {
  it('frees intermediates, keeps what it returns (nested in objects) and what keep() marks', async () => {
    const b = new HostBackend();
    let kept: ReturnType<typeof b.tensor> | undefined;
    const result = await scope(async () => {
      b.tensor(random(4), [4]);
      kept = keep(b.tensor(random(4), [4]));
      const inner = await scope(() => {
        b.tensor(random(2), [2]);
        return { out: [b.tensor(random(3), [3])] };
      });
      return { value: inner.out[0]! };
    });
    expect(result.value.isDisposed).toBe(false);
    expect(kept!.isDisposed).toBe(false);
    expect(b.memory().tensors).toBe(2);
  });

  it('frees everything when the function throws', async () => {
    const b = new HostBackend();
    await expect(
      scope(() => {
        b.tensor(random(4), [4]);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(b.memory().tensors).toBe(0);
  });
});

describe('kernel registry', () => {
  it('registers once, throws on a second registration and names both parts of a missing key', () => {
    const config = { kernelName: 'TestKernel', backendKind: 'gpujs' as const, run: async () => [] };
    registerKernel(config);
    expect(getKernel('TestKernel', 'gpujs')).toBe(config);
    expect(() => registerKernel(config)).toThrow(KernelRegisteredError);
    expect(() => getKernel('TestKernel', 'webgpu')).toThrow(KernelNotFoundError);
    expect(() => getKernel('TestKernel', 'webgpu')).toThrow(/TestKernel.*webgpu/);
    expect(unregisterKernel('TestKernel', 'gpujs')).toBe(true);
  });

  it('ops validate before looking up kernels', async () => {
    const b = new HostBackend();
    const a = b.tensor(random(6), [2, 3]);
    await expect(matmul(a, a)).rejects.toThrow(
      /^b: expected shape \[\.\.\., 3, N\] to match a's K = 3, got \[2, 3\]/,
    );
    const c = b.tensor(random(12), [3, 4]);
    await expect(matmul(a, c)).rejects.toBeInstanceOf(KernelNotFoundError);
  });
});

describe('shapes, programs and references', () => {
  it('broadcasts like NumPy', () => {
    expect(broadcastShapes([3, 1, 5], [4, 5])).toEqual([3, 4, 5]);
    expect(broadcastStrides([4, 1], [2, 4, 3])).toEqual([0, 1, 0]);
    expect(() => broadcastShapes([2, 3], [4])).toThrow(ShapeError);
  });

  it('generates the WGSL header and splits large dispatches', () => {
    const b = new HostBackend();
    const x = b.tensor(random(4), [4]);
    const y = b.empty([4], 'u32');
    const header = wgslHeader({
      inputs: [{ name: 'x', tensor: x, elementType: 'vec4<f32>' }],
      outputs: [{ name: 'y', tensor: y }],
      uniforms: [{ name: 'n', type: 'u32', value: 4 }],
      enables: ['subgroups'],
    });
    expect(header).toContain('enable subgroups;');
    expect(header).toContain('@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;');
    expect(header).toContain('@group(0) @binding(1) var<storage, read_write> y: array<u32>;');
    expect(header).toMatch(
      /struct Uniforms \{\n {2}n: u32,\n {2}_pad0: u32,\n {2}_pad1: u32,\n {2}_pad2: u32,\n\}/,
    );
    expect(dispatch1d(70000)).toEqual([35000, 2, 1]);
    expect(dispatch1d(0)).toEqual([0, 0, 1]);
  });

  it('references agree with hand-computed values', () => {
    const m = matmulRef(
      { shape: [2, 2], data: [1, 2, 3, 4] },
      { shape: [2, 2], data: [5, 6, 7, 8] },
      { transposeB: true },
    );
    expect(Array.from(m.data)).toEqual([17, 23, 39, 53]);
    expect(
      Array.from(binaryRef({ shape: [2, 1], data: [1, 2] }, { shape: [3], data: [10, 20, 30] }, 'add').data),
    ).toEqual([11, 21, 31, 12, 22, 32]);
    expect(
      Array.from(reduceRef({ shape: [2, 3], data: [1, 5, 3, 4, 2, 6] }, 'max', { axis: 0 }).data),
    ).toEqual([4, 5, 6]);
    expect(unaryScalar('softplus', 100)).toBe(100);
    expect(unaryScalar('softplus', -100)).toBeCloseTo(Math.exp(-100), 110);
    expect(unaryScalar('silu', 1)).toBeCloseTo(1 / (1 + Math.exp(-1)), 15);
  });

  it('the worst-of-orders float32 baseline of a reduction is at least the sequential one', () => {
    const x = { shape: [3, 500], data: Float32Array.from({ length: 1500 }, () => 0.9 + 0.2 * Math.random()) };
    const exact = reduceRef(x, 'prod');
    const sequential = reduceRef(x, 'prod', { precision: 'f32' });
    const worst = reduceRefF32Worst(x, 'prod', {}, 8);
    expect(worst.shape).toEqual([3]);
    for (let i = 0; i < 3; i++) {
      const w = Math.abs(worst.data[i]! - exact.data[i]!);
      expect(w).toBeGreaterThanOrEqual(Math.abs(sequential.data[i]! - exact.data[i]!));
      expect(w).toBeLessThan(1e-4 * Math.abs(exact.data[i]!));
      expect(worst.data[i]).toBe(Math.fround(worst.data[i]!));
    }
  });

  it('the tolerance rule passes within 2x the float32 baseline and fails beyond, and on NaN', () => {
    const ref64 = [1, 2, 3];
    const ref32 = [1 + 1e-6, 2, 3];
    expect(compareToReference([1 + 1.5e-6, 2, 3], ref64, ref32, { atol: 0 }).pass).toBe(true);
    expect(compareToReference([1 + 3e-6, 2, 3], ref64, ref32, { atol: 0 }).pass).toBe(false);
    expect(compareToReference([Number.NaN, 2, 3], ref64, ref32).pass).toBe(false);
    expect(compareToReference([Number.NEGATIVE_INFINITY], [Number.NEGATIVE_INFINITY], undefined).pass).toBe(
      true,
    );
  });
});
