'use strict';

// A client for the control API of cli.js, with the method names of the
// in-process stand-in object. Every method is async. Plain node:http, no
// keep-alive agent, so it never holds the event loop open.

const http = require('node:http');

function request(base, method, path, body) {
  const url = new URL(path, base);
  const text = body === undefined ? '' : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method,
      agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) },
    }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { data += c; });
      res.on('end', () => {
        let parsed;
        try {
          parsed = data ? JSON.parse(data) : undefined;
        } catch (err) {
          return reject(new Error(`control ${method} ${path}: bad JSON: ${data}`));
        }
        if (res.statusCode >= 400) {
          const err = new Error(`control ${method} ${path}: ${res.statusCode} ${parsed && parsed.error}`);
          err.statusCode = res.statusCode;
          return reject(err);
        }
        return resolve(parsed);
      });
    });
    req.on('error', reject);
    req.end(text);
  });
}

/**
 * @param {string} controlUrl the `control` URL printed by cli.js
 * Mutations resolve with the new resourceVersion (string), like the in-process object.
 */
function controlClient(controlUrl) {
  const post = async (path, body) => (await request(controlUrl, 'POST', path, body)).resourceVersion;
  const key = (nameOrIp) => (/^[0-9.]+$|:/.test(nameOrIp) ? { ip: nameOrIp } : { name: nameOrIp });
  return {
    setPods: (pods) => post('/pods', pods),
    addPod: (pod) => post('/pods/add', pod),
    removePod: (nameOrIp) => post('/pods/remove', key(nameOrIp)),
    updatePod: (nameOrIp, patch) => post('/pods/update', { ...key(nameOrIp), patch }),
    forbid: (resource, on = true) => post('/forbid', { resource, on }),
    setOutage: (on = true) => post('/outage', { on }),
    setHang: (on = true) => post('/hang', { on }),
    setToken: (token) => post('/token', { token }),
    setDualStack: (on = true) => post('/dual-stack', { on }),
    compact: () => post('/compact'),
    endWatches: () => post('/end-watches'),
    stats: () => request(controlUrl, 'GET', '/stats'),
    waitForWatch: (resource, n = 1, timeoutMs = 5000) => request(controlUrl, 'GET',
      `/wait-watch?resource=${encodeURIComponent(resource)}&n=${n}&timeoutMs=${timeoutMs}`),
  };
}

module.exports = { controlClient };
