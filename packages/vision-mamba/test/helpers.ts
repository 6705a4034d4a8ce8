import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile, type SafetensorsTensorInput, encodeSafetensors } from '@longseq/nn';

export const GOLDEN = fileURLToPath(new URL('../../../../shared/golden/vim-tiny', import.meta.url));

/** ../shared/golden/vim-tiny/expected.json: images [B, C, H, W], features [B, M], logits [B, classes]. */
export interface Golden {
  readonly images: number[][][][];
  readonly features: number[][];
  readonly logits: number[][];
}

export function readGolden(): Golden {
  return JSON.parse(readFileSync(join(GOLDEN, 'expected.json'), 'utf8')) as Golden;
}

export function goldenConfig(): Record<string, unknown> {
  return JSON.parse(readFileSync(join(GOLDEN, 'config.json'), 'utf8')) as Record<string, unknown>;
}

/** The golden checkpoint's tensors as encodable inputs, to build broken copies from. */
export function goldenTensors(): Record<string, SafetensorsTensorInput> {
  const file = SafetensorsFile.parse(new Uint8Array(readFileSync(join(GOLDEN, 'model.safetensors'))));
  const out: Record<string, SafetensorsTensorInput> = {};
  for (const name of file.names) out[name] = { shape: file.entries.get(name)!.shape, data: file.read(name) };
  return out;
}

const dirs: string[] = [];
/** A temp checkpoint folder with this config and these tensors (removed by cleanTempDirs). */
export function writeCheckpoint(
  config: Record<string, unknown>,
  tensors: Record<string, SafetensorsTensorInput>,
): string {
  const dir = mkdtempSync(join(tmpdir(), 'longseq-vim-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  return dir;
}

export function cleanTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/**
 * The golden README's rule for float32 kernels against a float64 model: relative error about
 * 1e-4 against the scale of each row (its largest |value|). Returns the worst over the rows.
 */
export function maxRelativeError(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  row: number,
): number {
  let worst = 0;
  for (let start = 0; start < expected.length; start += row) {
    let scale = 0;
    for (let i = start; i < start + row; i++) scale = Math.max(scale, Math.abs(expected[i]!));
    for (let i = start; i < start + row; i++) {
      const err = Math.abs(actual[i]! - expected[i]!) / scale;
      if (!(err <= worst)) worst = Number.isNaN(err) ? Number.POSITIVE_INFINITY : err;
    }
  }
  return worst;
}

export const REL_TOL = 1e-4;
