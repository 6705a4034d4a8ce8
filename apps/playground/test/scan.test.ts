/**
 * The selective-scan page in Chromium (headless, WebGPU on SwiftShader): the Hillis-Steele
 * tree has one row per level and its last row equals the sequential scan; on the GPU, the
 * selective channel keeps the spike until the reset token and then forgets it, while the
 * fixed-dt channel has let it fade, and both match the float64 reference.
 */
import { describe, expect, it } from 'vitest';
import { clickRunAndWait, dataset, errorText, usePage } from './chromium';

const { page } = usePage('#/scan');

const data = (id: string) => dataset(page, id);

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
      await clickRunAndWait(page, 110_000);
      expect(await errorText(page)).toBe('');
      const r = await data('result');
      expect(r.pass).toBe('true');
      expect(Number(r.selectiveKept)).toBeGreaterThan(0.99);
      expect(Number(r.fixedKept)).toBeLessThan(0.1);
      expect(Number(r.selectiveAfterReset)).toBeLessThan(0.05 * Number(r.selectivePeak));
      expect(await page.locator('[data-testid=states] polyline').count()).toBe(3);
    });
  }
});
