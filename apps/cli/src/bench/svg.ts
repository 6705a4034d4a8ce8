/** One point of a line: x is a size (drawn on a log2 axis), y a time or other positive measure. */
export interface PlotPoint {
  readonly x: number;
  readonly y: number;
  /** Extra text for the point's tooltip, e.g. "12.3 GB/s". */
  readonly note?: string;
}

/** One line of the plot, named in the legend. */
export interface PlotSeries {
  readonly label: string;
  readonly points: readonly PlotPoint[];
  /** Stroke colour; a palette colour by position when absent. */
  readonly color?: string;
  /** SVG stroke-dasharray; solid when absent. */
  readonly dash?: string;
}

export interface PlotOptions {
  readonly title: string;
  readonly subtitle?: string;
  /** What x is, e.g. "row length N"; " (log scale)" is added. */
  readonly xLabel: string;
  /** What y is, e.g. "median time per call, ms"; " (log scale)" is added when y is log. */
  readonly yLabel: string;
  /** The short name of x in tooltips, e.g. "N" (default "x"). */
  readonly xName?: string;
  /** The unit of y in tooltips, e.g. "ms". */
  readonly yUnit?: string;
  /** Log10 y always, or (default) only when the values span more than 10x. */
  readonly logY?: boolean;
  /** Reference curves (e.g. a c L log L guide), drawn thin, grey and dashed. */
  readonly guide?: readonly PlotSeries[];
  readonly width?: number;
  readonly height?: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#555555'];
/** Dash patterns to tell apart lines that share a colour (e.g. one per backend). */
export const DASHES = ['', '6 3', '2 3', '8 3 2 3', '1 2', '10 4'];
const GUIDE_COLOR = '#777';
const GUIDE_DASH = '4 4';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function fmtTick(v: number): string {
  return v >= 1 ? String(+v.toPrecision(3)) : String(+v.toPrecision(2));
}

/**
 * Groups items into plot series by `key` (in first-seen order), one point per item.
 * `style` gives the colour and dash of a series from its first item.
 */
export function groupSeries<T>(
  items: readonly T[],
  key: (item: T) => string,
  point: (item: T) => PlotPoint,
  style?: (first: T) => { color?: string; dash?: string },
): PlotSeries[] {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(item);
  }
  return [...groups].map(([label, members]) => ({
    label,
    points: members.map(point),
    ...(style ? style(members[0]!) : {}),
  }));
}

/**
 * Lines of y against x: log2 scale on x (sizes are usually powers of two), log10 on y when
 * asked or when the values span more than 10x, a legend on the right.
 * Written by hand so the CLI needs no plotting dependency.
 */
