'use strict';

// Resolves the options of `init()` and the environment into the settings of the
// native node, with 0.5.1's names and defaults (docs/compat.md §2), its bugs fixed.
const fs = require('fs');
const os = require('os');
const net = require('net');
const path = require('path');
const errors = require('./errors');
const { checkOptions } = require('./tasks');

const DEFAULT_PORT = 45892;
const SERVICE_ACCOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';

// The app name of a pod from its HOSTNAME: OpenShift DeploymentConfig `name-<n>-<suffix>`,
// Deployment `name-<hash>-<suffix>`, StatefulSet `name-<n>`. Never throws.
function appNameFromHostname (hostname) {
  if (typeof hostname !== 'string' || !hostname) return undefined;
  const patterns = [
    /^(.+)-[0-9]+-[a-z0-9]{5}$/, // DeploymentConfig
    /^(.+)-[a-z0-9]{5,10}-[a-z0-9]{5}$/, // Deployment (pod-template-hash, random suffix)
    /^(.+)-[0-9]+$/ // StatefulSet ordinal
  ];
  for (const pattern of patterns) {
    const match = hostname.match(pattern);
    if (match) return match[1];
  }
  return undefined;
}

function appNameFromBuild (buildName) {
  const match = typeof buildName === 'string' && buildName.match(/^(.+)-[0-9]+$/);
  return match ? match[1] : undefined;
}

function readFile (folder, file) {
  try {
    return fs.readFileSync(path.join(folder, file), 'utf8').trim() || undefined;
  } catch (_) {
    return undefined;
  }
}

// This process's IPs: `options.ip` (string or array), then POD_IP, then every
// non-internal IPv4 address of the interfaces.
function localIps (options, env) {
  if (options.ip !== undefined && ![].concat(options.ip).every(ip => typeof ip === 'string' && net.isIP(ip))) {
    throw errors.invalidArgument('ip', 'an IP address or an array of them', options.ip);
  }
  const explicit = options.ip || env.POD_IP;
  if (explicit) return [].concat(explicit).map(String);
  const ips = [];
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const address of addresses || []) {
      if (!address.internal && (address.family === 'IPv4' || address.family === 4)) ips.push(address.address);
    }
  }
  return ips;
}

// The app's name: option `kubernetes.appName` or `appName`, else from the pod's names.
function appNameOf (options, env) {
  return Object.assign({}, options.kubernetes).appName || options.appName ||
    appNameFromHostname(env.HOSTNAME) || appNameFromBuild(env.OPENSHIFT_BUILD_NAME);
}

// The Kubernetes settings, or `{ standalone: reason }` when there are none.
function kubernetes (options, env) {
  const k = Object.assign({}, options.kubernetes);
  const folder = k.folderPath || env.KUBERNETES_FOLDER_PATH || SERVICE_ACCOUNT;
  const appName = appNameOf(options, env);
  const selector = k.selector || env.KUBERNETES_SELECTOR || (appName && `app=${appName}`);
  const namespace = k.namespace || env.KUBERNETES_NS || readFile(folder, 'namespace');
  const token = k.token || env.KUBERNETES_TOKEN;
  const tokenFile = token ? undefined : (readFile(folder, 'token') && path.join(folder, 'token'));
  if (!token && !tokenFile) return { standalone: 'no Kubernetes token found' };
  if (!namespace) return { standalone: 'no Kubernetes namespace found' };
  if (!selector) return { standalone: 'no app name or label selector found' };
  const host = k.host || env.KUBERNETES_SERVICE_HOST || 'kubernetes.default.svc.cluster.local';
  const port = k.port || env.KUBERNETES_SERVICE_PORT || 443;
  const hostPart = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return {
    url: k.url || `http${k.noSSL ? '' : 's'}://${hostPart}:${port}`,
    namespace,
    selector,
    token,
    tokenFile,
    ca: k.ca || env.KUBERNETES_CA || readFile(folder, 'ca.crt'),
    insecure: k.insecureSkipTlsVerify === true
  };
}

// The Lease that elects the master (`masterElection: 'lease'`), its times in ms; none for
// 0.5.1's rule, the smallest IP (`'ip'`, the default), or for a standalone node (checked
// all the same, so that a mistake shows on a laptop too).
function masterLease (options, env, standalone) {
  const election = options.masterElection === undefined ? 'ip' : options.masterElection;
  if (election === 'ip') return undefined;
  if (election !== 'lease') throw errors.invalidArgument('masterElection', "'ip' or 'lease'", options.masterElection);
  const lease = Object.assign({}, options.lease);
  const duration = number(lease.duration, 15000, 'lease.duration');
  const renewDeadline = number(lease.renewDeadline, 10000, 'lease.renewDeadline');
  const retryPeriod = number(lease.retryPeriod, 2000, 'lease.retryPeriod');
  if (!(retryPeriod > 0 && retryPeriod < renewDeadline && renewDeadline < duration)) {
    throw errors.invalidArgument('lease', '0 < retryPeriod < renewDeadline < duration (ms)', options.lease);
  }
  const appName = appNameOf(options, env);
  const name = options.leaseName !== undefined ? options.leaseName : appName && `${appName}-master`;
  if (name === undefined && standalone) return undefined;
  if (typeof name !== 'string' || name.length > 253 || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) {
    throw errors.invalidArgument('leaseName', 'a Kubernetes object name (lower case, digits, - and .)', name);
  }
  return { name, duration, renewDeadline, retryPeriod };
}

