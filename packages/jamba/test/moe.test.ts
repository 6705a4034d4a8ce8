import { type Backend, type Program, runKernel, type Tensor } from '@longseq/backend';
import { loadCheckpoint, nodeFileSource } from '@longseq/nn';
import { describeEachBackend, expectClose, freshSeed, randomFloats, rng } from '@longseq/test-harness';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { GOLDEN, readGolden } from './helpers';
import {
  JambaModel,
  JambaMoeDecode,
  type JambaMoeWeights,
  jambaCheckpointReader,
  jambaRef,
  type MoeRouting,
  moeAccumulate,
  moeForward,
  moeRef,
  registerJambaKernels,
  routeTokens,
} from './imports';

const seed = freshSeed();

/** Random MoE weights: M, F not multiples of any tile; E experts. */
function randomMoe(backend: Backend, M: number, F: number, E: number, s: number) {
  const random = rng(s);
  const host = {
    router: randomFloats(E * M, random, -1, 1),
    experts: Array.from({ length: E }, () => ({
      gate: randomFloats(F * M, random, -0.5, 0.5),
      up: randomFloats(F * M, random, -0.5, 0.5),
      down: randomFloats(M * F, random, -0.5, 0.5),
    })),
  };
  const device: JambaMoeWeights = {
    kind: 'moe',
    router: backend.tensor(host.router, [E, M]),
    experts: host.experts.map((e) => ({
      kind: 'mlp' as const,
      gateProj: backend.tensor(e.gate, [F, M]),
      upProj: backend.tensor(e.up, [F, M]),
      downProj: backend.tensor(e.down, [M, F]),
    })),
  };
  const dispose = () => {
    device.router.dispose();
    for (const e of device.experts!) for (const t of [e.gateProj, e.upProj, e.downProj]) t.dispose();
  };
  return { host, device, dispose };
}

/** Every device allocation a program binds. */
function boundHandles(program: Program): unknown[] {
  if (program.kind === 'webgpu') return [...program.inputs, ...program.outputs].map((b) => b.tensor.handle);
  return [...program.inputs, program.output].map((t) => t.handle);
}

describeEachBackend('moeAccumulate', (ctx) => {
  for (const hasAcc of [true, false]) {
    it(`adds one expert's rows into their tokens with routing weights (${hasAcc ? 'onto acc' : 'first expert'}), T = 7, M = 13`, async () => {
      const random = rng(seed ^ (hasAcc ? 1 : 2));
      const T = 7;
      const M = 13;
      const rowOf = Int32Array.from([2, -1, 0, -1, 1, -1, 3]);
      const n = 4;
      const acc = randomFloats(T * M, random);
      const y = randomFloats(n * M, random);
      const w = randomFloats(T, random, 0, 1);
      const ref = new Float64Array(T * M);
      const ref32 = new Float32Array(T * M);
      for (let t = 0; t < T; t++)
        for (let m = 0; m < M; m++) {
          const base = hasAcc ? acc[t * M + m]! : 0;
          const add = rowOf[t]! >= 0 ? w[t]! * y[rowOf[t]! * M + m]! : 0;
          ref[t * M + m] = base + add;
          ref32[t * M + m] = Math.fround(base + Math.fround(add));
        }
      const b = ctx.backend;
      const tensors = [
        b.tensor(acc, [T, M]),
        b.tensor(y, [n, M]),
        b.tensor(rowOf, [T], 'i32'),
        b.tensor(w, [T]),
      ];
      const out = await moeAccumulate(hasAcc ? tensors[0] : undefined, tensors[1]!, tensors[2]!, tensors[3]!);
      expect(out.shape).toEqual([T, M]);
      expectClose(await out.read(), ref, ref32, { seed, label: 'moeAccumulate' });
      out.dispose();
      for (const t of tensors) t.dispose();
    });
  }

  it('refuses bad shapes and dtypes before any GPU work, naming the argument', async () => {
    const b = ctx.backend;
    const y = b.tensor(new Float32Array(6).fill(1), [2, 3]);
    const rowOf = b.tensor([0, 1, -1], [3], 'i32');
    const w = b.tensor([0.5, 0.5, 0.5], [3]);
    const badW = b.tensor([0.5, 0.5], [2]);
    const badAcc = b.tensor(new Float32Array(6), [2, 3]);
    const floatRows = b.tensor([0, 1, 0], [3]);
    const run = vi.spyOn(b, 'run');
    try {
      await expect(moeAccumulate(undefined, y, rowOf, badW)).rejects.toMatchObject({
        name: 'ShapeError',
        argument: 'weight',
      });
      await expect(moeAccumulate(badAcc, y, rowOf, w)).rejects.toMatchObject({
        name: 'ShapeError',
        argument: 'acc',
      });
      await expect(moeAccumulate(undefined, y, floatRows, w)).rejects.toMatchObject({
        name: 'DTypeError',
        argument: 'rowOf',
      });
      expect(run).not.toHaveBeenCalled();
    } finally {
      run.mockRestore();
      for (const t of [y, rowOf, w, badW, badAcc, floatRows]) t.dispose();
    }
  });
});

