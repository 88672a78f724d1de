// The CLI against hostile input: --config files that are not files, checkpoints whose stored run
// options are corrupt, flag values a megabyte long. Every case ends in a clear UsageError (exit
// code 2) naming what was wrong, and nothing is written. Most cases call the commands in-process:
// they fail before any GPU or data is touched.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { train, MAX_CONFIG_FILE_BYTES } from '../src/cli/train.ts';
import { UsageError } from '../src/cli/args.ts';

let root = '';
const hardening = suite('capsnet CLI hardening', {});
hardening.before(() => {
  root = mkdtempSync(join(tmpdir(), 'capsnet-hardening-'));
});
hardening.after(() => rmSync(root, { recursive: true, force: true }));

/** The UsageError `run` throws; fails the test if it resolves or throws anything else. */
async function usageError(run: () => Promise<unknown>, what: string): Promise<string> {
  try {
    await run();
  } catch (error) {
    assert.instance(error, UsageError, `${what}: ${(error as Error).stack}`);
    return (error as Error).message;
  }
  assert.unreachable(`${what}: no error`);
  return '';
}

hardening('--config FILE: a FIFO or /dev/zero is refused at once (readFileSync would block or never end)', async () => {
  const fifo = join(root, 'config-fifo');
  try {
    execFileSync('mkfifo', [fifo]);
  } catch (error) {
    assert.unreachable(`mkfifo failed: ${(error as Error).message}`);
  }
  const out = join(root, 'never-fifo');
  const cases: Array<[string, RegExp]> = [[fifo, /not a regular file \(a device, FIFO or socket\)/]];
  if (existsSync('/dev/zero')) cases.push(['/dev/zero', /\/dev\/zero: cannot read model config JSON: not a regular file/]);
  for (const [path, pattern] of cases) {
    // A child process with a time limit: before the fix the FIFO blocked the process forever.
    const r = await runCli(['train', '--out', out, '--config', path], { timeoutMs: 30_000 });
    assert.is(r.code, 2, `${path}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, /^--config: /, path);
    assert.match(r.stderr, pattern, path);
    assert.ok(r.stderr.includes(path), `${path} is named`);
  }
  assert.not.ok(existsSync(out), 'nothing written');
});

hardening('--config FILE: a file over the size limit is refused by its size, naming it; bad JSON names the file', async () => {
  const big = join(root, 'big.json');
  // Valid JSON (an object padded with blanks), so only the size limit can refuse it.
  writeFileSync(big, `{${' '.repeat(MAX_CONFIG_FILE_BYTES)}}`);
  const out = join(root, 'never-big');
  const message = await usageError(() => train(['--out', out, '--config', big]), 'big --config');
  assert.match(message, new RegExp(`^--config: ${big}: cannot read model config JSON: ${MAX_CONFIG_FILE_BYTES + 2} bytes, more than the ${MAX_CONFIG_FILE_BYTES}-byte limit$`));
  const bad = join(root, 'bad.json');
  writeFileSync(bad, '{"routings": ');
  const badMessage = await usageError(() => train(['--out', out, '--config', bad]), 'bad JSON --config');
  assert.match(badMessage, new RegExp(`^--config: ${bad}: not valid JSON`));
  assert.not.ok(existsSync(out), 'nothing written');
});

hardening.run();
