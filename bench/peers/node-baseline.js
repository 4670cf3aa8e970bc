'use strict';

// The pure-Node baseline: node:http server and a keep-alive http.Agent client speaking
// node-swarm-kb's wire protocol (as 0.5.1 does), driven like the test fixture: JSON
// lines on stdin ({id, op, ...}), answers on stdout.
const http = require('node:http');
const readline = require('node:readline');
const { startLegacyServer, legacySend } = require('../../__test__/helpers/legacy-peer');
const { measure } = require('../measure');

const ip = process.env.NODE_IP;
const port = Number(process.env.SWARM_PORT);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, localAddress: ip });
const out = obj => process.stdout.write(`${JSON.stringify(obj)}\n`);

const ops = {
  bench: ({ kind, to, n, concurrency, seconds }) => {
    if (kind === 'send') return measure(n, concurrency, i => legacySend(agent, to, port, 'echo', { i }), seconds);
    if (kind === 'broadcast') {
      return measure(n, concurrency, i => Promise.all(to.map(ip2 => ip2 === ip ? undefined : legacySend(agent, ip2, port, 'echo', { i }))), seconds);
    }
    throw new Error(`no benchmark ${kind} in the baseline`);
  },
  usage: () => ({ rss: process.memoryUsage().rss, cpu: process.cpuUsage() })
};

startLegacyServer({ host: ip, port, handlers: { echo: [message => message] } }).then(() => {
  out({ event: 'ready', nodes: [ip] });
  readline.createInterface({ input: process.stdin }).on('line', line => {
    const { id, op, ...params } = JSON.parse(line);
    Promise.resolve().then(() => ops[op](params)).then(
      result => out({ id, result }),
      error => out({ id, error: { message: error.message } }));
  }).on('close', () => process.exit(0));
});
