/**
 * The SSM discretization page in Chromium (headless, WebGPU on SwiftShader): for an
 * initialization and dt, the discretized eigenvalues are drawn inside the unit circle, and
 * the output computed by the recurrence and by the FFT convolution on the GPU agree and match
 * the float64 reference.
 */
import { describe, expect, it } from 'vitest';
import { clickRunAndWait, dataset, errorText, usePage } from './chromium';

const { page } = usePage('#/ssm');

const data = (id: string) => dataset(page, id);

async function run(settings: Record<string, string>): Promise<Record<string, string | undefined>> {
  for (const [name, value] of Object.entries(settings)) {
    if (['backend', 'init', 'method'].includes(name)) await page.selectOption(`[data-testid=${name}]`, value);
    else await page.fill(`[data-testid=${name}]`, value);
  }
  await clickRunAndWait(page, 110_000);
  expect(await errorText(page)).toBe('');
  return data('result');
}

describe('playground SSM page in Chromium', () => {
  for (const [backend, init, method] of [
    ['webgpu', 'lin', 'zoh'],
    ['webgpu', 'legs', 'bilinear'],
    ['gpujs-webgl2', 'inv', 'zoh'],
    ['gpujs-webgl2', 'real', 'mamba'],
  ] as const) {
    it(`${backend}, ${init}, ${method}: eigenvalues inside the unit circle, recurrence = FFT convolution`, {
      timeout: 120_000,
    }, async () => {
      const r = await run({ backend, init, method, modes: '6', dt: '0.1', length: '200' });
      expect(r.pass).toBe('true');
      expect(r.eigenvalues).toBe('6');
      expect(r.inside).toBe('6');
      expect(await page.locator('[data-testid=eigenvalues] circle.eigenvalue').count()).toBe(6);
      expect(await page.locator('[data-testid=eigenvalues] [data-unit-circle]').count()).toBe(1);
      // The two ways agree to float32 rounding of the output's size.
      expect(Number(r.maxDiff)).toBeLessThan(1e-4 * Math.max(1, Number(r.maxAbs)));
      expect(Number(r.maxAbs)).toBeGreaterThan(0);
      expect(await page.locator('[data-testid=output] polyline').count()).toBe(2);
      expect(await page.locator('[data-testid=kernel] polyline').count()).toBe(1);
    });
  }
});
