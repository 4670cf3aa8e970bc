'use strict';

// The public facade: 0.5.1's singleton API over the native node (see docs/api.md).
const Promise = require('./lib/promise');
const createDebug = require('debug');
const options = require('./lib/options');
const errors = require('./lib/errors');
const { hostPlatform } = require('./lib/platform');
const { Messages } = require('./lib/messages');
const { Tasks } = require('./lib/tasks');
const { Metrics } = require('./lib/metrics');
const { Pending } = require('./lib/pending');

const VERSION = require('./package.json').version;
const TRACE = 'node-swarm-kb:trace';
const NAMESPACES = ['node-swarm-kb', 'node-swarm-kb:kubernetes', 'node-swarm-kb:messages', 'node-swarm-kb:tasks', TRACE];
const debug = createDebug('node-swarm-kb');
const loggers = Object.fromEntries(NAMESPACES.map(ns => [ns, createDebug(ns)]));

let binding = null;
function native () {
  // Loaded on first use, so that require('node-swarm-kb') never throws.
  if (!binding) {
    try {
      binding = require('./binding.js');
    } catch (cause) {
      const platform = hostPlatform();
      throw errors.swarmError('ERR_SWARM_NO_BINARY',
        `No binary of node-swarm-kb's native addon loads on ${platform}: install node-swarm-kb with its optional ` +
        `dependencies (npm i --include=optional), which bring node-swarm-kb-${platform} where we ship one, or build it ` +
        `from source with Rust on PATH (npm rebuild node-swarm-kb). ${cause.message}`, { cause });
    }
  }
  return binding;
}

// The libraries' records (kube, hyper, tower) show only when DEBUG names their namespace
// itself: `DEBUG=node-swarm-kb*` tells what this node did, not every request's steps.
function logEnabled (namespace) {
  if (namespace !== TRACE) return createDebug.enabled(namespace);
  return String(createDebug.namespaces || process.env.DEBUG || '').split(/[\s,]+/).includes(TRACE);
}

function forwardLog (namespace, level, message) {
  const log = loggers[namespace] || debug;
  if (log.enabled) log(`[${level}] ${message}`);
  else if (level === 'warn' || level === 'error') console.error(`[${namespace}] ${message}`);
}

// The native node's start failures carry their stable code as a prefix of the message.
function nativeError (error) {
  const coded = /^(ERR_SWARM_[A-Z_]+): ([^]*)$/.exec(error && error.message);
  return coded && !String(error.code).startsWith('ERR_SWARM_') ? errors.swarmError(coded[1], coded[2], { cause: error }) : error;
}

// What a pod on another ring than this one means, and what to do about it: a pod that
// names no ring (0.5.1, 1.0.0) cannot switch, any other can.
function ringMismatch ({ ip, ring, named, own }) {
  const split = 'the two disagree on which pod owns a task key, so a key\'s tasks may run on both. This pod keeps routing by its own ring';
  if (!named) {
    return `Pod ${ip} names no ring: a pod of 0.5.1 or 1.0.0, which places task keys by ring hashring, while this pod places them by ${own}; ` +
      `${split}. Upgrade that pod, or run this one on ring 'hashring' until every pod can use ${own}.`;
  }
  return `Pod ${ip} places task keys by ring ${ring}, this pod by ${own}: ${split}. Run every pod on the same ring ` +
    '(option ring, or SWARM_RING); while a deployment switches rings this is expected, until its last pod has switched.';
}

