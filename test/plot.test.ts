// SVG line charts: well-formed output, 1-2-5 ticks covering the data, data-to-pixel mapping read
// back from the drawn tick positions, log scale, and no NaN whatever the data.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatTick, lineChartSvg, logTicks, niceTicks } from '../src/io/plot.ts';
import { makeRng } from './helpers/random.ts';

const plot = suite('line charts');

/** A tiny XML check: every tag is well formed with quoted attributes, tags balance, one <svg> root, text is escaped. */
function assertWellFormed(svg: string): void {
  const stack: string[] = [];
  let roots = 0;
  let last = 0;
  for (const m of svg.matchAll(/<[^>]*>/g)) {
    const text = svg.slice(last, m.index);
    assert.not.match(text, /[<>]|&(?!amp;|lt;|gt;|quot;)/, `unescaped text ${JSON.stringify(text)}`);
    last = m.index! + m[0].length;
    const tag = m[0];
    assert.match(tag, /^<\/?[a-zA-Z][\w-]*(\s+[\w:-]+="[^"<>]*")*\s*\/?>$/, `malformed tag ${tag}`);
    const name = /^<\/?([\w-]+)/.exec(tag)![1];
    if (tag.startsWith('</')) assert.is(stack.pop(), name, `</${name}> closes the wrong element`);
    else {
      if (stack.length === 0) roots++;
      if (!tag.endsWith('/>')) stack.push(name);
    }
  }
  assert.equal(stack, [], 'unclosed elements');
  assert.is(roots, 1);
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.not.match(svg, /NaN|Infinity|undefined/);
}

const attr = (tag: string, name: string) => Number(new RegExp(`\\s${name}="([^"]*)"`).exec(tag)![1]);

/** [value, pixel] of every tick on an axis: the label text and its grid line's coordinate. */
function ticks(svg: string, axis: 'x' | 'y'): Array<[number, number]> {
  const lines = [...svg.matchAll(new RegExp(`<line class="grid-${axis}"[^>]*>`, 'g'))].map((m) => attr(m[0], axis === 'x' ? 'x1' : 'y1'));
  const labels = [...svg.matchAll(new RegExp(`<text class="tick-${axis}"[^>]*>([^<]*)</text>`, 'g'))].map((m) => Number(m[1]));
  assert.is(lines.length, labels.length);
  return labels.map((v, i) => [v, lines[i]]);
}

/** The subpaths of series i's path, as lists of [x, y]. */
function paths(svg: string, i: number): Array<Array<[number, number]>> {
  const d = new RegExp(`<path class="series" data-series="${i}" d="([^"]*)"`).exec(svg)?.[1];
  if (!d) return [];
  return d.split('M').filter(Boolean).map((sub) => sub.split('L').map((p) => p.trim().split(' ').map(Number) as [number, number]));
}

/** Pixel of `v` by linear interpolation between the first and last drawn ticks (in log10 when `log`). */
function pixelOf(t: Array<[number, number]>, v: number, log = false): number {
  const f = log ? Math.log10 : (u: number) => u;
  const [[v0, p0], [v1, p1]] = [t[0], t[t.length - 1]];
  return p0 + ((f(v) - f(v0)) / (f(v1) - f(v0))) * (p1 - p0);
}

plot('niceTicks: steps of 1, 2 or 5 x 10^k, multiples of the step, covering the range', () => {
  assert.equal(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.equal(niceTicks(0.3, 0.95), [0.2, 0.4, 0.6, 0.8, 1]);
  assert.equal(niceTicks(0, 60000), [0, 10000, 20000, 30000, 40000, 50000, 60000]);
  assert.equal(niceTicks(-0.013, 0.021), [-0.02, -0.01, 0, 0.01, 0.02, 0.03]);
  const rng = makeRng(11);
  for (let trial = 0; trial < 2000; trial++) {
    const scale = 10 ** Math.floor(rng() * 16 - 8);
    const a = (rng() * 2 - 1) * scale;
    const b = a + rng() * scale * (rng() < 0.1 ? 1e-3 : 3);
    const [min, max] = [Math.min(a, b), Math.max(a, b)];
    const t = niceTicks(min, max);
    const what = `[${min}, ${max}] -> ${t}`;
    assert.ok(t.length >= 2 && t.length <= 13, what);
    assert.ok(t[0] <= min && t[t.length - 1] >= max, `does not cover: ${what}`);
    const step = Number((t[1] - t[0]).toPrecision(6)); // the difference of two large ticks carries rounding error
    const mantissa = step / 10 ** Math.floor(Math.log10(step) + 1e-9);
    assert.ok([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-6), `step ${step}: ${what}`);
    for (const v of t) assert.ok(Math.abs(v / step - Math.round(v / step)) < 1e-6, `${v} is not a multiple of ${step}: ${what}`);
    assert.ok(t[1] - step <= min, `a needless tick below: ${what}`);
  }
  // A flat series still gets an axis around its value.
  const flat = niceTicks(5, 5);
  assert.ok(flat[0] < 5 && flat[flat.length - 1] > 5);
});

plot('tick labels carry no floating-point noise', () => {
  assert.equal(niceTicks(0, 1).map((v) => formatTick(v, 0.2)), ['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']);
  assert.is(formatTick(0.1 + 0.2, 0.1), '0.3');
  assert.is(formatTick(40000, 10000), '40000');
  assert.is(formatTick(3e-5, 1e-5), '3e-5');
  assert.is(formatTick(2.5e7, 5e6), '2.5e+7');
  assert.is(formatTick(0.002, 0.002), '0.002');
});

plot('logTicks: decades, with 2 and 5 x 10^k over short ranges, thinned over long ones', () => {
  assert.equal(logTicks(0.001, 10), [0.001, 0.01, 0.1, 1, 10]);
  assert.equal(logTicks(0.02, 0.5), [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]);
  assert.equal(logTicks(1e-12, 1e6), [1e-12, 1e-9, 1e-6, 1e-3, 1, 1e3, 1e6]);
  assert.equal(logTicks(3, 3), [1, 2, 5, 10]);
  assert.throws(() => logTicks(0, 1), /bad range/);
});

plot('a chart is well-formed SVG with title, axis labels and a legend entry per series (escaped)', () => {
  const svg = lineChartSvg({
    title: 'Loss <train> & "test"', xLabel: 'step', yLabel: 'margin loss',
    series: [{ name: 'train', points: [[0, 0.5], [100, 0.2]] }, { name: 'a<b', points: [[0, 0.6], [100, 0.3]], color: '#123456' }],
  });
  assertWellFormed(svg);
  assert.ok(svg.includes('Loss &lt;train&gt; &amp; &quot;test&quot;'));
  assert.match(svg, /<text class="x-label"[^>]*>step<\/text>/);
  assert.match(svg, /<text class="y-label"[^>]*rotate\(-90[^>]*>margin loss<\/text>/);
  assert.match(svg, /<g class="legend">[\s\S]*>train<\/text>[\s\S]*>a&lt;b<\/text>[\s\S]*<\/g>/);
  assert.match(svg, /data-series="1" d="[^"]*" fill="none" stroke="#123456"/);
  assert.match(svg, /width="640" height="400"/);
});

plot('points land on the pixels the drawn ticks imply; ticks cover the data', () => {
  const rng = makeRng(5);
  const points: Array<[number, number]> = Array.from({ length: 40 }, (_, i) => [i * 250 + 17, 0.03 + rng() * 0.9]);
  const svg = lineChartSvg({ series: [{ name: 'loss', points }], width: 800, height: 500 });
  assertWellFormed(svg);
  const [tx, ty] = [ticks(svg, 'x'), ticks(svg, 'y')];
  assert.ok(tx[0][0] <= 17 && tx[tx.length - 1][0] >= 39 * 250 + 17);
  assert.ok(ty[0][0] <= Math.min(...points.map((p) => p[1])) && ty[ty.length - 1][0] >= Math.max(...points.map((p) => p[1])));
  // Ticks are evenly spaced on screen; y grows upwards.
  for (let i = 2; i < ty.length; i++) assert.ok(Math.abs((ty[i][1] - ty[i - 1][1]) - (ty[1][1] - ty[0][1])) < 0.02);
  assert.ok(ty[1][1] < ty[0][1]);
  const [drawn] = paths(svg, 0);
  assert.is(drawn.length, points.length);
  drawn.forEach(([x, y], i) => {
    assert.ok(Math.abs(x - pixelOf(tx, points[i][0])) < 0.02, `x of point ${i}: ${x} vs ${pixelOf(tx, points[i][0])}`);
    assert.ok(Math.abs(y - pixelOf(ty, points[i][1])) < 0.02, `y of point ${i}: ${y} vs ${pixelOf(ty, points[i][1])}`);
  });
  // The plot spans the drawing: the outer ticks are the frame's edges.
  const frame = /<rect class="frame"[^>]*>/.exec(svg)![0];
  assert.is(tx[0][1], attr(frame, 'x'));
  assert.is(tx[tx.length - 1][1], attr(frame, 'x') + attr(frame, 'width'));
  assert.is(ty[0][1], attr(frame, 'y') + attr(frame, 'height'));
  assert.is(ty[ty.length - 1][1], attr(frame, 'y'));
});

plot('log scale: decades equally spaced, points placed by log10, non-positive points skipped as gaps', () => {
  const points: Array<[number, number]> = [[1, 2], [2, 0.2], [3, 10 ** -1.5], [4, 0], [5, 0.004], [6, 0.001]];
  const svg = lineChartSvg({ series: [{ name: 'loss', points }], logY: true });
  assertWellFormed(svg);
  const ty = ticks(svg, 'y');
  assert.equal(ty.map((t) => t[0]), [0.001, 0.01, 0.1, 1, 10]);
  for (let i = 2; i < ty.length; i++) assert.ok(Math.abs((ty[i][1] - ty[i - 1][1]) - (ty[1][1] - ty[0][1])) < 0.02);
  const subpaths = paths(svg, 0);
  assert.is(subpaths.length, 2, 'y = 0 must break the line');
  assert.equal(subpaths.map((s) => s.length), [3, 2]);
  // 10^-1.5 sits exactly halfway between the 0.01 and 0.1 grid lines.
  assert.ok(Math.abs(subpaths[0][2][1] - (ty[1][1] + ty[2][1]) / 2) < 0.02);
  const flat = [...subpaths[0], ...subpaths[1]];
  [2, 0.2, 10 ** -1.5, 0.004, 0.001].forEach((v, i) => assert.ok(Math.abs(flat[i][1] - pixelOf(ty, v, true)) < 0.02, `point ${i}`));
});

plot('no NaN in the output: empty series, NaN and Infinity points, all-bad data says "no data"', () => {
  const gappy = lineChartSvg({
    title: 'gaps',
    series: [
      { name: 'empty', points: [] },
      { name: 'diverged', points: [[0, 1], [1, NaN], [2, 0.5], [3, 0.4], [NaN, 1], [5, Infinity], [6, 0.3]] },
    ],
  });
  assertWellFormed(gappy);
  assert.not.match(gappy, /no data/);
  assert.equal(paths(gappy, 0), []);
  assert.equal(paths(gappy, 1).map((s) => s.length), [2]); // (2, 0.5) - (3, 0.4)
  assert.is([...gappy.matchAll(/<circle class="point" data-series="1"/g)].length, 2); // (0, 1) and (6, 0.3) stand alone
  for (const series of [[], [{ name: 'nan', points: [[NaN, NaN], [1, Infinity]] as Array<[number, number]> }]]) {
    const svg = lineChartSvg({ title: 'nothing', series });
    assertWellFormed(svg);
    assert.match(svg, /<text class="no-data"[^>]*>no data<\/text>/);
  }
  const logNothing = lineChartSvg({ series: [{ name: 'zero', points: [[0, 0], [1, -1]] }], logY: true });
  assertWellFormed(logNothing);
  assert.match(logNothing, /no data/);
  // One point: a dot, and an axis around it.
  const one = lineChartSvg({ series: [{ name: 'one', points: [[3, 0.7]] }] });
  assertWellFormed(one);
  assert.match(one, /<circle class="point" data-series="0"/);
  assert.throws(() => lineChartSvg({ series: [], width: 50, height: 50 }), /too small/);
});

plot.run();
