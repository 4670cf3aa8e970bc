'use strict';

// `swarm.HashRing`: the native ring, with the servers kept on the JavaScript side so a
// look-up returns one of them instead of making a new string.
const errors = require('./errors');
const { ringKind } = require('./options');

function ringClass (NativeRing) {
  return class HashRing {
    constructor (servers, options) {
      if (!Array.isArray(servers) || !servers.every(s => typeof s === 'string')) {
        throw errors.invalidArgument('servers', 'an array of strings', servers);
      }
      if (options !== undefined && (options === null || typeof options !== 'object')) {
        throw errors.invalidArgument('options', "an object such as { ring: 'xxh3' }", options);
      }
      // Read-only: a ring is built once, of one kind.
      Object.defineProperty(this, 'ring', { value: ringKind(options && options.ring, 'options.ring'), enumerable: true });
      this._native = new NativeRing(servers, this.ring);
      this.servers = this._native.servers;
      this._index = this._native.indexer();
    }

    get (key) {
      const index = this._index(String(key));
      return index < 0 ? null : this.servers[index];
    }

    getMany (keys) {
      if (!Array.isArray(keys)) throw errors.invalidArgument('keys', 'an array', keys);
      return this._native.getMany(keys.map(String));
    }
  };
}

module.exports = { ringClass };
