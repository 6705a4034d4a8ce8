import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { inputCopies } from '../src/bench/softmax';
import { plotSvg } from '../src/bench/svg';
import { BufferOutput } from '../src/io';
import { Progress } from '../src/progress';
import { attentionHost, attentionMask, parseAttentionCase } from '../src/verify/attention';
import { goldenDir } from './helpers';

describe('attention mask (bottom-right aligned)', () => {
  const at = (m: Float32Array, nk: number, i: number, j: number) => m[i * nk + j] === 0;

  it('causal with nq < nk lets the last query see every key', () => {
    const m = attentionMask({ nq: 2, nk: 5, causal: true, window: null })!;
    // query 0 sits at key 3, query 1 at key 4.
    expect([0, 1, 2, 3, 4].map((j) => at(m, 5, 0, j))).toEqual([true, true, true, true, false]);
    expect([0, 1, 2, 3, 4].map((j) => at(m, 5, 1, j))).toEqual([true, true, true, true, true]);
  });

  it('causal with nq > nk masks the first queries fully', () => {
    const m = attentionMask({ nq: 4, nk: 2, causal: true, window: null })!;
    // query i sits at key i - 2: queries 0 and 1 see nothing.
    expect([0, 1].map((j) => at(m, 2, 0, j))).toEqual([false, false]);
    expect([0, 1].map((j) => at(m, 2, 1, j))).toEqual([false, false]);
    expect([0, 1].map((j) => at(m, 2, 2, j))).toEqual([true, false]);
  });

  it('window [left, right] keeps p - left <= j <= p + right', () => {
    const m = attentionMask({ nq: 6, nk: 6, causal: false, window: [1, 2] })!;
    expect([0, 1, 2, 3, 4, 5].map((j) => at(m, 6, 2, j))).toEqual([false, true, true, true, true, false]);
  });

  it('no mask without causal or window', () => {
    expect(attentionMask({ nq: 3, nk: 3, causal: false, window: null })).toBeUndefined();
  });
});

describe('host attention reference', () => {
  const golden = JSON.parse(readFileSync(path.join(goldenDir, 'attention.json'), 'utf8')) as {
    cases: unknown[];
  };

  it('in float64 reproduces every golden case (our semantics are the file’s)', () => {
    golden.cases.forEach((raw, i) => {
      const c = parseAttentionCase(raw, i);
      const r = attentionHost(c, (x) => x);
      for (let k = 0; k < c.out.length; k++) expect(Math.abs(r.out[k]! - c.out[k]!)).toBeLessThan(1e-6);
      for (let k = 0; k < c.lse.length; k++) {
        if (c.lse[k] === Number.NEGATIVE_INFINITY) expect(r.lse[k]).toBe(Number.NEGATIVE_INFINITY);
        else expect(Math.abs(r.lse[k]! - c.lse[k]!)).toBeLessThan(1e-6);
      }
    });
  });

  it('in float32 is off by a small but nonzero amount (the baseline the rule scales)', () => {
    const c = parseAttentionCase(golden.cases[2], 2);
    const r = attentionHost(c, Math.fround);
    let worst = 0;
    for (let k = 0; k < c.out.length; k++) worst = Math.max(worst, Math.abs(r.out[k]! - c.out[k]!));
    expect(worst).toBeGreaterThan(0);
    expect(worst).toBeLessThan(1e-4);
  });
});

describe('SVG plot', () => {
  it('draws one line per series with labelled axes', () => {
    const svg = plotSvg(
      [
        {
          label: 'webgpu copy',
          points: [
            { x: 64, y: 0.1 },
            { x: 1024, y: 0.5 },
          ],
        },
        {
          label: 'webgpu online fused',
          points: [
            { x: 64, y: 0.2, note: '1 GB/s' },
            { x: 1024, y: 3 },
          ],
        },
      ],
      {
        title: 'softmax <test>',
        xLabel: 'row length N',
        yLabel: 'median time per call, ms',
        xName: 'N',
        yUnit: 'ms',
      },
    );
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<polyline/g)?.length).toBe(2);
    expect(svg).toContain('row length N (log scale)');
    expect(svg).toContain('median time per call, ms (log scale)');
    expect(svg).toContain('softmax &lt;test&gt;');
    expect(svg).toContain('webgpu online fused N=64: 0.200 ms, 1 GB/s');
    expect(svg).not.toContain('NaN');
  });

  it('draws guides as extra dashed lines in the legend, and says when there is nothing to draw', () => {
    const options = { title: 't', xLabel: 'sequence length L', yLabel: 'ms', logY: true };
    const svg = plotSvg([{ label: 'a', points: [{ x: 8, y: 1 }] }], {
      ...options,
      guide: [{ label: 'c L log L', points: [{ x: 8, y: 2 }] }],
    });
    expect(svg.match(/<polyline/g)?.length).toBe(2);
    expect(svg).toContain('stroke-dasharray="4 4"');
    expect(svg).toContain('>c L log L</text>');
    expect(svg).not.toContain('NaN');
    expect(plotSvg([], options)).toContain('no results');
  });
});

describe('progress bar', () => {
  it('draws on a terminal and stays silent otherwise', () => {
    const tty = new BufferOutput(true);
    const p = new Progress(tty, 4);
    p.tick('webgpu N=64 copy');
    p.tick('webgpu N=64 naive fused');
    p.done();
    expect(tty.text).toContain('[############............] 2/4 webgpu N=64 naive fused');
    const pipe = new BufferOutput(false);
    new Progress(pipe, 4).tick('x');
    expect(pipe.text).toBe('');
  });
});

describe('input rotation', () => {
  it('cycles small inputs through copies spanning more than an L2, and leaves big ones alone', () => {
    expect(inputCopies(64 * 64 * 4)).toBe(16);
    expect(inputCopies(16384 * 256 * 4)).toBe(12);
    expect(inputCopies(16384 * 4096 * 4)).toBe(1);
  });
});
