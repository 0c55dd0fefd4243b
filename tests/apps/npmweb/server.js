// yarnweb / pnpmweb: a Node app with one npm dependency (ms), installed by the package manager
// its lockfile names. Serves the Node version, the package manager that started it
// (npm_config_user_agent, set by yarn and pnpm for `yarn start` / `pnpm start`) and a value
// computed by the dependency.
'use strict';

const http = require('http');
const ms = require('ms');

const PORT = parseInt(process.env.PORT || '0', 10);

http
  .createServer((req, res) => {
    const body = JSON.stringify({
      node: process.version,
      agent: process.env.npm_config_user_agent || '',
      ms: ms('2 days'),
      dep: require.resolve('ms'),
    }) + '\n';
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  })
  .listen(PORT, '127.0.0.1');

process.on('SIGTERM', () => process.exit(0));
