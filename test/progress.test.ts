// The progress bar against a fake stream and a fake clock: redraw throttling on a terminal, plain
// lines (never \r) elsewhere, the ETA, and duration formatting.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatDuration, formatField, ProgressBar } from '../src/cli/progress.ts';

const progress = suite('progress bar');

/** A stream that records writes, and a clock the test moves by hand (milliseconds). */
function fakes(isTTY: boolean, columns?: number) {
  const writes: string[] = [];
  const clock = { t: 1000 };
  const stream = { isTTY, columns, write: (s: string) => writes.push(s) };
  return { writes, clock, stream, now: () => clock.t };
}

/** The ETA shown in a line, in seconds, parsed back from formatDuration's output. */
function etaSeconds(line: string): number {
  const m = /ETA (?:(\d+)h )?(?:(\d+)m )?(?:(\d+)s)?/.exec(line);
  assert.ok(m, `no ETA in ${JSON.stringify(line)}`);
  return Number(m![1] ?? 0) * 3600 + Number(m![2] ?? 0) * 60 + Number(m![3] ?? 0);
}

progress('formatDuration: 42s, 3m 05s, 1h 02m; rounding carries; unknown is --', () => {
  assert.is(formatDuration(42), '42s');
  assert.is(formatDuration(0), '0s');
  assert.is(formatDuration(185), '3m 05s');
  assert.is(formatDuration(3720 + 40), '1h 02m');
  assert.is(formatDuration(59.6), '1m 00s');
  assert.is(formatDuration(3599.7), '1h 00m');
  assert.is(formatDuration(100 * 3600 + 5 * 60), '100h 05m');
  assert.is(formatDuration(NaN), '--');
  assert.is(formatDuration(Infinity), '--');
  assert.is(formatDuration(-1), '--');
});

progress('fields: integers as they are, other numbers to 3 significant digits, strings verbatim', () => {
  assert.equal([formatField(0.031234), formatField(98.43), formatField(215.26), formatField(7), formatField('98.4%'), formatField(NaN)],
    ['0.0312', '98.4', '215.3', '7', '98.4%', 'NaN']);
});

