import type { Backend, GpuJsProgram, Shape, Tensor } from '@longseq/backend';

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
