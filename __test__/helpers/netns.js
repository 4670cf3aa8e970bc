'use strict';

// Test hosts in network namespaces made for the test (root only): a bridge in this
// namespace with 10.213.<s>.1, and one namespace per host with 10.213.<s>.<n> on a veth
// pair. Traffic only ever goes to these addresses. The subnet <s> is one that no
// interface of the machine has: two runs at once (a second `npm test`, a loop beside
// CI) would otherwise both have 10.213.0.1, and the replies to one run's hosts would be
// routed to the other's bridge. `cut(host)` takes the host's port of the
// bridge down: frames to and from it are dropped without a reset or a refusal, as when a
// link is cut; `mend(host)` brings it back.
const { execFileSync } = require('node:child_process');
const { startStandin } = require('../kube-standin');
const { NodeProcess, freePort, eventually } = require('./cluster');

const tag = String(process.pid % 100000);
const BRIDGE = `swb${tag}`;

const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

// A subnet of 10.213.0.0/16 that no interface has, starting from one drawn from the pid.
function freeSubnet () {
  let taken = '';
  try {
    taken = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' });
  } catch (_) {}
  for (let i = 0; i < 250; i++) {
    const subnet = (process.pid + i) % 250;
    if (!taken.includes(` 10.213.${subnet}.`)) return subnet;
  }
  throw new Error('no free subnet in 10.213.0.0/16 for the test hosts');
}

const SUBNET = `10.213.${freeSubnet()}`;
const HOST_IP = `${SUBNET}.1`;

function available () {
  try {
    ip('netns', 'add', `swprobe${tag}`);
    ip('netns', 'del', `swprobe${tag}`);
    return true;
  } catch (_) {
    return false;
  }
}

function createBridge () {
  ip('link', 'add', BRIDGE, 'type', 'bridge');
  ip('addr', 'add', `${HOST_IP}/24`, 'dev', BRIDGE);
  ip('link', 'set', BRIDGE, 'up');
}

// A new test host on the bridge, listed in `hosts` before it is made, so that
// removeHosts(hosts) also undoes one made halfway.
function addHost (hosts) {
  const i = hosts.length + 1;
  const host = { netns: `swn${tag}_${i}`, outside: `swh${tag}_${i}`, inside: `swp${tag}_${i}`, ip: `${SUBNET}.${10 + i}` };
  hosts.push(host);
  ip('netns', 'add', host.netns);
  ip('link', 'add', host.outside, 'type', 'veth', 'peer', 'name', host.inside);
  ip('link', 'set', host.inside, 'netns', host.netns);
  ip('link', 'set', host.outside, 'master', BRIDGE);
  ip('link', 'set', host.outside, 'up');
  ip('netns', 'exec', host.netns, 'ip', 'addr', 'add', `${host.ip}/24`, 'dev', host.inside);
  ip('netns', 'exec', host.netns, 'ip', 'link', 'set', host.inside, 'up');
  ip('netns', 'exec', host.netns, 'ip', 'link', 'set', 'lo', 'up');
  return host;
}

function cut (host) {
  ip('link', 'set', host.outside, 'down');
}

function mend (host) {
  ip('link', 'set', host.outside, 'up');
}

function removeHosts (hosts) {
  for (const host of hosts) {
    try { ip('netns', 'del', host.netns); } catch (_) {}
    try { ip('link', 'del', host.outside); } catch (_) {}
  }
  try { ip('link', 'del', BRIDGE); } catch (_) {}
}

// Why the fault tests cannot run here, or false when they can.
function skipReason () {
  const root = process.getuid && process.getuid() === 0;
  return root && available() ? false : 'needs root and `ip netns` to make the test hosts';
}

// `count` pods of ours, one per test host, against a stand-in on the bridge; resolves
// once every pod sees them all. `env` is added to every pod's environment.
// `cluster.addNode()` starts one more pod, on a host of its own, listed ready in the
// stand-in (a replacement pod); `cluster.stop()` ends the pods and removes every host.
async function startCluster (count, { env = {} } = {}) {
  const cluster = { hosts: [], nodes: [] };
  cluster.stop = async () => {
    try {
      await Promise.all(cluster.nodes.map(n => n.kill()));
      if (cluster.standin) await cluster.standin.close();
    } finally {
      removeHosts(cluster.hosts);
    }
  };
  cluster.addNode = () => {
    const { standin } = cluster;
    const host = addHost(cluster.hosts);
    standin.addPod({ name: `web-${host.ip}`, ip: host.ip });
    const node = new NodeProcess(host.ip, Object.assign({
      KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(cluster.port)
    }, env), { netns: host.netns });
    cluster.nodes.push(node);
    return node;
  };
  try {
    createBridge();
    cluster.standin = await startStandin({ appName: 'web', host: HOST_IP });
    cluster.port = await freePort();
    for (let i = 0; i < count; i++) cluster.addNode();
    await Promise.all(cluster.nodes.map(n => n.waitEvent(e => e.event === 'ready', 30000, 'ready').catch(error => {
      // Whether its requests reached the stand-in at all tells a network fault from ours.
      const requests = cluster.standin.stats().requestsFrom[n.ip] || 0;
      throw new Error(`${error.message} (${requests} requests from it reached the API stand-in)`);
    })));
    for (const n of cluster.nodes) {
      await eventually(async () => (await n.request('nodes')).nodes.length === count, 10000, 'the cluster');
    }
    return cluster;
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

module.exports = { skipReason, startCluster, cut, mend, HOST_IP, SUBNET };
