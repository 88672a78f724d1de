// The JSON-lines metrics log: appends, a process killed mid-run, truncated and corrupt lines, and
// the atomic rewrite when a run resumes from an older checkpoint.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { appendMetrics, readMetrics, truncateMetricsAfterStep } from '../src/io/metrics.ts';

const metrics = suite('metrics log');
let dir = '';
metrics.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'capsnet-metrics-'));
});
metrics.after.each(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The file's lines parsed by the test itself (independent of readMetrics). */
const linesOf = (path: string) => readFileSync(path, 'utf8').split('\n');

metrics('records are appended one per line and read back; NaN becomes null', async () => {
  const path = join(dir, 'metrics.jsonl');
  const records = [{ step: 0, loss: 0.5, split: 'train' }, { step: 10, loss: 0.25, acc: 0.91, note: 'a\nb "q"' }, { step: 20, loss: NaN }];
  for (const r of records) await appendMetrics(path, r);
  const lines = linesOf(path);
  assert.is(lines.length, 4);
  assert.is(lines[3], '', 'the file ends with a newline');
  assert.equal(lines.slice(0, 3).map((l) => JSON.parse(l)), [records[0], records[1], { step: 20, loss: null }]);
  const back = await readMetrics(path);
  assert.equal(back, { records: [records[0], records[1], { step: 20, loss: null }], skipped: 0 });
  try {
    await appendMetrics(path, [1, 2] as unknown as object);
    assert.unreachable('an array is not a record');
  } catch (e) {
    assert.match((e as Error).message, /must be a plain object/);
  }
});

metrics('appends not awaited one by one still land whole and in call order', async () => {
  const path = join(dir, 'm.jsonl');
  const pending = Array.from({ length: 200 }, (_, step) => appendMetrics(path, { step, pad: 'x'.repeat(step * 37 % 500) }));
  // readMetrics waits for this process's pending appends.
  const { records, skipped } = await readMetrics(path);
  await Promise.all(pending);
  assert.is(skipped, 0);
  assert.equal(records.map((r) => r.step), Array.from({ length: 200 }, (_, i) => i));
});

metrics('a truncated last line (killed mid-write) is skipped, then cut off by the next append', async () => {
  const path = join(dir, 'm.jsonl');
  await appendMetrics(path, { step: 1, loss: 0.3 });
  await appendMetrics(path, { step: 2, loss: 0.2 });
  appendFileSync(path, '{"step": 3, "lo'); // what a kill during the write of record 3 leaves
  assert.equal(await readMetrics(path), { records: [{ step: 1, loss: 0.3 }, { step: 2, loss: 0.2 }], skipped: 1 });
  await appendMetrics(path, { step: 3, loss: 0.1 });
  assert.equal(linesOf(path), ['{"step":1,"loss":0.3}', '{"step":2,"loss":0.2}', '{"step":3,"loss":0.1}', '']);
  assert.is((await readMetrics(path)).skipped, 0);
  // A complete record without its newline (a hand-edited file) is kept, by reads and appends.
  const edited = join(dir, 'edited.jsonl');
  writeFileSync(edited, '{"step":1}\n{"step":2}');
  assert.equal(await readMetrics(edited), { records: [{ step: 1 }, { step: 2 }], skipped: 0 });
  await appendMetrics(edited, { step: 3 });
  assert.equal(linesOf(edited), ['{"step":1}', '{"step":2}', '{"step":3}', '']);
  // A file that is only a fragment.
  const fragment = join(dir, 'fragment.jsonl');
  writeFileSync(fragment, '{"st');
  await appendMetrics(fragment, { step: 0 });
  assert.equal(linesOf(fragment), ['{"step":0}', '']);
});

metrics('a corrupt line in the middle is an error naming the file and line; blank lines are ignored', async () => {
  const path = join(dir, 'bad.jsonl');
  writeFileSync(path, '{"step":1}\n\n{"step":2}\n{"step":3, oops}\n{"step":4}\n');
  try {
    await readMetrics(path);
    assert.unreachable('should throw');
  } catch (e) {
    assert.match((e as Error).message, new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4: corrupt metrics line \\(.+\\): \\{"step":3, oops\\}`));
  }
  writeFileSync(path, '{"step":1}\n[1,2]\n{"step":2}\n');
  try {
    await readMetrics(path);
    assert.unreachable('should throw');
  } catch (e) {
    assert.match((e as Error).message, /bad\.jsonl:2: corrupt metrics line \(not a JSON object\)/);
  }
  writeFileSync(path, '{"step":1}\n\n  \n{"step":2}\n\n');
  assert.equal(await readMetrics(path), { records: [{ step: 1 }, { step: 2 }], skipped: 0 });
  try {
    await readMetrics(join(dir, 'missing.jsonl'));
    assert.unreachable('should throw');
  } catch (e) {
    assert.match((e as Error).message, /missing\.jsonl: cannot read metrics log/);
  }
});

metrics('truncateMetricsAfterStep keeps records with step <= N byte for byte, by renaming a new file over the old', async () => {
  const path = join(dir, 'm.jsonl');
  const kept = ['{"step":0,"loss":1.50}', '{ "step" : 5, "loss": 0.7 }', '{"step":7.5,"eval":true}'];
  writeFileSync(path, [kept[0], '{"event":"start"}', kept[1], '{"step":8}', kept[2], '{"step":12}', '{"step":"9"}', '{"step":20,"lo'].join('\n'));
  const inode = statSync(path).ino;
  assert.equal(await truncateMetricsAfterStep(path, 7.5), { kept: 3, removed: 4 });
  assert.is(readFileSync(path, 'utf8'), kept.map((l) => l + '\n').join(''));
  assert.is.not(statSync(path).ino, inode, 'rewritten in place instead of renamed');
  assert.equal(readdirSync(dir), ['m.jsonl'], 'no temporary file left behind');
  // Appending after the cut continues the log.
  await appendMetrics(path, { step: 8 });
  assert.equal((await readMetrics(path)).records.map((r) => r.step), [0, 5, 7.5, 8]);
  assert.equal(await truncateMetricsAfterStep(path, -1), { kept: 0, removed: 4 });
  assert.is(readFileSync(path, 'utf8'), '');
  // No log yet: nothing to do, and no file is created.
  const none = join(dir, 'none.jsonl');
  assert.equal(await truncateMetricsAfterStep(none, 10), { kept: 0, removed: 0 });
  assert.not.ok(existsSync(none));
  // A corrupt middle line is not silently dropped by the rewrite.
  writeFileSync(path, '{"step":1}\nxx\n{"step":2}\n');
  try {
    await truncateMetricsAfterStep(path, 5);
    assert.unreachable('should throw');
  } catch (e) {
    assert.match((e as Error).message, /m\.jsonl:2: corrupt metrics line/);
  }
  assert.is(readFileSync(path, 'utf8'), '{"step":1}\nxx\n{"step":2}\n');
});

metrics('a writer killed with SIGKILL leaves a readable log that appends continue', async () => {
  const path = join(dir, 'killed.jsonl');
  const script = join(dir, 'writer.ts');
  const module = fileURLToPath(new URL('../src/io/metrics.ts', import.meta.url));
  const loader = fileURLToPath(new URL('../tools/register-ts.mjs', import.meta.url));
  writeFileSync(script, `import { appendMetrics } from ${JSON.stringify(module)};\n` +
    `for (let step = 0; ; step++) { await appendMetrics(${JSON.stringify(path)}, { step, pad: 'x'.repeat(3000 + (step % 7) * 1000) }); if (step === 20) console.log('running'); }\n`);
  const child = spawn(process.execPath, ['--import', loader, script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', () => setTimeout(() => { child.kill('SIGKILL'); resolve(); }, 150));
    child.on('exit', (code) => reject(new Error(`writer exited by itself with ${code}`)));
  });
  await new Promise((resolve) => child.on('close', resolve));
  const { records } = await readMetrics(path);
  assert.ok(records.length > 20, `${records.length} records`);
  assert.equal(records.map((r) => r.step), Array.from({ length: records.length }, (_, i) => i));
  await appendMetrics(path, { step: records.length });
  const after = await readMetrics(path);
  assert.equal([after.records.length, after.skipped], [records.length + 1, 0]);
});

metrics.run();
