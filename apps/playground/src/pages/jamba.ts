import { ArgumentError } from '@longseq/backend';
import { type JambaCache, JambaModel } from '@longseq/jamba';
import { Sampler } from '@longseq/mamba';
import { fetchFileSource } from '@longseq/nn';
import { bytesPerBlock } from '@longseq/paged-kv';
import { type BackendChoice, getBackend } from '../backends';
import { h, type Page } from '../page';
import { backendSelect, field, numberInput, runPanel, submitButton, svgEl } from '../ui';

/** The weights apps/training/jamba-chars/train.py made, served from public/models/jamba-chars/jamba/. */
export const JAMBA_CHARS_PATH = 'models/jamba-chars/jamba/';
/** Tokens per KV block of the page's cache (paged-kv's default). */
export const BLOCK_SIZE = 16;

interface Loaded {
  readonly model: JambaModel;
  /** chars[id] is the character of token id. */
  readonly chars: readonly string[];
}

const models = new Map<BackendChoice, Promise<Loaded>>();

/** The char-level Jamba on a backend, loaded once per page load from the page's public folder. */
function getModel(name: BackendChoice): Promise<Loaded> {
  let pending = models.get(name);
  if (!pending) {
    const base = new URL(JAMBA_CHARS_PATH, location.href).href;
    pending = (async () => {
      const backend = await getBackend(name);
      const vocab = (await (await fetch(new URL('vocab.json', base))).json()) as { chars: string[] };
      const model = await JambaModel.load(backend, fetchFileSource(base));
      return { model, chars: vocab.chars };
    })();
    models.set(name, pending);
    pending.catch(() => models.delete(name));
  }
  return pending;
}

/** Token ids of `text`; a character outside the model's vocabulary is an ArgumentError naming it. */
export function encode(text: string, chars: readonly string[]): number[] {
  const ids = [...text].map((c) => chars.indexOf(c));
  const bad = ids.indexOf(-1);
  if (text.length === 0) throw new ArgumentError('prompt', 'at least one character', '(empty)');
  if (bad >= 0)
    throw new ArgumentError(
      'prompt',
      `characters of the model's vocabulary (letters, space, newline and ${chars.filter((c) => !/[\sA-Za-z]/.test(c)).join('')})`,
      [...text][bad],
    );
  return ids;
}

/** One layer of the cache as the page draws it. */
export interface LayerView {
  readonly layer: number;
  readonly kind: 'attention' | 'mamba';
  /** Attention: KV blocks in the sequence's block table; Mamba: 0. */
  readonly blocks: number;
  /** Attention: tokens in the last block. */
  readonly fill: number;
  readonly bytes: number;
}

/** The cache after a token: what each layer holds, and memory against an all-attention model. */
export interface CacheView {
  /** Tokens whose keys, values and states the cache holds. */
  readonly tokens: number;
  readonly layers: LayerView[];
  /** Bytes the Jamba cache holds (KV blocks in use + Mamba states), from its own accounting. */
  readonly jambaBytes: number;
  /** The same blocks for a Transformer of the same depth and width (every layer attention, f32). */
  readonly transformerBytes: number;
}

export function cacheView(cache: JambaCache, seqId: number): CacheView {
  const memory = cache.memory();
  const { config } = cache;
  const tokens = cache.length(seqId);
  const blocks = cache.kv ? cache.kv.blockTable(cache.kvSequence(seqId)).length : 0;
  const layers = memory.layers.map((l) => ({
    layer: l.layer,
    kind: l.kind,
    blocks: l.kind === 'attention' ? blocks : 0,
    fill: l.kind === 'attention' ? tokens - (blocks - 1) * cache.blockSize : 0,
    bytes: l.bytesInUse,
  }));
  const transformerBlock = bytesPerBlock({
    blockSize: cache.blockSize,
    layers: config.nLayer,
    kvHeads: config.numKvHeads,
    headDim: config.headDim,
  });
  return {
    tokens,
    layers,
    jambaBytes: memory.bytesInUse,
    transformerBytes: memory.kvBlocksInUse * transformerBlock,
  };
}

