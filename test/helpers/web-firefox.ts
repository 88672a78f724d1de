// Debian's Firefox ESR driven by puppeteer-core (WebDriver BiDi; never a downloaded browser), with
// WebGPU enabled by the prefs of ../shared/SOFTWARE_GPU.md (it runs on lavapipe). puppeteer-core is a
// devDependency (found in node_modules), or where CAPSNET_PUPPETEER points (a folder holding
// node_modules/puppeteer-core).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export const FIREFOX = process.env.CAPSNET_FIREFOX ?? '/usr/bin/firefox-esr';

function puppeteerEntry(): string | null {
  const bases = [process.env.CAPSNET_PUPPETEER, process.cwd()].filter((b): b is string => !!b);
  for (const base of bases) {
    try {
      return createRequire(join(base, 'package.json')).resolve('puppeteer-core');
    } catch {
      // not there
    }
  }
  return null;
}

export function firefoxMissingReason(): string | null {
  if (!existsSync(FIREFOX)) return `${FIREFOX} not found (apt-get install -y firefox-esr)`;
  if (!puppeteerEntry()) return 'puppeteer-core is not installed (run `npm ci`; or set CAPSNET_PUPPETEER to a folder that has it)';
  return null;
}

export interface FirefoxPage {
  goto(url: string): Promise<unknown>;
  evaluate<T>(fn: string): Promise<T>;
  waitForFunction(fn: string, options: { timeout: number; polling?: number }): Promise<unknown>;
  screenshot(options: { path: string; fullPage?: boolean }): Promise<unknown>;
  setViewport(v: { width: number; height: number }): Promise<void>;
  on(event: 'console', fn: (m: { type(): string; text(): string }) => void): void;
  on(event: 'pageerror', fn: (e: Error) => void): void;
}

export async function launchFirefox(): Promise<{ newPage: () => Promise<FirefoxPage>; close: () => Promise<void> }> {
  const entry = puppeteerEntry();
  if (!entry) throw new Error(firefoxMissingReason() ?? 'puppeteer-core missing');
  const puppeteer = (await import(pathToFileURL(entry).href)).default;
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    extraPrefsFirefox: { 'dom.webgpu.enabled': true, 'gfx.webgpu.ignore-blocklist': true },
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
  });
  return { newPage: () => browser.newPage(), close: () => browser.close() };
}
