/**
 * Where checkpoint files come from: a folder on disk (Node), a URL prefix (the browser's
 * fetch), or bytes already in memory. Models only see this interface.
 */
import { MissingFileError } from './errors';

export interface FileSource {
  /** Names the source in errors (a folder path, a URL). */
  readonly description: string;
  /** The file's bytes; throws MissingFileError when it is not there. */
  read(file: string): Promise<Uint8Array>;
  exists(file: string): Promise<boolean>;
}

/** Reads a text file (UTF-8) from a source. */
export async function readText(source: FileSource, file: string): Promise<string> {
  return new TextDecoder().decode(await source.read(file));
}

/** Files under a folder on disk (Node). `node:fs` is imported on first use, so browser bundles never load it. */
export function nodeFileSource(folder: string): FileSource {
  const load = async () => {
    const fsName = 'node:fs/promises';
    const pathName = 'node:path';
    const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs/promises');
    const path = (await import(/* @vite-ignore */ pathName)) as typeof import('node:path');
    return { fs, path };
  };
  return {
    description: folder,
    async read(file) {
      const { fs, path } = await load();
      try {
        const bytes = await fs.readFile(path.join(folder, file));
        return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      } catch (err) {
        const code = (err as { code?: string }).code;
        throw new MissingFileError(file, folder, code === 'ENOENT' ? 'no such file' : String(err));
      }
    },
    async exists(file) {
      const { fs, path } = await load();
      try {
        await fs.access(path.join(folder, file));
        return true;
      } catch {
        return false;
      }
    },
  };
}

export interface FetchSourceOptions {
  /** The fetch to use; default globalThis.fetch. */
  readonly fetch?: (
    url: string,
  ) => Promise<{ ok: boolean; status: number; arrayBuffer(): Promise<ArrayBuffer> }>;
}

/** Files under a URL prefix, through fetch (the browser; also Node 18+). */
export function fetchFileSource(baseUrl: string, options: FetchSourceOptions = {}): FileSource {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  const get = options.fetch ?? ((url: string) => globalThis.fetch(url));
  return {
    description: base,
    async read(file) {
      let response: Awaited<ReturnType<typeof get>>;
      try {
        response = await get(base + file);
      } catch (err) {
        throw new MissingFileError(file, base, `fetch failed: ${err instanceof Error ? err.message : err}`);
      }
      if (!response.ok) throw new MissingFileError(file, base, `HTTP ${response.status}`);
      return new Uint8Array(await response.arrayBuffer());
    },
    async exists(file) {
      try {
        return (await get(base + file)).ok;
      } catch {
        return false;
      }
    },
  };
}

/** Files held in memory (ArrayBuffers from a file picker, tests): name -> bytes or text. */
export function memoryFileSource(
  files: Readonly<Record<string, Uint8Array | ArrayBuffer | string>>,
  description = 'memory',
): FileSource {
  return {
    description,
    async read(file) {
      const f = files[file];
      if (f === undefined) throw new MissingFileError(file, description);
      if (typeof f === 'string') return new TextEncoder().encode(f);
      return f instanceof Uint8Array ? f : new Uint8Array(f);
    },
    async exists(file) {
      return files[file] !== undefined;
    },
  };
}