export interface GenerateOptions {
  readonly backend: BackendChoice;
  readonly prompt: string;
  readonly maxTokens: number;
  /** 0: greedy. */
  readonly temperature: number;
  readonly topK: number;
  readonly seed: number;
}

/**
 * Generates up to `maxTokens` characters after the prompt on the visitor's GPU, one token at a
 * time through the hybrid cache (prefill, then one `step` per token), calling `onToken` after
 * each with the text so far and the cache. Stops early when `stopped()` says so.
 */
export async function generateText(
  options: GenerateOptions,
  onToken: (text: string, ids: number[], view: CacheView) => void,
  stopped: () => boolean = () => false,
): Promise<{ ids: number[]; text: string; backend: string }> {
  const { model, chars } = await getModel(options.backend);
  const prompt = encode(options.prompt, chars);
  const sampler = new Sampler(
    options.temperature > 0
      ? { temperature: options.temperature, topK: options.topK, seed: options.seed }
      : {},
  );
  const V = model.config.vocabSize;
  const cache = model.createCache({
    maxSequences: 1,
    blockSize: BLOCK_SIZE,
    maxTokens: prompt.length + options.maxTokens,
  });
  const ids: number[] = [];
  try {
    const prefilled = await model.prefill([prompt], cache);
    const seqId = prefilled.seqIds[0]!;
    let logits = (await prefilled.logits.read()) as Float32Array;
    prefilled.logits.dispose();
    for (let t = 0; t < options.maxTokens && !stopped(); t++) {
      const id = sampler.next(logits, 0, V);
      ids.push(id);
      onToken(ids.map((i) => chars[i]).join(''), ids, cacheView(cache, seqId));
      if (t === options.maxTokens - 1) break;
      const next = await model.step([seqId], [id], cache);
      logits = (await next.read()) as Float32Array;
      next.dispose();
    }
  } finally {
    cache.dispose();
  }
  return { ids, text: ids.map((i) => chars[i]).join(''), backend: model.backend.name };
}

const KIND_COLOR = { attention: '#3b5bdb', mamba: '#2f9e44' } as const;

/** Per layer: attention layers as rows of KV blocks (the last one part full), Mamba layers as one fixed state. */
function cachePicture(view: CacheView): SVGSVGElement {
  const rowH = 30;
  const cell = 14;
  const maxCells = 36;
  const W = 120 + maxCells * (cell + 2) + 90;
  const svg = svgEl('svg', {
    viewBox: `0 0 ${W} ${view.layers.length * rowH + 6}`,
    class: 'chart',
    'data-testid': 'cache',
    'data-tokens': view.tokens,
    'data-block-size': BLOCK_SIZE,
    role: 'img',
  }) as SVGSVGElement;
  view.layers.forEach((l, i) => {
    const y = 4 + i * rowH;
    const g = svgEl('g', {
      class: 'layer',
      'data-layer': l.layer,
      'data-kind': l.kind,
      'data-blocks': l.blocks,
      'data-fill': l.fill,
      'data-bytes': l.bytes,
    });
    g.append(svgEl('text', { x: 0, y: y + 17, 'font-size': 12 }, `layer ${l.layer} · ${l.kind}`));
    if (l.kind === 'attention') {
      const shown = Math.min(l.blocks, maxCells);
      for (let b = 0; b < shown; b++) {
        const last = b === l.blocks - 1;
        const frac = last ? l.fill / BLOCK_SIZE : 1;
        const x = 120 + b * (cell + 2);
        g.append(
          svgEl('rect', { x, y: y + 4, width: cell, height: 18, fill: 'none', stroke: KIND_COLOR.attention }),
          svgEl('rect', {
            class: 'block',
            x,
            y: y + 4 + 18 * (1 - frac),
            width: cell,
            height: 18 * frac,
            fill: KIND_COLOR.attention,
            opacity: 0.75,
          }),
        );
      }
      const more = l.blocks > shown ? ` +${l.blocks - shown}` : '';
      g.append(
        svgEl(
          'text',
          { x: 124 + shown * (cell + 2), y: y + 17, 'font-size': 11, fill: '#5b6475' },
          `${more} ${l.blocks} block${l.blocks === 1 ? '' : 's'}, ${(l.bytes / 1024).toFixed(1)} KiB`,
        ),
      );
    } else {
      g.append(
        svgEl('rect', {
          x: 120,
          y: y + 4,
          width: 3 * (cell + 2),
          height: 18,
          fill: KIND_COLOR.mamba,
          opacity: 0.75,
        }),
        svgEl(
          'text',
          { x: 124 + 3 * (cell + 2), y: y + 17, 'font-size': 11, fill: '#5b6475' },
          `conv + SSM state, ${(l.bytes / 1024).toFixed(1)} KiB (fixed)`,
        ),
      );
    }
    svg.append(g);
  });
  return svg;
}

