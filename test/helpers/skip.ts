// uvu's skip() records nothing about why: every skip here says it.
import type { Test } from 'uvu';

export function skipWithReason(suite: Test, name: string, reason: string): void {
  process.stdout.write(`\n  [skip] ${name}: ${reason}\n`);
  suite.skip(name, () => {});
}
