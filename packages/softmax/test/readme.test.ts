import { fileURLToPath } from 'node:url';
import { runReadmeExample } from '@longseq/test-harness';
import { expect, it } from 'vitest';

it('the README example runs and shows what it says', async () => {
  const logs = await runReadmeExample(fileURLToPath(new URL('../README.md', import.meta.url)));
  expect(logs).toHaveLength(5);
  expect(logs[0]).toMatch(/Float32Array\(6\) \[\s*0\.7\d+,\s*0\.2\d+,\s*0,\s*0\.2\d+,\s*0\.7\d+,\s*0\s*\]/);
  expect(logs[2]).toMatch(
    /Float32Array\(6\) \[\s*0\.65\d+,\s*0\.24\d+,\s*0\.09\d+,\s*NaN,\s*NaN,\s*NaN\s*\]/,
  );
});
