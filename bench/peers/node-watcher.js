'use strict';

// The pure-Node peer of the topology benchmark: lists then watches the EndpointSlices of
// the Service with node:http, keeps the set of ready IPs and reports each change, as a
// JavaScript implementation of the same job would. Driven like the test fixture.
const http = require('node:http');
const readline = require('node:readline');

const { KUBE_URL, KUBE_TOKEN, KUBE_NS } = process.env;
const base = `${KUBE_URL}/apis/discovery.k8s.io/v1/namespaces/${KUBE_NS}/endpointslices?labelSelector=app%3Dweb`;
const headers = { authorization: `Bearer ${KUBE_TOKEN}` };
const out = obj => process.stdout.write(`${JSON.stringify(obj)}\n`);
const slices = new Map();
let nodes = new Set();

function readyIps () {
  const ips = new Set();
  for (const slice of slices.values()) {
    for (const e of slice.endpoints || []) if (e.conditions && e.conditions.ready !== false) ips.add(e.addresses[0]);
  }
  return ips;
}

function apply () {
  const next = readyIps();
  for (const ip of nodes) if (!next.has(ip)) out({ event: 'nodeRemoved', ip });
  for (const ip of next) if (!nodes.has(ip)) out({ event: 'nodeAdded', ip });
  nodes = next;
}

function watch (resourceVersion) {
  http.get(`${base}&watch=true&resourceVersion=${resourceVersion}&allowWatchBookmarks=true`, { headers }, res => {
    readline.createInterface({ input: res }).on('line', line => {
      const { type, object } = JSON.parse(line);
      if (type === 'DELETED') slices.delete(object.metadata.name);
      else if (type !== 'BOOKMARK') slices.set(object.metadata.name, object);
      resourceVersion = object.metadata.resourceVersion;
      if (type !== 'BOOKMARK') apply();
    }).on('close', () => watch(resourceVersion));
  });
}

http.get(base, { headers }, res => {
  let body = '';
  res.on('data', c => { body += c; });
  res.on('end', () => {
    const list = JSON.parse(body);
    for (const item of list.items) slices.set(item.metadata.name, item);
    nodes = readyIps();
    out({ event: 'ready', nodes: [...nodes] });
    watch(list.metadata.resourceVersion);
  });
});

readline.createInterface({ input: process.stdin }).on('line', line => {
  const { id } = JSON.parse(line);
  out({ id, result: { rss: process.memoryUsage().rss, cpu: process.cpuUsage() } });
}).on('close', () => process.exit(0));
