import { fileURLToPath } from 'node:url';
import { runReadmeExample } from '@longseq/test-harness';
import { expect, it } from 'vitest';

it('the README example runs and shows what it says', async () => {
  const logs = await runReadmeExample(fileURLToPath(new URL('../README.md', import.meta.url)));
  expect(logs).toEqual(['6 2', '1', '[ 2, 4, 8 ]', 'true true']);
});
