// `npm run serve`: the web app on http://127.0.0.1:8000 (or --port N, --host H), served by esbuild's
// own server, rebuilt on every change to src/ or kernels/ with live reload. Everything goes to
// dist/web-dev/ (never the production dist/web/ that `npm run build` writes and the tests load): the
// static files (index.html, the MNIST data, the shipped models) at start (restart after changing
// index.html or adding a model to src/web/models/), the bundle on every change.
import { context } from 'esbuild';
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { WEB_OUT, webBuildOptions, writeWebStatic } from '../src/web/build-web.mjs';

const outdir = join(WEB_OUT, '..', 'web-dev');

const { values } = parseArgs({
  options: { port: { type: 'string', default: '8000' }, host: { type: 'string', default: '127.0.0.1' } },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`serve: --port ${values.port} is not a port number`);
  process.exit(2);
}

const { models, trainImages } = writeWebStatic({ outdir });
const ctx = await context(webBuildOptions({ outdir, dev: true }));
await ctx.watch();
const server = await ctx.serve({ servedir: outdir, host: values.host, port });
const shown = server.hosts?.[0] ?? values.host;
console.log(`capsule explorer: http://${shown}:${server.port}/`);
console.log(`  serving ${outdir} (MNIST test set + ${trainImages} training images, ${models} shipped model${models === 1 ? '' : 's'}); rebuilding on changes; Ctrl-C stops`);

const stop = async () => {
  await ctx.dispose();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
