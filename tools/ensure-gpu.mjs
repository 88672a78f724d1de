// Run before `npm start` and `npm test`: makes sure this machine has a WebGPU adapter (and, with
// --browser, Debian's Chromium), installing Mesa's software drivers through
// tools/install-software-gpu.sh when there is none. Does nothing (quickly) when all is present.
// CAPSNET_NO_INSTALL=1 turns the install into a message with the command to run.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const wantBrowser = process.argv.includes('--browser');
const script = fileURLToPath(new URL('./install-software-gpu.sh', import.meta.url));

async function hasAdapter() {
  process.env.EGL_PLATFORM ??= 'surfaceless';
  try {
    const { create } = await import('webgpu');
    for (const [flags, featureLevel] of [[[], 'core'], [['backend=vulkan'], 'core'], [['backend=opengl'], 'compatibility']]) {
      const gpu = create(flags);
      if (await gpu.requestAdapter({ featureLevel })) return true;
    }
  } catch {
    // Dawn could not even load: treat as no adapter.
  }
  return false;
}

const missing = [];
if (!(await hasAdapter())) missing.push('a WebGPU adapter');
if (wantBrowser && !existsSync('/usr/bin/chromium')) missing.push("Debian's Chromium");
if (wantBrowser && !existsSync('/usr/bin/firefox-esr')) missing.push("Debian's Firefox ESR");
if (missing.length === 0) process.exit(0);

const command = `sudo bash tools/install-software-gpu.sh${wantBrowser ? '' : ' --no-browser'}`;
if (process.env.CAPSNET_NO_INSTALL || process.platform !== 'linux' || !existsSync('/usr/bin/apt-get')) {
  console.error(`ensure-gpu: this machine has no ${missing.join(' and no ')}. Install one, e.g. on Debian/Ubuntu:\n  ${command}`);
  process.exit(1);
}
console.error(`ensure-gpu: no ${missing.join(' and no ')} found; installing with tools/install-software-gpu.sh`);
const result = spawnSync('bash', [script, ...(wantBrowser ? [] : ['--no-browser'])], { stdio: 'inherit' });
process.exit(result.status ?? 1);
