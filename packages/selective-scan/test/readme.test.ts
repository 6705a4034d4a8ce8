import { fileURLToPath } from 'node:url';
import { runReadmeExample } from '@longseq/test-harness';
import { expect, it } from 'vitest';

it('the README example runs and shows what it says', async () => {
  const logs = await runReadmeExample(fileURLToPath(new URL('../README.md', import.meta.url)));
  expect(logs).toHaveLength(3);
  const numbers = (s: string) => (s.match(/-?\d+(\.\d+)?(e-?\d+)?/g) ?? []).map(Number);
  const y = numbers(logs[0]!.replace(/^Float32Array\(8\)/, ''));
  const ref = numbers(logs[2]!.replace(/^Float64Array\(8\)/, ''));
  expect(y).toHaveLength(8);
  expect(numbers(logs[1]!.replace(/^Float32Array\(4\)/, ''))).toHaveLength(4);
  for (let i = 0; i < 8; i++) expect(y[i]).toBeCloseTo(ref[i]!, 5);
  // Channel 0 keeps its first input: tiny dt (softplus(-4)) on steps 1 and 2 holds the state.
  expect(y[1]! / y[0]!).toBeGreaterThan(0.95);
});
