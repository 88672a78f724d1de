// Progress reporting for `capsnet train` and `eval`. On a terminal: one line redrawn in place, at
// most ~10 times a second (redrawing on every batch would cost more than a small batch on a fast
// GPU, and flickers). Elsewhere (CI logs, pipes, files): plain lines every 10% or 30 s, never a
// carriage return, so logs stay readable and small.

export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  /** Terminal width: a redrawn line must not wrap, or \r returns only to the start of its last row. */
  columns?: number;
}

export type ProgressFields = Record<string, string | number>;

export interface ProgressOptions {
  total: number;
  label: string;
  stream?: ProgressStream;
  isTTY?: boolean;
  /** When set (e.g. 'img'), the smoothed rate is shown as '215 img/s'. */
  unit?: string;
  /** Milliseconds clock; injectable so tests control time. */
  now?: () => number;
  /** TTY: least time between redraws. */
  redrawMs?: number;
  /** Not a TTY: a line each time this percentage is passed ... */
  logEveryPercent?: number;
  /** ... or when this long has passed since the last line. */
  logEverySeconds?: number;
}

/** Time constant of the rate's exponential smoothing: steady enough for an ETA, quick to follow a real change. */
const RATE_TAU_SECONDS = 5;
const BAR_WIDTH = 20;

export class ProgressBar {
  private readonly total: number;
  private readonly label: string;
  private readonly stream: ProgressStream;
  private readonly isTTY: boolean;
  private readonly unit: string | undefined;
  private readonly now: () => number;
  private readonly redrawMs: number;
  private readonly logEveryPercent: number;
  private readonly logEveryMs: number;
  private readonly started: number;
  private done = 0;
  private rate: number | undefined; // items per second, smoothed
  private rateAt: number; // time and count of the last rate sample
  private rateDone = 0;
  private lastDraw = -Infinity;
  private lastLog: number;
  private nextLogPercent: number;
  private finished = false;

  constructor(options: ProgressOptions) {
    const { total, label, stream = process.stderr, now = () => performance.now() } = options;
    if (!Number.isFinite(total) || total < 0) throw new RangeError(`ProgressBar: total must be a number >= 0, got ${total}`);
    this.total = total;
    this.label = label;
    this.stream = stream;
    this.isTTY = options.isTTY ?? stream.isTTY === true;
    this.unit = options.unit;
    this.now = now;
    this.redrawMs = options.redrawMs ?? 100;
    this.logEveryPercent = options.logEveryPercent ?? 10;
    this.logEveryMs = (options.logEverySeconds ?? 30) * 1000;
    this.started = this.rateAt = this.lastLog = now();
    this.nextLogPercent = this.logEveryPercent;
  }

  /** `done` items of `total` are complete; `fields` (loss, accuracy...) are shown after the count. */
  update(done: number, fields: ProgressFields = {}): void {
    if (this.finished) return;
    const t = this.now();
    this.sampleRate(done, t);
    this.done = done;
    if (this.isTTY) {
      if (t - this.lastDraw < this.redrawMs && done < this.total) return;
      this.lastDraw = t;
      this.stream.write(`\r${this.fit(this.line(fields, t, true))}\x1b[K`);
    } else {
      const percent = this.percent();
      if (percent < this.nextLogPercent && t - this.lastLog < this.logEveryMs) return;
      this.lastLog = t;
      this.nextLogPercent = (Math.floor(percent / this.logEveryPercent) + 1) * this.logEveryPercent;
      this.stream.write(`${this.line(fields, t, false)}\n`);
    }
  }

  /**
   * A message on a line of its own (a skipped step, a warning): on a terminal it replaces the bar's
   * line and the bar is redrawn at the next update; elsewhere it is one more line of the log.
   */
  note(text: string): void {
    if (this.isTTY && !this.finished) {
      this.stream.write(`\r${text}\x1b[K\n`);
      this.lastDraw = -Infinity;
    } else {
      this.stream.write(`${text}\n`);
    }
  }

