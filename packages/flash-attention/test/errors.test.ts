/**
 * Bad input: every check throws its typed error, naming the argument, before any GPU work
 * (no tensor is allocated by a failed call).
 */
import {
  ArgumentError,
  type Backend,
  DeviceLimitError,
  DTypeError,
  ShapeError,
  type Tensor,
} from '@longseq/backend';
import { describeEachBackend } from '@longseq/test-harness';
import { expect, it } from 'vitest';
import { attention, attentionBackward, attentionVarlen } from '../src/index';

function filled(backend: Backend, shape: number[], dtype: 'f32' | 'i32' = 'f32'): Tensor {
  const size = shape.reduce((a, x) => a * x, 1);
  return backend.tensor(
    Array.from({ length: size }, (_, i) => ((i * 7) % 11) / 11 - 0.5),
    shape,
    dtype,
  );
}

describeEachBackend('attention bad input', (ctx) => {
  const cases: [
    string,
    (b: Backend) => { args: Tensor[]; run: (t: Tensor[]) => Promise<unknown> },
    unknown,
    RegExp,
  ][] = [
    [
      'mismatched batch',
      (b) => ({
        args: [filled(b, [2, 2, 4, 16]), filled(b, [1, 2, 4, 16])],
        run: ([q, k]) => attention(q!, k!, k!),
      }),
      ShapeError,
      /^k: expected shape batch 2/,
    ],
    [
      'mismatched head dim',
      (b) => ({
        args: [filled(b, [1, 2, 4, 16]), filled(b, [1, 2, 4, 32])],
        run: ([q, k]) => attention(q!, k!, k!),
      }),
      ShapeError,
      /^k: expected shape head dim 16/,
    ],
    [
      'v shape differs from k',
      (b) => ({
        args: [filled(b, [1, 2, 4, 16]), filled(b, [1, 2, 4, 16]), filled(b, [1, 2, 5, 16])],
        run: ([q, k, v]) => attention(q!, k!, v!),
      }),
      ShapeError,
      /^v: /,
    ],
    [
      'heads not a multiple of kvHeads',
      (b) => ({
        args: [filled(b, [1, 3, 4, 16]), filled(b, [1, 2, 4, 16])],
        run: ([q, k]) => attention(q!, k!, k!),
      }),
      ShapeError,
      /^q: expected shape a head count that is a multiple of k's 2 heads/,
    ],
    [
      'wrong rank',
      (b) => ({
        args: [filled(b, [2, 4, 16]), filled(b, [1, 2, 4, 16])],
        run: ([q, k]) => attention(q!, k!, k!),
      }),
      ShapeError,
      /^q: /,
    ],
    [
      'head dim over the limit',
      (b) => ({ args: [filled(b, [1, 1, 2, 272])], run: ([q]) => attention(q!, q!, q!) }),
      DeviceLimitError,
      /^q head dim: 272 exceeds the device limit max head dim = 256/,
    ],
    [
      'head dim under 16',
      (b) => ({ args: [filled(b, [1, 1, 2, 8])], run: ([q]) => attention(q!, q!, q!) }),
      ShapeError,
      /head dim \(last axis\) in 16\.\.256/,
    ],
    [
      'wrong dtype',
      (b) => ({
        args: [filled(b, [1, 1, 2, 16]), filled(b, [1, 1, 2, 16], 'i32')],
        run: ([q, k]) => attention(q!, k!, q!),
      }),
      DTypeError,
      /^k: expected dtype f32, got i32/,
    ],
    [
      'negative window',
      (b) => ({ args: [filled(b, [1, 1, 2, 16])], run: ([q]) => attention(q!, q!, q!, { window: [-1, 0] }) }),
      ArgumentError,
      /^options\.window: /,
    ],
    [
      'fractional window',
      (b) => ({
        args: [filled(b, [1, 1, 2, 16])],
        run: ([q]) => attention(q!, q!, q!, { window: [1.5, 0] }),
      }),
      ArgumentError,
      /^options\.window: /,
    ],
    [
      'seqlensQ out of range',
      (b) => ({
        args: [filled(b, [2, 1, 3, 16])],
        run: ([q]) => attention(q!, q!, q!, { seqlensQ: [3, 4] }),
      }),
      ArgumentError,
      /^options\.seqlensQ: expected 2 integers in 0\.\.3/,
    ],
    [
      'seqlensK of the wrong length',
      (b) => ({ args: [filled(b, [2, 1, 3, 16])], run: ([q]) => attention(q!, q!, q!, { seqlensK: [1] }) }),
      ArgumentError,
      /^options\.seqlensK: /,
    ],
    [
      'cuSeqlensQ not ending at the token count',
      (b) => ({
        args: [filled(b, [5, 1, 16])],
        run: ([q]) => attentionVarlen(q!, q!, q!, { cuSeqlensQ: [0, 2, 4], cuSeqlensK: [0, 2, 5] }),
      }),
      ArgumentError,
      /^options\.cuSeqlensQ: /,
    ],
    [
      'cuSeqlensK decreasing',
      (b) => ({
        args: [filled(b, [5, 1, 16])],
        run: ([q]) => attentionVarlen(q!, q!, q!, { cuSeqlensQ: [0, 2, 5], cuSeqlensK: [0, 3, 2, 5] }),
      }),
      ArgumentError,
      /^options\.cuSeqlensK: /,
    ],
    [
      'maxSeqlenQ below the longest sequence',
      (b) => ({
        args: [filled(b, [5, 1, 16])],
        run: ([q]) =>
          attentionVarlen(q!, q!, q!, { cuSeqlensQ: [0, 2, 5], cuSeqlensK: [0, 2, 5], maxSeqlenQ: 2 }),
      }),
      ArgumentError,
      /^options\.maxSeqlenQ: /,
    ],
    [
      'naive on packed sequences',
      (b) => ({
        args: [filled(b, [5, 1, 16])],
        run: ([q]) =>
          attentionVarlen(q!, q!, q!, { cuSeqlensQ: [0, 5], cuSeqlensK: [0, 5], algorithm: 'naive' }),
      }),
      ArgumentError,
      /^options\.algorithm: /,
    ],
    [
      'unknown algorithm',
      (b) => ({
        args: [filled(b, [1, 1, 2, 16])],
        run: ([q]) => attention(q!, q!, q!, { algorithm: 'fast' as never }),
      }),
      ArgumentError,
      /^options\.algorithm: /,
    ],
    [
      'ALiBi slopes of the wrong count',
      (b) => ({
        args: [filled(b, [1, 2, 2, 16])],
        run: ([q]) => attention(q!, q!, q!, { alibiSlopes: [1] }),
      }),
      ArgumentError,
      /^options\.alibiSlopes: expected 2 finite numbers/,
    ],
    [
      'negative softcap',
      (b) => ({ args: [filled(b, [1, 1, 2, 16])], run: ([q]) => attention(q!, q!, q!, { softcap: -1 }) }),
      ArgumentError,
      /^options\.softcap: /,
    ],
    [
      'tile that is not a power of two',
      (b) => ({
        args: [filled(b, [1, 1, 2, 16])],
        run: ([q]) => attention(q!, q!, q!, { tile: { br: 24 } }),
      }),
      ArgumentError,
      /^options\.tile\.br: /,
    ],
    [
      // No backend under test offers chromium-experimental-subgroup-matrix (SwiftShader
      // does not; gpu.js has no subgroups): the opt-in variant names the missing feature.
      'subgroup-matrix variant without the device feature',
      (b) => ({
        args: [filled(b, [1, 1, 2, 16])],
        run: ([q]) => attention(q!, q!, q!, { variant: 'subgroup-matrix' }),
      }),
      ArgumentError,
      /^options\.variant: expected 'auto', 'tiled' or 'split' \((the device lacks the WebGPU feature 'chromium-experimental-subgroup-matrix'|the gpujs\S* backend has no subgroup matrices)/,
    ],
    [
      'backward: lse of the wrong shape',
      (b) => ({
        args: [filled(b, [1, 1, 3, 16]), filled(b, [1, 1, 2])],
        run: ([q, lse]) => attentionBackward(q!, q!, q!, q!, q!, lse!),
      }),
      ShapeError,
      /^lse: expected shape \[1, 1, 3\]/,
    ],
    [
      'backward: dOut of the wrong shape',
      (b) => ({
        args: [filled(b, [1, 1, 3, 16]), filled(b, [1, 1, 3]), filled(b, [1, 1, 2, 16])],
        run: ([q, lse, dOut]) => attentionBackward(q!, q!, q!, q!, dOut!, lse!),
      }),
      ShapeError,
      /^dOut: /,
    ],
  ];
  for (const [name, make, type, message] of cases) {
    it(name, async () => {
      const { backend } = ctx;
      const { args, run } = make(backend);
      const before = backend.memory().tensors;
      try {
        const err = await run(args).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(type as never);
        expect((err as Error).message).toMatch(message);
        expect(backend.memory().tensors).toBe(before);
      } finally {
        for (const t of args) t.dispose();
      }
    });
  }

  it('a tile too large for the device is a DeviceLimitError', async () => {
    const { backend } = ctx;
    if (backend.kind !== 'webgpu') {
      // gpu.js has no workgroup tiles: the option is accepted and ignored.
      const q = filled(backend, [1, 1, 2, 16]);
      const out = await attention(q, q, q, { tile: { br: 1024, bc: 1024 } });
      out.dispose();
      q.dispose();
      return;
    }
    const q = filled(backend, [1, 1, 2, 16]);
    try {
      await expect(attention(q, q, q, { tile: { br: 1024, bc: 1024, tr: 1, tc: 1 } })).rejects.toBeInstanceOf(
        DeviceLimitError,
      );
    } finally {
      q.dispose();
    }
  });
});
