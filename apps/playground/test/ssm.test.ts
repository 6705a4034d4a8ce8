/**
 * The SSM discretization page in Chromium (headless, WebGPU on SwiftShader): for an
 * initialization and dt, the discretized eigenvalues are drawn inside the unit circle, and
 * the output computed by the recurrence and by the FFT convolution on the GPU agree and match
 * the float64 reference.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Browser, openBrowser } from './chromium';

let browser: Browser | undefined;
let page: Page;

beforeAll(async () => {
  browser = await openBrowser();
  page = browser.page;
  await page.goto(`${browser.served.url}#/ssm`);
  await page.waitForSelector('[data-testid=page][data-ready=true]', { timeout: 30_000 });
}, 300_000);

afterAll(async () => {
  await browser?.close();
});

const data = (id: string) =>
  page.evaluate(
    (testId) => ({ ...(document.querySelector(`[data-testid=${testId}]`) as HTMLElement).dataset }),
    id,
  );

async function run(settings: Record<string, string>): Promise<Record<string, string | undefined>> {
  for (const [name, value] of Object.entries(settings)) {
    if (['backend', 'init', 'method'].includes(name)) await page.selectOption(`[data-testid=${name}]`, value);
    else await page.fill(`[data-testid=${name}]`, value);
  }
  await page.click('[data-testid=run]');
  await page.waitForSelector(
    '[data-testid=status][data-state=done], [data-testid=status][data-state=error]',
    {
      timeout: 110_000,
    },
  );
  const error = await page.locator('[data-testid=error]').count();
  expect(error > 0 ? await page.textContent('[data-testid=error]') : '').toBe('');
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