/** Cache bytes against tokens so far: the Jamba cache and a Transformer of the same depth and width. */
function memoryChart(history: readonly CacheView[]): SVGSVGElement {
  const W = 460;
  const H = 200;
  const m = { left: 50, right: 120, top: 10, bottom: 30 };
  const last = history[history.length - 1]!;
  const svg = svgEl('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart',
    'data-testid': 'memory',
    'data-tokens': last.tokens,
    'data-jamba-bytes': last.jambaBytes,
    'data-transformer-bytes': last.transformerBytes,
    role: 'img',
    style: 'max-width: 560px',
  }) as SVGSVGElement;
  const x0 = Math.min(...history.map((v) => v.tokens));
  const x1 = Math.max(...history.map((v) => v.tokens), x0 + 1);
  const y1 = Math.max(...history.map((v) => Math.max(v.jambaBytes, v.transformerBytes)), 1) * 1.05;
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const X = (x: number) => m.left + ((x - x0) / (x1 - x0)) * pw;
  const Y = (y: number) => m.top + ph - (y / y1) * ph;
  svg.append(svgEl('rect', { x: m.left, y: m.top, width: pw, height: ph, fill: 'none', stroke: '#dfe3ea' }));
  for (const [label, v] of [
    [`${(y1 / 1.05 / 1024).toFixed(0)} KiB`, y1 / 1.05],
    ['0', 0],
  ] as const)
    svg.append(svgEl('text', { x: m.left - 4, y: Y(v) + 4, 'text-anchor': 'end', 'font-size': 10 }, label));
  svg.append(
    svgEl('text', { x: m.left, y: H - 14, 'text-anchor': 'middle', 'font-size': 10 }, String(x0)),
    svgEl('text', { x: m.left + pw, y: H - 14, 'text-anchor': 'middle', 'font-size': 10 }, String(x1)),
    svgEl(
      'text',
      { x: m.left + pw / 2, y: H - 2, 'text-anchor': 'middle', 'font-size': 11 },
      'tokens in the cache',
    ),
  );
  const lines = [
    { key: 'transformerBytes', label: 'Transformer', color: '#e03131' },
    { key: 'jambaBytes', label: 'Jamba', color: '#3b5bdb' },
  ] as const;
  lines.forEach((line, i) => {
    svg.append(
      svgEl('polyline', {
        fill: 'none',
        stroke: line.color,
        'stroke-width': 1.8,
        points: history.map((v) => `${X(v.tokens).toFixed(1)},${Y(v[line.key]).toFixed(1)}`).join(' '),
      }),
      svgEl('line', {
        x1: W - m.right + 10,
        x2: W - m.right + 30,
        y1: 20 + i * 18,
        y2: 20 + i * 18,
        stroke: line.color,
        'stroke-width': 2,
      }),
      svgEl('text', { x: W - m.right + 34, y: 24 + i * 18, 'font-size': 11 }, line.label),
    );
  });
  return svg;
}