progress('on a TTY: one line redrawn with \\r at most every 100 ms, with bar, count, fields, rate and ETA', () => {
  const { writes, clock, stream, now } = fakes(true);
  const bar = new ProgressBar({ total: 1000, label: 'epoch 1', stream, now, unit: 'img' });
  // 200 updates, 5 ms apart (one second): at most ~11 redraws.
  for (let i = 1; i <= 200; i++) {
    clock.t += 5;
    bar.update(i, { loss: 0.0312, acc: '98.4%' });
  }
  assert.ok(writes.length >= 9 && writes.length <= 11, `${writes.length} redraws in one second`);
  for (const w of writes) {
    assert.ok(w.startsWith('\r') && !w.includes('\n'), JSON.stringify(w));
  }
  const last = writes[writes.length - 1];
  assert.match(last, /^\repoch 1 \[#{3,4}\.{16,17}\] 1[89]\d\/1000  loss 0\.0312  acc 98\.4%  200 img\/s  1s, ETA /);
  // 200 items a second, ~800 left: about 4 s.
  assert.ok(Math.abs(etaSeconds(last) - 4) <= 1, last);
  // The final update is always drawn, even inside the throttle window.
  clock.t += 1;
  const before = writes.length;
  bar.update(1000, { loss: 0.03 });
  assert.is(writes.length, before + 1);
  assert.match(writes[writes.length - 1], /\[#{20}\] 1000\/1000/);
  clock.t += 3999;
  bar.finish({ loss: 0.029, acc: '98.5%' });
  const summary = writes[writes.length - 1];
  assert.match(summary, /^\repoch 1 done: 1000\/1000 in 5s  200 img\/s  loss 0\.029  acc 98\.5%\x1b\[K\n$/);
  bar.finish();
  bar.update(5);
  assert.is(writes[writes.length - 1], summary, 'nothing after finish');
});

progress('stop(): a failed run ends with "stopped" and the count of work that completed (never more than was counted)', () => {
  const { writes, clock, stream, now } = fakes(false);
  const bar = new ProgressBar({ total: 48, label: 'train', stream, now, unit: 'img' });
  clock.t += 2000;
  bar.update(32);
  bar.stop(16);
  assert.match(writes.at(-1)!, /^train stopped: 16\/48 in 2s  8 img\/s\n$/);
  bar.stop(0);
  bar.finish();
  assert.match(writes.at(-1)!, /^train stopped: 16\/48/, 'ended once');
  const other = fakes(false);
  const unknown = new ProgressBar({ total: 48, label: 'train', stream: other.stream, now: other.now });
  unknown.update(24);
  unknown.stop(99);
  assert.match(other.writes.at(-1)!, /^train stopped: 24\/48/, 'a count past what was done is capped');
});

progress('not a TTY: plain lines every 10% or 30 s, never a carriage return or escape code', () => {
  const { writes, clock, stream, now } = fakes(false);
  const bar = new ProgressBar({ total: 600, label: 'train', stream, now });
  for (let i = 1; i <= 600; i++) {
    clock.t += 10;
    bar.update(i, { loss: 1 / i });
  }
  bar.finish({ loss: 0.001 });
  assert.is(writes.length, 11); // 10%, 20%, ..., 100%, and the summary
  assert.match(writes.join(''), /^(train \d+\/600 \(\d+%\)  loss [\d.e-]+  \d+s, ETA \S+( \S+)?\n){10}train done: 600\/600 in 6s  loss 0\.001\n$/);
  assert.not.match(writes.join(''), /[\r\x1b]/);
  assert.equal(writes.slice(0, 10).map((w) => /\((\d+)%\)/.exec(w)![1]), ['10', '20', '30', '40', '50', '60', '70', '80', '90', '100']);
  // Slow progress: a line at least every 30 s even between percentages.
  const slow = fakes(false);
  const slowBar = new ProgressBar({ total: 100_000, label: 'eval', stream: slow.stream, now: slow.now });
  for (let i = 1; i <= 120; i++) {
    slow.clock.t += 1000;
    slowBar.update(i * 10);
  }
  assert.is(slow.writes.length, 4, slow.writes.join('')); // at 30, 60, 90 and 120 s
  assert.match(slow.writes[0], /^eval 300\/100000 \(0%\)  30s, ETA 2h 46m\n$/);
  // isTTY comes from the stream unless given.
  const forced = fakes(true);
  new ProgressBar({ total: 10, label: 'x', stream: forced.stream, now: forced.now, isTTY: false }).update(10);
  assert.is(forced.writes[0], 'x 10/10 (100%)  0s, ETA 0s\n');
});

progress('the ETA follows a smoothed rate: steady under jitter, adapts to a real change, -- before any rate', () => {
  const { writes, clock, stream, now } = fakes(true);
  const bar = new ProgressBar({ total: 10_000, label: 'x', stream, now, redrawMs: 0 });
  bar.update(0);
  assert.match(writes[0], /ETA --/);
  // 100 items a second, updates alternating 50 and 150 ms apart for the same 10 items.
  let done = 0;
  for (let i = 0; i < 100; i++) {
    clock.t += i % 2 ? 50 : 150;
    bar.update((done += 10));
  }
  const eta = etaSeconds(writes[writes.length - 1]);
  assert.ok(Math.abs(eta - (10_000 - done) / 100) <= 0.05 * ((10_000 - done) / 100), `ETA ${eta} s at 100 items/s`);
  // Now four times faster: within ~20 s (several time constants) the ETA reflects 400 items/s.
  for (let i = 0; i < 200; i++) {
    clock.t += 100;
    bar.update((done += 40));
  }
  const fast = etaSeconds(writes[writes.length - 1]);
  assert.ok(Math.abs(fast - (10_000 - done) / 400) <= 2, `ETA ${fast} s at 400 items/s, ${10_000 - done} left`);
});

progress('a redrawn line is cut to the terminal width so it never wraps', () => {
  const { writes, stream, now } = fakes(true, 40);
  const bar = new ProgressBar({ total: 100, label: 'a long label', stream, now });
  bar.update(50, { loss: 0.1234, accuracy: '99.1%', extra: 'x'.repeat(50) });
  assert.is(writes[0].replace('\r', '').replace('\x1b[K', '').length, 39);
  assert.throws(() => new ProgressBar({ total: -1, label: 'x', stream, now }), /total must be a number >= 0/);
});

progress.run();