const swarm = {
  isReady: false,
  options: {},
  _inited: false,
  _node: null,
  _localIps: [],
  _ready: null,
  // The pending init()'s end (see `_start`), and the last topology error, which a timed
  // out init() names.
  _initAttempt: null,
  _topologyError: null,
  // True from close() to the next init(): calls then fail as ERR_SWARM_CLOSED.
  _closed: false,
  _nodesCache: { generation: -1, nodes: {} },
  // When the node of the last init() started, for stats().
  _startedAt: 0,
  _calls: new Pending(),
  _handlers: { ready: [], error: [], nodeAdded: [], nodeRemoved: [], masterChanged: [], readinessChanged: [] },

  init (opts) {
    if (opts !== undefined && (opts === null || typeof opts !== 'object')) {
      return Promise.reject(errors.invalidArgument('options', 'an object', opts));
    }
    const listeners = Object.keys(this._handlers).map(event => [event, opts && opts[`on${event.charAt(0).toUpperCase()}${event.slice(1)}`]]);
    const notFunction = listeners.find(([event, handler]) => handler !== undefined && typeof handler !== 'function');
    if (notFunction) return Promise.reject(errors.invalidArgument(`on${notFunction[0].charAt(0).toUpperCase()}${notFunction[0].slice(1)}`, 'a function', notFunction[1]));
    for (const [event, handler] of listeners) if (handler) this.on(event, handler);
    if (this._inited) return this._ready && !this.isReady ? this._ready : Promise.resolve(this.nodes);
    let resolved;
    try {
      // Checked before they are kept: a rejected init() leaves the options as they were.
      resolved = options.resolve(Object.assign({}, this.options, opts));
    } catch (error) {
      return Promise.reject(error);
    }
    this._inited = true;
    this._closed = false;
    Object.assign(this.options, opts);
    this._ready = this._start(resolved);
    return this._ready;
  },

  _start (resolved) {
    // Asked for, standalone is no news; fallen into for want of settings, it is said as
    // 0.5.1 said it.
    if (this.options.standalone) debug('Standalone, as options.standalone asks');
    else if (resolved.standaloneReason) console.log(`[node-swarm-kb] ${resolved.standaloneReason}: running standalone`);
    this._localIps = resolved.node.localIps;
    debug(`Starting: this process's IPs ${this._localIps.join(', ')}, task keys placed by ring ${resolved.node.ring}`);
    if (this.options.tasks) Object.assign(this.tasks.options, this.options.tasks);
    // The callbacks keep their own node: they still answer while close() drains, and a
    // request that arrives before startNode() resolves waits for it.
    let started = null;
    let starting = null;
    // `ready` comes through the event stream, after the first topology's own events.
    let topologyReady;
    const readyEvent = new Promise(resolve => { topologyReady = resolve; });
    // What ends a pending init(): close() (ERR_SWARM_CLOSED) or `kubernetes.initTimeout`.
    const attempt = { ended: false };
    const ended = new Promise((resolve, reject) => {
      attempt.end = error => { attempt.ended = true; reject(error); };
    });
    ended.catch(() => {});
    this._initAttempt = attempt;
    this._topologyError = null;
    const timer = resolved.initTimeout > 0 && setTimeout(() => attempt.end(errors.swarmError('ERR_SWARM_KUBERNETES',
      `init() did not finish within ${resolved.initTimeout} ms: ${this._topologyError || 'no topology from the Kubernetes API yet'}`)),
    resolved.initTimeout);
    return Promise.try(() => {
      native().setLogSink(forwardLog, NAMESPACES.filter(logEnabled));
      const settings = Object.assign({ tasks: this.tasks._specs() }, resolved.node);
      // `node.calls`: the calls made for every message, as plain functions (cheaper to
      // call than the node's methods).
      starting = Promise.resolve(native().startNode(settings,
        (numbers, ...strings) => {
          if (started) return this._deliver(started, numbers, strings);
          // `numbers` is a view of a buffer that the next delivery writes over.
          const kept = Float64Array.from(numbers);
          starting.then(node => this._deliver(node, kept, strings));
        },
        (kind, data) => kind === 'ready' ? topologyReady() : this._onEvent(kind, JSON.parse(data)),
        (callId, runId, status, kind, body, code, message) => this.tasks._settleLocal(callId, runId, status, kind, body, code, message)))
        .then(node => Object.assign(node, { calls: node.callFunctions(), listening: node.port() !== null }));
      return starting;
    }).then(node => {
      started = node;
      this._startedAt = Date.now();
      this._node = node;
      this.tasks._registerAll(node);
      return Promise.race([node.ready().then(() => readyEvent), ended]);
    }).then(() => {
      this.isReady = true;
      const nodes = this.nodes;
      debug(`Ready with ${Object.keys(nodes).length} nodes, master ${this.master}`);
      process.nextTick(() => this.emit('ready', [nodes]));
      return nodes;
    }).catch(cause => {
      this._inited = false;
      const error = nativeError(cause);
      debug(`init() failed: ${error.message}`);
      // Ended before its node was: the node stops, and its port is free for another init().
      if (attempt.ended && started && this._node === started) {
        this._node = null;
        started.close(0).catch(() => {});
      }
      if (error.code !== 'ERR_SWARM_CLOSED') process.nextTick(() => this.emit('error', [error]));
      throw error;
    }).finally(() => {
      clearTimeout(timer);
      if (this._initAttempt === attempt) this._initAttempt = null;
    });
  },

  // One wake-up's letters from the native mailbox: 8 numbers each, `[tag, id, ...]`,
  // and their strings in order, an optional one there when its flag is set (see
  // batch.rs). Messages to answer (1), task runs to start (2), and sends or remote
  // task calls that settled (3); the first two with the caller's trace context, if any.
  _deliver (node, numbers, strings) {
    let s = 0;
    for (let i = 0; i < numbers.length; i += 8) {
      const tag = numbers[i];
      const id = numbers[i + 1];
      if (tag === 1) {
        const path = strings[s++];
        const body = numbers[i + 3] ? strings[s++] : null;
        const from = strings[s++];
        this.messages._dispatch(node, id, path, numbers[i + 2], body, from, numbers[i + 4] ? strings[s++] : undefined);
      } else if (tag === 2) {
        const name = strings[s++];
        const args = numbers[i + 3] ? strings[s++] : null;
        // A serialized queue runs on here: each next run comes back from the answer of
        // the one before, as many as the addon hands back in this turn of the loop.
        let next = this.tasks._run(node, id, name, args, numbers[i + 2], numbers[i + 4] ? strings[s++] : undefined, name);
        while (next !== undefined) next = this.tasks._runChained(node, name, next);
      } else {
        const body = numbers[i + 4] ? strings[s++] : null;
        const code = numbers[i + 5] ? strings[s++] : null;
        const message = numbers[i + 6] ? strings[s++] : null;
        this._settle(id, numbers[i + 2], numbers[i + 3], body, code, message, numbers[i + 7] ? strings[s++] : null);
      }
    }
  },

  // What native call `id` settles to: `decode(status, kind, body, code, message)`, or
  // the error it throws. `retried` gets the attempts of a traced task call that did not
  // run, when there were some.
  _wait (id, decode, retried) {
    return new Promise((resolve, reject) => this._calls.set({ id, resolve, reject, decode, retried }));
  },

  _settle (id, status, kind, body, code, message, retried) {
    const call = this._calls.take(id);
    if (!call) return;
    if (retried !== null && call.retried !== undefined) call.retried(JSON.parse(retried));
    let value;
    try {
      value = call.decode(status, kind, body, code, message);
    } catch (error) {
      return call.reject(error);
    }
    call.resolve(value);
  },

  _onEvent (kind, data) {
    switch (kind) {
      case 'nodeAdded':
      case 'nodeRemoved':
        debug(`Node ${data.ip} ${kind === 'nodeAdded' ? 'joined' : 'left'}`);
        return process.nextTick(() => this.emit(kind, [data]));
      case 'localLeft':
        debug(`This pod (${data.ip}) is leaving the endpoints: process.emit('SIGTERM')`);
        return process.nextTick(() => process.emit('SIGTERM'));
      case 'readinessChanged':
        debug(`This pod (${data.ip}) is ${data.ready ? 'ready again' : 'not ready: out of the rings until it is ready'}`);
        return process.nextTick(() => this.emit('readinessChanged', [data]));
      case 'masterChanged':
        debug(`Master: ${data.current}`);
        return process.nextTick(() => this.emit('masterChanged', [data.current, data.previous]));
      case 'ringMismatch':
        return process.nextTick(() => this.emit('error', [errors.swarmError('ERR_SWARM_RING_MISMATCH', ringMismatch(data),
          { peer: data.ip, peerRing: data.ring, ring: data.own })]));
      case 'error':
        this._topologyError = data.message;
        return process.nextTick(() => this.emit('error', [errors.swarmError('ERR_SWARM_KUBERNETES', data.message)]));
      default:
        debug(`topology: ${kind}`);
    }
  },

  isMe (node) {
    const ip = node && typeof node === 'object' ? node.ip : node;
    return this._localIps.indexOf(ip) !== -1;
  },

  on (event, handler) {
    if (typeof handler !== 'function') throw errors.invalidArgument('handler', 'a function', handler);
    const list = this._handlers[event] || (this._handlers[event] = []);
    if (list.indexOf(handler) === -1) list.push(handler);
    return this;
  },

  once (event, handler) {
    if (typeof handler !== 'function') throw errors.invalidArgument('handler', 'a function', handler);
    const wrapper = (...args) => {
      this.off(event, wrapper);
      return handler(...args);
    };
    return this.on(event, wrapper);
  },

  off (event, handler) {
    const list = this._handlers[event] || [];
    const index = list.indexOf(handler);
    if (index !== -1) list.splice(index, 1);
    return this;
  },

  // Calls every listener of `event`; a throwing listener is reported, never propagated.
  emit (event, args) {
    const list = (this._handlers[event] || []).slice();
    const spread = Array.isArray(args) ? args : [args];
    if (event === 'error' && list.length === 0) console.error(`[node-swarm-kb] ${spread[0] && spread[0].message}`);
    for (const handler of list) {
      try {
        handler(...spread);
      } catch (error) {
        if (event === 'error') console.error(`[node-swarm-kb] error listener threw: ${error && error.stack}`);
        else this.emit('error', [error]);
      }
    }
    return list.length > 0;
  },

  send (node, topic, message) {
    let error;
    if (!topic || !topic.length) error = errors.swarmError('ERR_SWARM_INVALID_ARG', 'Unable to send message: Missing topic');
    if (!node) error = errors.swarmError('ERR_SWARM_INVALID_ARG', 'Unable to send message: Missing node');
    if (error) {
      debug(`send() refused: ${error.message}`);
      this.emit('error', [error]);
      return Promise.reject(error);
    }
    if (message === undefined) return this.broadcast(node, topic);
    return this._sendTo(node, topic, message);
  },

  _sendTo (node, topic, message) {
    const ip = typeof node === 'object' ? node.ip : node;
    if (this.isMe(ip)) return Promise.resolve();
    return this.messages.send(ip, topic, message);
  },

  broadcast (topic, message) {
    if (!this._node && this._closed) return Promise.reject(errors.swarmError('ERR_SWARM_CLOSED', 'Unable to broadcast: swarm closed'));
    return Promise.all(Object.keys(this.nodes).map(ip => this._sendTo(ip, topic, message)));
  },

  // A snapshot of this pod's view and of its counters since init() (docs/observability.md);
  // null before init() and after close().
  stats () {
    const node = this._node;
    if (!node) return null;
    const master = this.master;
    return Object.assign({
      ips: this._localIps.slice(),
      master,
      amIMaster: this.isMe(master),
      masterEpoch: node.masterEpoch(),
      uptimeMs: Date.now() - this._startedAt,
      version: VERSION
    }, JSON.parse(node.statsJson()));
  },

  // Stops the node: no new work, in-flight requests answered, queued tasks given
  // `graceMs` (default 10 s) to finish, then the port is released and the process may exit.
  close (graceMs = 10000) {
    if (this._initAttempt) this._initAttempt.end(errors.swarmError('ERR_SWARM_CLOSED', 'close() was called before init() finished'));
    this._closed = true;
    const node = this._node;
    this._node = null;
    this._inited = false;
    this.isReady = false;
    this._ready = null;
    this._nodesCache = { generation: -1, nodes: {} };
    return Promise.resolve(node ? node.close(graceMs) : undefined).then(() => undefined);
  }
};

