import { fileURLToPath } from 'node:url';
import { runReadmeExample } from '@longseq/test-harness';
import { expect, it } from 'vitest';

it('the README example runs and shows what it says', async () => {
  const logs = await runReadmeExample(fileURLToPath(new URL('../README.md', import.meta.url)));
  expect(logs).toEqual([
    '[ 1, 4, 6, 16 ] [ 1, 4, 6 ]',
    'true',
    '[ 1, 4, 6, 16 ] [ 1, 2, 6, 16 ] [ 1, 2, 6, 16 ]',
    '[ 6, 4, 16 ]',
  ]);
});
