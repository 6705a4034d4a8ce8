import type { BenchResult } from './softmax';

export interface PlotOptions {
  readonly title: string;
  readonly subtitle?: string;
  readonly width?: number;
  readonly height?: number;
}

/** Colour per algorithm, dash per kernel shape/backend, so lines of one algorithm read as a family. */
const COLORS: Record<string, string> = {
  naive: '#d62728',
  safe: '#1f77b4',
  online: '#2ca02c',
  copy: '#555555',
};
const DASHES = ['', '6 3', '2 3', '8 3 2 3', '1 2', '10 4'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function fmtTick(v: number): string {
  return v >= 1 ? String(+v.toPrecision(3)) : String(+v.toPrecision(2));
}

/**
 * Median time per call against row length: one polyline per backend x kernel, log2 scale on
 * x (row lengths are usually powers of two), log10 on y when the times span more than 10x.
 * Written by hand so the CLI needs no plotting dependency.
 */
export function plotSvg(results: readonly BenchResult[], options: PlotOptions): string {
  const series = new Map<string, BenchResult[]>();
  for (const r of results) {
    const key = `${r.backend} ${r.label}`;
    if (!series.has(key)) series.set(key, []);
    series.get(key)!.push(r);
  }
  // The legend column is as wide as its longest label (about 7 px a character at 12 px).
  const longest = Math.max(0, ...[...series.keys()].map((k) => k.length));
  const m = { left: 70, right: Math.max(210, 50 + longest * 7), top: 50, bottom: 55 };
  const W = (options.width ?? 550) + m.right;
  // Tall enough for the legend: one line per series.
  const H = Math.max(options.height ?? 460, m.top + m.bottom + series.size * 18);
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const ns = [...new Set(results.map((r) => r.n))].sort((a, b) => a - b);
  const times = results.map((r) => r.medianMs).filter((t) => t > 0);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.left}" y="22" font-size="15" font-weight="bold">${esc(options.title)}</text>`,
  ];
  if (options.subtitle) out.push(`<text x="${m.left}" y="38" fill="#555">${esc(options.subtitle)}</text>`);
  if (ns.length === 0 || times.length === 0) {
    out.push(`<text x="${m.left}" y="${m.top + 20}">no results</text>`, '</svg>');
    return out.join('\n');
  }
  // x: log2 of the row length, padded half a step when there is a single length.
  const lx0 = Math.log2(ns[0]!) - (ns.length === 1 ? 0.5 : 0);
  const lx1 = Math.log2(ns[ns.length - 1]!) + (ns.length === 1 ? 0.5 : 0);
  const xOf = (n: number) => m.left + ((Math.log2(n) - lx0) / (lx1 - lx0)) * pw;
  // y: log10 when the spread is large, else linear from 0.
  const tMin = Math.min(...times);
  const tMax = Math.max(...times);
  const logY = tMax / tMin > 10;
  const y0 = logY ? Math.floor(Math.log10(tMin)) : 0;
  const y1 = logY ? Math.ceil(Math.log10(tMax)) : tMax * 1.1;
  const yOf = (t: number) => m.top + ph - (((logY ? Math.log10(t) : t) - y0) / (y1 - y0)) * ph;

  // Axes, grid and ticks.
  out.push(`<g stroke="#ddd">`);
  const yTicks: number[] = [];
  if (logY) for (let e = y0; e <= y1; e++) yTicks.push(10 ** e);
  else for (let i = 0; i <= 5; i++) yTicks.push((y1 * i) / 5);
  for (const t of yTicks)
    out.push(
      `<line x1="${m.left}" x2="${m.left + pw}" y1="${yOf(t).toFixed(1)}" y2="${yOf(t).toFixed(1)}"/>`,
    );
  for (const n of ns)
    out.push(`<line x1="${xOf(n).toFixed(1)}" x2="${xOf(n).toFixed(1)}" y1="${m.top}" y2="${m.top + ph}"/>`);
  out.push('</g>');
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`,
    ...yTicks.map(
      (t) => `<text x="${m.left - 6}" y="${(yOf(t) + 4).toFixed(1)}" text-anchor="end">${fmtTick(t)}</text>`,
    ),
    ...ns.map(
      (n) => `<text x="${xOf(n).toFixed(1)}" y="${m.top + ph + 18}" text-anchor="middle">${n}</text>`,
    ),
    `<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">row length N (log scale)</text>`,
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">median time per call, ms${logY ? ' (log scale)' : ''}</text>`,
  );

  // One polyline (and dots) per series, with a legend on the right.
  const dashOf = new Map<string, string>();
  let li = 0;
  for (const [key, points] of series) {
    const first = points[0]!;
    const color = COLORS[first.algorithm ?? 'copy'] ?? '#000';
    const dashKey = `${first.backend} ${first.variant ?? ''}`;
    if (!dashOf.has(dashKey)) dashOf.set(dashKey, DASHES[dashOf.size % DASHES.length]!);
    const dash = first.kernel === 'copy' ? '1 3' : dashOf.get(dashKey)!;
    const sorted = [...points].sort((a, b) => a.n - b.n);
    const coords = sorted.map((p) => `${xOf(p.n).toFixed(1)},${yOf(p.medianMs).toFixed(1)}`);
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${coords.join(' ')}"><title>${esc(key)}</title></polyline>`,
    );
    for (const p of sorted) {
      out.push(
        `<circle cx="${xOf(p.n).toFixed(1)}" cy="${yOf(p.medianMs).toFixed(1)}" r="3" fill="${color}"><title>${esc(key)} N=${p.n}: ${p.medianMs.toPrecision(3)} ms, ${p.gbps.toPrecision(3)} GB/s</title></circle>`,
      );
    }
    const ly = m.top + 8 + li * 18;
    const lx = m.left + pw + 14;
    out.push(
      `<line x1="${lx}" x2="${lx + 26}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`,
      `<text x="${lx + 32}" y="${ly + 4}">${esc(key)}</text>`,
    );
    li++;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
