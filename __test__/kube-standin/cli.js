#!/usr/bin/env node
'use strict';

// Runs the kube stand-in as its own process, for the demo and for clusters of
// processes. Prints exactly one JSON line on stdout once listening:
//   {"url":"http://127.0.0.1:PORT","control":"http://127.0.0.1:CPORT","token":...,"namespace":...,"selector":...}
// and serves a control API on 127.0.0.1 (see control.js for a client):
//   POST /pods           JSON array          setPods
//   POST /pods/add       pod                 addPod
//   POST /pods/remove    {name} | {ip}       removePod
//   POST /pods/update    {name|ip, patch}    updatePod
//   POST /forbid         {resource, on}      forbid
//   POST /outage         {on}                setOutage
//   POST /hang           {on}                setHang
//   POST /token          {token}             setToken
//   POST /dual-stack     {on}                setDualStack
//   POST /compact                            compact
//   POST /end-watches                        endWatches
//   GET  /stats                              stats
//   GET  /wait-watch?resource=R&n=1&timeoutMs=5000   waitForWatch
// Mutations answer {"resourceVersion":"N"}; errors answer 400 {"error":"..."}.
// Exits on SIGTERM, SIGINT, or when stdin closes (spawn it with stdin 'pipe';
// pass --ignore-stdin when stdin is /dev/null).
//
// Flags: --port --host --token --namespace --app --control-port --slice-size
//        --bookmark-ms --history-limit --dual-stack --ignore-stdin --pods '<json array>'
//        --help (this text)

const http = require('node:http');
const { startStandin } = require('./index');

const FLAGS = ['port', 'host', 'token', 'namespace', 'app', 'control-port', 'slice-size',
  'bookmark-ms', 'history-limit', 'dual-stack', 'ignore-stdin', 'pods', 'help'];

// Its usage is the comment at the top of this file.
function usage() {
  const source = require('node:fs').readFileSync(__filename, 'utf8').split('\n');
  const comment = source.slice(source.findIndex((l) => l.startsWith('//')));
  return comment.slice(0, comment.findIndex((l) => !l.startsWith('//')))
    .map((l) => l.replace(/^\/\/ ?/, '')).join('\n');
}

// A mistake on the command line: said with the usage, no stack trace.
class UsageError extends Error {}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new UsageError(`unexpected argument: ${argv[i]}`);
    const flag = m[1];
    if (!FLAGS.includes(flag)) throw new UsageError(`unknown flag --${flag}`);
    if (['dual-stack', 'ignore-stdin', 'help'].includes(flag)) {
      out[flag] = m[2] === undefined ? true : m[2] !== 'false';
    } else {
      const value = m[2] !== undefined ? m[2] : argv[++i];
      if (value === undefined) throw new UsageError(`--${flag} needs a value`);
      out[flag] = value;
    }
  }
  return out;
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      try {
        resolve(body.trim() === '' ? {} : JSON.parse(body));
      } catch (err) {
        reject(new Error(`invalid JSON body: ${err.message}`));
      }
    });
    req.on('error', reject);
  });
}

function controlHandler(kube) {
  const rv = () => ({ resourceVersion: kube.resourceVersion });
  const routes = {
    'POST /pods': (b) => { kube.setPods(b); return rv(); },
    'POST /pods/add': (b) => { kube.addPod(b); return rv(); },
    'POST /pods/remove': (b) => { kube.removePod(b.name || b.ip); return rv(); },
    'POST /pods/update': (b) => { kube.updatePod(b.name || b.ip, b.patch || {}); return rv(); },
    'POST /forbid': (b) => { kube.forbid(b.resource, b.on !== false); return rv(); },
    'POST /outage': (b) => { kube.setOutage(b.on !== false); return rv(); },
    'POST /hang': (b) => { kube.setHang(b.on !== false); return rv(); },
    'POST /token': (b) => { kube.setToken(b.token); return rv(); },
    'POST /dual-stack': (b) => { kube.setDualStack(b.on !== false); return rv(); },
    'POST /compact': () => { kube.compact(); return rv(); },
    'POST /end-watches': () => { kube.endWatches(); return rv(); },
    'GET /stats': () => kube.stats(),
    'GET /wait-watch': (b, q) => kube.waitForWatch(q.get('resource'), Number(q.get('n') || 1),
      Number(q.get('timeoutMs') || 5000)),
  };
  return async (req, res) => {
    const url = new URL(req.url, 'http://control.invalid');
    const route = routes[`${req.method} ${url.pathname.replace(/\/+$/, '')}`];
    let code = 200;
    let body;
    try {
      if (!route) {
        code = 404;
        body = { error: `no such control route: ${req.method} ${url.pathname}` };
      } else {
        body = await route(req.method === 'POST' ? await readJson(req) : {}, url.searchParams);
      }
    } catch (err) {
      code = 400;
      body = { error: err.message };
    }
    const text = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  const kube = await startStandin({
    host: args.host || '127.0.0.1',
    port: Number(args.port || 0),
    token: args.token || 'test-token',
    namespace: args.namespace || 'default',
    appName: args.app || 'web',
    sliceSize: args['slice-size'] ? Number(args['slice-size']) : undefined,
    bookmarkMs: args['bookmark-ms'] ? Number(args['bookmark-ms']) : undefined,
    historyLimit: args['history-limit'] ? Number(args['history-limit']) : undefined,
    dualStack: Boolean(args['dual-stack']),
    pods: args.pods ? JSON.parse(args.pods) : undefined,
  });

  const sockets = new Set();
  const control = http.createServer(controlHandler(kube));
  control.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    control.once('error', reject);
    control.listen(Number(args['control-port'] || 0), '127.0.0.1', resolve);
  });

  let closing = false;
  const shutdown = async () => {
    if (closing) return;
    closing = true;
    for (const s of sockets) s.destroy();
    control.close();
    await kube.close();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  if (!args['ignore-stdin']) {
    process.stdin.on('end', shutdown);
    process.stdin.on('close', shutdown);
    process.stdin.resume();
  }

  process.stdout.write(`${JSON.stringify({
    url: kube.url,
    control: `http://127.0.0.1:${control.address().port}`,
    token: kube.token,
    namespace: kube.namespace,
    selector: kube.selector,
  })}\n`);
}

main().catch((err) => {
  if (err instanceof UsageError) {
    process.stderr.write(`kube stand-in: ${err.message}\n\n${usage()}\n`);
    process.exit(2);
  }
  process.stderr.write(`kube stand-in: ${err.stack || err}\n`);
  process.exit(1);
});
