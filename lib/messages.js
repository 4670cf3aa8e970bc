'use strict';

// Message handlers (`swarm.messages`): registration, and answering what the native
// server hands over, with 0.5.1's reply rules (docs/compat.md §3).
const dns = require('node:dns');
const net = require('node:net');
const Promise = require('./promise');
const codec = require('./codec');
const errors = require('./errors');
const tracing = require('./tracing');

class Messages {
  constructor (swarm, debug) {
    this._swarm = swarm;
    this._debug = debug;
    this._handlers = Object.create(null);
  }

  on (topic, handler) {
    if (Array.isArray(topic)) return topic.forEach(t => this.on(t, handler));
    if (typeof topic !== 'string' || !topic) throw errors.invalidArgument('topic', 'a non-empty string or an array of strings', topic);
    if (typeof handler !== 'function') throw errors.invalidArgument('handler', 'a function', handler);
    (this._handlers[topic] = this._handlers[topic] || []).push(handler);
  }

  send (host, topic, message) {
    if (typeof host !== 'string') {
      return Promise.reject(new Error(`Send Error, parameter host needs to be a string, ${typeof host} found.`));
    }
    if (typeof topic !== 'string' && !Array.isArray(topic)) {
      return Promise.reject(new Error(`Send Error, parameter topic needs to be a string or an Array, ${typeof topic} found.`));
    }
    const node = this._swarm._node;
    if (!node && this._swarm._closed) return Promise.reject(errors.swarmError('ERR_SWARM_CLOSED', 'Unable to send message: swarm closed'));
    if (!node) return Promise.reject(errors.swarmError('ERR_SWARM_NOT_STARTED', 'Unable to send message: swarm not initialized'));
    if (net.isIP(host) === 0) return this._resolve(host).then(ip => this.send(ip, topic, message));
    let encoded;
    try {
      encoded = codec.encode(message);
    } catch (error) {
      return Promise.reject(errors.swarmError('ERR_SWARM_ENCODE', `Unable to send message: ${error.message}`));
    }
    const path = Array.isArray(topic) ? topic.join('/') : topic;
    const settle = typeof message === 'string' ? settledRaw : settled;
    const here = !node.listening && (this._swarm.isMe(host) || isLoopback(host));
    const op = tracing.watching('send')
      ? tracing.outbound('send', path, tracing.rpc('messages', path, { 'server.address': host }), { node: host, topic: path, message })
      : null;
    if (op === null) return this._start(node, host, path, encoded, settle, here, undefined);
    return op.watch(op.run(trace => this._start(node, host, path, encoded, settle, here, trace)));
  }

  _start (node, host, path, encoded, settle, here, trace) {
    if (here) return this._sendHere(host, path, encoded, settle, trace);
    return this._swarm._wait(node.calls.send(host, path, encoded[0], encoded[1], trace), settle);
  }

  // A node named by a host name (`localhost`, a Service's pod DNS name) is sent to at
  // its address; this node's own, when the name has several and one is this node's.
  _resolve (host) {
    return new Promise((resolve, reject) => dns.lookup(host, { all: true }, (error, addresses) => {
      if (error) return reject(errors.swarmError('ERR_SWARM_SEND', `Unable to reach ${host}: ${error.code || error.message}`));
      const mine = addresses.find(({ address }) => this._swarm.isMe(address));
      resolve((mine || addresses[0]).address);
    }));
  }

  // A standalone node that listens on nothing answers its own messages here, as its
  // server would: the message and its reply go through the wire's encoding.
  _sendHere (host, path, encoded, settle, trace) {
    return new Promise((resolve, reject) => {
      const here = {
        calls: {
          reply: (id, status, kind, body) => {
            try {
              resolve(settle(status, kind, body));
            } catch (error) {
              reject(error);
            }
            return false;
          }
        }
      };
      this._dispatch(here, 0, path, encoded[0], encoded[1], host, trace);
    });
  }

  // Called by the native server: runs every handler of every topic segment and answers
  // through `node.calls.reply`; `trace` is the sender's trace context, when it sent one
  // (see tracing.js). Never throws: a failing handler becomes a 500 (or its statusCode).
  _dispatch (node, id, path, kind, body, from, trace) {
    let message;
    try {
      message = codec.decodeMessage(kind, body);
    } catch (error) {
      return this._fail(node, id, error, null);
    }
    const op = tracing.watching('handle')
      ? tracing.inbound(path, tracing.rpc('messages', path, { 'network.peer.address': from }), { topic: path, from, message }, trace)
      : null;
    if (op === null) return this._handle(node, id, path, message, from, null);
    op.run(() => this._handle(node, id, path, message, from, op));
  }

  _handle (node, id, path, message, from, op) {
    let results;
    // Most paths are one topic: V8 splits a string made outside JavaScript in its
    // runtime, a visible share of a receiving thread.
    const topics = path.indexOf('/') === -1 ? [path] : path.split('/');
    let thenable;
    try {
      results = [];
      for (const topic of topics) {
        for (const handler of this._handlers[topic] || []) results.push(handler(message, topics, from));
      }
      // Inside: reading `then` of what a handler returned may throw (a getter, a Proxy).
      thenable = results.some(isThenable);
    } catch (error) {
      return this._fail(node, id, error, op);
    }
    if (!thenable) return this._answer(node, id, results, op);
    Promise.all(results).then(
      values => this._answer(node, id, values, op),
      error => this._fail(node, id, error, op));
  }

  _answer (node, id, results, op) {
    const result = results.length <= 1 ? results[0] : results;
    let encoded;
    try {
      encoded = codec.encode(result);
    } catch (error) {
      return this._fail(node, id, new Error(`messageHandler: Unable to stringify response ${errors.handlerFailure(error)[1]}`), op);
    }
    this._reply(node, id, encoded[0] === codec.NONE ? 204 : 200, encoded[0], encoded[1]);
    if (op !== null) op.settle(null, result);
  }

  _fail (node, id, error, op) {
    const [status, text] = errors.handlerFailure(error);
    this._debug(`A handler failed, answered ${status}: ${text}`);
    this._reply(node, id, status, codec.TEXT, text);
    if (op !== null) op.settle(error);
  }

  // An answer to a multiplexed request is written with this turn's other writes.
  _reply (node, id, status, kind, body) {
    node.calls.reply(id, status, kind, body);
  }
}

// What a send settles to, `(status, kind, body, code, message)` => its reply or the
// error it throws; made once for each way of decoding, not once a call.
function settles (rawText) {
  return (status, kind, body, code, message) => {
    if (code) throw errors.swarmError(code, message);
    const value = codec.decodeReply(kind, body, rawText);
    if (status < 200 || status >= 300) throw errors.statusCodeError(status, value);
    return value;
  };
}
const settled = settles(false);
const settledRaw = settles(true);

// This machine: what a standalone node that listens on nothing answers itself, as the
// node a user on a laptop means by `localhost`.
function isLoopback (ip) {
  return ip.startsWith('127.') || ip === '::1';
}

function isThenable (value) {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function';
}

module.exports = { Messages, isThenable };
