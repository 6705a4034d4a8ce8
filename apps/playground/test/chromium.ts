/**
 * Shared setup of the browser tests: builds dist/ if stale, serves it, and launches Debian's
 * Chromium (headless, WebGPU on SwiftShader) through playwright-core with a fresh profile.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { type Served, startServer } from '../scripts/serve.mjs';

export const appDir = fileURLToPath(new URL('..', import.meta.url));
export const distDir = path.join(appDir, 'dist');
const packagesDir = path.resolve(appDir, '../../packages');

/** The HTML entries vite.config.ts builds. */
const HTML_ENTRIES = ['index.html', 'conformance.html'];

/** Chromium flags for WebGPU on SwiftShader in a container (DESIGN.md). */
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--use-webgpu-adapter=swiftshader',
  '--enable-features=Vulkan',
  '--no-sandbox',
  '--headless=new',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** Newest modification time under `dir` (skipping dist and node_modules). */
function newest(dir: string): number {
  let t = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name === 'dist' || entry.name.startsWith('.')) continue;
    const p = path.join(dir, entry.name);
    t = Math.max(t, entry.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds dist/ unless every built page is newer than every source it is made from (the app's and the packages'). */
export async function ensureBuilt(): Promise<void> {
  const sources = Math.max(
    newest(path.join(appDir, 'src')),
    ...HTML_ENTRIES.map((f) => statSync(path.join(appDir, f)).mtimeMs),
    statSync(path.join(appDir, 'vite.config.ts')).mtimeMs,
    ...readdirSync(packagesDir).map((p) =>
      existsSync(path.join(packagesDir, p, 'src')) ? newest(path.join(packagesDir, p, 'src')) : 0,
    ),
  );
  const built = HTML_ENTRIES.map((f) => path.join(distDir, f));
  if (built.every((f) => existsSync(f) && statSync(f).mtimeMs >= sources)) return;
  const { build } = await import('vite');
  await build({ root: appDir, configFile: path.join(appDir, 'vite.config.ts'), logLevel: 'warn' });
}

export interface Browser {
  readonly served: Served;
  readonly context: BrowserContext;
  readonly page: Page;
  /** Page errors and console errors, in order. */
  readonly errors: string[];
  close(): Promise<void>;
}

/** Builds if needed, serves dist/ and opens one page in a fresh Chromium profile. */
export async function openBrowser(): Promise<Browser> {
  await ensureBuilt();
  const served = await startServer({ root: distDir, port: 0, host: '127.0.0.1' });
  // A fresh profile each run: a persistent context is how playwright takes an explicit
  // --user-data-dir (it refuses the flag in launch()'s args).
  const userDataDir = mkdtempSync(path.join(tmpdir(), 'longseq-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  return {
    served,
    context,
    page,
    errors,
    async close() {
      await context.close();
      await served.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
