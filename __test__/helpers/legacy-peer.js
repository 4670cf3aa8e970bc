'use strict';

// A peer speaking the wire protocol exactly as node-swarm-kb 0.5.1 does (docs/compat.md §3),
// on plain node:http: its server answers as 0.5.1's message handler, its client sends
// as 0.5.1's request-promise call did. Used by the interop tests and as the pure-Node
// baseline of the benchmarks.
const http = require('node:http');

function startLegacyServer ({ host, port, handlers }) {
  const server = http.createServer((req, res) => {
    const from = req.socket.remoteAddress;
    const topics = req.url.replace(/^\/|\/$/g, '').split('/');
    const chunks = [];
    if (req.method === 'POST' || req.method === 'PUT') req.on('data', c => chunks.push(c.toString()));
    req.on('end', () => {
      let body = chunks.join('');
      if (req.headers['content-type'] === 'application/json') {
        try {
          body = JSON.parse(body);
        } catch (error) {
          res.writeHead(400);
          return res.end(`Unable to decode request body: ${error.message}`);
        }
      }
      const calls = [];
      for (const topic of topics) for (const h of handlers[topic] || []) calls.push(Promise.resolve().then(() => h(body, topics, from)));
      Promise.all(calls).then(results => {
        let result = results.length <= 1 ? results.pop() : results;
        if (result === undefined) {
          res.writeHead(204);
        } else if (typeof result !== 'string') {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          result = JSON.stringify(result);
        }
        res.end(result);
      }, error => {
        res.writeHead(error.statusCode || 500);
        res.end(error.message);
      });
    });
  });
  return new Promise((resolve, reject) => server.listen(port, host, () => resolve(server)).on('error', reject));
}

// 0.5.1's send: a string is the raw body; any other truthy value is JSON (with the JSON
// headers, and the reply parsed when it can be); 0, false, null and true send no body.
function legacySend (agent, host, port, topic, message) {
  const json = typeof message !== 'string' && message;
  const headers = {};
  let body;
  if (typeof message === 'string') body = message;
  else if (json && json !== true) {
    body = JSON.stringify(json);
    headers['content-type'] = 'application/json';
    headers.accept = 'application/json';
  }
  if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
  const path = `/${Array.isArray(topic) ? topic.join('/') : topic}`;
  return new Promise((resolve, reject) => {
    const req = http.request({ agent, host, port, path, method: 'POST', headers }, res => {
      const chunks = [];
      res.on('data', c => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let value = text;
        if (json) {
          try {
            value = text ? JSON.parse(text) : undefined;
          } catch (_) {}
        }
        if (res.statusCode >= 200 && res.statusCode < 300) return resolve(value);
        const error = new Error(`${res.statusCode} - ${JSON.stringify(value)}`);
        error.statusCode = res.statusCode;
        reject(error);
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

module.exports = { startLegacyServer, legacySend };
