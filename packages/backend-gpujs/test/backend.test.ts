/**
 * The backend contract on every mode Node has: round trips, residency on the device between
 * kernels, the compiled-kernel cache, the mode check, limits, errors, and no leaks.
 */
import {
  ArgumentError,
  BackendUnavailableError,
  type GpuJsProgram,
  PRIMITIVE_KERNELS,
  ValidationError,
  hasKernel,
  matmul,
  matmulRef,
  scope,
  unary,
  unaryRef,
} from '@longseq/backend';
import { afterAll, describe, expect, it } from 'vitest';
import { createGpuJsBackend, registerGpuJsKernels } from '../src';
import { NODE_MODES, backendFor, disposeAll, expectClose, random, randomInts } from './helpers';

afterAll(disposeAll);

describe.each(NODE_MODES)('gpujs-%s backend', (mode) => {
  it('is the mode it says, with the limits gpu.js has', async () => {
    const be = await backendFor(mode);
    expect(be.kind).toBe('gpujs');
    expect(be.name).toBe(`gpujs-${mode}`);
    expect(be.gpu.Kernel.mode).toBe(mode);
    expect(be.limits.maxWorkgroupStorageSize).toBe(0);
    expect(be.limits.maxWorkgroupInvocations).toBe(1);
    expect(be.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(be.limits.maxBufferSize).toBeLessThanOrEqual(mode === 'cpu' ? 2 ** 30 : 2 ** 26);
    expect(be.features.size).toBe(0);
  });

  it('round-trips f32, i32 and u32 (integers exact to 2^24), including empty tensors', async () => {
    const be = await backendFor(mode);
    const start = be.memory();
    await scope(async () => {
      const f = random(37);
      expect(Array.from(await be.tensor(f, [37]).read())).toEqual(Array.from(f));
      const i = randomInts(29, -(2 ** 24), 2 ** 24);
      const ti = be.tensor(i, [29], 'i32');
      const ri = await ti.read();
      expect(ri).toBeInstanceOf(Int32Array);
      expect(Array.from(ri)).toEqual(i);
      const u = [...randomInts(15, 0, 2 ** 24), 2 ** 24];
      const ru = await be.tensor(u, [4, 4], 'u32').read();
      expect(ru).toBeInstanceOf(Uint32Array);
      expect(Array.from(ru)).toEqual(u);
      expect((await be.tensor([], [0, 3]).read()).length).toBe(0);
      // a reshape is a view of the same allocation
      const v = ti.reshape([29, 1]);
      expect(be.memory().allocations).toBe(start.allocations + 4);
      expect(Array.from(await v.read())).toEqual(i);
    });
    expect(be.memory()).toMatchObject({
      tensors: start.tensors,
      allocations: start.allocations,
      bytes: start.bytes,
    });
  });

  it('keeps results on the device between kernels (no readback in a chain)', async () => {
    const be = await backendFor(mode);
    const start = be.memory();
    await scope(async () => {
      const ha = { data: random(12), shape: [3, 4] };
      const hb = { data: random(20), shape: [4, 5] };
      const a = be.tensor(ha.data, ha.shape);
      const b = be.tensor(hb.data, hb.shape);
      const c = await matmul(a, b);
      const d = await unary(c, 'tanh');
      for (const t of [a, c, d]) {
        const held = be.deviceValue(t);
        if (mode === 'webgpu') {
          // gpu.js' GPU-resident handle: a GPUBuffer, never a host array
          expect(held).not.toBeInstanceOf(Float32Array);
          expect(held).toMatchObject({ type: 'WebGPUBuffer' });
          expect(typeof (held as { buffer: GPUBuffer }).buffer.mapAsync).toBe('function');
        } else {
          // webasm and cpu keep their "device" memory in typed arrays
          expect(held).toBeInstanceOf(Float32Array);
        }
      }
      const c64 = matmulRef(ha, hb);
      const c32 = matmulRef(ha, hb, { precision: 'f32' });
      expectClose(
        'matmul then tanh',
        await d.read(),
        unaryRef(c64, 'tanh').data,
        unaryRef(c32, 'tanh', { precision: 'f32' }).data,
      );
    });
    expect(be.memory()).toMatchObject({ tensors: start.tensors, bytes: start.bytes });
  });

  it('does not recompile for a new shape', async () => {
    const be = await backendFor(mode);
    await scope(async () => {
      await unary(be.tensor(random(12), [3, 4]), 'silu');
      const before = be.stats();
      const gpuKernels = be.gpu.kernels.length;
      const x = be.tensor(random(77), [7, 11]);
      const y = await unary(x, 'silu');
      expect((await y.read()).length).toBe(77);
      await matmul(be.tensor(random(6), [2, 3]), be.tensor(random(12), [3, 4]));
      const mid = be.stats();
      await matmul(be.tensor(random(35), [5, 7]), be.tensor(random(21), [7, 3]), { transposeB: false });
      await matmul(be.tensor(random(35), [7, 5]), be.tensor(random(21), [3, 7]), {
        transposeA: true,
        transposeB: true,
      });
      const after = be.stats();
      // the silu rerun was a cache hit; matmul compiled once for all shapes and transposes
      expect(mid.compilations - before.compilations).toBeLessThanOrEqual(1);
      expect(after.compilations).toBe(mid.compilations);
      expect(after.cacheHits - mid.cacheHits).toBe(2);
      // and gpu.js did not switch to new kernels underneath
      expect(be.gpu.kernels.length - gpuKernels).toBe(mid.compilations - before.compilations);
    });
  });

  it('refuses a kernel gpu.js cannot compile with a ValidationError, leaking nothing', async () => {
    const be = await backendFor(mode);
    const start = be.memory();
    const x = be.tensor(random(4), [4]);
    const y = be.empty([4]);
    const program: GpuJsProgram = {
      kind: 'gpujs',
      name: 'Broken',
      cacheKey: '',
      // an undefined helper: no mode can translate this
      kernel: /* js */ `function broken(a) {
  return nowhere(a[this.thread.x]);
}`,
      inputs: [x],
      output: y,
    };
    await expect(be.run(program)).rejects.toBeInstanceOf(ValidationError);
    x.dispose();
    y.dispose();
    expect(be.memory()).toMatchObject({ tensors: start.tensors, bytes: start.bytes });
  });
});

describe('mode selection', () => {
  it('throws BackendUnavailableError when gpu.js would silently run another mode', async () => {
    const be = await backendFor('webasm');
    const x = be.tensor(random(4), [4]);
    const y = be.empty([4]);
    const program: GpuJsProgram = {
      kind: 'gpujs',
      name: 'BooleanResult',
      cacheKey: '',
      // webasm cannot store a Boolean result and hands the kernel to cpu (fallbackReason)
      kernel: /* js */ `function positive(a) {
  return a[this.thread.x] > 0;
}`,
      inputs: [x],
      output: y,
    };
    const err = await be.run(program).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect(String((err as Error).message)).toMatch(/cpu/);
    x.dispose();
    y.dispose();
  });

  it('rejects an unknown mode, naming it', async () => {
    const err = await createGpuJsBackend({ mode: 'webgl' as never }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ArgumentError);
    expect(String((err as Error).message)).toMatch(/"webgl"/);
  });

  it('has no webgl2 in Node', async () => {
    const err = await createGpuJsBackend({ mode: 'webgl2' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect(String((err as Error).message)).toMatch(/browser/);
  });

  it('registers the seven primitives explicitly and idempotently', () => {
    registerGpuJsKernels();
    registerGpuJsKernels();
    for (const k of PRIMITIVE_KERNELS) expect(hasKernel(k, 'gpujs')).toBe(true);
  });

  it('dispose frees every tensor and refuses further work', async () => {
    const be = await createGpuJsBackend({ mode: 'cpu' });
    be.tensor(random(8), [8]);
    await unary(be.tensor(random(8), [2, 4]), 'exp');
    expect(be.memory().tensors).toBe(3);
    be.dispose();
    expect(be.memory()).toMatchObject({ tensors: 0, allocations: 0, bytes: 0 });
    expect(() => be.tensor([1], [1])).toThrow(ArgumentError);
  });
});
