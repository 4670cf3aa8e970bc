'use strict';

// Clusters of real node processes, each on its own 127.0.0.x address and the same
// messaging port, discovering each other through the Kubernetes API stand-in.
const { spawn } = require('child_process');
const net = require('net');
const path = require('path');
const readline = require('readline');

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'node.js');

// A port free on 127.0.0.1, used by every node of a cluster on its own address. Taken
// below Linux's ephemeral range (32768-60999): one the kernel picks for a listener can
// be the local port of a connection from 127.0.0.x still closing (a cluster stopped
// just before on the same addresses), and the nodes' listen then fails with
// EADDRINUSE. Never the same one twice in a process.
const handedOut = new Set();
async function freePort () {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (!handedOut.has(port) && await listens(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port found in 20000-31999 on 127.0.0.1');
}

function listens (port) {
  return new Promise(resolve => {
    const server = net.createServer()
      .once('error', () => resolve(false))
      .listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

// Waits for `predicate` over `list` (re-checked on every push), bounded by `ms`.
function waitIn (list, emitter, predicate, ms, what) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const found = list.find(predicate);
      if (found === undefined) return false;
      clearTimeout(timer);
      emitter.off('line', check);
      resolve(found);
      return true;
    };
    const timer = setTimeout(() => {
      emitter.off('line', check);
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    if (!check()) emitter.on('line', check);
  });
}

class NodeProcess {
  // `captureStderr`: keep what the node writes to stderr in `this.stderr` (its warnings).
  // `program`: another program driven the same way (the benchmarks' peers).
  // `netns`: run it inside that network namespace (the fault tests).
  constructor (ip, env, { captureStderr = false, program = FIXTURE, netns } = {}) {
    this.ip = ip;
    this.events = [];
    this.pending = new Map();
    this.nextId = 1;
    this.stderr = '';
    const [command, args] = netns
      ? ['ip', ['netns', 'exec', netns, process.execPath, program]]
      : [process.execPath, [program]];
    this.child = spawn(command, args, {
      env: Object.assign({}, process.env, env, { NODE_IP: ip }),
      stdio: ['pipe', 'pipe', captureStderr ? 'pipe' : 'inherit']
    });
    if (captureStderr) this.child.stderr.on('data', chunk => { this.stderr += chunk; });
    this.exited = new Promise(resolve => this.child.on('exit', (code, signal) => resolve({ code, signal })));
    this.lines = readline.createInterface({ input: this.child.stdout });
    this.lines.on('line', line => {
      const msg = JSON.parse(line);
      if (msg.id && this.pending.has(msg.id)) {
        const { resolve } = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        resolve(msg);
      } else if (msg.event) {
        // When the test saw it, for latencies measured against the test's own clock.
        msg.at = Date.now();
        this.events.push(msg);
      }
    });
  }

  // Sends an op; resolves with its result, rejects with its error.
  request (op, params = {}, ms = 15000) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.ip}: ${op} got no answer within ${ms} ms`));
      }, ms);
      this.pending.set(id, {
        resolve: msg => {
          clearTimeout(timer);
          if (msg.error) reject(Object.assign(new Error(msg.error.message), msg.error));
          else resolve(msg.result);
        }
      });
      this.child.stdin.write(`${JSON.stringify(Object.assign({ id, op }, params))}\n`);
    });
  }

  waitEvent (predicate, ms = 10000, what = 'an event') {
    return waitIn(this.events, this.lines, predicate, ms, `${what} on ${this.ip}`);
  }

  kill (signal = 'SIGKILL') {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

// Starts `ips.length` node processes against `standin`, with their pods ready in it.
// `env` is added to every node's environment (a function: the environment of an IP).
async function startCluster (standin, ips, { port, env = {}, captureStderr = false } = {}) {
  const swarmPort = port || await freePort();
  ips.forEach((ip, i) => standin.addPod({ name: `web-${i}`, ip }));
  const nodes = ips.map(ip => new NodeProcess(ip, Object.assign({
    KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(swarmPort)
  }, typeof env === 'function' ? env(ip) : env), { captureStderr }));
  await Promise.all(nodes.map(n => n.waitEvent(e => e.event === 'ready' || e.event === 'initFailed', 20000, 'ready')));
  const failed = nodes.flatMap(n => n.events.filter(e => e.event === 'initFailed'));
  if (failed.length) throw new Error(`init failed: ${failed[0].message}`);
  return { port: swarmPort, nodes, stop: () => Promise.all(nodes.map(n => n.kill())) };
}

// Polls `fn` until it returns a truthy value, bounded by `ms`; for state that has no event.
async function eventually (fn, ms = 10000, what = 'a condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise(resolve => setTimeout(resolve, 25));
  }
}

// The API stand-in and a cluster on `ips` for the tests of one file: started before
// them, stopped after; `standin` and `cluster` are set once started.
function useCluster (ips, options) {
  const { before, after } = require('node:test');
  const { startStandin } = require('../kube-standin');
  const used = { standin: null, cluster: null };
  before(async () => {
    used.standin = await startStandin({ appName: 'web' });
    used.cluster = await startCluster(used.standin, ips, options);
  });
  after(async () => {
    if (used.cluster) await used.cluster.stop();
    if (used.standin) await used.standin.close();
  });
  return used;
}

module.exports = { startCluster, useCluster, NodeProcess, freePort, eventually };
