import { fileURLToPath } from 'node:url';
import { runReadmeExample } from '@longseq/test-harness';
import { expect, it } from 'vitest';

it('the README example runs and shows what it says', async () => {
  const logs = await runReadmeExample(fileURLToPath(new URL('../README.md', import.meta.url)));
  expect(logs).toHaveLength(4);
  expect(logs[0]).toMatch(/Float32Array\(8\) \[\s*1,\s*2,\s*3,\s*4,\s*2\.5,\s*7\.5,\s*17\.5,\s*27\.5\s*\]/);
  expect(logs[1]).toMatch(/Float64Array\(8\) \[\s*1,\s*2,\s*3,\s*4,\s*2\.5,\s*7\.5,\s*17\.5,\s*27\.5\s*\]/);
  expect(logs[2]).toMatch(/Float32Array\(2\) \[\s*5,\s*37\.5\s*\]/);
  expect(logs[3]).toMatch(/Float32Array\(2\) \[\s*3,\s*9\s*\]/);
});
