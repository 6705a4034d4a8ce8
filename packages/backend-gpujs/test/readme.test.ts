import { gelu, matmul, scope } from '@longseq/backend';
import { expect, it } from 'vitest';
import { createGpuJsBackend } from '../src';

it('README example runs', async () => {
  const backend = await createGpuJsBackend({ mode: 'webasm' });
  const y = await scope(async () => {
    const a = backend.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = backend.tensor([1, 0, 0, 1, 1, 1], [3, 2]);
    return gelu(await matmul(a, b));
  });
  const got = Array.from(await y.read());
  console.log(got);
  expect(got.map((v) => Math.round(v))).toEqual([4, 5, 10, 11]);
  backend.dispose();
});
