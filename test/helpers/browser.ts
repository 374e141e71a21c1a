import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/**
 * The system's Chromium for browser tests, driven by playwright-core (which downloads no
 * browser). CHROMIUM_PATH overrides where it is looked for. A missing browser fails the
 * test that needs it, saying how to install it: a browser test that skips itself would
 * pass CI without ever running.
 */
export const CHROMIUM_INSTALL = 'apt-get install -y chromium';

export function chromiumPath(): string {
  const path = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(path)) {
    throw new Error(`no Chromium at ${path}: install Debian's package (${CHROMIUM_INSTALL}) or set CHROMIUM_PATH to a Chromium or Chrome binary`);
  }
  return path;
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath(),
    // As root (CI, containers) Chromium refuses to start with its sandbox.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
}
