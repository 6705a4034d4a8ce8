import type { Backend } from '@longseq/backend';

/** Every backend and mode the suites run on in Node. gpu.js WebGL2 runs in the browser test. */
export const NODE_BACKENDS = ['webgpu', 'gpujs-webgpu', 'gpujs-webasm', 'gpujs-cpu'] as const;
export type BackendName = (typeof NODE_BACKENDS)[number];

/**
 * The backends a run covers: all of NODE_BACKENDS, or the comma-separated list in
 * LONGSEQ_TEST_BACKENDS (for quick local runs; CI never sets it). A listed backend that
 * cannot be created fails the suite; it is never skipped.
 */
export function selectedBackends(): BackendName[] {
  const env = typeof process !== 'undefined' ? process.env.LONGSEQ_TEST_BACKENDS : undefined;
  if (!env) return [...NODE_BACKENDS];
  const names = env
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names) {
    if (!(NODE_BACKENDS as readonly string[]).includes(n)) {
      throw new Error(
        `LONGSEQ_TEST_BACKENDS: unknown backend ${n}; expected some of ${NODE_BACKENDS.join(', ')}`,
      );
    }
  }
  return names as BackendName[];
}

const cache = new Map<BackendName, Promise<Backend>>();

/** One backend per name per process, created on first use. */
export function getBackend(name: BackendName): Promise<Backend> {
  let b = cache.get(name);
  if (!b) {
    b = createBackend(name);
    cache.set(name, b);
  }
  return b;
}

async function createBackend(name: BackendName): Promise<Backend> {
  if (name === 'webgpu') {
    const { createWebGpuBackend } = await import('@longseq/backend-webgpu');
    return createWebGpuBackend();
  }
  const { createGpuJsBackend } = await import('@longseq/backend-gpujs');
  const mode = name.slice('gpujs-'.length) as 'webgpu' | 'webasm' | 'cpu';
  return createGpuJsBackend({ mode });
}