describeEachBackend('moeForward (grouped experts)', (ctx) => {
  it('equals the float64 MoE reference: the same routing (softmax top-k, not renormalized) and outputs', async () => {
    const [T, M, F, E, k] = [9, 19, 27, 5, 2];
    const moe = randomMoe(ctx.backend, M, F, E, seed);
    const x = randomFloats(T * M, rng(seed + 7));
    const xt = ctx.backend.tensor(x, [T, M]);
    try {
      const { output, routing } = await moeForward(xt, moe.device, k);
      const ref = moeRef(x, T, moe.host, { M, F, topK: k });
      const ref32 = moeRef(x, T, moe.host, { M, F, topK: k }, { precision: 'f32' });
      expect(Array.from(routing.experts)).toEqual(Array.from(ref.routing.experts));
      for (let i = 0; i < T * k; i++) expect(routing.weights[i]).toBeCloseTo(ref.routing.weights[i]!, 5);
      // the weights of a token's choices are softmax probabilities: they sum to less than 1
      expect(routing.weights[0]! + routing.weights[1]!).toBeLessThan(1);
      expectClose(await output.read(), ref.output, ref32.output, { seed, label: 'moeForward' });
      output.dispose();
    } finally {
      xt.dispose();
      moe.dispose();
    }
  });

  it('an expert that no token chose launches no work: its weights are never bound', async () => {
    const [T, M, F, E, k] = [2, 11, 16, 6, 2];
    const moe = randomMoe(ctx.backend, M, F, E, seed + 3);
    const xt = ctx.backend.tensor(randomFloats(T * M, rng(seed + 4)), [T, M]);
    const bound = new Set<unknown>();
    const names: string[] = [];
    const original = ctx.backend.run.bind(ctx.backend);
    const run = vi.spyOn(ctx.backend, 'run').mockImplementation((program: Program) => {
      for (const h of boundHandles(program)) bound.add(h);
      names.push(program.name);
      return original(program);
    });
    try {
      const { output, routing } = await moeForward(xt, moe.device, k);
      output.dispose();
      const used = routing.tokensOf.map((list) => list.length > 0);
      expect(used.filter(Boolean).length).toBeLessThanOrEqual(T * k);
      expect(used.filter((u) => !u).length).toBeGreaterThanOrEqual(E - T * k);
      moe.device.experts!.forEach((e, i) => {
        for (const t of [e.gateProj, e.upProj, e.downProj] as Tensor[])
          expect(bound.has(t.handle), `expert ${i} (${used[i] ? 'used' : 'unused'})`).toBe(used[i]);
      });
      // one combine per expert with tokens
      expect(names.filter((n) => n === 'jamba_moe_accumulate')).toHaveLength(used.filter(Boolean).length);
    } finally {
      run.mockRestore();
      xt.dispose();
      moe.dispose();
    }
  });

  it("on stacked experts (WebGPU's layout): the per-expert outputs exactly, only the experts with tokens copied out", async () => {
    const [T, M, F, E, k] = [3, 11, 9, 6, 2];
    const moe = randomMoe(ctx.backend, M, F, E, seed + 21);
    const b = ctx.backend;
    const stack = (part: 'gate' | 'up' | 'down') =>
      Float32Array.from(moe.host.experts.flatMap((e) => Array.from(e[part])));
    const stacks = {
      gate: b.tensor(stack('gate'), [E * F, M]),
      up: b.tensor(stack('up'), [E * F, M]),
      down: b.tensor(stack('down'), [E * M, F]),
    };
    const xt = b.tensor(randomFloats(T * M, rng(seed + 22)), [T, M]);
    const names: string[] = [];
    const original = b.run.bind(b);
    const run = vi.spyOn(b, 'run').mockImplementation((program: Program) => {
      names.push(program.name);
      return original(program);
    });
    try {
      const before = b.memory().bytes;
      const got = await moeForward(xt, { kind: 'moe', router: moe.device.router, stacked: stacks }, k);
      run.mockRestore();
      // the scratch weights went with the call
      expect(b.memory().bytes - before).toBe(4 * T * M);
      const used = got.routing.tokensOf.filter((list) => list.length > 0).length;
      expect(used).toBeLessThan(E);
      expect(names.filter((n) => n === 'jamba_expert_copy')).toHaveLength(3 * used);
      const separate = await moeForward(xt, moe.device, k);
      expect(Array.from(got.routing.experts)).toEqual(Array.from(separate.routing.experts));
      expect(Array.from(await got.output.read())).toEqual(Array.from(await separate.output.read()));
      got.output.dispose();
      separate.output.dispose();
    } finally {
      run.mockRestore();
      for (const t of [xt, ...Object.values(stacks)]) t.dispose();
      moe.dispose();
    }
  });

  it('routeTokens refuses a top-k above the experts', () => {
    expect(() => routeTokens([0, 1, 2], 1, 3, 4)).toThrow(/topK/);
  });
});

