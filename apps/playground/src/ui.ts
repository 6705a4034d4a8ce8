/** Building blocks the playground pages share: form fields, the run panel, SVG elements. */
import { LongseqError } from '@longseq/backend';
import { BACKEND_CHOICES } from './backends';
import { h } from './page';

export const SVG_NS = 'http://www.w3.org/2000/svg';

/** Creates an SVG element with attributes and, optionally, text. */
export function svgEl(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** A labelled form control, with an optional hint under it. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  return h(
    'label',
    { class: 'field' },
    h('span', {}, label),
    control,
    ...(hint ? [h('small', {}, hint)] : []),
  );
}

/** A number input whose name is also its data-testid. */
export const numberInput = (
  name: string,
  value: number,
  min: number,
  max: number,
  step: number | 'any' = 1,
) => h('input', { type: 'number', name, value, min, max, step, 'data-testid': name });

/** The backend picker: one option per backend the browser may have. */
export const backendSelect = (testId = 'backend') =>
  h(
    'select',
    { name: 'backend', 'data-testid': testId },
    ...BACKEND_CHOICES.map((b) => h('option', { value: b.name }, b.label)),
  );

/** An error as the pages show it: typed errors with their code. */
export function errorMessage(err: unknown): string {
  if (err instanceof LongseqError) return `${err.message} (${err.code})`;
  return err instanceof Error ? err.message : String(err);
}

/** The PASS/FAIL badge and what it means. */
export function verdict(pass: boolean, explanation: string, testId = 'verdict'): HTMLElement {
  return h(
    'div',
    { class: 'verdict' },
    h('span', { class: pass ? 'badge pass' : 'badge fail', 'data-testid': testId }, pass ? 'PASS' : 'FAIL'),
    h('span', {}, explanation),
  );
}

export type RunState = 'idle' | 'running' | 'done' | 'error';

/** A status line (data-state says where a run is) and the section its result goes in. */
export interface RunPanel {
  readonly status: HTMLElement;
  readonly result: HTMLElement;
  setStatus(state: RunState, text: string): void;
  /**
   * Runs `work` with `button` disabled and the status saying `running`; `work` returns the
   * status text when done. A throw shows its message in the result (data-testid error, or
   * `<prefix>error`), marks it data-pass=false and sets the status to `failed`.
   */
  run(button: HTMLButtonElement, running: string, work: () => Promise<string>, failed: string): Promise<void>;
}

/**
 * The status line and result section of a page's GPU run. Ids are `status` and `result`
 * (prefixed, e.g. `gpu-status`, where a page has more than one runner).
 */
export function runPanel(idleText = '', prefix = ''): RunPanel {
  const status = h(
    'p',
    { class: 'status', 'data-testid': `${prefix}status`, 'data-state': 'idle' },
    idleText,
  );
  const result = h('section', { class: 'result', 'data-testid': `${prefix}result`, hidden: true });
  const setStatus = (state: RunState, text: string) => {
    status.dataset.state = state;
    status.textContent = text;
  };
  return {
    status,
    result,
    setStatus,
    async run(button, running, work, failed) {
      button.disabled = true;
      setStatus('running', running);
      try {
        setStatus('done', await work());
      } catch (err) {
        result.hidden = false;
        result.dataset.pass = 'false';
        result.replaceChildren(
          h('p', { class: 'error', 'data-testid': `${prefix}error` }, errorMessage(err)),
        );
        setStatus('error', failed);
      } finally {
        button.disabled = false;
      }
    },
  };
}

/** The submit button of a page's form. */
export const submitButton = (label = 'Run on the GPU') =>
  h('button', { type: 'submit', class: 'run', 'data-testid': 'run' }, label);
