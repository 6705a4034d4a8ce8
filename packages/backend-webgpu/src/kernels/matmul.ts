import {
  type Backend,
  DeviceLimitError,
  dispatch1d,
  type KernelConfig,
  MatMul,
  type MatMulAttrs,
} from '@longseq/backend';
import { runInto } from './common';

/** A tiling: BX x BY threads, each computing TM x 4 outputs (one vec4 per row), stepping K by TK. */
interface Tiling {
  readonly bx: number;
  readonly by: number;
  readonly tm: number;
  readonly tn: 4;
  readonly tk: number;
}

/**
 * 16x16 threads x 4x4 outputs (a 64x64 tile, 8 KiB of workgroup memory) where the device
 * allows 256 invocations; 8x8 threads otherwise (WebGPU compatibility mode).
 */
function chooseTiling(backend: Backend): Tiling {
  const { maxWorkgroupInvocations, maxWorkgroupStorageSize } = backend.limits;
  if (maxWorkgroupInvocations >= 256 && maxWorkgroupStorageSize >= 2 * 16 * 64 * 4) {
    return { bx: 16, by: 16, tm: 4, tn: 4, tk: 16 };
  }
  return { bx: 8, by: 8, tm: 4, tn: 4, tk: 16 };
}

function source(t: Tiling, transposeA: boolean, transposeB: boolean): string {
  const tileM = t.by * t.tm;
  const tileN = t.bx * t.tn;
  const threads = t.bx * t.by;
  const loadsA = (tileM * t.tk) / threads;
  const loadsB = (tileN * t.tk) / threads;
  // Each load step walks the tile along whichever axis is contiguous in memory, so
  // neighbouring threads read neighbouring addresses (coalesced) in every transpose case.
  const loadA = transposeA
    ? `let i = e % ${tileM}u; let p = e / ${tileM}u; let gi = row0 + i; let gp = k0 + p;
 if (gi < u.m && gp < u.k) { v = a[offA + gp * u.m + gi]; }`
    : `let p = e % ${t.tk}u; let i = e / ${t.tk}u; let gi = row0 + i; let gp = k0 + p;
 if (gi < u.m && gp < u.k) { v = a[offA + gi * u.k + gp]; }`;
  const loadB = transposeB
    ? `let p = e % ${t.tk}u; let j = e / ${t.tk}u; let gj = col0 + j; let gp = k0 + p;
 if (gj < u.n && gp < u.k) { v = b[offB + gj * u.k + gp]; }`
    : `let j = e % ${tileN}u; let p = e / ${tileN}u; let gj = col0 + j; let gp = k0 + p;
 if (gj < u.n && gp < u.k) { v = b[offB + gp * u.n + gj]; }`;
  // Everything per thread is unrolled into named vec4 accumulators: indexing private
  // arrays with loop variables makes some drivers (SwiftShader) spill them to memory.
  const rows = Array.from({ length: t.tm }, (_, r) => r);
  const accDecl = rows.map((r) => `var acc${r} = vec4<f32>(0.0);`).join('\n  ');
  const bvec = Array.from({ length: t.tn }, (_, c) => `Bs[p * ${tileN}u + lid3.x + ${c * t.bx}u]`).join(', ');
  const fmas = rows
    .map((r) => `      acc${r} = fma(vec4<f32>(As[p * ${tileM}u + lid3.y + ${r * t.by}u]), bv, acc${r});`)
    .join('\n');
  const loadLines: string[] = [];
  for (let q = 0; q < loadsA; q++) {
    loadLines.push(`    { let e = lid + ${q * threads}u; var v = 0.0; ${loadA} As[p * ${tileM}u + i] = v; }`);
  }
  for (let q = 0; q < loadsB; q++) {
    loadLines.push(`    { let e = lid + ${q * threads}u; var v = 0.0; ${loadB} Bs[p * ${tileN}u + j] = v; }`);
  }
  const loads = loadLines.join('\n');
  const stores = rows
    .map((r) => {
      const cols = Array.from(
        { length: t.tn },
        (_, c) =>
          `    { let gj = col0 + lid3.x + ${c * t.bx}u; if (gj < u.n) { out[offC + gi * u.n + gj] = acc${r}[${c}]; } }`,
      );
      return `  { let gi = row0 + lid3.y + ${r * t.by}u; if (gi < u.m) {\n${cols.join('\n')}\n  } }`;
    })
    .join('\n');
  return `
// Tiles stored k-major: As[p][i], Bs[p][j]; the inner loop reads a row of each.
var<workgroup> As: array<f32, ${t.tk * tileM}>;
var<workgroup> Bs: array<f32, ${t.tk * tileN}>;

@compute @workgroup_size(${t.bx}, ${t.by})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // y and z together count (batch, row tile) pairs, so large batches fit the per-dimension limit.
  let tilesM = (u.m + ${tileM - 1}u) / ${tileM}u;
  let flat = wid.y + wid.z * nwg.y;
  let bt = flat / tilesM;
  if (bt >= u.batch) { return; }
  let row0 = (flat - bt * tilesM) * ${tileM}u;
  let col0 = wid.x * ${tileN}u;
  let offA = bt * u.strideA;
  let offB = bt * u.strideB;
  let offC = bt * u.m * u.n;

  ${accDecl}
  for (var k0 = 0u; k0 < u.k; k0 += ${t.tk}u) {
${loads}
    workgroupBarrier();
    for (var p = 0u; p < ${t.tk}u; p++) {
      let bv = vec4<f32>(${bvec});
${fmas}
    }
    workgroupBarrier();
  }
  // Outputs of a thread are strided by the thread grid, so each row store is coalesced.
${stores}
}`;
}

/** Batched matmul with workgroup-memory tiles; handles transposes, broadcast batches and ragged edges. */
export const matmulConfig: KernelConfig<MatMulAttrs> = {
  kernelName: MatMul,
  backendKind: 'webgpu',
  async run(backend, inputs, attrs) {
    const [a, b] = [inputs[0]!, inputs[1]!];
    const out = backend.empty(attrs.outShape);
    const t = chooseTiling(backend);
    const tilesN = Math.ceil(attrs.n / (t.bx * t.tn));
    const tilesM = Math.ceil(attrs.m / (t.by * t.tm));
    const maxDim = backend.limits.maxWorkgroupsPerDimension;
    if (tilesN > maxDim) {
      out.dispose();
      throw new DeviceLimitError('matmul N tiles', 'maxComputeWorkgroupsPerDimension', tilesN, maxDim);
    }
    const [y, z] = dispatch1d(tilesM * attrs.batch, maxDim);
    const ta = attrs.transposeA;
    const tb = attrs.transposeB;
    return runInto(backend, out, {
      kind: 'webgpu',
      name: 'matmul',
      cacheKey: `${ta ? 'T' : 'N'}${tb ? 'T' : 'N'};${t.bx}x${t.by}x${t.tm}x${t.tn}x${t.tk}`,
      inputs: [
        { name: 'a', tensor: a },
        { name: 'b', tensor: b },
      ],
      outputs: [{ name: 'out', tensor: out }],
      uniforms: [
        { name: 'm', type: 'u32', value: attrs.m },
        { name: 'k', type: 'u32', value: attrs.k },
        { name: 'n', type: 'u32', value: attrs.n },
        { name: 'batch', type: 'u32', value: attrs.batch },
        { name: 'strideA', type: 'u32', value: attrs.batchStrideA },
        { name: 'strideB', type: 'u32', value: attrs.batchStrideB },
      ],
      source: source(t, ta, tb),
      dispatch: [tilesN, y, z],
    });
  },
};
