import { type Comparison, compareToReference } from '@longseq/backend';
import { expect } from 'vitest';
import { type GpuJsBackend, type GpuJsMode, createGpuJsBackend } from '../src';

/** Every mode Node can run. webgl2 needs a browser and is tested there. */
export const NODE_MODES: readonly GpuJsMode[] = ['webgpu', 'webasm', 'cpu'];

const backends = new Map<GpuJsMode, Promise<GpuJsBackend>>();

/** One backend per mode for a test file; creating one that should work and does not fails the test. */
export function backendFor(mode: GpuJsMode): Promise<GpuJsBackend> {
  let b = backends.get(mode);
  if (!b) {
    b = createGpuJsBackend({ mode });
    backends.set(mode, b);
  }
  return b;
}

export async function disposeAll(): Promise<void> {
  for (const b of backends.values()) (await b).dispose();
  backends.clear();
}

/** Fresh random data every run (never zeros): uniform in [lo, hi), nudged off 0. */
export function random(n: number, lo = -2, hi = 2): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = lo + Math.random() * (hi - lo);
    if (v === 0) v = (hi - lo) / 7;
    out[i] = v;
  }
  return out;
}

export function randomInts(n: number, lo: number, hi: number): number[] {
  return Array.from({ length: n }, () => lo + Math.floor(Math.random() * (hi - lo)));
}

/** Asserts the test rule, reporting the max error first (tolerance per DESIGN.md). */
export function expectClose(
  what: string,
  actual: ArrayLike<number>,
  ref64: ArrayLike<number>,
  ref32: ArrayLike<number>,
  options?: { factor?: number; atol?: number },
): Comparison {
  const c = compareToReference(actual, ref64, ref32, options);
  if (!c.pass) {
    const i = c.worstIndex;
    console.error(
      `${what}: max error ${c.maxError} allowed ${c.allowed} (baseline ${c.baselineError}); ` +
        `at ${i}: got ${actual[i]}, ref64 ${ref64[i]}, ref32 ${ref32[i]}; ${c.reason ?? ''}`,
    );
  }
  expect(c.pass, `${what}: ${c.reason ?? ''}`).toBe(true);
  return c;
}
