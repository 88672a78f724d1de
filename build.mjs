// Builds the package with esbuild: the Node CLI and library bundles and the browser bundle, with
// kernels/*.wgsl imported as text; then the library's type declarations with TypeScript.
// Usage: node build.mjs [--no-types] [--watch]
import { build, context } from 'esbuild';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
// The web app (src/web): its bundle and static folder dist/web/ (see src/web/build-web.mjs).
import { webBuildOptions, writeWebStatic } from './src/web/build-web.mjs';

const args = new Set(process.argv.slice(2));
const common = {
  bundle: true,
  format: 'esm',
  sourcemap: true,
  loader: { '.wgsl': 'text' },
  logLevel: 'warning',
};
const targets = [
  {
    ...common,
    entryPoints: { cli: 'src/cli/main.ts', index: 'src/index.ts' },
    outdir: 'dist',
    platform: 'node',
    target: 'node20',
    // dawn.node is a native addon; playwright-core is only for tests and tools.
    external: ['webgpu', 'playwright-core'],
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
  },
  {
    ...common,
    entryPoints: { capsnet: 'src/browser.ts' },
    outdir: 'dist/browser',
    platform: 'browser',
    target: 'es2022',
  },
  // The web app: dist/web/app.js + app.css, next to the static files written by writeWebStatic().
  webBuildOptions(),
];

rmSync('dist', { recursive: true, force: true });
if (args.has('--watch')) {
  writeWebStatic();
  for (const options of targets) await (await context(options)).watch();
  console.log('build.mjs: watching src/ and kernels/');
} else {
  const started = performance.now();
  await Promise.all(targets.map((options) => build(options)));
  writeWebStatic();
  if (!args.has('--no-types')) await emitTypes();
  console.log(`build.mjs: dist/ built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/** Declarations for the library entry points (dist/types), so TypeScript users get types. */
async function emitTypes() {
  const ts = (await import('typescript')).default;
  const program = ts.createProgram(['src/index.ts', 'src/browser.ts', 'src/wgsl.d.ts'], {
    declaration: true,
    emitDeclarationOnly: true,
    outDir: 'dist/types',
    rootDir: 'src',
    strict: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    allowImportingTsExtensions: true,
    rewriteRelativeImportExtensions: true,
    skipLibCheck: true,
    types: ['@webgpu/types', 'node'],
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
  });
  const result = program.emit();
  const problems = ts.getPreEmitDiagnostics(program).concat(result.diagnostics);
  if (problems.length > 0) {
    const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => process.cwd(), getNewLine: () => '\n' };
    console.error(ts.formatDiagnostics(problems, host));
    process.exit(1);
  }
  // The declarations name WebGPU's types (GPUDevice, GPUBuffer...): a user's project gets them from
  // @webgpu/types (a dependency) through this reference, not from its own tsconfig.
  for (const entry of ['dist/types/index.d.ts', 'dist/types/browser.d.ts']) {
    writeFileSync(entry, `/// <reference types="@webgpu/types" />\n${readFileSync(entry, 'utf8')}`);
  }
}
