import {
  caseSeed,
  describeEachBackend,
  expectClose,
  freshSeed,
  randomFloats,
  rng,
} from '@longseq/test-harness';
import { expect, it } from 'vitest';
import {
  SCAN_DIRECTIONS,
  gridScanOrder,
  inverseOrder,
  patchIndices,
  vimConfig,
  vimGather,
  vimGatherRef,
  vimScanMerge,
  vimScanMergeRef,
  vimTokens,
  vimTokensRef,
} from '../src';

const seed = freshSeed();

describeEachBackend('Vim kernels against their float64 references', (ctx) => {
  it('vimGather: im2col of overlapping 3x3 patches of 2 images with 2 channels, exactly', async () => {
    const random = rng(caseSeed(seed, 'gather'));
    const config = vimConfig({ imgSize: 7, patchSize: 3, stride: 2, channels: 2 });
    const images = { data: randomFloats(2 * 2 * 7 * 7, random), shape: [2, 2, 7, 7] };
    const idx = patchIndices(config);
    const index = { data: idx, shape: [9, 18] };
    const x = ctx.backend.tensor(images.data, images.shape);
    const i = ctx.backend.tensor(idx, index.shape, 'i32');
    const out = await vimGather(x, i);
    expect(out.shape).toEqual([2, 9, 18]);
    expect(Array.from(await out.read())).toEqual(Array.from(vimGatherRef(images, index).data));
    for (const t of [x, i, out]) t.dispose();
  });

  it('vimGather: index -1 gives 0, a batch of 3, odd sizes', async () => {
    const random = rng(caseSeed(seed, 'gather-1'));
    const xs = { data: randomFloats(3 * 13, random), shape: [3, 13] };
    const idx = Int32Array.from({ length: 11 }, (_, j) => (j % 4 === 0 ? -1 : Math.floor(random() * 13)));
    const x = ctx.backend.tensor(xs.data, xs.shape);
    const i = ctx.backend.tensor(idx, [11], 'i32');
    const out = await vimGather(x, i);
    expect(Array.from(await out.read())).toEqual(
      Array.from(vimGatherRef(xs, { data: idx, shape: [11] }).data),
    );
    for (const t of [x, i, out]) t.dispose();
  });

  for (const variant of [
    { name: 'middle class token and position embedding', cls: true, clsIndex: 4, pos: true },
    { name: 'class token at the head, no position embedding', cls: true, clsIndex: 0, pos: false },
    { name: 'no class token, position embedding', cls: false, clsIndex: -1, pos: true },
  ]) {
    it(`vimTokens: ${variant.name}`, async () => {
      const s = caseSeed(seed, variant.name);
      const random = rng(s);
      const [B, P, M] = [2, 9, 5];
      const L = P + (variant.cls ? 1 : 0);
      const patches = { data: randomFloats(B * P * M, random), shape: [B, P, M] };
      const bias = randomFloats(M, random);
      const cls = randomFloats(M, random);
      const pos = randomFloats(L * M, random);
      const t = {
        patches: ctx.backend.tensor(patches.data, patches.shape),
        bias: ctx.backend.tensor(bias, [M]),
        cls: ctx.backend.tensor(cls, [1, 1, M]),
        pos: ctx.backend.tensor(pos, [1, L, M]),
      };
      const out = await vimTokens(t.patches, t.bias, {
        ...(variant.cls ? { cls: t.cls, clsIndex: variant.clsIndex } : {}),
        ...(variant.pos ? { pos: t.pos } : {}),
      });
      expect(out.shape).toEqual([B, L, M]);
      const opts = {
        ...(variant.cls ? { cls, clsIndex: variant.clsIndex } : {}),
        ...(variant.pos ? { pos } : {}),
      };
      expectClose(
        await out.read(),
        vimTokensRef(patches, bias, opts).data,
        vimTokensRef(patches, bias, opts, { precision: 'f32' }).data,
        {
          label: variant.name,
          seed: s,
        },
      );
      out.dispose();
      for (const x of Object.values(t)) x.dispose();
    });
  }

  for (const [scan, tokenMajor] of [
    ['bi', false],
    ['cross4', false],
    ['cross4', true],
  ] as const) {
    it(`vimScanMerge: the ${scan} directions of a 3 x 3 grid with the middle class token merged into token order${tokenMajor ? ', token-major [B, L, D]' : ''}`, async () => {
      const s = caseSeed(seed, scan);
      const random = rng(s);
      const order = gridScanOrder(3, 3, 4, SCAN_DIRECTIONS[scan]);
      const [B, K, D, L] = [2, order.directions.length, 7, order.length];
      const y = { data: randomFloats(B * K * D * L, random), shape: [B, K, D, L] };
      const inv = { data: order.directions.flatMap((d) => inverseOrder(d.order)), shape: [K, L] };
      const yt = ctx.backend.tensor(y.data, y.shape);
      const it_ = ctx.backend.tensor(inv.data, inv.shape, 'i32');
      const out = await vimScanMerge(yt, it_, 1 / K, { tokenMajor });
      expect(out.shape).toEqual(tokenMajor ? [B, L, D] : [B, D, L]);
      expectClose(
        await out.read(),
        vimScanMergeRef(y, inv, 1 / K, { tokenMajor }).data,
        vimScanMergeRef(y, inv, 1 / K, { precision: 'f32', tokenMajor }).data,
        {
          label: scan,
          seed: s,
        },
      );
      for (const t of [yt, it_, out]) t.dispose();
    });
  }
});
