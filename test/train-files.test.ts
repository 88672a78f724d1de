// What a killed `capsnet train` leaves behind (issue 10): writeFileAtomic's temporary files of a
// process that died mid-write are removed by removeStaleTempFiles (as capsnet train does at start),
// those of live processes and every other file are kept. End to end: test/kill-resume.test.ts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FolderLockedError, acquireFolderLock, removeStaleTempFiles, removeStaleTempFilesIn } from '../src/io/files.ts';

const files = suite('files left by killed runs');

files('stale temporary files of dead processes are removed; live ones and other files are kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'capsnet-stale-'));
  try {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!; // exited: its pid is (almost surely) free
    const names = {
      dead: `.checkpoint.safetensors.${dead}.0a1b2c3d.tmp`,
      live: `.checkpoint.safetensors.${process.ppid}.0a1b2c3d.tmp`,
      mine: `.checkpoint.safetensors.${process.pid}.deadbeef.tmp`,
      otherFile: `.metrics.jsonl.${dead}.0a1b2c3d.tmp`,
      notTemp: 'checkpoint.safetensors',
      lookalike: `.checkpoint.safetensors.${dead}.xyz.tmp`,
    };
    for (const name of Object.values(names)) writeFileSync(join(dir, name), 'x');
    const removed = await removeStaleTempFiles(join(dir, 'checkpoint.safetensors'));
    assert.equal(removed, [names.dead]);
    assert.equal(readdirSync(dir).sort(), [names.live, names.mine, names.otherFile, names.notTemp, names.lookalike].sort());
    assert.equal(await removeStaleTempFiles(join(dir, 'metrics.jsonl')), [names.otherFile]);
    assert.equal(await removeStaleTempFiles(join(dir, 'no-such-folder', 'checkpoint.safetensors')), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

files('kept copies (--keep-every): the stale temporary files of every checkpoint-stepS target go, nothing else', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'capsnet-stale-kept-'));
  try {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const names = {
      dead8: `.checkpoint-step8.safetensors.${dead}.0a1b2c3d.tmp`,
      dead16: `.checkpoint-step16.safetensors.${dead}.0a1b2c3d.tmp`,
      live: `.checkpoint-step24.safetensors.${process.ppid}.0a1b2c3d.tmp`,
      main: `.checkpoint.safetensors.${dead}.0a1b2c3d.tmp`,
      kept: 'checkpoint-step8.safetensors',
      other: `.checkpoint-stepX.safetensors.${dead}.0a1b2c3d.tmp`,
    };
    for (const name of Object.values(names)) writeFileSync(join(dir, name), 'x');
    const removed = await removeStaleTempFilesIn(dir, /checkpoint-step\d+\.safetensors/);
    assert.equal(removed.sort(), [names.dead16, names.dead8].sort());
    assert.equal(readdirSync(dir).sort(), [names.live, names.main, names.kept, names.other].sort());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});


files('acquireFolderLock: one holder at a time; a live holder is named, a dead one\'s lock is taken over, release removes only ours', () => {
  const dir = mkdtempSync(join(tmpdir(), 'capsnet-lock-'));
  const path = join(dir, '.lock');
  try {
    const lock = acquireFolderLock(dir, '.lock');
    assert.is(readFileSync(path, 'utf8'), `${process.pid}\n`);
    lock.release();
    assert.not.ok(existsSync(path), 'released');

    // Held by a live process (our parent): refused, nothing changed.
    writeFileSync(path, `${process.ppid}\n`);
    let refused: unknown;
    try {
      acquireFolderLock(dir, '.lock');
    } catch (error) {
      refused = error;
    }
    assert.instance(refused, FolderLockedError);
    assert.is((refused as FolderLockedError).owner, process.ppid);
    assert.is((refused as FolderLockedError).lockPath, path);
    assert.is(readFileSync(path, 'utf8'), `${process.ppid}\n`, 'the holder\'s lock is untouched');
    lock.release(); // a release after someone else took the lock leaves theirs alone
    assert.ok(existsSync(path));

    // Left by a process that is gone, or garbage: taken over.
    for (const stale of [`${spawnSync(process.execPath, ['-e', '0']).pid}\n`, 'not a pid']) {
      writeFileSync(path, stale);
      const taken = acquireFolderLock(dir, '.lock');
      assert.is(readFileSync(path, 'utf8'), `${process.pid}\n`, JSON.stringify(stale));
      taken.release();
      assert.equal(readdirSync(dir), []);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

files.run();
