/**
 * End to end: the built playground in Debian's Chromium (headless, WebGPU on SwiftShader),
 * driven through playwright-core. Runs softmax on WebGPU and on gpu.js WebGL2 and asserts
 * the page reports a result that passes the test rule. WebGPU missing in the browser is a
 * failure, never a skip: the playground exists to run on it.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { distDir, usePage } from './chromium';

const session = usePage('#/softmax');
const { page } = session;

interface PageResult {
  readonly state: string | null;
  readonly status: string | null;
  readonly pass: string | null;
  readonly maxError: number;
  readonly allowed: number;
  readonly backend: string | null;
  readonly error: string | null;
}

/** Fills the form, clicks Run and waits for the page to finish (done or error). */
async function runOnPage(
  backend: string,
  settings: { rows: number; length: number; algorithm: string; temperature: number; range?: number },
): Promise<PageResult> {
  await page.selectOption('[data-testid=backend]', backend);
  await page.fill('[data-testid=rows]', String(settings.rows));
  await page.fill('[data-testid=length]', String(settings.length));
  await page.selectOption('[data-testid=algorithm]', settings.algorithm);
  await page.fill('[data-testid=temperature]', String(settings.temperature));
  await page.fill('[data-testid=range]', String(settings.range ?? 4));
  await page.click('[data-testid=run]');
  try {
    await page.waitForSelector(
      '[data-testid=status][data-state=done], [data-testid=status][data-state=error]',
      {
        timeout: 90_000,
      },
    );
  } catch (err) {
    // Say where the page got stuck (a form that never submitted, a run that never ended).
    const status = await page.textContent('[data-testid=status]');
    throw new Error(
      `the page did not finish: status '${status}'; console: ${session.errors.join(' | ')}; ${err}`,
    );
  }
  return page.evaluate(() => {
    const q = (id: string) => document.querySelector(`[data-testid=${id}]`) as HTMLElement | null;
    const result = q('result');
    return {
      state: q('status')?.dataset.state ?? null,
      status: q('status')?.textContent ?? null,
      pass: result?.dataset.pass ?? null,
      maxError: Number(result?.dataset.maxError),
      allowed: Number(result?.dataset.allowed),
      backend: result?.dataset.backend ?? null,
      error: q('error')?.textContent ?? null,
    };
  });
}

describe('playground bundle', () => {
  it('holds no Node-only code (Dawn stays out of the browser)', () => {
    const assets = readdirSync(path.join(distDir, 'assets')).filter((f) => f.endsWith('.js'));
    for (const f of assets) {
      const text = readFileSync(path.join(distDir, 'assets', f), 'utf8');
      expect(text, f).not.toContain('dawn.node');
      expect(text, f).not.toContain('createRequire');
    }
  });
});

describe('playground softmax page in Chromium', () => {
  it('has WebGPU (navigator.gpu and an adapter)', async () => {
    const adapter = await page.evaluate(async () => {
      const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
      if (!gpu) return 'navigator.gpu is missing';
      const a = await gpu.requestAdapter();
      return a ? 'ok' : 'requestAdapter returned null';
    });
    expect(adapter).toBe('ok');
  });

  it('runs online softmax on WebGPU and passes the test rule', { timeout: 150_000 }, async () => {
    const r = await runOnPage('webgpu', { rows: 5, length: 300, algorithm: 'online', temperature: 0.7 });
    expect(r.error, `page error: ${r.error}; console: ${session.errors.join(' | ')}`).toBeNull();
    expect(r.state).toBe('done');
    expect(r.backend).toBe('webgpu');
    expect(r.pass).toBe('true');
    expect(Number.isFinite(r.maxError)).toBe(true);
    expect(r.maxError).toBeLessThan(1e-5);
    expect(r.maxError).toBeLessThanOrEqual(r.allowed);
    // The learner's view: a bar chart of row 0 and its values, which sum to 1.
    expect(await page.locator('[data-testid=chart] rect').count()).toBe(128);
    expect(await page.textContent('[data-testid=values]')).toMatch(/sum = (1\.0000|0\.9999)/);
  });

  it('reports FAIL when naive softmax overflows (logits up to 100)', { timeout: 150_000 }, async () => {
    const r = await runOnPage('webgpu', {
      rows: 2,
      length: 64,
      algorithm: 'naive',
      temperature: 1,
      range: 100,
    });
    expect(r.state).toBe('done');
    expect(r.pass).toBe('false');
    expect(await page.textContent('[data-testid=verdict]')).toBe('FAIL');
  });

  it('runs safe softmax on gpu.js WebGL2 and passes the test rule', { timeout: 150_000 }, async () => {
    const r = await runOnPage('gpujs-webgl2', { rows: 3, length: 77, algorithm: 'safe', temperature: 1 });
    expect(r.error, `page error: ${r.error}; console: ${session.errors.join(' | ')}`).toBeNull();
    expect(r.state).toBe('done');
    expect(r.backend).toBe('gpujs-webgl2');
    expect(r.pass).toBe('true');
    expect(Number.isFinite(r.maxError)).toBe(true);
    expect(r.maxError).toBeLessThan(1e-5);
  });
});
