import { fileURLToPath } from 'node:url';
import { runReadmeExample } from '@longseq/test-harness';
import { expect, it } from 'vitest';
import { readGolden } from './helpers';

it('the README example runs and shows what it says', async () => {
  const logs = await runReadmeExample(fileURLToPath(new URL('../README.md', import.meta.url)));
  expect(logs).toHaveLength(6);
  expect(logs[0]).toBe('mamba attention mamba attention 4 1 4 1');
  expect(logs[1]).toBe('[ 1, 6, 128 ]');
  // transformers' greedy continuation of the same prompt
  const ids = logs[2]!
    .replace(/[[\]\s]/g, '')
    .split(',')
    .map(Number);
  expect(ids).toEqual(readGolden().generate.new_ids);
  expect(logs[3]).toBe('2 5');
  expect(logs[4]).toBe('[ 2, 128 ]');
  expect(logs[5]).toBe('3 6144 22528');
}, 300_000);
