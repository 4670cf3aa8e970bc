'use strict';

// Test hosts in network namespaces made for the test (root only): a bridge in this
// namespace with 10.213.0.1, and one namespace per host with 10.213.0.<n> on a veth pair.
// Traffic only ever goes to these addresses. `cut(host)` takes the host's port of the
// bridge down: frames to and from it are dropped without a reset or a refusal, as when a
// link is cut; `mend(host)` brings it back.
const { execFileSync } = require('node:child_process');

const tag = String(process.pid % 100000);
const BRIDGE = `swb${tag}`;
const HOST_IP = '10.213.0.1';

const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

function available () {
  try {
    ip('netns', 'add', `swprobe${tag}`);
    ip('netns', 'del', `swprobe${tag}`);
    return true;
  } catch (_) {
    return false;
  }
}

function createHosts (count) {
  ip('link', 'add', BRIDGE, 'type', 'bridge');
  ip('addr', 'add', `${HOST_IP}/24`, 'dev', BRIDGE);
  ip('link', 'set', BRIDGE, 'up');
  const hosts = [];
  for (let i = 1; i <= count; i++) {
    const host = { netns: `swn${tag}_${i}`, outside: `swh${tag}_${i}`, inside: `swp${tag}_${i}`, ip: `10.213.0.${10 + i}` };
    ip('netns', 'add', host.netns);
    ip('link', 'add', host.outside, 'type', 'veth', 'peer', 'name', host.inside);
    ip('link', 'set', host.inside, 'netns', host.netns);
    ip('link', 'set', host.outside, 'master', BRIDGE);
    ip('link', 'set', host.outside, 'up');
    ip('netns', 'exec', host.netns, 'ip', 'addr', 'add', `${host.ip}/24`, 'dev', host.inside);
    ip('netns', 'exec', host.netns, 'ip', 'link', 'set', host.inside, 'up');
    ip('netns', 'exec', host.netns, 'ip', 'link', 'set', 'lo', 'up');
    hosts.push(host);
  }
  return hosts;
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

module.exports = { available, createHosts, removeHosts, cut, mend, HOST_IP };
