import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './helpers';

describe('longseq bench paged-kv', () => {
  it('prints the table and meets the issue goals: paged waste < 4%, >= 2x concurrent sequences', async () => {
    const { code, stdout, stderr } = await runCli([
      'bench',
      'paged-kv',
      '--requests',
      '120',
      '--rate',
      '0.5',
      '--blocks',
      '500',
    ]);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/^contiguous\s+\d+\.\d%/m);
    expect(stdout).toMatch(/^paged\s+\d+\.\d%/m);
    const waste = Number(/^paged\s+(\d+\.\d)%/m.exec(stdout)![1]);
    expect(waste).toBeLessThan(4);
    const gain = Number(/(\d+\.\d)x max concurrent sequences/.exec(stdout)![1]);
    expect(gain).toBeGreaterThanOrEqual(2);
  });

  it('--json with parallel sampling reports the sharing, and --svg writes both plots', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'paged-kv-'));
    try {
      const svg = path.join(dir, 'mem.svg');
      const { code, stdout, stderr } = await runCli([
        'bench',
        'paged-kv',
        '--requests',
        '30',
        '--rate',
        '0.2',
        '--n',
        '4',
        '--json',
        '--svg',
        svg,
      ]);
      expect(code, stderr).toBe(0);
      const doc = JSON.parse(stdout);
      expect(doc.benchmark).toBe('paged-kv');
      expect(doc.paged.finished).toBe(30);
      expect(doc.contiguous.finished).toBe(30);
      expect(doc.paged.sharingSavedPct).toBeGreaterThan(10);
      expect(doc.paged.series.length).toBeGreaterThan(10);
      expect(await readFile(svg, 'utf8')).toMatch(/<svg[\s\S]*paged reserved[\s\S]*<\/svg>/);
      expect(await readFile(path.join(dir, 'mem-concurrency.svg'), 'utf8')).toMatch(
        /Sequences running at once/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects bad flags with exit code 2', async () => {
    expect((await runCli(['bench', 'paged-kv', '--n', '2', '--beam', '2'])).code).toBe(2);
    expect((await runCli(['bench', 'paged-kv', '--preemption', 'never'])).code).toBe(2);
  });
});

describe('longseq bench paged-attention', () => {
  it('times paged decode beside a copy and the contiguous flash-attention path, and checks the output', async () => {
    const args = [
      'bench',
      'paged-attention',
      '--seqs',
      '2',
      '--context',
      '70',
      '--heads',
      '4',
      '--kv-heads',
      '2',
      '--head-dim',
      '16',
      '--block-size',
      '8',
      '--repeats',
      '1',
      '--warmup',
      '0',
      '--json',
    ];
    const { code, stdout, stderr } = await runCli(args);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.check.pass).toBe(true);
    const kernels = doc.rows.map((r: { kernel: string }) => r.kernel);
    expect(kernels).toEqual([
      'paged decode (subgroup)',
      'paged decode (thread)',
      'copy (same bytes)',
      'read K + V (sum)',
      'flash-attention contiguous (nq = 1)',
    ]);
    expect(doc.rows[0].pctOfCopy).toBeGreaterThan(0);
    expect(doc.rows[1].pctOfCopy).toBeGreaterThan(0);
    expect(doc.rows[3].pctOfCopy).toBeGreaterThan(0);
    expect(doc.rows[4].ratioToPaged).toBeGreaterThan(0);
    expect(doc.kvBytes).toBe(2 * 2 * 70 * 2 * 16 * 4);
  });
});