// Every function of the facade works detached from it, as 0.5.1's did not need but users
// write (`const { init, send } = require('node-swarm-kb')`, ESM named imports): each is
// bound to the singleton.
for (const name of Object.keys(swarm)) {
  if (typeof swarm[name] === 'function' && !name.startsWith('_')) swarm[name] = swarm[name].bind(swarm);
}

// The getters are added one at a time: an object literal with accessors starts out in
// V8's dictionary mode, where every read of a property (`swarm.send`, `this._node`) is
// a hash look-up instead of an inline-cached load.
const getters = {
  nodes () {
    const node = this._node;
    if (!node) return {};
    const generation = node.generation();
    if (this._nodesCache.generation !== generation) {
      const nodes = {};
      for (const info of node.nodes()) nodes[info.ip] = info;
      this._nodesCache = { generation, nodes };
    }
    return this._nodesCache.nodes;
  },

  master () {
    return this._node ? this._node.master() : null;
  },

  amIMaster () {
    return this.isMe(this.master);
  },

  masterEpoch () {
    return this._node ? this._node.masterEpoch() : null;
  }
};
for (const name of Object.keys(getters)) {
  Object.defineProperty(swarm, name, { get: getters[name], enumerable: true, configurable: true });
}

swarm.messages = new Messages(swarm, loggers['node-swarm-kb:messages']);
swarm.tasks = new Tasks(swarm, loggers['node-swarm-kb:tasks']);
swarm.metrics = new Metrics(swarm);
let HashRing = null;
Object.defineProperty(swarm, 'HashRing', {
  enumerable: false,
  get: () => HashRing || (HashRing = require('./lib/ring').ringClass(native().HashRing))
});

module.exports = swarm;
