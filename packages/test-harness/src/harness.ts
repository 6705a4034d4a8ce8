import type { Backend, DType, MemoryInfo, Shape, Tensor } from '@longseq/backend';
import { afterEach, beforeAll, beforeEach, describe, expect } from 'vitest';
import { type BackendName, getBackend, selectedBackends } from './backends';

export interface BackendContext {
  /** The backend under test (available inside tests and hooks, after beforeAll). */
  readonly backend: Backend;
  readonly name: BackendName;
}

export interface DescribeOptions {
  /** Features the spec needs (e.g. 'workgroup-memory'); backends without them skip it, by declared capability. */
  readonly requires?: readonly string[];
  /** Check after every test that memory() is back where it started (default true). */
  readonly checkLeaks?: boolean;
}

const poisoned = new WeakSet<Backend>();

/**
 * Makes every `empty()` tensor start full of NaN (0x7fffffff for integers), so a kernel
 * that forgets to write an element fails the comparison instead of passing on zeros.
 */
export function poisonOutputs(backend: Backend): void {
  if (poisoned.has(backend)) return;
  poisoned.add(backend);
  const original = backend.empty.bind(backend);
  backend.empty = (shape: Shape, dtype: DType = 'f32'): Tensor => {
    let size = 1;
    for (const d of shape) size *= d;
    if (size === 0) return original(shape, dtype);
    const fill =
      dtype === 'f32' ? new Float32Array(size).fill(Number.NaN) : new Int32Array(size).fill(0x7fffffff);
    return backend.tensor(dtype === 'u32' ? new Uint32Array(fill.buffer) : fill, shape, dtype);
  };
}

/**
 * Runs the same spec once per backend: `describe('<title> [<backend>]')`. The spec gets a
 * context whose `backend` is set before its tests run. Outputs are poisoned and every test
 * must leave memory() as it found it.
 */
export function describeEachBackend(
  title: string,
  spec: (ctx: BackendContext) => void,
  options: DescribeOptions = {},
): void {
  for (const name of selectedBackends()) {
    const ctx = { name } as { backend: Backend; name: BackendName };
    describe(`${title} [${name}]`, () => {
      let before: MemoryInfo;
      beforeAll(async () => {
        ctx.backend = await getBackend(name);
        poisonOutputs(ctx.backend);
      });
      beforeEach((test) => {
        // Declared capabilities decide skips, never test names.
        const missing = (options.requires ?? []).filter((f) => !ctx.backend.features.has(f));
        if (missing.length > 0) test.skip(`${name} lacks ${missing.join(', ')}`);
        before = ctx.backend.memory();
      });
      if (options.checkLeaks !== false) {
        afterEach(() => {
          const after = ctx.backend.memory();
          expect({ tensors: after.tensors, bytes: after.bytes }, `memory leaked on ${name}`).toEqual({
            tensors: before.tensors,
            bytes: before.bytes,
          });
        });
      }
      spec(ctx);
    });
  }
}

/** Downloads a tensor as a host array with its shape, for the references. */
export async function toHost(t: Tensor): Promise<{ shape: number[]; data: Float64Array }> {
  const data = await t.read();
  return { shape: [...t.shape], data: Float64Array.from(data) };
}
