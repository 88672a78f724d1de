// A static file server for the web app tests: serves a folder (dist/web) plus in-memory files
// (checkpoints made by a test, a models/index.json) that take precedence, on 127.0.0.1.
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
};

export interface WebServer {
  url: string;
  /** Adds or replaces an in-memory file (path from the root, e.g. '/models/index.json'). */
  put(path: string, body: Uint8Array | string): void;
  close(): Promise<void>;
}

export async function serveWeb(root: string): Promise<WebServer> {
  const files = new Map<string, Uint8Array | string>();
  const server: Server = createServer(async (req, res) => {
    let path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path.endsWith('/')) path += 'index.html';
    const type = TYPES[extname(path)] ?? 'application/octet-stream';
    const memory = files.get(path);
    if (memory !== undefined) {
      res.writeHead(200, { 'content-type': type, 'content-length': Buffer.byteLength(memory) });
      res.end(memory);
      return;
    }
    const file = normalize(join(root, path));
    if (!file.startsWith(normalize(root))) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': type, 'content-length': body.length });
      res.end(body);
    } catch {
      res.writeHead(404).end(`not found: ${path}`);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('server has no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    put: (path, body) => files.set(path, body),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
