/**
 * The FlashAttention page in Chromium (headless, WebGPU on SwiftShader): the tiling grid
 * skips the blocks above the causal diagonal and outside a sliding window, the row trace
 * ends at the reference logsumexp, and the live run on WebGPU gives a flash result that
 * passes the test rule, with flash's extra memory growing linearly and naive's quadratically.
 */
import { describe, expect, it } from 'vitest';
import { clickRunAndWait, dataset, errorText, usePage } from './chromium';

const { page } = usePage('#/attention');

const data = (id: string) => dataset(page, id);

async function set(id: string, value: string) {
  await page.fill(`[data-testid=${id}]`, value);
  await page.dispatchEvent(`[data-testid=${id}]`, 'change');
}

describe('playground FlashAttention page in Chromium', () => {
  it('draws the tiling: causal skips the blocks above the diagonal, a window skips those far left', async () => {
    await set('tile-n', '256');
    await set('tile-br', '64');
    await set('tile-bc', '32');
    // 4 x 8 blocks; causal: query block r visits key blocks 0 .. 2r + 1; the last two hold the
    // diagonal (masked inside), the 2r before them are whole: 12 whole, 8 partial, 12 skipped.
    let t = await data('tiling-holder');
    expect([t.full, t.partial, t.skipped]).toEqual(['12', '8', '12']);
    expect(await page.locator('[data-testid=tiling] g.block').count()).toBe(32);
    await page.check('[data-testid=window]');
    await page.dispatchEvent('[data-testid=window]', 'change');
    await set('window-left', '40');
    t = await data('tiling-holder');
    expect(Number(t.skipped)).toBeGreaterThan(12);
    const trace = await data('trace');
    expect(Number(trace.steps)).toBeGreaterThan(0);
    expect(Number(trace.lseError)).toBeLessThan(1e-9);
  });

  it('on webgpu: flash passes the test rule; extra memory linear for flash, quadratic for naive', {
    timeout: 240_000,
  }, async () => {
    await page.selectOption('[data-testid=backend]', 'webgpu');
    await set('max-n', '256');
    await clickRunAndWait(page, 230_000);
    expect(await errorText(page)).toBe('');
    expect((await data('result')).pass).toBe('true');
    const rows = await page
      .locator('[data-testid=live] tr[data-n]')
      .evaluateAll((trs) => trs.map((tr) => ({ ...(tr as HTMLElement).dataset })));
    expect(rows).toHaveLength(6);
    const extra = (n: number, a: string) =>
      Number(rows.find((r) => r.n === String(n) && r.algorithm === a)!.extra);
    expect(extra(256, 'naive')).toBeGreaterThanOrEqual(3.5 * extra(128, 'naive'));
    expect(extra(256, 'flash')).toBeLessThanOrEqual(2 * extra(128, 'flash') + 256);
    expect(extra(256, 'flash')).toBeLessThan(extra(256, 'naive') / 100);
  });
});