describeEachBackend('JambaModel routing on jamba-tiny', (ctx) => {
  let model: JambaModel;
  beforeAll(async () => {
    model = await JambaModel.load(ctx.backend, GOLDEN);
  });
  afterAll(() => model?.dispose());

  // gpu.js: the composed path routing on the host. WebGPU: the fused path routing on the host
  // or on the GPU (stacked experts), and the composed path.
  const paths: ['auto' | 'composed', 'gpu' | 'host'][] =
    ctx.name === 'webgpu'
      ? [
          ['auto', 'gpu'],
          ['auto', 'host'],
          ['composed', 'host'],
        ]
      : [['auto', 'host']];
  for (const [path, routing] of paths) {
    it(`a decode step (path ${path}, routing on the ${routing}) runs only the chosen experts of each MoE layer for one sequence (host routing: binds exactly top-k experts' weights)`, async () => {
      const cache = model.createCache({ maxSequences: 1, blockSize: 4 });
      model.decodePath = path;
      model.decodeRouting = routing;
      const bound = new Set<unknown>();
      const programs: Program[] = [];
      const original = ctx.backend.run.bind(ctx.backend);
      let run: { mockRestore(): void } | undefined;
      try {
        const { seqIds, logits } = await model.prefill([readGolden().generate.prompt_ids], cache);
        logits.dispose();
        run = vi.spyOn(ctx.backend, 'run').mockImplementation((program: Program) => {
          for (const h of boundHandles(program)) bound.add(h);
          programs.push(program);
          return original(program);
        });
        (await model.step(seqIds, [43], cache)).dispose();
        for (const l of [0, 2]) {
          const ff = model.weights.layers[l]!.feedForward;
          if (ff.kind !== 'moe') throw new Error(`layer ${l} has experts`);
          if (ff.stacked) {
            // WebGPU holds the experts once, stacked
            expect(ff.experts).toBeUndefined();
            const stacks = new Set(Object.values(ff.stacked).map((t) => t.handle));
            const reading = programs.filter((p) => boundHandles(p).some((h) => stacks.has(h)));
            if (routing === 'gpu') {
              // one kernel reads the chosen experts' rows of the stacks (the NaN test below)
              expect(reading.map((p) => p.name)).toEqual(['jamba_moe_gate_up', 'jamba_moe_down_add']);
              continue;
            }
            // routed on the host: each program reading the stacks names its expert (fused:
            // gate/up and down; composed: the copies of gate, up and down), two experts in all
            const experts = reading.map((p) =>
              p.kind === 'webgpu' ? p.uniforms?.find((u) => u.name === 'expert')?.value : undefined,
            );
            expect(reading.length, `layer ${l}`).toBe(path === 'auto' ? 4 : 6);
            expect(new Set(experts).size, `layer ${l}: ${experts}`).toBe(2);
            expect(experts.every((e) => Number.isInteger(e) && e! >= 0 && e! < 4)).toBe(true);
            continue;
          }
          const used = ff.experts!.map((e) => bound.has(e.gateProj.handle));
          expect(used.filter(Boolean), `layer ${l}`).toHaveLength(2);
          ff.experts!.forEach((e, i) => {
            expect(bound.has(e.upProj.handle)).toBe(used[i]);
            expect(bound.has(e.downProj.handle)).toBe(used[i]);
          });
        }
      } finally {
        run?.mockRestore();
        model.decodePath = 'auto';
        model.decodeRouting = 'gpu';
        cache.dispose();
      }
    });
  }

  it("the model's routing of every token in every MoE layer equals the float64 reference's", async () => {
    const ids = readGolden().input_ids.map((row) => row.slice(0, 6));
    const got = new Map<number, MoeRouting>();
    const { logits } = await model.forward(ids, { onRouting: (layer, r) => got.set(layer, r) });
    logits.dispose();
    expect([...got.keys()]).toEqual([0, 2]);
    const read = jambaCheckpointReader(await loadCheckpoint(nodeFileSource(GOLDEN)));
    const expected = new Map<string, number[]>();
    jambaRef(model.config, read, ids, {
      onRouting: (layer, b, r) => {
        const key = `${layer}/${b}`;
        expected.set(key, [...(expected.get(key) ?? []), ...r.experts]);
      },
    });
    for (const [layer, r] of got) {
      for (let b = 0; b < 2; b++) {
        expect(
          Array.from(r.experts.subarray(b * 6 * 2, (b + 1) * 6 * 2)),
          `layer ${layer} sequence ${b}`,
        ).toEqual(expected.get(`${layer}/${b}`));
      }
    }
  });
});

