/** Types for serve.mjs, so the TypeScript browser test can import it. */
export declare const defaultRoot: string;
export interface Served {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}
export declare function startServer(options?: {
  root?: string;
  port?: number;
  host?: string;
}): Promise<Served>;
