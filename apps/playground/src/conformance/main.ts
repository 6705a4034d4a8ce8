/**
 * The conformance self-test page (conformance.html): runs every primitive op and softmax case
 * on one backend of this browser and checks it by the test rule against the float64
 * reference. `?backend=webgl2|webgpu|gpujs-webgpu|gpujs-cpu` picks the backend (default
 * webgpu), `?seed=N` replays a draw, `?case=text` runs only the cases whose name contains it.
 * The result is exposed as `window.__conformance` and on the [data-testid=conformance] element
 * (data-state running|done, data-pass) for test/conformance.test.ts.
 */
import '../style.css';
import type { Backend } from '@longseq/backend';
import { BACKEND_CHOICES, type BackendChoice, getBackend } from '../backends';
import { h } from '../page';
import { allCases } from './cases';
import { type CaseResult, runCase } from './runner';

export interface ConformanceReport {
  /** The backend asked for, and the name of the one created (null if creation failed). */
  readonly requested: string;
  readonly backend: string | null;
  readonly seed: number;
  readonly done: boolean;
  /** Why no case could run (an unknown backend, or one that could not be created). */
  readonly error: string | null;
  /** How many cases were selected to run (all of them unless ?case= filters). */
  readonly total: number;
  readonly cases: CaseResult[];
  readonly ms: number;
}

declare global {
  interface Window {
    __conformance?: ConformanceReport;
  }
}

const params = new URLSearchParams(location.search);
const requested = params.get('backend') ?? 'webgpu';
const choice = (requested === 'webgl2' ? 'gpujs-webgl2' : requested) as BackendChoice;
const seedParam = params.get('seed');
const seed =
  seedParam !== null && seedParam !== '' ? Number(seedParam) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const filter = params.get('case') ?? '';

const fmt = (x: number) => (Number.isNaN(x) ? 'NaN' : x === 0 ? '0' : x.toExponential(2));

const root = document.getElementById('conformance')!;
const status = h('p', { class: 'status', 'data-testid': 'status' }, 'starting');
const summary = h('pre', { class: 'values', 'data-testid': 'conformance', 'data-state': 'running' });
const tbody = h('tbody');
root.append(
  h('h1', {}, 'Conformance self-test'),
  h(
    'p',
    { class: 'lede' },
    'Every primitive op and softmax on fresh random data, checked by the test rule against the float64 reference. ',
    'Backends: ',
    ...BACKEND_CHOICES.flatMap((b, i) => [i ? ' · ' : '', h('a', { href: `?backend=${b.name}` }, b.label)]),
    '.',
  ),
  status,
  h(
    'table',
    { class: 'conformance' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', {}, 'case'),
        h('th', {}, ''),
        h('th', {}, 'max error'),
        h('th', {}, 'allowed'),
        h('th', {}, 'ms'),
        h('th', {}, 'reason'),
      ),
    ),
    tbody,
  ),
  h('details', {}, h('summary', {}, 'JSON'), summary),
);

function publish(report: ConformanceReport): void {
  window.__conformance = report;
  summary.textContent = JSON.stringify(report, null, 1);
  summary.dataset.state = report.done ? 'done' : 'running';
  if (report.done) summary.dataset.pass = String(report.error === null && report.cases.every((c) => c.pass));
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const cases: CaseResult[] = [];
  const todo = allCases().filter((c) => c.name.includes(filter));
  let report: ConformanceReport = {
    requested,
    backend: null,
    seed,
    done: false,
    error: null,
    total: todo.length,
    cases,
    ms: 0,
  };
  publish(report);
  let backend: Backend;
  try {
    if (!BACKEND_CHOICES.some((b) => b.name === choice)) {
      throw new Error(
        `unknown backend '${requested}' (one of webgl2, ${BACKEND_CHOICES.map((b) => b.name).join(', ')})`,
      );
    }
    backend = await getBackend(choice);
  } catch (err) {
    const error = `could not create backend '${requested}': ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`;
    status.textContent = error;
    publish({ ...report, done: true, error, ms: performance.now() - t0 });
    return;
  }
  report = { ...report, backend: backend.name };
  for (const [i, c] of todo.entries()) {
    status.textContent = `${backend.name}, seed ${seed}: ${i}/${todo.length} · ${c.name}`;
    const r = await runCase(backend, seed, c);
    cases.push(r);
    tbody.append(
      h(
        'tr',
        { class: r.pass ? 'pass' : 'fail' },
        h('td', {}, r.name),
        h('td', {}, h('span', { class: r.pass ? 'badge pass' : 'badge fail' }, r.pass ? 'PASS' : 'FAIL')),
        h('td', {}, fmt(r.maxError)),
        h('td', {}, fmt(r.allowed)),
        h('td', {}, r.ms.toFixed(0)),
        h('td', {}, r.reason ?? ''),
      ),
    );
    publish({ ...report, ms: performance.now() - t0 });
  }
  const failed = cases.filter((c) => !c.pass).length;
  status.textContent = `${backend.name}, seed ${seed}: ${cases.length - failed}/${cases.length} passed in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  console.log(`conformance ${backend.name} seed ${seed}: ${failed} failing of ${cases.length}`);
  publish({ ...report, done: true, ms: performance.now() - t0 });
}

main().catch((err) => {
  publish({
    requested,
    backend: null,
    seed,
    done: true,
    error: `runner crashed: ${String(err)}`,
    total: 0,
    cases: [],
    ms: 0,
  });
});
