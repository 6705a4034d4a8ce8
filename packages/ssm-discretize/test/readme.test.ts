import { fileURLToPath } from 'node:url';
import { runReadmeExample } from '@longseq/test-harness';
import { expect, it } from 'vitest';

it('the README example runs and shows what it says', async () => {
  const logs = await runReadmeExample(fileURLToPath(new URL('../README.md', import.meta.url)));
  expect(logs).toHaveLength(4);
  // Bilinear A-bar of LegS N = 3: lower triangular, diagonal (1 - dt(n+1)/2) / (1 + dt(n+1)/2).
  expect(logs[0]).toMatch(/Float64Array\(9\) \[\s*0\.9048,\s*0,\s*0,/);
  // dimpulse: D = 0, then C B-bar = B-bar_0 ~ 0.1 (dt sqrt(1) e^-dt-ish).
  expect(logs[1]).toMatch(/Float64Array\(4\) \[\s*0,\s*0\.09\d+,\s*0\.08\d+,\s*0\.07\d+\s*\]/);
  expect(logs[2]).toMatch(
    /Float64Array\(2\) \[ 0\.6065\d+, 0\.3678\d+ \] Float64Array\(2\) \[ 0\.5, 0\.5 \]/,
  );
  const diff = Number(/max \|conv - scan\| = (\S+)/.exec(logs[3]!)?.[1]);
  expect(diff).toBeLessThan(1e-4);
});
