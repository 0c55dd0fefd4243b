// nodeweb: the Node twin of tests/apps/pyweb (http module only, no npm packages).
// Env: PORT (required), BOOT_DELAY, CRASH_ON_START, HEALTH_STATUS, EXIT_ON_SIGTERM, VERSION,
// RENDER_SERVICE_NAME, RENDER_GIT_COMMIT. See tests/apps/README.md.
'use strict';

const http = require('http');

const PORT = parseInt(process.env.PORT || '0', 10);
const VERSION = process.env.VERSION || '';
const HEALTH_STATUS = parseInt(process.env.HEALTH_STATUS || '200', 10);
const EXIT_ON_SIGTERM = (process.env.EXIT_ON_SIGTERM || '1') !== '0';
const BOOT_DELAY_MS = parseFloat(process.env.BOOT_DELAY || '0') * 1000;
const DRAIN_LIMIT_MS = 30000;
const tag = `nodeweb[${process.pid}]`;

let inflight = 0;
let draining = false;

function send(res, status, body, ctype = 'text/plain; charset=utf-8') {
  const data = Buffer.from(body);
  const headers = { 'Content-Type': ctype, 'Content-Length': data.length };
  if (draining) headers.Connection = 'close';
  res.writeHead(status, headers);
  res.end(data);
}

function sendJson(res, status, payload) {
  send(res, status, JSON.stringify(payload) + '\n', 'application/json');
}

async function proxy(res, target) {
  if (!target) return send(res, 400, 'missing ?url=\n');
  try {
    const upstream = await fetch(target, { signal: AbortSignal.timeout(10000) });
    send(res, upstream.status, await upstream.text());
  } catch (err) {
    send(res, 502, `proxy to ${target} failed: ${err.message}\n`);
  }
}

function route(req, res) {
  const url = new URL(req.url, 'http://localhost');
  const q = url.searchParams;
  switch (url.pathname) {
    case '/healthz':
      return send(res, HEALTH_STATUS, HEALTH_STATUS < 400 ? 'ok\n' : 'unhealthy\n');
    case '/':
      return sendJson(res, 200, {
        service: process.env.RENDER_SERVICE_NAME ?? null,
        version: VERSION,
        pid: process.pid,
        port: PORT,
        commit: process.env.RENDER_GIT_COMMIT ?? null,
        host: req.headers.host ?? null,
      });
    case '/sleep': {
      const ms = parseFloat(q.get('ms') || '0');
      return setTimeout(() => sendJson(res, 200, { slept_ms: ms, pid: process.pid, version: VERSION }), ms);
    }
    case '/env': {
      const key = q.get('key') || '';
      const value = process.env[key];
      if (value === undefined) return send(res, 404, `env var '${key}' is not set\n`);
      return send(res, 200, value);
    }
    case '/proxy':
      return proxy(res, q.get('url'));
    default:
      return send(res, 404, 'not found\n');
  }
}

function main() {
  if (process.env.CRASH_ON_START === '1') {
    console.error('nodeweb: CRASH_ON_START=1 set, exiting with code 3 before listening');
    process.exit(3);
  }
  if (!(PORT > 0)) {
    console.error('nodeweb: $PORT is not set');
    process.exit(2);
  }
  const server = http.createServer((req, res) => {
    inflight += 1;
    res.on('close', () => {
      inflight -= 1;
      console.log(`${tag} ${req.socket.remoteAddress} "${req.method} ${req.url}" ${res.statusCode}`);
      if (draining && inflight === 0) finish();
    });
    route(req, res);
  });
  server.keepAliveTimeout = 65000; // outlive the edge's idle timeout: no reuse-after-close races
  server.headersTimeout = 66000;

  function finish() {
    console.log(`${tag} drained, bye`);
    process.exit(0);
  }

  process.on('SIGTERM', () => {
    if (EXIT_ON_SIGTERM) {
      console.log(`${tag} SIGTERM: exiting now`);
      process.exit(0); // hostile: drop in-flight requests on the floor
    }
    console.log(`${tag} SIGTERM: draining`);
    draining = true;
    server.close();
    server.closeIdleConnections();
    if (inflight === 0) finish();
    setTimeout(finish, DRAIN_LIMIT_MS).unref();
  });

  server.listen(PORT, '127.0.0.1', () => {
    console.log(`${tag} version=${VERSION} listening on 127.0.0.1:${PORT}`);
  });
}

if (BOOT_DELAY_MS > 0) {
  const early = () => process.exit(0); // SIGTERM while booting: nothing to drain
  process.on('SIGTERM', early);
  setTimeout(() => {
    process.off('SIGTERM', early);
    main();
  }, BOOT_DELAY_MS);
} else {
  main();
}
