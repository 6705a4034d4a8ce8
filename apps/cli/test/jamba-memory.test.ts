import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { JambaCache, jambaConfig } from '@longseq/jamba';
import { describe, expect, it } from 'vitest';
import { createBackend } from '../src/backends';
import { JAMBA_V01, jambaMemory } from '../src/bench/jamba-memory';
import { runCli } from './helpers';

const GIB = 2 ** 30;

describe('longseq bench jamba-memory', () => {
  it('reproduces the Jamba paper at 256K: 4 GiB of KV against 32 GiB for the all-attention model', () => {
    const report = jambaMemory({ ...JAMBA_V01, contexts: [1000, 262144] });
    const at = (model: string, context: number) =>
      report.rows.find((r) => r.model === model && r.context === context)!;
    const jamba = at('jamba', 262144);
    const transformer = at('transformer', 262144);
    expect(jamba.attentionLayers).toBe(4);
    expect(jamba.mambaLayers).toBe(28);
    expect(transformer.attentionLayers).toBe(32);
    expect(jamba.kvBlocks).toBe(262144 / 16);
    expect(jamba.kvBytes / GIB).toBe(4);
    expect(transformer.kvBytes / GIB).toBe(32);
    // 28 Mamba layers x 8192 channels x (3 conv + 16 SSM) x 2 bytes, the same at every length
    expect(jamba.stateBytes).toBe(28 * 8192 * 19 * 2);
    expect(at('jamba', 1000).stateBytes).toBe(jamba.stateBytes);
    expect(transformer.stateBytes).toBe(0);
    // a context that is not a block multiple takes ceil(tokens / blockSize) blocks
    expect(at('jamba', 1000).kvBlocks).toBe(Math.ceil(1000 / 16));
    expect(report.ratios[1]!.ratio).toBeGreaterThan(7.9);
    expect(report.ratios[1]!.ratio).toBeLessThan(8);
  });

  it('counts blocks from the allocator as the context grows, for other block sizes and periods', () => {
    const config = {
      ...JAMBA_V01,
      layers: 6,
      attnPeriod: 3,
      attnOffset: 1,
      blockSize: 7,
      contexts: [1, 7, 8, 50],
    };
    const report = jambaMemory(config);
    const jamba = report.rows.filter((r) => r.model === 'jamba');
    expect(jamba.map((r) => r.kvBlocks)).toEqual([1, 1, 2, 8]);
    expect(jamba[0]!.attentionLayers).toBe(2);
    expect(jamba[0]!.blockBytes).toBe(2 * 2 * 7 * 8 * 128 * 2);
  });

  it("agrees with @longseq/jamba's JambaCache accounting (f32) as a sequence grows", async () => {
    const model = jambaConfig({
      dModel: 64,
      nLayer: 6,
      numHeads: 4,
      numKvHeads: 2,
      attnLayerPeriod: 3,
      attnLayerOffset: 2,
    });
    const contexts = [5, 16, 17, 40];
    const report = jambaMemory({
      layers: 6,
      hidden: 64,
      kvHeads: 2,
      headDim: 16,
      attnPeriod: 3,
      attnOffset: 2,
      dState: model.dState,
      dConv: model.dConv,
      expand: model.expand,
      dtypeBytes: 4,
      blockSize: 16,
      contexts,
    });
    const backend = await createBackend('gpujs-cpu');
    const cache = new JambaCache(backend, model, { maxSequences: 1, blockSize: 16, maxTokens: 40 });
    try {
      const { seqId } = await cache.add(Array.from({ length: contexts[0]! }, (_, i) => i));
      for (const context of contexts) {
        while (cache.length(seqId) < context) await cache.append([seqId], [cache.length(seqId)]);
        const mem = cache.memory();
        const row = report.rows.find((r) => r.model === 'jamba' && r.context === context)!;
        expect(mem.kvBlocksInUse).toBe(row.kvBlocks);
        expect(mem.kvBytesInUse).toBe(row.kvBytes);
        expect(mem.mambaStateBytesInUse).toBe(row.stateBytes);
        expect(mem.bytesInUse).toBe(row.totalBytes);
      }
    } finally {
      cache.dispose();
      backend.dispose();
    }
  });

  it('prints the table, --json and --svg', async () => {
    const table = await runCli(['bench', 'jamba-memory', '--contexts', '1024,262144']);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^\s*256K\s+16384\s+4\.00 GiB/m);
    expect(table.stdout).toMatch(/transformer KV 32\.00 GiB/);

    const dir = await mkdtemp(path.join(tmpdir(), 'jamba-memory-'));
    try {
      const svg = path.join(dir, 'mem.svg');
      const { code, stdout, stderr } = await runCli([
        'bench',
        'jamba-memory',
        '--contexts',
        '4096,1024',
        '--json',
        '--svg',
        svg,
      ]);
      expect(code, stderr).toBe(0);
      const doc = JSON.parse(stdout);
      expect(doc.benchmark).toBe('jamba-memory');
      expect(doc.config.contexts).toEqual([1024, 4096]);
      expect(doc.rows).toHaveLength(4);
      expect(await readFile(svg, 'utf8')).toMatch(/<svg[\s\S]*jamba Mamba states[\s\S]*<\/svg>/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects an attention offset outside its period with a usage error', async () => {
    const { code, stderr } = await runCli([
      'bench',
      'jamba-memory',
      '--attn-period',
      '4',
      '--attn-offset',
      '4',
    ]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--attn-offset/);
  });
});
