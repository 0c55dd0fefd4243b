// hello-web: a public page showing a counter kept by the private hello-api service.
'use strict';
const fs = require('fs');
const http = require('http');

const PORT = parseInt(process.env.PORT || '10000', 10);
const API = process.env.API_HOSTPORT || '127.0.0.1:10001';
const tag = `hello-web[${process.pid}]`;

let build = { builtAt: 'unknown (build step did not run)' };
try {
  build = JSON.parse(fs.readFileSync('build-info.json', 'utf8'));
} catch (err) {
  console.error(`${tag} no build-info.json: ${err.message}`);
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(count, error) {
  const counter = error ? `<p class="err">API unavailable: ${escape(error)}</p>`
    : `<p class="count">${escape(count)}</p><p>visits counted by <code>hello-api</code></p>`;
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Hello from Shipyard</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;color:#222}
.count{font-size:4rem;margin:.5rem 0}.err{color:#b00}small{color:#777}</style></head>
<body><h1>Hello from Shipyard</h1>${counter}
<small>instance pid ${process.pid} · built ${escape(build.builtAt)}
· session secret ${process.env.SESSION_SECRET ? 'configured' : 'missing'}</small>
</body></html>
`;
}

function send(res, status, body, type) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

async function home(res) {
  try {
    const r = await fetch(`http://${API}/count`, { signal: AbortSignal.timeout(3000) });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const { count } = await r.json();
    send(res, 200, page(count, null), 'text/html; charset=utf-8');
  } catch (err) {
    send(res, 502, page(null, err.message), 'text/html; charset=utf-8');
  }
}

const server = http.createServer((req, res) => {
  const path = new URL(req.url, 'http://localhost').pathname;
  res.on('finish', () => console.log(`${tag} ${req.method} ${req.url} ${res.statusCode}`));
  if (path === '/healthz') return send(res, 200, 'ok\n', 'text/plain');
  if (path === '/') return home(res);
  return send(res, 404, 'not found\n', 'text/plain');
});
server.keepAliveTimeout = 65000;
server.headersTimeout = 66000;

process.on('SIGTERM', () => {
  console.log(`${tag} SIGTERM: finishing in-flight requests`);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 10000).unref();
});

server.listen(PORT, '127.0.0.1', () => console.log(`${tag} listening on 127.0.0.1:${PORT}`));
