// Serves dist/ for local use: node serve.mjs [--listen 127.0.0.1:7680].
// Static files only, on loopback by default; the page connects to inboxd's
// WebSocket listener itself.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { dirname, extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const dist = join(dirname(fileURLToPath(import.meta.url)), "dist");
const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".map": "application/json" };

export function serve(listen = "127.0.0.1:7680") {
  const i = listen.lastIndexOf(":");
  const srv = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
    const file = join(dist, path === "/" ? "index.html" : path);
    if (req.method !== "GET" || !file.startsWith(dist + "/")) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => srv.listen(Number(listen.slice(i + 1)), listen.slice(0, i), () => resolve(srv)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf("--listen");
  const srv = await serve(at > 0 ? process.argv[at + 1] : undefined);
  const a = srv.address();
  console.log(`inboxd web page on http://${a.address}:${a.port}/`);
}
