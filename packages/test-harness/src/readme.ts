import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format } from 'node:util';
import { vi } from 'vitest';

let counter = 0;

/**
 * Runs the first ```ts block of a package README as a module (next to the README, so its
 * `@longseq/*` imports resolve like the package's own tests) and returns what it logged.
 * This keeps every README a working quick start: an example that breaks fails a test.
 */
export async function runReadmeExample(readme: string | URL): Promise<string[]> {
  const path = readme instanceof URL ? fileURLToPath(readme) : readme;
  const match = /```ts\n([\s\S]*?)```/.exec(readFileSync(path, 'utf8'));
  if (!match) throw new Error(`${path} has no \`\`\`ts example`);
  const file = join(dirname(path), `.readme-example-${process.pid}-${counter++}.ts`);
  writeFileSync(file, match[1]!);
  const logs: string[] = [];
  const spy = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
    logs.push(format(...args));
  });
  try {
    await import(/* @vite-ignore */ file);
  } finally {
    spy.mockRestore();
    rmSync(file, { force: true });
  }
  return logs;
}
