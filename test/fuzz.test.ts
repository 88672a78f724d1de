// The quick slice of the fuzzer (tools/fuzz.ts): a couple of hundred seeded cases per reader of
// outside bytes (IDX plain and gzipped, safetensors, checkpoints, CIFAR-10, CLI flags), with the
// hostile sizes scaled to a tenth (still far past every limit). Every case must end in a correct
// read or a clear error. The long run: `node --import ./tools/register-ts.mjs tools/fuzz.ts --cases 10000`.
// The harness itself is checked first on readers broken on purpose, so a pass means something.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Rng } from '../src/data/rng.ts';
import { formatReports, runTarget, withAllocationGuard, type PreparedCase, type Target } from '../tools/fuzz/harness.ts';
import { scale } from '../tools/fuzz/mutate.ts';
import { TARGETS } from '../tools/fuzz/targets.ts';

const CASES = 200;
const SEED = 20240611;

const harness = suite('fuzz harness');

/** A target whose reader is `reader` and whose oracle always says `verdict`. */
function fakeTarget(name: string, verdict: 'valid' | 'invalid', reader: (bytes: Uint8Array) => unknown, check?: (r: unknown) => string | null): Target {
  return {
    name,
    description: 'a reader broken on purpose',
    prepare(rng: Rng): PreparedCase {
      const bytes = Uint8Array.from({ length: 16 }, () => rng.int(256));
      return { mutation: 'random bytes', source: 'fake.bin', inputBytes: bytes.length, run: () => reader(bytes), expect: { verdict, check } };
    },
  };
}

harness('flags crashes, unclear errors, wrong results, accepted invalid input, huge allocations, pollution', async () => {
  const run = async (t: Target) => (await runTarget(t, { seed: 1, cases: 3 })).bugs.map((b) => b.problem);
  const problems = {
    crash: await run(fakeTarget('crash', 'invalid', (b) => (b as unknown as { x: { y: number } }).x.y)),
    unnamed: await run(fakeTarget('unnamed', 'invalid', () => {
      throw new Error('something is wrong');
    })),
    accepted: await run(fakeTarget('accepted', 'invalid', (b) => b.length)),
    refused: await run(fakeTarget('refused', 'valid', () => {
      throw new Error('fake.bin: no');
    })),
    wrong: await run(fakeTarget('wrong', 'valid', () => 41, (r) => (r === 42 ? null : `got ${r}`))),
    alloc: await run(fakeTarget('alloc', 'invalid', () => new Float32Array(2 ** 28))),
    buffer: await run(fakeTarget('buffer', 'invalid', () => Buffer.alloc(2 ** 30))),
    pollution: await run(fakeTarget('pollution', 'invalid', () => {
      Object.defineProperty(Object.prototype, 'fuzzPolluted', { value: 1, configurable: true });
      throw new Error('fake.bin: refused');
    })),
    good: await run(fakeTarget('good', 'invalid', () => {
      throw new Error('fake.bin: byte 3 is wrong');
    })),
  };
  delete (Object.prototype as Record<string, unknown>).fuzzPolluted;
  assert.match(problems.crash[0], /^crash: TypeError/);
  assert.match(problems.unnamed[0], /does not name fake\.bin/);
  assert.match(problems.accepted[0], /accepted an invalid input/);
  assert.match(problems.refused[0], /refused a valid input/);
  assert.match(problems.wrong[0], /wrong result: got 41/);
  assert.match(problems.alloc[0], /allocation of 1073741824 bytes .* by new Float32Array/);
  assert.match(problems.buffer[0], /allocation of 1073741824 bytes .* by new Buffer\.alloc/);
  assert.match(problems.pollution[0], /prototype pollution/);
  assert.equal(problems.good, []);
});

harness('the allocation guard restores the constructors and lets small allocations through', async () => {
  const before = [globalThis.Float32Array, globalThis.ArrayBuffer, Buffer.alloc];
  const r = await withAllocationGuard(1024, () => new Float32Array(100).length + Float32Array.from([1, 2]).length);
  assert.is(r.value, 102);
  assert.is(r.largest, 400);
  assert.equal([globalThis.Float32Array, globalThis.ArrayBuffer, Buffer.alloc], before);
  assert.ok(new Float32Array(4) instanceof Float32Array);
});

harness.run();

const quick = suite('fuzz quick slice');

for (const target of TARGETS) {
  quick(`${target.name}: ${CASES} cases end in a correct read or a clear error (${target.description})`, async () => {
    scale.factor = 0.1;
    try {
      const report = await runTarget(target, { seed: SEED, cases: CASES, slowMs: 10_000 });
      assert.is(report.cases, CASES);
      if (report.bugs.length > 0) assert.unreachable(`\n${formatReports([report])}`);
      // Both outcomes occur, so the mutations neither always break nor never break the input.
      assert.ok(report.reads > 0 && report.errors > 0, `${report.reads} reads, ${report.errors} errors`);
    } finally {
      scale.factor = 1;
    }
  });
}

quick.run();
