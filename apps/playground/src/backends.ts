import type { Backend } from '@longseq/backend';

/** Backends a visitor can pick, with what each one is. */
export const BACKEND_CHOICES = [
  { name: 'webgpu', label: 'WebGPU (WGSL)' },
  { name: 'gpujs-webgl2', label: 'gpu.js · WebGL2' },
  { name: 'gpujs-webgpu', label: 'gpu.js · WebGPU' },
  { name: 'gpujs-cpu', label: 'gpu.js · CPU' },
] as const;

export type BackendChoice = (typeof BACKEND_CHOICES)[number]['name'];

const cache = new Map<BackendChoice, Promise<Backend>>();

/**
 * The backend of a given name, created once per page load (a WebGPU device and gpu.js'
 * compiled kernels are worth keeping). The packages are imported on first use, so gpu.js
 * is only downloaded by a visitor who picks it. A failed creation is not cached.
 */
export function getBackend(name: BackendChoice): Promise<Backend> {
  let pending = cache.get(name);
  if (!pending) {
    pending = create(name);
    cache.set(name, pending);
    pending.catch(() => cache.delete(name));
  }
  return pending;
}

async function create(name: BackendChoice): Promise<Backend> {
  if (name === 'webgpu') {
    const { createWebGpuBackend } = await import('@longseq/backend-webgpu');
    return createWebGpuBackend();
  }
  const { createGpuJsBackend } = await import('@longseq/backend-gpujs');
  const mode = name.slice('gpujs-'.length) as 'webgl2' | 'webgpu' | 'cpu';
  return createGpuJsBackend({ mode });
}