describeEachBackend(
  'JambaMoeDecode (WebGPU: routing on the GPU)',
  (ctx) => {
    it('equals the float64 reference and reads no row of an expert no token chose (they hold NaN)', async () => {
      registerJambaKernels();
      const [T, M, F, E, k] = [2, 12, 20, 6, 2];
      const random = rng(seed + 11);
      const moe = randomMoe(ctx.backend, M, F, E, seed + 12);
      const h = randomFloats(T * M, random);
      const normW = randomFloats(M, random, 0.5, 1.5);
      // the reference: n = rmsNorm(h) in float64, then the MoE, added to h
      const eps = 1e-6;
      const n = new Float64Array(T * M);
      for (let t = 0; t < T; t++) {
        let sq = 0;
        for (let m = 0; m < M; m++) sq += h[t * M + m]! ** 2;
        const inv = 1 / Math.sqrt(sq / M + eps);
        for (let m = 0; m < M; m++) n[t * M + m] = h[t * M + m]! * inv * normW[m]!;
      }
      const ref = moeRef(n, T, moe.host, { M, F, topK: k });
      const ref32 = moeRef(Float32Array.from(n), T, moe.host, { M, F, topK: k }, { precision: 'f32' });
      const chosen = new Set(Array.from(ref.routing.experts));
      expect(chosen.size).toBeLessThan(E);
      // stacked weights with every unchosen expert's rows set to NaN
      const stack = (part: 'gate' | 'up' | 'down') =>
        Float32Array.from(
          moe.host.experts.flatMap((e, i) =>
            Array.from(chosen.has(i) ? e[part] : e[part].map(() => Number.NaN)),
          ),
        );
      const b = ctx.backend;
      const tensors = [
        b.tensor(h, [T, M]),
        b.tensor(normW, [M]),
        moe.device.router,
        b.tensor(stack('gate'), [E * F, M]),
        b.tensor(stack('up'), [E * F, M]),
        b.tensor(stack('down'), [E * M, F]),
      ];
      try {
        const out = (await runKernel(JambaMoeDecode, b, tensors, {
          batch: T,
          dModel: M,
          intermediate: F,
          experts: E,
          topK: k,
          eps,
          lanes: 0,
        })) as Tensor[];
        const experts = Array.from(await out[0]!.read());
        const weights = await out[1]!.read();
        for (const t of out) t.dispose();
        expect(experts).toEqual(Array.from(ref.routing.experts));
        for (let i = 0; i < T * k; i++) expect(weights[i]).toBeCloseTo(ref.routing.weights[i]!, 5);
        const expected = Float64Array.from(ref.output, (v, i) => v + h[i]!);
        const expected32 = Float32Array.from(ref32.output, (v, i) => v + h[i]!);
        expectClose(await tensors[0]!.read(), expected, expected32, {
          seed,
          label: 'JambaMoeDecode',
          atol: 1e-5,
        });
      } finally {
        for (const t of [tensors[0]!, tensors[1]!, ...tensors.slice(3)]) t.dispose();
        moe.dispose();
      }
    });
  },
  // a WebGPU kernel (workgroup memory); gpu.js decodes through the host-routed composed path
  { requires: ['workgroup-memory'] },
);