  /** Ends the bar with one final line: count, total time, average rate and `summary` fields. Idempotent. */
  finish(summary: ProgressFields = {}): void {
    this.end('done', summary);
  }

  /**
   * Ends the bar on a failure: "stopped", with `completed` items (when the work counted so far
   * includes some that turned out bad, e.g. a step whose NaN was found after it ran). Idempotent.
   */
  stop(completed?: number): void {
    if (completed !== undefined && !this.finished) this.done = Math.max(0, Math.min(completed, this.done));
    this.end('stopped', {});
  }

  private end(word: string, summary: ProgressFields): void {
    if (this.finished) return;
    this.finished = true;
    const seconds = (this.now() - this.started) / 1000;
    const parts = [`${this.label} ${word}: ${this.done}/${this.total} in ${formatDuration(seconds)}`];
    if (this.unit && seconds > 0) parts.push(`${formatRate(this.done / seconds)} ${this.unit}/s`);
    parts.push(...formatFields(summary));
    const text = parts.join('  ');
    this.stream.write(this.isTTY ? `\r${text}\x1b[K\n` : `${text}\n`);
  }

  /** Smoothed items per second; the ETA comes from it. Several updates in the same instant count as one sample. */
  private sampleRate(done: number, t: number): void {
    const dt = (t - this.rateAt) / 1000;
    if (done < this.rateDone) { // the caller went backwards (a restart): start measuring again
      [this.rate, this.rateAt, this.rateDone] = [undefined, t, done];
      return;
    }
    if (dt <= 0) return;
    const instant = (done - this.rateDone) / dt;
    // Time-weighted exponential average, so the smoothing does not depend on how often update is called.
    this.rate = this.rate === undefined ? instant : this.rate + (1 - Math.exp(-dt / RATE_TAU_SECONDS)) * (instant - this.rate);
    [this.rateAt, this.rateDone] = [t, done];
  }

  private percent(): number {
    return this.total > 0 ? Math.min(100, (100 * this.done) / this.total) : 100;
  }

  private line(fields: ProgressFields, t: number, bar: boolean): string {
    const parts: string[] = [];
    if (bar) {
      const filled = Math.round((this.percent() / 100) * BAR_WIDTH);
      parts.push(`${this.label} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${this.done}/${this.total}`);
    } else {
      parts.push(`${this.label} ${this.done}/${this.total} (${Math.floor(this.percent())}%)`);
    }
    parts.push(...formatFields(fields));
    if (this.unit && this.rate !== undefined) parts.push(`${formatRate(this.rate)} ${this.unit}/s`);
    const left = Math.max(0, this.total - this.done);
    const eta = left === 0 ? '0s' : this.rate && this.rate > 0 ? formatDuration(left / this.rate) : '--';
    parts.push(`${formatDuration((t - this.started) / 1000)}, ETA ${eta}`);
    return parts.join('  ');
  }

  /** Cuts a redrawn line to the terminal width (one column spare: writing the last column wraps on some terminals). */
  private fit(text: string): string {
    const columns = this.stream.columns;
    return columns && columns > 1 && text.length > columns - 1 ? text.slice(0, columns - 1) : text;
  }
}

/** '42s', '3m 05s', '1h 02m' (elapsed and ETA; seconds are noise once it takes hours). '--' when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad2(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad2(Math.floor((s % 3600) / 60))}m`;
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** Integers as they are, other numbers to 3 significant digits (1 decimal from 100 up); strings verbatim. */
export function formatField(value: string | number): string {
  if (typeof value === 'string' || Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(1) : String(Number(value.toPrecision(3)));
}

const formatFields = (fields: ProgressFields) => Object.entries(fields).map(([k, v]) => `${k} ${formatField(v)}`);

const formatRate = (r: number) => (r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : String(Number(r.toPrecision(2))));
