import { describe, expect, it } from 'vitest';
import { SCAN_DIRECTIONS, gridScanOrder, inverseOrder, scanOrder, vimConfig } from '../src';

const ALL = SCAN_DIRECTIONS.cross4;

describe('scan orders (VMamba cross-scan) on a 3 x 2 patch grid', () => {
  // Patches row-major:   0 1
  //                      2 3
  //                      4 5
  it('without a class token: row-major, reversed, column-major, reversed', () => {
    const o = gridScanOrder(3, 2, -1, ALL);
    expect(o.length).toBe(6);
    expect(Object.fromEntries(o.directions.map((d) => [d.name, d.order]))).toEqual({
      row: [0, 1, 2, 3, 4, 5],
      'row-reversed': [5, 4, 3, 2, 1, 0],
      col: [0, 2, 4, 1, 3, 5],
      'col-reversed': [5, 3, 1, 4, 2, 0],
    });
  });

  it('with the class token in the middle (token 3): every direction reads it at step 3', () => {
    const o = gridScanOrder(3, 2, 3, ALL);
    expect(o.length).toBe(7);
    expect(o.patchToken).toEqual([0, 1, 2, 4, 5, 6]);
    expect(Object.fromEntries(o.directions.map((d) => [d.name, d.order]))).toEqual({
      row: [0, 1, 2, 3, 4, 5, 6],
      'row-reversed': [6, 5, 4, 3, 2, 1, 0],
      col: [0, 2, 5, 3, 1, 4, 6],
      'col-reversed': [6, 4, 1, 3, 5, 2, 0],
    });
    for (const d of o.directions) expect(d.order[3]).toBe(3);
  });

  it('with the class token at the head', () => {
    const o = gridScanOrder(3, 2, 0, ['col', 'col-reversed']);
    expect(o.directions.map((d) => d.order)).toEqual([
      [0, 1, 3, 5, 2, 4, 6],
      [6, 4, 2, 5, 3, 1, 0],
    ]);
  });

  it('each order visits every token once, and inverseOrder undoes it', () => {
    for (const cls of [-1, 0, 3]) {
      for (const d of gridScanOrder(3, 2, cls, ALL).directions) {
        expect([...d.order].sort((a, b) => a - b)).toEqual([...d.order.keys()]);
        const inv = inverseOrder(d.order);
        d.order.forEach((token, t) => {
          expect(inv[token]).toBe(t);
        });
      }
    }
  });

  it("a model's config: Vim-tiny has 14 x 14 patches, 197 tokens, the class token at 98; 'bi' scans two ways", () => {
    const o = scanOrder(vimConfig());
    expect(o).toMatchObject({ grid: 14, patches: 196, length: 197, clsIndex: 98 });
    expect(o.directions.map((d) => d.name)).toEqual(['row', 'row-reversed']);
    expect(scanOrder(vimConfig({ scan: 'cross4' })).directions.map((d) => d.name)).toEqual(ALL);
  });
});
