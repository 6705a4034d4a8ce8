import {
  ArgumentError,
  add,
  BackendBase,
  DeviceLimitError,
  exp,
  hasKernel,
  matmul,
  PRIMITIVE_KERNELS,
  scope,
  ValidationError,
  type WebGpuProgram,
} from '@longseq/backend';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, sizeClass, type WebGpuBackend } from '../src/index';
import { freshSeed, makeBackend, noLeaks, rng, uniform } from './helpers';

let backend: WebGpuBackend;
beforeAll(async () => {
  backend = await makeBackend();
});
afterAll(() => backend?.dispose());

/** A minimal program: y = x * scale + offset, elementwise. */
function scaleProgram(
  x: ReturnType<WebGpuBackend['tensor']>,
  y: typeof x,
  scale: number,
  name = 'test_scale',
): WebGpuProgram {
  return {
    kind: 'webgpu',
    name,
    cacheKey: '',
    inputs: [{ name: 'x', tensor: x }],
    outputs: [{ name: 'y', tensor: y }],
    uniforms: [
      { name: 'size', type: 'u32', value: x.size },
      { name: 'scale', type: 'f32', value: scale },
    ],
    source: `@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < u.size) { y[g.x] = x[g.x] * u.scale; }
}`,
    dispatch: [Math.ceil(x.size / 64), 1, 1],
  };
}

