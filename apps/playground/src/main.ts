import './style.css';
import { h, type Page } from './page';
import { attentionPage } from './pages/attention';
import { jambaPage } from './pages/jamba';
import { pagedKvPage } from './pages/paged-kv';
import { scanPage } from './pages/scan';
import { softmaxPage } from './pages/softmax';
import { ssmPage } from './pages/ssm';
import { vimPage } from './pages/vim';

/** Every page, in nav order. A new package's page is one import and one entry here. */
const PAGES: readonly Page[] = [
  softmaxPage,
  pagedKvPage,
  scanPage,
  ssmPage,
  attentionPage,
  vimPage,
  jambaPage,
];

const nav = document.getElementById('nav')!;
const root = document.getElementById('page')!;
let cleanup: (() => void) | undefined;

for (const page of PAGES) {
  nav.append(h('a', { href: `#/${page.route}`, 'data-route': page.route }, page.title));
}

function route(): void {
  const name = location.hash.replace(/^#\/?/, '');
  const page = PAGES.find((p) => p.route === name) ?? PAGES[0]!;
  nav.querySelectorAll('a').forEach((a) => {
    a.classList.toggle('active', a.getAttribute('data-route') === page.route);
  });
  cleanup?.();
  root.replaceChildren();
  document.title = `${page.title} · longseq playground`;
  cleanup = page.mount(root);
}

window.addEventListener('hashchange', route);
route();
