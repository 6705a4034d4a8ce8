import type { Backend, GpuJsProgram, Shape, Tensor } from '@longseq/backend';

/** What `this` is inside a gpu.js kernel: the output element this thread computes. */
export interface KernelThis {
  readonly thread: { readonly x: number };
}

/** A flat input as a kernel sees it (a texture, buffer or array, indexed like an array). */
export type Flat = ArrayLike<number>;

/**
 * Allocates the output, runs the program built for it, and frees the output again if the
 * run throws, so a failing kernel leaks nothing.
 */
export async function runToNew(
  backend: Backend,
  shape: Shape,
  build: (out: Tensor) => GpuJsProgram,
): Promise<Tensor> {
  const out = backend.empty(shape);
  try {
    await backend.run(build(out));
  } catch (err) {
    out.dispose();
    throw err;
  }
  return out;
}

/**
 * Gives a helper the name kernels call it by. gpu.js links helpers by name, and source
 * names are not stable: esbuild renames a function expression whose name is also a
 * top-level symbol (`function unaryOp` became `unaryOp2`), and minifiers drop or mangle
 * names. The backend passes `fn.name` to gpu.js explicitly, so this name is the one that counts.
 */
// biome-ignore lint/complexity/noBannedTypes: gpu.js takes any function source
export function named<F extends Function>(name: string, fn: F): F {
  Object.defineProperty(fn, 'name', { value: name, configurable: true });
  return fn;
}