function mount(root: HTMLElement): () => void {
  let stop = false;
  let alive = true;
  const backend = backendSelect();
  const prompt = h('textarea', { name: 'prompt', rows: 2, 'data-testid': 'prompt' }, 'And God said, ');
  const temperature = numberInput('temperature', 0.8, 0, 2, 0.05);
  const topK = numberInput('top-k', 20, 1, 64);
  const seed = numberInput('seed', 1, 0, 2 ** 31 - 1);
  const maxTokens = numberInput('max-tokens', 200, 1, 2000);
  const run = submitButton('Generate');
  const stopButton = h('button', { type: 'button', 'data-testid': 'stop', disabled: true }, 'Stop');
  const form = h(
    'form',
    { class: 'controls' },
    field('Backend', backend),
    field('Temperature', temperature, '0 = greedy'),
    field('Top-k', topK),
    field('Seed', seed),
    field('Characters', maxTokens),
    run,
    stopButton,
  );
  const promptField = field('Prompt', prompt, 'letters and the punctuation of the King James Bible');
  const panel = runPanel('Pick a backend and generate.');
  const output = h('pre', { class: 'output', 'data-testid': 'output', style: 'white-space: pre-wrap' });
  const cacheHolder = h('div', {});
  const memoryHolder = h('div', {});
  panel.result.append(
    output,
    h('h2', {}, 'The hybrid cache'),
    cacheHolder,
    h(
      'p',
      { class: 'caption' },
      `Attention layers keep keys and values in paged blocks of ${BLOCK_SIZE} tokens (a new block when the last ` +
        'one is full); Mamba layers keep one conv state and one SSM state, the same size however long the text gets.',
    ),
    h('h2', {}, 'Memory against a Transformer of the same depth and width'),
    memoryHolder,
  );

  stopButton.addEventListener('click', () => {
    stop = true;
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    stop = false;
    stopButton.disabled = false;
    const history: CacheView[] = [];
    const options: GenerateOptions = {
      backend: backend.value as BackendChoice,
      prompt: prompt.value,
      maxTokens: Number(maxTokens.value),
      temperature: Number(temperature.value),
      topK: Number(topK.value),
      seed: Number(seed.value),
    };
    panel.result.hidden = false;
    panel.result.dataset.pass = 'true';
    output.textContent = options.prompt;
    void panel
      .run(
        run,
        'Loading the model and generating…',
        async () => {
          const t0 = performance.now();
          const done = await generateText(
            options,
            (text, ids, view) => {
              if (!alive) return;
              output.textContent = options.prompt + text;
              output.dataset.generated = text;
              output.dataset.ids = JSON.stringify(ids);
              history.push(view);
              cacheHolder.replaceChildren(cachePicture(view));
              memoryHolder.replaceChildren(
                memoryChart(history),
                h(
                  'p',
                  { class: 'caption', 'data-testid': 'memory-caption' },
                  `At ${view.tokens} tokens: Jamba ${(view.jambaBytes / 1024).toFixed(1)} KiB (the KV blocks of its ` +
                    `attention layer and the fixed Mamba states), a Transformer of ${view.layers.length} attention ` +
                    `layers ${(view.transformerBytes / 1024).toFixed(1)} KiB (the same blocks in every layer).`,
                ),
              );
            },
            () => stop || !alive,
          );
          const s = (performance.now() - t0) / 1000;
          output.dataset.done = 'true';
          return `${done.ids.length} characters in ${s.toFixed(1)} s on ${done.backend}${stop ? ' (stopped)' : ''}.`;
        },
        'Generation failed.',
      )
      .finally(() => {
        stopButton.disabled = true;
      });
  });

  root.append(
    h('h1', {}, 'Jamba: a hybrid model that writes'),
    h('p', { class: 'package' }, '@longseq/jamba'),
    h(
      'p',
      { class: 'explainer' },
      'A character-level Jamba trained on the King James Bible (public domain, from Debian\u2019s bible-kjv-text ' +
        'package) by apps/training/jamba-chars: 4 layers of width 128, three Mamba layers and one attention layer, ' +
        'with a mixture of 4 experts (top 2) on every other layer; about 0.9M parameters, shipped as float16. It ' +
        'writes on your GPU one character at a time through the hybrid cache. Watch the cache grow: only the ' +
        'attention layer needs more memory as the text gets longer.',
    ),
    promptField,
    form,
    panel.status,
    panel.result,
  );
  root.dataset.ready = 'true';
  return () => {
    alive = false;
  };
}

export const jambaPage: Page = {
  route: 'jamba',
  title: 'Jamba',
  packageName: '@longseq/jamba',
  mount,
};
