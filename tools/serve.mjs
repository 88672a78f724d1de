// `npm run serve`: the web app on http://127.0.0.1:8000 (or --port N, --host H), served by esbuild's
// own server, rebuilt on every change to src/ or kernels/ with live reload. The static files
// (index.html, the MNIST data, the shipped models) are written to dist/web/ at start; restart after
// changing index.html or adding a model to src/web/models/.
import { context } from 'esbuild';
import { parseArgs } from 'node:util';
import { WEB_OUT, webBuildOptions, writeWebStatic } from '../src/web/build-web.mjs';

const { values } = parseArgs({
  options: { port: { type: 'string', default: '8000' }, host: { type: 'string', default: '127.0.0.1' } },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`serve: --port ${values.port} is not a port number`);
  process.exit(2);
}

const { models, trainImages } = writeWebStatic();
const ctx = await context(webBuildOptions({ dev: true }));
await ctx.watch();
const server = await ctx.serve({ servedir: WEB_OUT, host: values.host, port });
const shown = server.hosts?.[0] ?? values.host;
console.log(`capsule explorer: http://${shown}:${server.port}/`);
console.log(`  serving ${WEB_OUT} (MNIST test set + ${trainImages} training images, ${models} shipped model${models === 1 ? '' : 's'}); rebuilding on changes; Ctrl-C stops`);

const stop = async () => {
  await ctx.dispose();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
