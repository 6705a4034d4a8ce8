#!/usr/bin/env node
// Serves the built playground (dist/) with a tiny static server: no dependency, correct MIME
// types (browsers refuse module scripts served as text/plain), and nothing outside dist/.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

export const defaultRoot = fileURLToPath(new URL('../dist/', import.meta.url));

/**
 * Starts serving `root` on `port` (0 picks a free one) at `host`.
 * Resolves to { url, port, close() } once listening.
 */
export function startServer({ root = defaultRoot, port = 5173, host = 'localhost' } = {}) {
  const base = path.resolve(root);
  const server = createServer(async (req, res) => {
    try {
      const pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      let file = path.resolve(base, `.${pathname}`);
      if (file !== base && !file.startsWith(base + path.sep)) {
        res.writeHead(403).end('forbidden');
        return;
      }
      let info = await stat(file).catch(() => undefined);
      if (info?.isDirectory()) {
        file = path.join(file, 'index.html');
        info = await stat(file).catch(() => undefined);
      }
      if (!info?.isFile()) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${pathname}`);
        return;
      }
      res.writeHead(200, {
        'content-type': MIME[path.extname(file)] ?? 'application/octet-stream',
        'content-length': info.size,
        'cache-control': 'no-cache',
      });
      createReadStream(file).pipe(res);
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const address = server.address();
      const actual = typeof address === 'object' && address ? address.port : port;
      resolve({
        url: `http://${host}:${actual}/`,
        port: actual,
        close: () => new Promise((done) => server.close(() => done(undefined))),
      });
    });
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT ?? 5173);
  const host = process.env.HOST ?? 'localhost';
  stat(path.join(defaultRoot, 'index.html')).then(
    async () => {
      const { url } = await startServer({ port, host });
      console.log(`longseq playground: ${url}`);
      console.log('(Ctrl+C to stop; WebGPU needs a recent Chrome or Edge, or a browser flag)');
    },
    () => {
      console.error(
        "longseq playground: dist/ is missing; run 'pnpm --filter @longseq/playground build' first",
      );
      process.exit(1);
    },
  );
}
