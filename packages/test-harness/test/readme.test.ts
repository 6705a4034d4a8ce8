import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { runReadmeExample } from '../src';

// The backend packages cannot depend on the harness (it depends on them), so their README
// examples run here.
const readme = (pkg: string) => fileURLToPath(new URL(`../../${pkg}/README.md`, import.meta.url));

it('the @longseq/backend README example runs', async () => {
  const logs = await runReadmeExample(readme('backend'));
  expect(logs.join('\n')).toMatch(/\[ 2, 2 \]/);
  expect(logs.join('\n')).toMatch(/tensors: 0/);
});

it('the @longseq/backend-webgpu README example runs', async () => {
  const logs = await runReadmeExample(readme('backend-webgpu'));
  expect(logs[0]).toMatch(/\[ 2, 2 \] Float32Array\(4\) \[ 4, 5, 10, 11 \]/);
});

it('the @longseq/backend-gpujs README example runs', async () => {
  const logs = await runReadmeExample(readme('backend-gpujs'));
  expect(logs[0]).toMatch(/Float32Array\(4\) \[ 3\.99\d+, 5, 10, 11 \]/);
});
