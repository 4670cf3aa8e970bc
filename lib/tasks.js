'use strict';

// Tasks (`swarm.tasks`): registration with 0.5.1's defaults, `exec` routed by the
// native ring and queues, and the handlers the native engine runs (docs/compat.md §4).
const Promise = require('./promise');
const codec = require('./codec');
const errors = require('./errors');
const { isThenable } = require('./messages');
const { Pending } = require('./pending');
const tracing = require('./tracing');

const DEFAULTS = { timeout: 30000, serialized: true, singleTrigger: false, maxQueueLength: 20 };

// Task options as given (to register() or init's `tasks`): a value of the wrong kind is
// refused, naming it, where 0.5.1 replaced it silently with the default.
function checkOptions (o, where) {
  if (o === undefined || o === null) return;
  if (typeof o !== 'object') throw errors.invalidArgument(where, 'an object of task options', o);
  const wrong = (name, expected) => { throw errors.invalidArgument(`${where}.${name}`, expected, o[name]); };
  if (o.timeout !== undefined && !(typeof o.timeout === 'number' && o.timeout >= 0)) wrong('timeout', 'a non-negative number of ms');
  if (o.singleTrigger !== undefined && ![true, false, 'N'].includes(o.singleTrigger)) wrong('singleTrigger', "true, false or 'N'");
  if (o.maxQueueLength !== undefined && !(Number.isInteger(o.maxQueueLength) && o.maxQueueLength >= 0)) wrong('maxQueueLength', 'a non-negative integer');
}

function nativeOptions (o) {
  const trigger = o.singleTrigger === 'N' ? 'next' : o.singleTrigger ? 'join' : 'off';
  return {
    timeout: Number(o.timeout) >= 0 ? Number(o.timeout) : DEFAULTS.timeout,
    serialized: Boolean(o.serialized),
    singleTrigger: trigger,
    maxQueueLength: Number.isInteger(o.maxQueueLength) && o.maxQueueLength >= 0 ? o.maxQueueLength : DEFAULTS.maxQueueLength
  };
}

class Tasks {
  constructor (swarm, debug) {
    this._swarm = swarm;
    this._debug = debug;
    this.tasks = Object.create(null);
    this.options = Object.assign({}, DEFAULTS);
    // Local calls keep their own arguments and get the handler's own value, as in
    // 0.5.1: pending callers with their arguments by call id, values of runs started by
    // a local call by run id (dropped when the native side says the run is done with).
    this._localCalls = new Pending();
    this._runValues = new Pending();
    this._nextCall = 0;
    this._owners = null;
  }

  register (name, handler, options) {
    if (typeof name === 'string' && name && typeof handler === 'function') {
      return this._add(name, handler, options);
    }
    if (name && typeof name === 'object' && !Array.isArray(name)) {
      for (const taskName of Object.keys(name)) {
        const entry = name[taskName];
        if (typeof entry === 'function') {
          this._add(taskName, entry, handler);
        } else if (entry && typeof entry.handler === 'function') {
          this._add(taskName, entry.handler, Object.assign({}, entry, handler));
        } else {
          throw new Error(`Unable to register task ${taskName}, wrong arguments`);
        }
      }
      return;
    }
    throw new Error(`Unable to register task ${name}, wrong arguments`);
  }

  _add (name, handler, options) {
    checkOptions(options, `options of task ${name}`);
    if (name in this.tasks) {
      this._debug(`Unable to register task ${name}, already registered`);
      return;
    }
    const merged = Object.assign({}, this.options, options);
    delete merged.handler;
    this.tasks[name] = Object.assign({ name, handler }, merged);
    if (this._swarm._node) this._swarm._node.registerTask(name, nativeOptions(merged));
  }

  // The registrations so far, for a node about to start (it knows them before it takes
  // a request), then again once it runs, for those made meanwhile (duplicates are ignored).
  _specs () {
    return Object.keys(this.tasks).map(name => ({ name, options: nativeOptions(this.tasks[name]) }));
  }

  _registerAll (node) {
    for (const { name, options } of this._specs()) node.registerTask(name, options);
  }

