#!/usr/bin/env node
// Draws the loss curves of the three models from results/<model>/loss.json into
// results/loss.svg (validation loss against training seconds: the three had the same wall-clock
// budget) and results/loss-steps.svg (train and validation loss against steps, log x).
// Usage: node apps/training/jamba-chars/plot-loss.mjs
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const results = join(dirname(fileURLToPath(import.meta.url)), 'results');
const MODELS = [
  { name: 'jamba', color: '#1f77b4' },
  { name: 'mamba', color: '#2ca02c' },
  { name: 'transformer', color: '#d62728' },
];
const runs = MODELS.map((m) => ({
  ...m,
  ...JSON.parse(readFileSync(join(results, m.name, 'loss.json'), 'utf8')),
}));
const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** A line chart: x linear or log10, y linear; lines of [x, y] points. */
function chart({ title, subtitle, xLabel, yLabel, logX, lines }) {
  const m = { left: 60, right: 200, top: 50, bottom: 50 };
  const W = 760;
  const H = 420;
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const pts = lines.flatMap((l) => l.points);
  const fx = logX ? (x) => Math.log10(Math.max(x, 1)) : (x) => x;
  const x0 = Math.min(...pts.map(([x]) => fx(x)));
  const x1 = Math.max(...pts.map(([x]) => fx(x)));
  const y0 = 0;
  const y1 = Math.ceil(Math.max(...pts.map(([, y]) => y)));
  const X = (x) => m.left + ((fx(x) - x0) / (x1 - x0 || 1)) * pw;
  const Y = (y) => m.top + ph - ((y - y0) / (y1 - y0)) * ph;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.left}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="${m.left}" y="38" fill="#555">${esc(subtitle)}</text>`,
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
  ];
  for (let y = y0; y <= y1; y += 0.5) {
    out.push(
      `<line x1="${m.left}" x2="${m.left + pw}" y1="${Y(y)}" y2="${Y(y)}" stroke="#eee"/>`,
      `<text x="${m.left - 6}" y="${Y(y) + 4}" text-anchor="end">${y}</text>`,
    );
  }
  const ticks = logX
    ? [1, 10, 100, 1000, 10000].filter((t) => fx(t) >= x0 && fx(t) <= x1)
    : Array.from({ length: 5 }, (_, i) => Math.round(x0 + ((x1 - x0) * i) / 4));
  for (const t of ticks)
    out.push(`<text x="${X(t)}" y="${m.top + ph + 16}" text-anchor="middle">${t}</text>`);
  out.push(
    `<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
  );
  lines.forEach((l, i) => {
    const points = l.points.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ');
    const dash = l.dash ? ` stroke-dasharray="${l.dash}"` : '';
    const width = l.thin ? 0.8 : 1.8;
    out.push(
      `<polyline fill="none" stroke="${l.color}" stroke-width="${width}"${dash} opacity="${l.thin ? 0.6 : 1}" points="${points}"/>`,
      `<line x1="${m.left + pw + 14}" x2="${m.left + pw + 40}" y1="${m.top + 10 + i * 18}" y2="${m.top + 10 + i * 18}" stroke="${l.color}" stroke-width="2"${dash}/>`,
      `<text x="${m.left + pw + 46}" y="${m.top + 14 + i * 18}">${esc(l.label)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

const subtitle = `${runs[0].device}, transformers ${runs[0].transformers}, each model ${Math.round(runs[0].train_seconds)} s of training`;
writeFileSync(
  join(results, 'loss.svg'),
  chart({
    title: 'Validation loss against training time (characters of the KJV)',
    subtitle,
    xLabel: 'seconds of training',
    yLabel: 'validation loss, nats per character',
    lines: runs.map((r) => ({
      label: `${r.model} (${(r.parameters / 1e6).toFixed(2)}M, ${r.steps} steps)`,
      color: r.color,
      points: r.val.map((v) => [v.seconds, v.loss]),
    })),
  }),
);
writeFileSync(
  join(results, 'loss-steps.svg'),
  chart({
    title: 'Train and validation loss against steps (batch 64 x 256 characters)',
    subtitle,
    xLabel: 'step (log scale)',
    yLabel: 'loss, nats per character',
    logX: true,
    lines: runs.flatMap((r) => [
      {
        label: `${r.model} train`,
        color: r.color,
        thin: true,
        points: r.train_loss.map((y, i) => [i + 1, y]),
      },
      {
        label: `${r.model} validation`,
        color: r.color,
        dash: '6 3',
        points: r.val.map((v) => [Math.max(v.step, 1), v.loss]),
      },
    ]),
  }),
);
console.log(`wrote ${join(results, 'loss.svg')} and loss-steps.svg`);
