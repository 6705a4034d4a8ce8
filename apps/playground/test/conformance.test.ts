/**
 * Conformance in a real browser, on the backends only a browser has: gpu.js WebGL2 and the
 * browser's own WebGPU (on SwiftShader here), plus gpu.js WebGPU as bundled (minified) by Vite,
 * which the Node suites never see. Loads conformance.html once per backend; the
 * page runs every primitive op and softmax case (src/conformance/cases.ts) on fresh seeded
 * data and reports each by the test rule. A backend that cannot be created is a failure,
 * never a skip. Replay a draw with LONGSEQ_SEED (passed to the page as ?seed=).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConformanceReport } from '../src/conformance/main';
import { type Browser, openBrowser } from './chromium';

let browser: Browser | undefined;

beforeAll(async () => {
  browser = await openBrowser();
}, 300_000);

afterAll(async () => {
  await browser?.close();
});

/** Opens conformance.html for `backend` in a fresh tab and waits for its report. */
async function runConformance(backend: string): Promise<{ report: ConformanceReport; errors: string[] }> {
  const b = browser!;
  const page = await b.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  const seed = process.env.LONGSEQ_SEED ? `&seed=${Number(process.env.LONGSEQ_SEED) >>> 0}` : '';
  try {
    await page.goto(`${b.served.url}conformance.html?backend=${backend}${seed}`);
    try {
      await page.waitForFunction(() => window.__conformance?.done === true, undefined, { timeout: 100_000 });
    } catch (err) {
      const partial = await page.evaluate(() => window.__conformance);
      const last = partial?.cases.at(-1)?.name ?? 'none';
      throw new Error(
        `conformance page for ${backend} did not finish (seed ${partial?.seed}, ${partial?.cases.length ?? 0} cases done, last '${last}'); console: ${errors.join(' | ')}; ${err}`,
      );
    }
    const report = (await page.evaluate(() => window.__conformance))!;
    // The same report is on the page for a person to read.
    const state = await page.getAttribute('[data-testid=conformance]', 'data-state');
    expect(state).toBe('done');
    return { report, errors };
  } finally {
    await page.close();
  }
}

function describeFailures(report: ConformanceReport, errors: string[]): string {
  const failing = report.cases.filter((c) => !c.pass);
  // Shader compile errors carry the whole shader; the page's JSON keeps it, the message the start.
  const short = (r = '') => (r.length > 400 ? `${r.slice(0, 400)}…` : r);
  const lines = failing.map(
    (c) => `  ${c.name}: ${short(c.reason)} (max error ${c.maxError}, allowed ${c.allowed})`,
  );
  return (
    `${report.backend ?? report.requested}: ${failing.length} of ${report.cases.length} cases failed; ` +
    `replay with LONGSEQ_SEED=${report.seed}\n${lines.join('\n')}` +
    (errors.length ? `\nconsole: ${errors.join(' | ')}` : '')
  );
}

describe('conformance of the primitive ops and softmax in Chromium', () => {
  for (const [param, name] of [
    ['webgl2', 'gpujs-webgl2'],
    ['webgpu', 'webgpu'],
    ['gpujs-webgpu', 'gpujs-webgpu'],
  ] as const) {
    it(`passes every case on ${name}`, { timeout: 150_000 }, async () => {
      const { report, errors } = await runConformance(param);
      console.log(
        `conformance ${report.backend ?? param}: seed ${report.seed}, ${report.cases.length} cases in ${(report.ms / 1000).toFixed(1)} s`,
      );
      expect(report.error, `seed ${report.seed}; console: ${errors.join(' | ')}`).toBeNull();
      expect(report.backend).toBe(name);
      // Every case ran: the page's list is the whole suite and none was dropped.
      expect(report.total).toBeGreaterThan(80);
      expect(report.cases.length).toBe(report.total);
      const failing = report.cases.filter((c) => !c.pass);
      expect(
        failing.map((c) => c.name),
        describeFailures(report, errors),
      ).toEqual([]);
    });
  }
});
