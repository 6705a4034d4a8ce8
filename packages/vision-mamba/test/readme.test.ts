import { fileURLToPath } from 'node:url';
import { loadCheckpoint, nodeFileSource } from '@longseq/nn';
import { runReadmeExample } from '@longseq/test-harness';
import { expect, it } from 'vitest';
import { preprocessImage, vimConfigFromJson, vimRef } from '../src';
import { GOLDEN, goldenConfig } from './helpers';

it('the README example runs and shows what it says', async () => {
  const logs = await runReadmeExample(fileURLToPath(new URL('../README.md', import.meta.url)));
  expect(logs).toHaveLength(4);
  expect(logs[0]).toBe('32 17 8');
  expect(logs[1]).toBe('[ 1, 10 ]');
  // The top class of the same picture by the float64 reference.
  const width = 48;
  const height = 40;
  const rgba = new Uint8ClampedArray(width * height * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 7) % 256));
  const image = preprocessImage({ data: rgba, width, height }, { size: 32, channels: 3 });
  const checkpoint = await loadCheckpoint(nodeFileSource(GOLDEN));
  const { logits } = vimRef(vimConfigFromJson(goldenConfig()), (n, s) => checkpoint.read(n, s), {
    data: image,
    shape: [1, 3, 32, 32],
  });
  const values = Array.from(logits);
  expect(logs[2]).toBe(String(values.indexOf(Math.max(...values))));
  expect(logs[3]).toBe('row [ 0, 1, 2 ] row-reversed [ 16, 15, 14 ]');
});