  exec (name, ...args) {
    if (typeof name !== 'string' || !(name in this.tasks)) return Promise.reject(errors.swarmError('ERR_SWARM_NO_SUCH_TASK', 'No such task', { task: name }));
    const node = this._swarm._node;
    if (!node && this._swarm._closed) return Promise.reject(errors.swarmError('ERR_SWARM_CLOSED', 'Swarm closed: tasks.exec after close()'));
    if (!node || !this._swarm.isReady) return Promise.reject(errors.swarmError('ERR_SWARM_NOT_READY', 'Ring not ready'));
    const key = args[0] ? String(args[0]) : name;
    const op = tracing.watching('exec')
      ? tracing.outbound('exec', `exec ${name}`, tracing.rpc('tasks', name), { task: name, key, args })
      : null;
    if (op === null) return this._route(node, name, key, args, undefined, null);
    return op.watch(op.run(trace => this._route(node, name, key, args, trace, op)));
  }

  // Sends a call to the owner of `key`, carrying `trace`, part of traced operation `op`
  // (or null; see tracing.js).
  _route (node, name, key, args, trace, op) {
    const owner = this.owner(key);
    if (op !== null && op.span !== null && owner) op.span.setAttribute('server.address', owner);
    if (!owner || this._swarm.isMe(owner)) return this._execLocal(node, name, key, args, trace, op);
    let json;
    try {
      json = JSON.stringify(args.map(a => a === undefined ? null : a));
    } catch (error) {
      return Promise.reject(errors.swarmError('ERR_SWARM_ENCODE', `Unable to encode arguments of task ${name}: ${error.message}`));
    }
    const retried = op === null ? undefined : attempts => op.retried(attempts);
    return this._swarm._wait(node.calls.execTask(name, key, json, trace), settled, retried);
  }

  // A call that runs on this node: queued now, its arguments never serialized.
  _execLocal (node, name, key, args, trace, op) {
    this._nextCall = this._nextCall >= 0xfffffffe ? 1 : this._nextCall + 1;
    const callId = this._nextCall;
    return new Promise((resolve, reject) => {
      this._localCalls.set({ id: callId, name, key, args, trace, op, resolve, reject });
      node.execLocal(name, key, callId);
    });
  }

  // Called by the native side when a local call settles (callId 0: run `runId` is done with).
  _settleLocal (callId, runId, status, kind, body, code, message) {
    if (callId === 0) return this._runValues.take(runId);
    const call = this._localCalls.take(callId);
    if (!call) return;
    // The key was handed to another node, which this node's ring now names: routed again.
    if (code === 'ERR_SWARM_MOVED') return this._again(call);
    const own = runId ? this._runValues.get(runId) : undefined;
    if (own) return own.ok ? call.resolve(own.value) : call.reject(own.error);
    try {
      call.resolve(settled(status, kind, body, code, message));
    } catch (error) {
      call.reject(error);
    }
  }

  // Local call `call`, whose key was handed away, routed again, as part of its trace.
  _again (call) {
    const node = this._swarm._node;
    const routed = node
      ? this._route(node, call.name, call.key, call.args, call.trace, call.op)
      : Promise.reject(errors.swarmError('ERR_SWARM_CLOSED', 'Swarm closed: tasks.exec after close()'));
    routed.then(call.resolve, call.reject);
  }

  // The IP of the node that owns `key`, by the same ring `exec` uses.
  owner (key) {
    if (key === undefined || key === null) throw errors.invalidArgument('key', 'a string or a number', key);
    const node = this._swarm._node;
    if (!node) return null;
    // A number comes back, and the servers are cached per node and ring generation.
    let owners = this._owners;
    if (!owners || owners.node !== node) owners = this._owners = { node, lookup: node.ownerSlot(), generation: -1, servers: [] };
    for (;;) {
      const slot = owners.lookup(String(key));
      if (slot < 0) return null;
      const generation = Math.floor(slot / 65536);
      if (owners.generation !== generation) {
        Object.assign(owners, node.ringServers());
        if (owners.generation !== generation) continue;
      }
      return owners.servers[slot % 65536];
    }
  }

