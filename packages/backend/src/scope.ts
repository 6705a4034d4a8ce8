import { Tensor } from './tensor';

/**
 * Scopes free intermediates. Every tensor created while a scope runs belongs to it; when
 * the scope's function settles, all of them are disposed except the tensors it returns
 * (found anywhere in the returned value: arrays, plain objects, Maps) and those passed to
 * `keep()`. Returned tensors pass to the enclosing scope, if any.
 *
 * Scopes nest, but two scopes must not run interleaved (two un-awaited async scopes at
 * once), because the current scope is a single stack, as in tfjs' `tidy`.
 */
const stack: Set<Tensor>[] = [];

/** Called by backends for each new tensor. */
export function trackTensor(t: Tensor): void {
  stack[stack.length - 1]?.add(t);
}

/** Keeps `t` alive past the end of the current scope (it passes to the enclosing one). */
export function keep<T extends Tensor>(t: T): T {
  const current = stack[stack.length - 1];
  if (current?.delete(t)) stack[stack.length - 2]?.add(t);
  return t;
}

export async function scope<T>(fn: () => T | Promise<T>): Promise<T> {
  const own = new Set<Tensor>();
  stack.push(own);
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    popAndDispose(own, new Set());
    throw err;
  }
  const kept = new Set<Tensor>();
  collectTensors(result, kept, new Set());
  popAndDispose(own, kept);
  const parent = stack[stack.length - 1];
  if (parent) for (const t of kept) if (!t.isDisposed) parent.add(t);
  return result;
}

function popAndDispose(own: Set<Tensor>, kept: Set<Tensor>): void {
  const top = stack.pop();
  if (top !== own) throw new Error('longseq scope stack corrupted: scopes were interleaved');
  for (const t of own) if (!kept.has(t)) t.dispose();
}

function collectTensors(value: unknown, into: Set<Tensor>, seen: Set<unknown>): void {
  if (value instanceof Tensor) {
    into.add(value);
    return;
  }
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (Array.isArray(value)) for (const v of value) collectTensors(v, into, seen);
  else if (value instanceof Map) for (const v of value.values()) collectTensors(v, into, seen);
  else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, into, seen);
  }
}

/**
 * Runs `fn`; if it throws, disposes `outputs` (the tensors made for this call) and rethrows,
 * so a kernel that fails midway leaks nothing and the caller's state is as it was.
 */
export async function disposeOnError<T>(outputs: readonly Tensor[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    for (const t of outputs) t.dispose();
    throw err;
  }
}