// A number option: `fallback` when absent; a value that is no non-negative number is
// refused (0.5.1 replaced it silently), named as the user wrote it.
function number (value, fallback, name, max = Infinity) {
  if (value === undefined || value === null || value === '') return fallback;
  const n = typeof value === 'number' || typeof value === 'string' ? Number(value) : NaN;
  if (Number.isFinite(n) && n >= 0 && n <= max && (max === Infinity || Number.isInteger(n))) return n;
  const expected = max === Infinity ? 'a non-negative number' : `an integer from 0 to ${max}`;
  throw errors.invalidArgument(name, expected, value);
}

// An address option: absent, or an IP address (v4 or v6).
function address (value, name) {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'string' && net.isIP(value)) return value;
  throw errors.invalidArgument(name, 'an IP address', value);
}

// A switch that is on unless the option is `false`, or, without the option, unless the
// environment variable says 0, false or no.
function flag (option, variable, name) {
  if (option !== undefined && typeof option !== 'boolean') throw errors.invalidArgument(name, 'true or false', option);
  return option !== undefined ? option : !/^(0|false|no)$/i.test(variable || '');
}

// The ring that places task keys: `'hashring'`, 0.5.1's (the default), or `'xxh3'`.
function ringKind (value, name) {
  if (value === undefined) return 'hashring';
  if (value !== 'hashring' && value !== 'xxh3') throw errors.invalidArgument(name, "'hashring' or 'xxh3'", value);
  return value;
}

// Everything the native node needs, plus what the facade reports.
function resolve (options, env = process.env) {
  const messages = Object.assign({}, options.messages);
  const kube = options.standalone ? { standalone: 'options.standalone is set' } : kubernetes(options, env);
  const initTimeout = number(Object.assign({}, options.kubernetes).initTimeout, 0, 'kubernetes.initTimeout');
  const lease = masterLease(options, env, Boolean(kube.standalone));
  checkOptions(options.tasks, 'tasks');
  return {
    standaloneReason: kube.standalone,
    initTimeout: kube.standalone ? 0 : initTimeout,
    node: {
      localIps: localIps(options, env),
      bind: address(messages.bind !== undefined ? messages.bind : env.SWARM_MESSAGING_BIND,
        messages.bind !== undefined ? 'messages.bind' : 'SWARM_MESSAGING_BIND'),
      port: messages.port !== undefined
        ? number(messages.port, DEFAULT_PORT, 'messages.port', 65535)
        : number(env.SWARM_MESSAGING_PORT, DEFAULT_PORT, 'SWARM_MESSAGING_PORT', 65535),
      // A standalone node serves no one else: it listens only when told where.
      listen: !kube.standalone || [messages.port, messages.bind, env.SWARM_MESSAGING_PORT, env.SWARM_MESSAGING_BIND].some(v => v !== undefined && v !== ''),
      kubernetes: kube.standalone ? undefined : Object.assign(kube, { lease }),
      maxBodySize: number(messages.maxBodySize, 10 * 1024 * 1024, 'messages.maxBodySize'),
      handlerTimeout: number(messages.maxProcessingTime, 5 * 60000, 'messages.maxProcessingTime'),
      connectTimeout: number(messages.connectTimeout, 3000, 'messages.connectTimeout'),
      requestTimeout: number(messages.requestTimeout, 5 * 60000 + 10000, 'messages.requestTimeout'),
      headerTimeout: number(messages.headerTimeout, 10000, 'messages.headerTimeout'),
      linkTimeout: number(messages.linkTimeout, 8000, 'messages.linkTimeout'),
      departureTimeout: number(messages.departureTimeout, 1000, 'messages.departureTimeout'),
      maxHeaderSize: number(messages.maxHeaderSize, 64 * 1024, 'messages.maxHeaderSize'),
      maxConnections: number(messages.maxConnections, 4096, 'messages.maxConnections'),
      maxInFlight: number(messages.maxInFlight, 1024, 'messages.maxInFlight'),
      multiplex: flag(messages.multiplex, env.SWARM_MESSAGING_MULTIPLEX, 'messages.multiplex'),
      secret: messages.secret || env.SWARM_SECRET || undefined,
      requireSignatures: flag(messages.requireSignatures, env.SWARM_REQUIRE_SIGNATURES, 'messages.requireSignatures'),
      // An empty environment variable is unset.
      ring: options.ring !== undefined ? ringKind(options.ring, 'ring') : ringKind(env.SWARM_RING || undefined, 'SWARM_RING')
    }
  };
}

module.exports = { resolve, appNameFromHostname, appNameFromBuild, localIps, ringKind, DEFAULT_PORT };
