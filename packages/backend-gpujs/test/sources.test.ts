/**
 * Kernels survive minification: every kernel and helper is a JavaScript source string, which
 * bundlers pass through untouched (a function's body is rewritten by minifiers into comma
 * expressions and reused short names that gpu.js cannot translate), and the backend runs
 * programs given as such strings on every mode Node has.
 */
import { type GpuJsProgram, ValidationError } from '@longseq/backend';
import { afterAll, describe, expect, it } from 'vitest';
import * as backendModule from '../src/backend';
import * as createModule from '../src/create';
import * as binary from '../src/kernels/binary';
import * as gather from '../src/kernels/gather';
import * as layerNorm from '../src/kernels/layer-norm';
import * as math from '../src/kernels/math';
import * as matmul from '../src/kernels/matmul';
import * as reduce from '../src/kernels/reduce';
import * as rmsNorm from '../src/kernels/rms-norm';
import * as unary from '../src/kernels/unary';
import { NODE_MODES, backendFor, disposeAll } from './helpers';

afterAll(disposeAll);

const MODULES: Record<string, Record<string, unknown>> = {
  backend: backendModule,
  create: createModule,
  binary,
  gather,
  layerNorm,
  math,
  matmul,
  reduce,
  rmsNorm,
  unary,
};

/** Every exported string of the kernel modules: each is a kernel or helper source. */
function exportedSources(): { name: string; source: string }[] {
  const out: { name: string; source: string }[] = [];
  for (const mod of Object.values(MODULES)) {
    for (const [name, value] of Object.entries(mod))
      if (typeof value === 'string') out.push({ name, source: value });
  }
  return out;
}

/** The per-op helper sources, each named after the function its kernel calls. */
function opSources(): { name: string; source: string }[] {
  return [
    ...Object.values(unary.UNARY_OP_SOURCES).map((source) => ({ name: 'unaryOp', source })),
    ...Object.values(binary.BINARY_OP_SOURCES).map((source) => ({ name: 'binaryOp', source })),
  ];
}

function argumentNames(source: string): string[] {
  const list = source.slice(source.indexOf('(') + 1, source.indexOf(')'));
  return list
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a.length > 0);
}

describe('kernel sources', () => {
  it('are all strings, none left as functions', () => {
    const names = exportedSources().map((s) => s.name);
    for (const expected of [
      'matmulKernel',
      'unaryKernel',
      'binaryKernel',
      'reduceSumKernel',
      'reduceMeanKernel',
      'reduceProdKernel',
      'reduceMaxKernel',
      'reduceMinKernel',
      'gatherKernel',
      'rmsNormStatsKernel',
      'rmsNormApplyKernel',
      'layerNormStatsKernel',
      'layerNormApplyKernel',
      'emptyKernel',
      'isNan',
      'log1pAcc',
      'tanhStable',
      'expAccurate',
      'probeKernel',
      'uploadKernel',
    ]) {
      expect(names).toContain(expected);
    }
    // no kernel module exports a function in gpu.js' subset any more (only configs and helpers of the host side)
    for (const [file, mod] of Object.entries(MODULES)) {
      for (const [name, value] of Object.entries(mod)) {
        if (typeof value === 'function' && /Kernel$|^(isNan|log1pAcc|tanhStable|expAccurate)$/.test(name)) {
          throw new Error(`${file}.${name} is still a function`);
        }
      }
    }
  });

  it.each([...exportedSources(), ...opSources()])(
    '$name starts with `function $name(` and parses as JS',
    ({ name, source }) => {
      expect(typeof source).toBe('string');
      // gpu.js accepts a string only if it starts with `function`, not even whitespace first
      expect(source.startsWith(`function ${name}(`)).toBe(true);
      expect(backendModule.nameOf(source)).toBe(name);
      // plain JavaScript: no TypeScript left (types, `!`, `this:` parameters)
      expect(() => new Function(`return (${source});`)).not.toThrow();
    },
  );

  it.each(exportedSources().filter((s) => /Kernel$/.test(s.name)))(
    '$name has no scalar named like the <array>Size / <array>Dim uniforms of gpu.js',
    ({ source }) => {
      const args = argumentNames(source);
      for (const a of args) {
        for (const b of args) {
          expect(b === `${a}Size` || b === `${a}Dim`, `${b} next to ${a}`).toBe(false);
        }
      }
    },
  );
});

describe.each(NODE_MODES)('gpujs-%s runs source strings', (mode) => {
  it('a kernel and helper with code a minifier would have mangled', async () => {
    const be = await backendFor(mode);
    const start = be.memory();
    const input = [-2, -0.5, 0.5, 3, Number.POSITIVE_INFINITY];
    const x = be.tensor(input, [5]);
    const y = be.empty([5]);
    const program: GpuJsProgram = {
      kind: 'gpujs',
      name: 'MinifyBait',
      cacheKey: '',
      // esbuild folds these two ifs into `if (z > 0 && (z = z + 1), z < inf)`: comma operator
      kernel: /* js */ `function minifyBait(x, n, inf) {
  let z = x[this.thread.x];
  if (z > 0) z = z + 1;
  if (z < inf) return z * n + twoLoops(3);
  return 0;
}`,
      inputs: [x],
      scalars: [2, Number.POSITIVE_INFINITY],
      output: y,
      // esbuild renames `c` and `c2` to one short name: a redefinition in gpu.js' shared counter scope
      functions: [
        /* js */ `
function twoLoops(n) {
  let s = 0;
  for (let c = 0; c < n; c++) {
    s += 1;
  }
  for (let c2 = 0; c2 < n; c2++) {
    s += 2;
  }
  return s;
}`,
      ],
    };
    await be.run(program);
    const expected = input.map((v) => {
      const z = v > 0 ? v + 1 : v;
      return z < Number.POSITIVE_INFINITY ? z * 2 + 9 : 0;
    });
    expect(Array.from(await y.read())).toEqual(expected);
    x.dispose();
    y.dispose();
    expect(be.memory()).toMatchObject({ tensors: start.tensors, bytes: start.bytes });
  });

  it('refuses a helper source without a name, saying so', async () => {
    const be = await backendFor(mode);
    const start = be.memory();
    const x = be.tensor([1, 2], [2]);
    const y = be.empty([2]);
    const program: GpuJsProgram = {
      kind: 'gpujs',
      name: 'AnonymousHelper',
      cacheKey: '',
      kernel: /* js */ `function anonymousHelper(x) {
  return helper(x[this.thread.x]);
}`,
      inputs: [x],
      output: y,
      functions: ['function (v) { return v; }'],
    };
    const err = await be.run(program).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect(String((err as Error).message)).toMatch(/no name/);
    x.dispose();
    y.dispose();
    expect(be.memory()).toMatchObject({ tensors: start.tensors, bytes: start.bytes });
  });
});
