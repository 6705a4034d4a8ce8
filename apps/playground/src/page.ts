/** A playground page: one per package. */
export interface Page {
  /** The hash route, e.g. 'softmax' for #/softmax. */
  readonly route: string;
  /** The nav label. */
  readonly title: string;
  /** The package it demonstrates, shown under the title. */
  readonly packageName: string;
  /** Builds the page into `root`; returns what to undo when the visitor leaves, if anything. */
  mount(root: HTMLElement): (() => void) | undefined;
}

/** Creates an element with attributes and children; enough DOM helper for these pages. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | undefined> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : String(v));
  }
  el.append(...children);
  return el;
}
