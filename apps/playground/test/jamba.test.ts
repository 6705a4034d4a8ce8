/**
 * The jamba page in Chromium (headless, WebGPU on SwiftShader): the shipped char-level Jamba
 * writes greedily exactly what transformers wrote for the same prompt (expected.json), a
 * seeded sampled run repeats itself, and the cache picture agrees with the text: the attention
 * layer holds ceil(tokens / blockSize) KV blocks with the rest in its last block, the Mamba
 * layers hold fixed states, and the Transformer of the same depth holds 4x the Jamba's KV.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { clickRunAndWait, dataset, errorText, usePage } from './chromium';

const { page } = usePage('#/jamba');
const expected = JSON.parse(
  readFileSync(new URL('../public/models/jamba-chars/jamba/expected.json', import.meta.url), 'utf8'),
) as { prompt: string; generate: { new_ids: number[]; new_text: string } };

interface LayerData {
  kind: string;
  blocks: number;
  fill: number;
  bytes: number;
}

const layers = (): Promise<LayerData[]> =>
  page.evaluate(() =>
    Array.from(document.querySelectorAll('[data-testid=cache] g.layer'), (g) => {
      const d = (g as SVGGElement).dataset;
      return { kind: d.kind!, blocks: Number(d.blocks), fill: Number(d.fill), bytes: Number(d.bytes) };
    }),
  );

async function generate(options: {
  temperature: string;
  tokens: string;
  seed?: string;
  prompt?: string;
  backend?: string;
}) {
  await page.selectOption('[data-testid=backend]', options.backend ?? 'webgpu');
  await page.fill('[data-testid=prompt]', options.prompt ?? expected.prompt);
  await page.fill('[data-testid=temperature]', options.temperature);
  await page.fill('[data-testid=max-tokens]', options.tokens);
  if (options.seed) await page.fill('[data-testid=seed]', options.seed);
  await clickRunAndWait(page, 240_000);
  expect(await errorText(page)).toBe('');
  return dataset(page, 'output');
}

describe('playground jamba page in Chromium', () => {
  it('greedy: writes what transformers wrote, and the cache picture matches the text', {
    timeout: 250_000,
  }, async () => {
    const n = expected.generate.new_ids.length;
    const out = await generate({ temperature: '0', tokens: String(n) });
    expect(out.generated).toBe(expected.generate.new_text);
    expect(JSON.parse(out.ids!)).toEqual(expected.generate.new_ids);

    // the cache holds the prompt and every new token but the last (not fed back yet)
    const tokens = expected.prompt.length + n - 1;
    const cache = await dataset(page, 'cache');
    expect(Number(cache.tokens)).toBe(tokens);
    const blockSize = Number(cache.blockSize);
    const all = await layers();
    expect(all.map((l) => l.kind)).toEqual(['mamba', 'mamba', 'attention', 'mamba']);
    const attention = all.find((l) => l.kind === 'attention')!;
    expect(attention.blocks).toBe(Math.ceil(tokens / blockSize));
    expect(attention.fill).toBe(tokens - (attention.blocks - 1) * blockSize);
    const drawn = await page.locator('[data-testid=cache] g.layer[data-kind=attention] rect.block').count();
    expect(drawn).toBe(attention.blocks);
    // Mamba layers: conv [D, K-1] and SSM [D, N] states, f32: 256 x (3 + 16) x 4 bytes each, no blocks
    for (const l of all.filter((x) => x.kind === 'mamba')) {
      expect(l.blocks).toBe(0);
      expect(l.bytes).toBe(256 * 19 * 4);
    }
    // K and V of 2 heads x 32, f32, per token slot of each block
    expect(attention.bytes).toBe(attention.blocks * blockSize * 2 * 2 * 32 * 4);
    const memory = await dataset(page, 'memory');
    const jamba = Number(memory.jambaBytes);
    expect(jamba).toBe(all.reduce((s, l) => s + l.bytes, 0));
    expect(Number(memory.transformerBytes)).toBe(4 * attention.bytes);
  });

  it('sampled with a seed: the same text twice, and the cache grows by blocks', {
    timeout: 250_000,
  }, async () => {
    const first = await generate({
      temperature: '0.8',
      tokens: '20',
      seed: '7',
      prompt: 'In the beginning ',
    });
    const second = await generate({
      temperature: '0.8',
      tokens: '20',
      seed: '7',
      prompt: 'In the beginning ',
    });
    expect(first.generated).toHaveLength(20);
    expect(second.generated).toBe(first.generated);
    const tokens = 'In the beginning '.length + 20 - 1;
    const attention = (await layers()).find((l) => l.kind === 'attention')!;
    expect(attention.blocks).toBe(Math.ceil(tokens / 16));
  });

  it('greedy on gpu.js (WebGL2): the same text as transformers', { timeout: 150_000 }, async () => {
    const n = expected.generate.new_ids.length;
    const out = await generate({ temperature: '0', tokens: String(n), backend: 'gpujs-webgl2' });
    expect(out.generated).toBe(expected.generate.new_text);
  });

  it('a character outside the vocabulary is a typed error naming the prompt', {
    timeout: 60_000,
  }, async () => {
    await page.fill('[data-testid=prompt]', 'Hello 42');
    await clickRunAndWait(page, 50_000);
    expect(await errorText(page)).toMatch(/prompt/);
    expect(await errorText(page)).toMatch(/"4"/);
  });
});