  // What task `name` is doing on this node ({ running, queued, waiters }), for debugging.
  stats (name) {
    const node = this._swarm._node;
    return node && name in this.tasks ? node.taskStats(name) : null;
  }

  // Called by the native engine to run a handler, with JSON arguments from another node
  // (and its caller's trace context, if any) or the kept arguments of local call
  // `callId`; answers through `node.calls.taskDone`. With `chain` (the task's name), a
  // handler that returns a plain value may get back the next run of the task's queue,
  // started by that answer: returned, for the caller to run now, outside this run's
  // trace context (`_runChained`).
  _run (node, runId, name, argsJson, callId, trace, chain) {
    const keep = callId !== 0;
    const call = keep ? this._localCalls.get(callId) : undefined;
    let args;
    try {
      args = call ? call.args : keep ? [] : JSON.parse(argsJson);
    } catch (error) {
      return this._finish(node, runId, keep, null, false, error, chain);
    }
    const from = call ? call.trace : trace;
    const op = tracing.watching('handle')
      ? tracing.inbound(`exec ${name}`, tracing.rpc('tasks', name), { task: name, args }, from)
      : null;
    if (op === null) return this._start(node, runId, name, args, keep, null, chain);
    return op.run(() => this._start(node, runId, name, args, keep, op, chain));
  }

  // The run handed back by the answer of the run before (see `_run`): `text` is its
  // caller's trace context then its JSON arguments, `node.calls.chained` holds
  // `[runId, callId, length of the trace context]` (see chain.rs).
  _runChained (node, name, text) {
    const numbers = node.calls.chained;
    const runId = numbers[0];
    const callId = numbers[1];
    const traced = numbers[2];
    const trace = traced === 0 ? undefined : text.slice(0, traced);
    return this._run(node, runId, name, callId === 0 ? text.slice(traced) : null, callId, trace, name);
  }

  _start (node, runId, name, args, keep, op, chain) {
    const task = this.tasks[name];
    // Only a serialized task has a queue whose next run its answer may start.
    if (task === undefined || !task.serialized) chain = undefined;
    let result;
    let thenable;
    try {
      if (!task) throw new Error(`No such task ${name}`);
      result = task.handler.apply(undefined, args);
      // Inside: reading `then` of what a handler returned may throw (a getter, a Proxy).
      thenable = isThenable(result);
    } catch (error) {
      return this._finish(node, runId, keep, op, false, error, chain);
    }
    if (!thenable) return this._finish(node, runId, keep, op, true, result, chain);
    Promise.resolve(result).then(
      value => this._finish(node, runId, keep, op, true, value, false),
      error => this._finish(node, runId, keep, op, false, error, false));
  }

  _finish (node, runId, keep, op, ok, value, chain) {
    if (keep) this._runValues.set(ok ? { id: runId, ok, value } : { id: runId, ok, error: value });
    // The answer to a multiplexed task request is written with this turn's writes.
    const next = ok ? done(node, runId, value, chain) : fail(node, runId, value, chain);
    if (op !== null) op.settle(ok ? null : value, ok ? value : undefined);
    return next;
  }
}

// The value of a settled native outcome, or the error it stands for.
function settled (status, kind, body, code, message) {
  if (!code) return codec.decodeReply(kind, body, false);
  if (code === 'ERR_SWARM_TIMEOUT') throw errors.timeoutError();
  throw errors.swarmError(code, message, status ? { statusCode: status } : {});
}

// Answer run `id`; with `chain`, returns the text of the run this answer started and
// handed back, if any.
function done (node, id, value, chain) {
  let encoded;
  try {
    encoded = codec.encode(value);
  } catch (error) {
    return fail(node, id, new Error(`Unable to encode the result: ${errors.handlerFailure(error)[1]}`), chain);
  }
  return node.calls.taskDone(id, 0, encoded[0], encoded[1], chain);
}

function fail (node, id, error, chain) {
  const [status, text] = errors.handlerFailure(error);
  return node.calls.taskDone(id, status, codec.TEXT, text, chain);
}

module.exports = { checkOptions, Tasks, DEFAULTS };
