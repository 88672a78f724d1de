// Lets Node run the TypeScript sources directly (tests, tools): `node --import ./tools/register-ts.mjs file.ts`.
// .ts files are stripped of types by esbuild (the same compiler build.mjs uses) and .wgsl files are
// imported as text, exactly as in the bundles, so tests exercise the code users get.
import { register } from 'node:module';
register('./ts-hooks.mjs', import.meta.url);