export function plotSvg(series: readonly PlotSeries[], options: PlotOptions): string {
  const guides = options.guide ?? [];
  const legendCount = series.length + guides.length;
  // The legend column is as wide as its longest label (about 7 px a character at 12 px).
  const longest = Math.max(0, ...[...series, ...guides].map((s) => s.label.length));
  const m = { left: 70, right: Math.max(210, 50 + longest * 7), top: 50, bottom: 55 };
  const W = (options.width ?? 550) + m.right;
  // Tall enough for the legend: one line per series.
  const H = Math.max(options.height ?? 460, m.top + m.bottom + legendCount * 18);
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const values = series.flatMap((s) => s.points.map((p) => p.y)).filter((y) => y > 0);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.left}" y="22" font-size="15" font-weight="bold">${esc(options.title)}</text>`,
  ];
  if (options.subtitle) out.push(`<text x="${m.left}" y="38" fill="#555">${esc(options.subtitle)}</text>`);
  if (xs.length === 0 || values.length === 0) {
    out.push(`<text x="${m.left}" y="${m.top + 20}">no results</text>`, '</svg>');
    return `${out.join('\n')}\n`;
  }
  // x: log2, padded half a step when there is a single x.
  const lx0 = Math.log2(xs[0]!) - (xs.length === 1 ? 0.5 : 0);
  const lx1 = Math.log2(xs[xs.length - 1]!) + (xs.length === 1 ? 0.5 : 0);
  const xOf = (x: number) => m.left + ((Math.log2(x) - lx0) / (lx1 - lx0)) * pw;
  // y: log10 when asked or the spread is large, else linear from 0; guides widen the range.
  const all = [...values, ...guides.flatMap((g) => g.points.map((p) => p.y)).filter((y) => y > 0)];
  const yMin = Math.min(...all);
  const yMax = Math.max(...all);
  const logY = options.logY ?? yMax / yMin > 10;
  const y0 = logY ? Math.floor(Math.log10(yMin)) : 0;
  const y1 = logY ? Math.max(y0 + 1, Math.ceil(Math.log10(yMax))) : yMax * 1.1;
  const yOf = (y: number) => m.top + ph - (((logY ? Math.log10(y) : y) - y0) / (y1 - y0)) * ph;

  // Axes, grid and ticks.
  out.push(`<g stroke="#ddd">`);
  const yTicks: number[] = [];
  if (logY) for (let e = y0; e <= y1; e++) yTicks.push(10 ** e);
  else for (let i = 0; i <= 5; i++) yTicks.push((y1 * i) / 5);
  for (const t of yTicks)
    out.push(
      `<line x1="${m.left}" x2="${m.left + pw}" y1="${yOf(t).toFixed(1)}" y2="${yOf(t).toFixed(1)}"/>`,
    );
  for (const x of xs)
    out.push(`<line x1="${xOf(x).toFixed(1)}" x2="${xOf(x).toFixed(1)}" y1="${m.top}" y2="${m.top + ph}"/>`);
  out.push('</g>');
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`,
    ...yTicks.map(
      (t) => `<text x="${m.left - 6}" y="${(yOf(t) + 4).toFixed(1)}" text-anchor="end">${fmtTick(t)}</text>`,
    ),
    ...xs.map(
      (x) => `<text x="${xOf(x).toFixed(1)}" y="${m.top + ph + 18}" text-anchor="middle">${x}</text>`,
    ),
    `<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(options.xLabel)} (log scale)</text>`,
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(options.yLabel)}${logY ? ' (log scale)' : ''}</text>`,
  );

  const dashAttr = (dash: string | undefined) => (dash ? ` stroke-dasharray="${dash}"` : '');
  const coords = (points: readonly PlotPoint[]) =>
    points
      .filter((p) => p.y > 0 || !logY)
      .map((p) => `${xOf(p.x).toFixed(1)},${yOf(p.y).toFixed(1)}`)
      .join(' ');
  let li = 0;
  const legend = (label: string, color: string, dash: string | undefined) => {
    const ly = m.top + 8 + li++ * 18;
    const lx = m.left + pw + 14;
    out.push(
      `<line x1="${lx}" x2="${lx + 26}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dashAttr(dash)}/>`,
      `<text x="${lx + 32}" y="${ly + 4}">${esc(label)}</text>`,
    );
  };
  const xName = options.xName ?? 'x';
  const yUnit = options.yUnit ? ` ${options.yUnit}` : '';
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length]!;
    const sorted = [...s.points].sort((a, b) => a.x - b.x);
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2"${dashAttr(s.dash)} points="${coords(sorted)}"><title>${esc(s.label)}</title></polyline>`,
    );
    for (const p of sorted) {
      if (logY && p.y <= 0) continue;
      out.push(
        `<circle cx="${xOf(p.x).toFixed(1)}" cy="${yOf(p.y).toFixed(1)}" r="3" fill="${color}"><title>${esc(s.label)} ${esc(xName)}=${p.x}: ${p.y.toPrecision(3)}${yUnit}${p.note ? `, ${esc(p.note)}` : ''}</title></circle>`,
      );
    }
    legend(s.label, color, s.dash);
  });
  for (const g of guides) {
    const sorted = [...g.points].sort((a, b) => a.x - b.x);
    out.push(
      `<polyline fill="none" stroke="${GUIDE_COLOR}" stroke-width="1.5" stroke-dasharray="${GUIDE_DASH}" points="${coords(sorted)}"><title>${esc(g.label)}</title></polyline>`,
    );
    legend(g.label, GUIDE_COLOR, GUIDE_DASH);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** Gives each distinct key the next dash pattern, so the lines of one backend (or variant) share a dash. */
export function dashPerKey(): (key: string) => string {
  const dashes = new Map<string, string>();
  return (key) => {
    if (!dashes.has(key)) dashes.set(key, DASHES[dashes.size % DASHES.length]!);
    return dashes.get(key)!;
  };
}
