import type { Backend, BackendKind } from './backend';
import { KernelNotFoundError, KernelRegisteredError } from './errors';
import type { Tensor } from './tensor';

/** A kernel implementation: takes validated inputs and parsed attributes, returns its outputs. */
export type KernelFunc<Attrs = unknown> = (
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: Attrs,
) => Promise<Tensor | Tensor[]>;

export interface KernelConfig<Attrs = unknown> {
  readonly kernelName: string;
  readonly backendKind: BackendKind;
  readonly run: KernelFunc<Attrs>;
}

const registry = new Map<string, KernelConfig<never>>();
const key = (kernelName: string, backendKind: string) => `${backendKind}/${kernelName}`;

/** Registers a kernel for one backend kind. Registering the same pair twice throws. */
export function registerKernel<Attrs>(config: KernelConfig<Attrs>): void {
  const k = key(config.kernelName, config.backendKind);
  if (registry.has(k)) throw new KernelRegisteredError(config.kernelName, config.backendKind);
  registry.set(k, config as KernelConfig<never>);
}

/** Registers each kernel not registered yet; for packages that register lazily on first use. */
export function registerKernelsOnce(configs: readonly KernelConfig<never>[]): void {
  for (const c of configs) if (!registry.has(key(c.kernelName, c.backendKind))) registerKernel(c);
}

export function unregisterKernel(kernelName: string, backendKind: BackendKind): boolean {
  return registry.delete(key(kernelName, backendKind));
}

export function getKernel<Attrs = unknown>(
  kernelName: string,
  backendKind: BackendKind,
): KernelConfig<Attrs> {
  const k = registry.get(key(kernelName, backendKind));
  if (!k) throw new KernelNotFoundError(kernelName, backendKind);
  return k as unknown as KernelConfig<Attrs>;
}

export function hasKernel(kernelName: string, backendKind: BackendKind): boolean {
  return registry.has(key(kernelName, backendKind));
}

/** Every registered (backendKind, kernelName) pair, for `longseq info`. */
export function listKernels(): { kernelName: string; backendKind: BackendKind }[] {
  return [...registry.values()].map((c) => ({ kernelName: c.kernelName, backendKind: c.backendKind }));
}

/** Looks up the kernel for `backend`'s kind and runs it. */
export async function runKernel<Attrs>(
  kernelName: string,
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: Attrs,
): Promise<Tensor | Tensor[]> {
  return getKernel<Attrs>(kernelName, backend.kind).run(backend, inputs, attrs);
}
