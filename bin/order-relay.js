#!/usr/bin/env node
// `npx order-relay …` from a checkout, no build step: the sources are compiled to JavaScript
// on first start (and again whenever they change); where that cannot be written, they run
// through tsx instead.
import { compiledEntry } from './compile.js';

const entry = await compiledEntry();
if (entry) {
  await import(entry);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
