import { type Comparison, type MemoryInfo, scope } from '@longseq/backend';
import { expect } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index';

/** Tests need a real adapter (SwiftShader in CI): a missing one fails loudly, never skips. */
export function makeBackend(): Promise<WebGpuBackend> {
  return createWebGpuBackend();
}

/** A small seeded PRNG (mulberry32), so a failure can be replayed from the printed seed. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A fresh seed per run: tests see new data every time, and print the seed when they fail. */
export function freshSeed(): number {
  return (Math.random() * 2 ** 31) >>> 0;
}

/** Uniform floats in [lo, hi), rounded to f32 so the references see exactly what the GPU sees. */
export function uniform(rand: () => number, n: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rand();
  return out;
}

export function expectClose(cmp: Comparison, what: string, seed: number): void {
  const msg = `${what} (seed ${seed}): maxError ${cmp.maxError}, allowed ${cmp.allowed}; ${cmp.reason ?? ''}`;
  expect(cmp.pass, msg).toBe(true);
}

/** Runs `fn` in a scope and checks that memory() is back where it started afterwards. */
export async function noLeaks(backend: WebGpuBackend, fn: () => Promise<unknown>): Promise<void> {
  const before: MemoryInfo = backend.memory();
  await scope(async () => {
    await fn();
  });
  const after = backend.memory();
  expect({ tensors: after.tensors, allocations: after.allocations, bytes: after.bytes }).toEqual({
    tensors: before.tensors,
    allocations: before.allocations,
    bytes: before.bytes,
  });
}
