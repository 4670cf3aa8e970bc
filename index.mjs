// The ESM entry: the same singleton as `require('node-swarm-kb')` (this imports the
// CommonJS module, whose instance Node shares between both), as the default export and
// as named exports. The getters (`nodes`, `master`, `amIMaster`, `isReady`) change as
// the cluster does: read them on the default export.
import swarm from './index.js';

export default swarm;
export const { init, close, stats, send, broadcast, isMe, on, once, off, emit, messages, tasks, metrics, options } = swarm;

// A class whose instances are the native ring's, loaded when first constructed: importing
// never loads the addon, as `require()` does not.
export class HashRing {
  constructor (servers, options) {
    return new swarm.HashRing(servers, options);
  }
}
