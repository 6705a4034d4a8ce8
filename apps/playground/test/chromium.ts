/**
 * Shared setup of the browser tests: builds dist/ if stale, serves it, and launches Debian's
 * Chromium (headless, WebGPU on SwiftShader) through playwright-core with a fresh profile.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
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
    // Shipped weights and other static files are copied into dist/ by the build too.
    newest(path.join(appDir, 'public')),
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

/** How long opening the browser and the first page may take (a cold build included). */
export const OPEN_TIMEOUT_MS = 300_000;

/** Opens the built playground at `route` (e.g. '#/scan') and waits until the page is ready. */
export async function openPage(route: string): Promise<Browser> {
  const browser = await openBrowser();
  try {
    await browser.page.goto(`${browser.served.url}${route}`);
    await browser.page.waitForSelector('[data-testid=page][data-ready=true]', { timeout: 30_000 });
  } catch (err) {
    await browser.close();
    throw err;
  }
  return browser;
}

/** The browser of a test file, open at one route from before its first test to after its last. */
export interface PageSession {
  /**
   * The open page. Usable at module scope (`const { page } = usePage(...)`): it forwards to
   * the page beforeAll opens, so tests read `page.click(...)` without a mutable variable.
   */
  readonly page: Page;
  /** Page errors and console errors, in order. */
  readonly errors: string[];
}

/** Registers the file's beforeAll/afterAll that open `route` (see openPage) and close the browser. */
export function usePage(route: string): PageSession {
  let browser: Browser | undefined;
  beforeAll(async () => {
    browser = await openPage(route);
  }, OPEN_TIMEOUT_MS);
  afterAll(async () => {
    await browser?.close();
  });
  const opened = () => {
    if (!browser) throw new Error(`the browser for ${route} is not open (did beforeAll fail?)`);
    return browser;
  };
  const page = new Proxy({} as Page, {
    get(_target, prop) {
      const current = opened().page;
      const value = Reflect.get(current, prop, current);
      return typeof value === 'function' ? value.bind(current) : value;
    },
  });
  return {
    page,
    get errors() {
      return opened().errors;
    },
  };
}

/** The data-* attributes of the element with data-testid `id`, as the page has them now. */
export function dataset(page: Page, id: string): Promise<Record<string, string | undefined>> {
  return page.evaluate(
    (testId) => ({ ...(document.querySelector(`[data-testid=${testId}]`) as HTMLElement).dataset }),
    id,
  );
}

/** Selects the status line `statusId` once its data-state says a run ended, well or not. */
const runEnded = (statusId: string) =>
  `[data-testid=${statusId}][data-state=done], [data-testid=${statusId}][data-state=error]`;

/**
 * Clicks Run and waits until the status line says the run ended (done or error). Pages with
 * more than one runner prefix their ids (`gpu-` for gpu-run and gpu-status).
 */
export async function clickRunAndWait(page: Page, timeout: number, idPrefix = ''): Promise<void> {
  await page.click(`[data-testid=${idPrefix}run]`);
  await page.waitForSelector(runEnded(`${idPrefix}status`), { timeout });
}

/** The text of the error element `id`, or '' when the page shows none. */
export async function errorText(page: Page, id = 'error'): Promise<string> {
  const count = await page.locator(`[data-testid=${id}]`).count();
  return count > 0 ? ((await page.textContent(`[data-testid=${id}]`)) ?? '') : '';
}
