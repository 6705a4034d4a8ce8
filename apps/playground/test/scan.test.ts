/**
 * The selective-scan page in Chromium (headless, WebGPU on SwiftShader): the Hillis-Steele
 * tree has one row per level and its last row equals the sequential scan; on the GPU, the
 * selective channel keeps the spike until the reset token and then forgets it, while the
 * fixed-dt channel has let it fade, and both match the float64 reference.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Browser, openBrowser } from './chromium';

let browser: Browser | undefined;
let page: Page;

beforeAll(async () => {
  browser = await openBrowser();
  page = browser.page;
  await page.goto(`${browser.served.url}#/scan`);
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

describe('playground selective-scan page in Chromium', () => {
  it('draws the scan tree: log2(L) + 1 rows, each cell covering the right steps', async () => {
    for (const L of [8, 13]) {
      await page.fill('[data-testid=tree-length]', String(L));
      await page.dispatchEvent('[data-testid=tree-length]', 'change');
      const levels = 1 + Math.ceil(Math.log2(L));
      expect((await data('tree-holder')).levels).toBe(String(levels));
      expect(Number((await data('tree-holder')).maxDiff)).toBeLessThan(1e-12);
      expect(await page.locator('[data-testid=tree] g.cell').count()).toBe(levels * L);
      // The last row: cell i covers steps 0..i (every prefix).
      const last = await page
        .locator(`[data-testid=tree] g.cell[data-level="${levels - 1}"]`)
        .evaluateAll((cells) =>
          cells.map((c) => [(c as SVGElement).dataset.first, (c as SVGElement).dataset.last]),
        );
      expect(last).toEqual(Array.from({ length: L }, (_, i) => ['0', String(i)]));
    }
  });

  for (const backend of ['webgpu', 'gpujs-webgl2']) {
    it(`on ${backend}: the selective dt keeps the spike and forgets it at the reset; the fixed dt lets it fade`, {
      timeout: 120_000,
    }, async () => {
      await page.selectOption('[data-testid=backend]', backend);
      await page.click('[data-testid=run]');
      await page.waitForSelector(
        '[data-testid=status][data-state=done], [data-testid=status][data-state=error]',
        {
          timeout: 110_000,
        },
      );
      const error = await page.locator('[data-testid=error]').count();
      expect(error > 0 ? await page.textContent('[data-testid=error]') : '').toBe('');
      const r = await data('result');
      expect(r.pass).toBe('true');
      expect(Number(r.selectiveKept)).toBeGreaterThan(0.99);
      expect(Number(r.fixedKept)).toBeLessThan(0.1);
      expect(Number(r.selectiveAfterReset)).toBeLessThan(0.05 * Number(r.selectivePeak));
      expect(await page.locator('[data-testid=states] polyline').count()).toBe(3);
    });
  }
});
