/**
 * The paged-kv page in Chromium (headless, WebGPU on SwiftShader): the block animation steps
 * through a trace, shows shared blocks for parallel samples, reports the simulation's memory
 * numbers, and the GPU check finds paged decode attention equal to contiguous attention.
 */
import { describe, expect, it } from 'vitest';
import { clickRunAndWait, dataset, errorText, usePage } from './chromium';

const { page } = usePage('#/paged-kv');

const data = (id: string) => dataset(page, id);

describe('playground paged-kv page in Chromium', () => {
  it('draws the block pool and the memory chart, and the summary meets the goals', async () => {
    expect(await page.locator('[data-testid=grid] g.block').count()).toBe(64);
    expect(await page.locator('[data-testid=memory] polyline').count()).toBe(4);
    const summary = await data('summary');
    expect(Number(summary.pagedWaste)).toBeLessThan(Number(summary.contiguousWaste));
    expect(Number(summary.gain)).toBeGreaterThanOrEqual(2);
  });

  it('steps through the trace: blocks get allocated, and parallel samples share blocks', async () => {
    for (let i = 0; i < 5; i++) await page.click('[data-testid=step]');
    expect((await data('stats')).step).toBe('5');
    const used = await page.locator('[data-testid=grid] g.block:not([data-refs="0"])').count();
    expect(used).toBeGreaterThan(0);
    await page.selectOption('[data-testid=samples]', '3');
    expect((await data('stats')).step).toBe('0');
    for (let i = 0; i < 5; i++) await page.click('[data-testid=step]');
    expect(Number((await data('stats')).shared)).toBeGreaterThan(0);
    expect(await page.locator('[data-testid=grid] g.block[data-refs="3"]').count()).toBeGreaterThan(0);
  });

  it('plays to the end of the trace', { timeout: 60_000 }, async () => {
    await page.click('[data-testid=reset]');
    await page.click('[data-testid=play]');
    await page.waitForSelector('[data-testid=stats][data-done=true]', { timeout: 50_000 });
    expect(await page.locator('[data-testid=grid] g.block:not([data-refs="0"])').count()).toBe(0);
  });

  for (const backend of ['webgpu', 'gpujs-webgl2']) {
    it(`run on GPU (${backend}): paged decode equals contiguous attention`, {
      timeout: 150_000,
    }, async () => {
      await page.selectOption('[data-testid=gpu-backend]', backend);
      await clickRunAndWait(page, 140_000, 'gpu-');
      const message = await errorText(page, 'gpu-error');
      expect(message).toBe('');
      const result = await data('gpu-result');
      expect(result.pass).toBe('true');
      expect(Number(result.maxDiff)).toBeLessThan(1e-5);
      expect(Number.isFinite(Number(result.maxError))).toBe(true);
    });
  }
});
