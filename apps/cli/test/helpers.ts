import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BufferOutput } from '../src/io';
import { main } from '../src/main';

export const cliDir = fileURLToPath(new URL('..', import.meta.url));
export const repoRoot = path.resolve(cliDir, '../..');
/** The shared golden vectors sit beside the repository (../shared/golden from the root). */
export const goldenDir = process.env.LONGSEQ_GOLDEN_DIR ?? path.resolve(repoRoot, '../shared/golden');

/** Runs the CLI in-process, capturing stdout and stderr. */
export async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new BufferOutput();
  const stderr = new BufferOutput();
  const code = await main(args, { stdout, stderr, cwd: repoRoot });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds dist/bin.js with tsup unless it is newer than the CLI's and the packages' sources. */
export async function ensureBuilt(): Promise<string> {
  const bin = path.join(cliDir, 'dist', 'bin.js');
  const packages = path.join(repoRoot, 'packages');
  const sources = Math.max(
    newest(path.join(cliDir, 'src')),
    statSync(path.join(cliDir, 'tsup.config.ts')).mtimeMs,
    ...readdirSync(packages).map((p) => {
      const src = path.join(packages, p, 'src');
      return existsSync(src) ? newest(src) : 0;
    }),
  );
  if (!existsSync(bin) || statSync(bin).mtimeMs < sources) {
    const { build } = await import('tsup');
    const previous = process.cwd();
    // tsup reads tsup.config.ts from the working directory.
    process.chdir(cliDir);
    try {
      await build({ silent: true });
    } finally {
      process.chdir(previous);
    }
  }
  return bin;
}
