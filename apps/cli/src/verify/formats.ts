import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { UnsupportedFormatError } from '../errors';
import { attentionFormat } from './attention';
import { checkpointFormat } from './checkpoint';
import { discretizeFormat } from './discretize';
import type { GoldenFormat, GoldenTarget } from './types';

/**
 * The formats `verify` knows, tried in order. Adding one is a file with a GoldenFormat and a
 * line here; a format listed without `verify` is recognised and reported as not supported yet.
 */
export const GOLDEN_FORMATS: readonly GoldenFormat[] = [attentionFormat, discretizeFormat, checkpointFormat];

/** Reads what is at `file` (a JSON file or a folder) enough to pick its format. */
export async function loadTarget(file: string): Promise<GoldenTarget> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(file);
  } catch {
    throw new UnsupportedFormatError(`no such file or folder: ${file}`);
  }
  const basename = path.basename(file);
  if (info.isDirectory()) return { path: file, basename, isDirectory: true, entries: await readdir(file) };
  let json: unknown;
  if (basename.endsWith('.json')) {
    try {
      json = JSON.parse(await readFile(file, 'utf8'));
    } catch (err) {
      throw new UnsupportedFormatError(
        `${file} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
  return { path: file, basename, isDirectory: false, entries: [], ...(json === undefined ? {} : { json }) };
}

/** The format of a target; throws UnsupportedFormatError when none matches or it has no verifier yet. */
export function formatFor(target: GoldenTarget): GoldenFormat & Required<Pick<GoldenFormat, 'verify'>> {
  const format = GOLDEN_FORMATS.find((f) => f.matches(target));
  const supported = GOLDEN_FORMATS.filter((f) => f.verify).map((f) => f.name);
  if (!format) {
    throw new UnsupportedFormatError(
      `${target.path}: unrecognized golden format; supported: ${supported.join(', ')}`,
    );
  }
  if (!format.verify) {
    throw new UnsupportedFormatError(
      `${target.path}: format not supported yet: '${format.name}' (${format.description}); supported: ${supported.join(', ')}`,
    );
  }
  return format as GoldenFormat & Required<Pick<GoldenFormat, 'verify'>>;
}
