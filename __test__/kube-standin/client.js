'use strict';

// Small HTTP helpers for tests that talk to the stand-in directly: one-shot
// requests and a watch-stream reader with bounded waits. No keep-alive agent.

const http = require('node:http');
const { startStandin } = require('./index');

/** GET (or another method) `path`; resolves { status, headers, body } with body parsed as JSON. */
function apiRequest(base, path, { token, method = 'GET', timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const headers = token === undefined ? {} : { Authorization: `Bearer ${token}` };
    const req = http.request(new URL(path, base), { method, headers, agent: false }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { data += c; });
      res.on('end', () => {
        let body;
        try {
          body = data ? JSON.parse(data) : undefined;
        } catch (err) {
          body = data;
        }
        resolve({ status: res.statusCode, headers: res.headers, body });
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`request ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Opens a watch; resolves once the response headers arrived, with
 *   status, headers, events (all received so far),
 *   next(timeoutMs) -> the next event (rejects on timeout or end of stream),
 *   take(n, timeoutMs) -> the next n events,
 *   ended -> promise of { complete } (complete=false when the connection was cut),
 *   close().
 */
function openWatch(base, path, { token, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const headers = token === undefined ? {} : { Authorization: `Bearer ${token}` };
    const queue = [];
    const waiters = [];
    let done = null;
    const req = http.get(new URL(path, base), { headers, agent: false }, (res) => {
      let buf = '';
      let resolveEnded;
      const ended = new Promise((r) => { resolveEnded = r; });
      const finish = () => {
        if (done) return;
        done = { complete: res.complete };
        resolveEnded(done);
        while (waiters.length) waiters.shift().fail(new Error('watch stream ended'));
      };
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (!line.trim()) continue;
          const event = JSON.parse(line);
          watch.events.push(event);
          if (waiters.length) waiters.shift().ok(event);
          else queue.push(event);
        }
      });
      res.on('error', () => {});
      res.on('close', finish);
      res.on('end', finish);
      const watch = {
        status: res.statusCode,
        headers: res.headers,
        events: [],
        ended,
        next(ms = 5000) {
          if (queue.length) return Promise.resolve(queue.shift());
          if (done) return Promise.reject(new Error('watch stream ended'));
          return new Promise((ok, fail) => {
            const w = {
              ok: (e) => { clearTimeout(t); ok(e); },
              fail: (e) => { clearTimeout(t); fail(e); },
            };
            const t = setTimeout(() => {
              waiters.splice(waiters.indexOf(w), 1);
              fail(new Error(`no watch event within ${ms} ms (got ${watch.events.length} so far)`));
            }, ms);
            waiters.push(w);
          });
        },
        async take(n, ms = 5000) {
          const out = [];
          for (let k = 0; k < n; k++) out.push(await watch.next(ms));
          return out;
        },
        close() {
          req.destroy();
          return ended;
        },
      };
      resolve(watch);
    });
    req.setTimeout(timeoutMs, () => {
      if (!done) req.destroy(new Error(`watch ${path}: no response headers within ${timeoutMs} ms`));
    });
    req.on('response', () => req.setTimeout(0));
    req.on('error', (err) => { if (!done) reject(err); });
  });
}

/**
 * Runs `fn(kube, get, watch)` against a stand-in started with `opts`, closed after it:
 * `get` and `watch` are `apiRequest` and `openWatch` with its URL and token.
 */
async function withStandin(opts, fn) {
  const kube = await startStandin(opts);
  try {
    return await fn(kube, (p, o = {}) => apiRequest(kube.url, p, { token: kube.token, ...o }),
      (p, o = {}) => openWatch(kube.url, p, { token: kube.token, ...o }));
  } finally {
    await kube.close();
  }
}

module.exports = { apiRequest, openWatch, withStandin };