describe('device and creation', () => {
  it('is a BackendBase with kind/name webgpu, limits, features and adapter info', () => {
    expect(backend).toBeInstanceOf(BackendBase);
    expect(backend.kind).toBe('webgpu');
    expect(backend.name).toBe('webgpu');
    expect(backend.features.has('workgroup-memory')).toBe(true);
    expect(backend.limits.maxWorkgroupInvocations).toBeGreaterThanOrEqual(64);
    expect(backend.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(backend.limits.maxWorkgroupStorageSize).toBeGreaterThanOrEqual(16384);
    expect(typeof backend.limits.subgroupSize).toBe('number');
    if (backend.features.has('subgroups')) expect(backend.limits.subgroupSize).toBeGreaterThan(0);
    expect(typeof backend.adapterInfo.vendor).toBe('string');
    expect(backend.device).toBeDefined();
  });

  it('registers every primitive kernel for webgpu', () => {
    for (const k of PRIMITIVE_KERNELS) expect(hasKernel(k, 'webgpu'), k).toBe(true);
  });

  it('accepts an existing device and leaves it alive on dispose', async () => {
    const other = await createWebGpuBackend({ device: backend.device });
    const t = other.tensor([1, 2, 3], [3]);
    expect(Array.from(await t.read())).toEqual([1, 2, 3]);
    other.dispose();
    // The shared device still works for the first backend.
    await noLeaks(backend, async () => {
      expect(Array.from(await backend.tensor([4, 5], [2]).read())).toEqual([4, 5]);
    });
  });
});

describe('tensors and memory', () => {
  for (const dtype of ['f32', 'i32', 'u32'] as const) {
    it(`upload/download round trip (${dtype})`, async () => {
      const rand = rng(freshSeed());
      await noLeaks(backend, async () => {
        const n = 1237;
        const data =
          dtype === 'f32'
            ? uniform(rand, n, -1e3, 1e3)
            : dtype === 'i32'
              ? Int32Array.from({ length: n }, () => Math.floor((rand() - 0.5) * 2 ** 31))
              : Uint32Array.from({ length: n }, () => Math.floor(rand() * 2 ** 32));
        const t = backend.tensor(data, [n], dtype);
        const back = await t.read();
        expect(back.constructor).toBe(data.constructor);
        expect(Array.from(back)).toEqual(Array.from(data));
        expect(backend.memory().bytes).toBeGreaterThanOrEqual(n * 4);
      });
    });
  }

  it('reshape views share one allocation, freed with the last view', async () => {
    const rand = rng(freshSeed());
    await noLeaks(backend, async () => {
      const before = backend.memory();
      const data = uniform(rand, 24);
      const t = backend.tensor(data, [4, 6]);
      const v = t.reshape([2, 3, 4]);
      expect(backend.memory().allocations).toBe(before.allocations + 1);
      expect(backend.memory().tensors).toBe(before.tensors + 2);
      expect(backend.gpuBuffer(v)).toBe(backend.gpuBuffer(t));
      // A kernel writing through one view is seen through the other.
      const out = backend.empty([2, 3, 4]);
      await backend.run(scaleProgram(v, out, 2));
      const o2 = out.reshape([24]);
      expect(Array.from(await o2.read())).toEqual(Array.from(data, (x) => Math.fround(x * 2)));
      t.dispose();
      expect(Array.from(await v.read())).toEqual(Array.from(data));
      v.dispose();
      // Left: out and its view o2, one allocation.
      expect(backend.memory().allocations).toBe(before.allocations + 1);
    });
  });

  it('reuses freed buffers from the pool', async () => {
    const rand = rng(freshSeed());
    await noLeaks(backend, async () => {
      const a = backend.tensor(uniform(rand, 1000), [1000]);
      await a.read();
      a.dispose();
      const s0 = backend.stats();
      expect(s0.pooledBuffers).toBeGreaterThan(0);
      // Same size class: 1000 and 1010 floats both round up to 4 KiB.
      expect(sizeClass(4000, 1 << 30)).toBe(sizeClass(4040, 1 << 30));
      const data = uniform(rand, 1010);
      const b = backend.tensor(data, [1010]);
      const c = backend.empty([1000]);
      const s1 = backend.stats();
      expect(s1.bufferReuses).toBeGreaterThan(s0.bufferReuses);
      expect(Array.from(await b.read())).toEqual(Array.from(data));
      c.dispose();
    });
  });

  it('an upload into a pooled buffer does not overtake queued kernels that read its old contents', async () => {
    const rand = rng(freshSeed());
    await noLeaks(backend, async () => {
      const first = uniform(rand, 256);
      const x = backend.tensor(first, [256]);
      const y = backend.empty([256]);
      await backend.run(scaleProgram(x, y, 3)); // compile first: a cache hit is only recorded, not submitted
      // Queued, not yet submitted: then x's buffer goes back to the pool and is refilled.
      const pending = backend.run(scaleProgram(x, y, 3));
      x.dispose();
      const second = backend.tensor(uniform(rand, 256), [256]);
      await pending;
      expect(Array.from(await y.read())).toEqual(Array.from(first, (v) => Math.fround(v * 3)));
      second.dispose();
    });
  });

  it('handles zero-sized tensors (uploads, views, kernels and reads)', async () => {
    await noLeaks(backend, async () => {
      const before = backend.memory().bytes;
      const z = backend.tensor([], [0, 5]);
      expect(backend.memory().bytes).toBe(before);
      expect((await z.read()).length).toBe(0);
      const e = await exp(z);
      expect(e.shape).toEqual([0, 5]);
      expect((await e.read()).length).toBe(0);
      const s = await add(z, backend.tensor([1, 2, 3, 4, 5], [5]));
      expect(s.shape).toEqual([0, 5]);
      const i = backend.tensor([], [0], 'i32');
      expect(await i.read()).toBeInstanceOf(Int32Array);
    });
  });

  it('frees everything a scope made and returns memory to the start', async () => {
    const rand = rng(freshSeed());
    const before = backend.memory();
    const kept = await scope(async () => {
      const a = backend.tensor(uniform(rand, 64), [8, 8]);
      const b = backend.tensor(uniform(rand, 64), [8, 8]);
      const c = await matmul(a, b);
      return add(c, a);
    });
    expect(backend.memory().tensors).toBe(before.tensors + 1);
    kept.dispose();
    expect(backend.memory().bytes).toBe(before.bytes);
    expect(backend.memory().tensors).toBe(before.tensors);
  });
});

describe('programs', () => {
  it('caches pipelines: a second call with a new shape compiles nothing', async () => {
    const rand = rng(freshSeed());
    await noLeaks(backend, async () => {
      await exp(backend.tensor(uniform(rand, 100), [10, 10]));
      const s0 = backend.stats();
      const out = await exp(backend.tensor(uniform(rand, 333), [3, 111]));
      await out.read();
      const s1 = backend.stats();
      expect(s1.pipelinesCompiled).toBe(s0.pipelinesCompiled);
      expect(s1.pipelineCacheHits).toBe(s0.pipelineCacheHits + 1);
      expect(s1.dispatches).toBe(s0.dispatches + 1);
    });
  });

  it('batches dispatches into few submits', async () => {
    const rand = rng(freshSeed());
    await noLeaks(backend, async () => {
      let t = backend.tensor(uniform(rand, 64), [64]);
      await exp(t); // compile outside the measurement
      await backend.sync();
      const s0 = backend.stats();
      for (let i = 0; i < 20; i++) t = await add(t, t);
      await t.read();
      const s1 = backend.stats();
      expect(s1.dispatches - s0.dispatches).toBe(20);
      expect(s1.submits - s0.submits).toBeLessThanOrEqual(3);
    });
  });

  it('throws ValidationError naming a program whose WGSL does not compile, and keeps working', async () => {
    const rand = rng(freshSeed());
    await noLeaks(backend, async () => {
      const x = backend.tensor(uniform(rand, 16), [16]);
      const y = backend.empty([16]);
      const broken: WebGpuProgram = {
        ...scaleProgram(x, y, 1, 'deliberately_broken'),
        source: '@compute @workgroup_size(64) fn main() { let v: f32 = undefined_thing; }',
      };
      const err = await backend.run(broken).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).program).toBe('deliberately_broken');
      expect((err as ValidationError).message).toMatch(/undefined_thing/);
      // Cached as failed: the second attempt throws the same error without recording anything.
      await expect(backend.run(broken)).rejects.toBeInstanceOf(ValidationError);
      // Good programs still run and nothing is left over for the next sync.
      await backend.run(scaleProgram(x, y, 2));
      await backend.sync();
      expect(Array.from(await y.read())).toEqual(Array.from(await x.read(), (v) => Math.fround(v * 2)));
    });
  });

  it('reports a binding error (an output aliasing an input) as ValidationError, first run or cached', async () => {
    const rand = rng(freshSeed());
    await noLeaks(backend, async () => {
      const x = backend.tensor(uniform(rand, 64), [64]);
      const alias = x.reshape([64]);
      const p = scaleProgram(x, alias, 2, 'aliased_bindings');
      // First run compiles in a submit of its own, so the error belongs to this run.
      await expect(backend.run(p)).rejects.toBeInstanceOf(ValidationError);
      // The pipeline itself is fine: the cached run records, and the error surfaces at the next sync.
      await backend.run(p);
      const err = await backend.sync().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).program).toContain('aliased_bindings');
      // Reported once; the backend goes on.
      await backend.sync();
      const y = backend.empty([64]);
      await backend.run(scaleProgram(x, y, 2, 'aliased_bindings'));
      expect(Array.from(await y.read())).toEqual(Array.from(await x.read(), (v) => Math.fround(v * 2)));
    });
  });

  it('rejects a program needing an extension the device lacks', async () => {
    await noLeaks(backend, async () => {
      const x = backend.tensor([1], [1]);
      const y = backend.empty([1]);
      const p: WebGpuProgram = {
        ...scaleProgram(x, y, 1, 'needs_feature'),
        enables: ['chromium_imaginary_feature'],
      };
      await expect(backend.run(p)).rejects.toBeInstanceOf(ValidationError);
    });
  });

  it('skips a dispatch with a zero workgroup count, and rejects one past the device limit', async () => {
    await noLeaks(backend, async () => {
      const x = backend.tensor([1, 2], [2]);
      const y = backend.tensor([7, 7], [2]);
      const s0 = backend.stats();
      await backend.run({ ...scaleProgram(x, y, 2), dispatch: [0, 1, 1] });
      expect(backend.stats().dispatches).toBe(s0.dispatches);
      expect(Array.from(await y.read())).toEqual([7, 7]);
      const tooBig = backend.limits.maxWorkgroupsPerDimension + 1;
      await expect(
        backend.run({ ...scaleProgram(x, y, 2), dispatch: [tooBig, 1, 1] }),
      ).rejects.toBeInstanceOf(DeviceLimitError);
    });
  });

  it('turns the WGSL dump on from LONGSEQ_DUMP_WGSL=1', async () => {
    const saved = process.env.LONGSEQ_DUMP_WGSL;
    process.env.LONGSEQ_DUMP_WGSL = '1';
    try {
      const other = await createWebGpuBackend({ device: backend.device });
      expect(other.debug.dumpWgsl).toBe(true);
      other.dispose();
    } finally {
      if (saved === undefined) delete process.env.LONGSEQ_DUMP_WGSL;
      else process.env.LONGSEQ_DUMP_WGSL = saved;
    }
    expect(backend.debug.dumpWgsl).toBe(false);
  });

  it('dumps the final WGSL when debug.dumpWgsl is on', async () => {
    await noLeaks(backend, async () => {
      const lines: string[] = [];
      const { log } = backend.debug;
      backend.debug.dumpWgsl = true;
      backend.debug.log = (m) => lines.push(m);
      try {
        const x = backend.tensor([1], [1]);
        await backend.run(scaleProgram(x, backend.empty([1]), 1, 'dump_me'));
      } finally {
        backend.debug.dumpWgsl = false;
        backend.debug.log = log;
      }
      expect(lines.length).toBe(1);
      expect(lines[0]).toContain('dump_me');
      expect(lines[0]).toContain('var<storage, read> x: array<f32>;');
      expect(lines[0]).toContain('var<uniform> u: Uniforms;');
    });
  });
});

describe('timing', () => {
  it('time() returns wall time and, with timestamp-query, GPU time', async () => {
    const rand = rng(freshSeed());
    await noLeaks(backend, async () => {
      const a = backend.tensor(uniform(rand, 128 * 128), [128, 128]);
      const r = await backend.time(async () => {
        await (await matmul(a, a)).read();
      });
      console.info(`time(): wall ${r.wallMs.toFixed(2)} ms, gpu ${r.gpuMs?.toFixed(3)} ms`);
      expect(r.wallMs).toBeGreaterThan(0);
      if (backend.features.has('timestamp-query')) {
        expect(typeof r.gpuMs).toBe('number');
        expect(r.gpuMs!).toBeGreaterThan(0);
        expect(r.gpuMs!).toBeLessThan(r.wallMs * 2);
      } else {
        expect(r.gpuMs).toBeUndefined();
      }
      await expect(backend.time(() => backend.time(() => undefined))).rejects.toBeInstanceOf(ArgumentError);
    });
  });
});
