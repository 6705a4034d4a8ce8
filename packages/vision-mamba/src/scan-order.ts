/**
 * The token sequence of a Vim and the orders its scans visit it in, computed on the host.
 *
 * Tokens: the P = g x g patches row-major (patch p = row * g + col), with the class token
 * inserted at `clsIndex` (floor(P / 2) in the middle, 0 at the head, none without one), so
 * the sequence has L = P (+ 1) tokens and patch p sits at token p (+ 1 from clsIndex on).
 *
 * A direction is an order: at step t its scan reads token order[t]. The scan's output at step
 * t belongs to token order[t]; merging puts it back there (`inverse[order[t]] = t`).
 *   'row'          row-major, the sequence as is (Vim's forward scan)
 *   'row-reversed' the sequence backwards (Vim's backward scan over the flipped sequence)
 *   'col'          column-major over the patch grid; the class token keeps step clsIndex
 *   'col-reversed' 'col' backwards
 * 'bi' scans ['row', 'row-reversed']; 'cross4' (VMamba's 2D selective scan) all four.
 */
import { type VimConfig, type VimScan, vimGrid } from './config';

export type ScanDirection = 'row' | 'row-reversed' | 'col' | 'col-reversed';

/** The directions of each scan mode, in the order of their parameters (suffixes '', '_b', '_c', '_cb'). */
export const SCAN_DIRECTIONS: Readonly<Record<VimScan, readonly ScanDirection[]>> = {
  bi: ['row', 'row-reversed'],
  cross4: ['row', 'row-reversed', 'col', 'col-reversed'],
};

/** Checkpoint name suffix of each direction's parameters (conv1d{s}, x_proj{s}, dt_proj{s}, A{s}_log, D{s}). */
export const DIRECTION_SUFFIX: Readonly<Record<ScanDirection, string>> = {
  row: '',
  'row-reversed': '_b',
  col: '_c',
  'col-reversed': '_cb',
};

export interface ScanOrder {
  /** Patches per side. */
  readonly grid: number;
  /** Patches P = grid^2. */
  readonly patches: number;
  /** Tokens L. */
  readonly length: number;
  /** The class token's index in the sequence, or -1 without one. */
  readonly clsIndex: number;
  /** Token index of each patch (row-major patch p -> token). */
  readonly patchToken: readonly number[];
  /** Per direction: the token read at each step. */
  readonly directions: readonly { readonly name: ScanDirection; readonly order: readonly number[] }[];
}

/** Where the class token sits in a sequence of `patches` patches, or -1 without one. */
export function clsIndexOf(config: Pick<VimConfig, 'clsToken' | 'middleClsToken'>, patches: number): number {
  if (!config.clsToken) return -1;
  return config.middleClsToken ? Math.floor(patches / 2) : 0;
}

/** The token sequence and the scan orders of a config (see the module comment). */
export function scanOrder(
  config: Pick<VimConfig, 'imgSize' | 'patchSize' | 'stride' | 'clsToken' | 'middleClsToken' | 'scan'>,
): ScanOrder {
  const grid = vimGrid(config);
  const clsIndex = clsIndexOf(config, grid * grid);
  return { grid, ...gridScanOrder(grid, grid, clsIndex, SCAN_DIRECTIONS[config.scan]) };
}

/**
 * The orders over a grid of rows x cols patches (row-major patch p = row * cols + col) with
 * the class token at sequence index clsIndex (-1: none), for the given directions.
 */
export function gridScanOrder(
  rows: number,
  cols: number,
  clsIndex: number,
  directions: readonly ScanDirection[],
): Omit<ScanOrder, 'grid'> {
  const patches = rows * cols;
  const length = patches + (clsIndex >= 0 ? 1 : 0);
  const patchToken = Array.from({ length: patches }, (_, p) => (clsIndex >= 0 && p >= clsIndex ? p + 1 : p));
  // Patches in column-major order, the class token put back at step clsIndex.
  const colPatches: number[] = [];
  for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) colPatches.push(r * cols + c);
  const col = colPatches.map((p) => patchToken[p]!);
  if (clsIndex >= 0) col.splice(clsIndex, 0, clsIndex);
  const row = Array.from({ length }, (_, t) => t);
  const orders: Record<ScanDirection, number[]> = {
    row,
    'row-reversed': [...row].reverse(),
    col,
    'col-reversed': [...col].reverse(),
  };
  return {
    patches,
    length,
    clsIndex,
    patchToken,
    directions: directions.map((name) => ({ name, order: orders[name] })),
  };
}

/** inverse[order[t]] = t: the step at which a direction reads each token. */
export function inverseOrder(order: readonly number[]): number[] {
  const inverse = new Array<number>(order.length);
  order.forEach((token, t) => {
    inverse[token] = t;
  });
  return inverse;
}
