'use strict';

// `swarm.HashRing`: the native ring, with the servers kept on the JavaScript side so a
// look-up returns one of them instead of making a new string.
const errors = require('./errors');

function ringClass (NativeRing) {
  return class HashRing {
    constructor (servers) {
      if (!Array.isArray(servers) || !servers.every(s => typeof s === 'string')) {
        throw errors.invalidArgument('servers', 'an array of strings', servers);
      }
      this._native = new NativeRing(servers);
      this.servers = this._native.servers;
      this._index = this._native.indexer();
    }

    get (key) {
      const index = this._index(String(key));
      return index < 0 ? null : this.servers[index];
    }

    getMany (keys) {
      return this._native.getMany(keys.map(String));
    }
  };
}

module.exports = { ringClass };
