#!/usr/bin/env node
import { main } from './main';

// Exit explicitly: a live Dawn device can keep the event loop alive after the work is done.
main(process.argv.slice(2)).then(
  // Flush stdout (a big --json document into a pipe) before exiting.
  (code) => process.stdout.write('', () => process.exit(code)),
  (err) => {
    process.stderr.write(`longseq: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
