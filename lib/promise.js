'use strict';

// The Bluebird promises the API returns, as 0.5.1's did (docs/compat.md §1), from a copy of
// Bluebird of our own whose reactions run as microtasks. Bluebird's own scheduler on
// Node is setImmediate: a reply delivered in a callback of the loop would resume its
// `await` only at the loop's check phase, after the callback has written what it had,
// so the next request waits for another turn of the loop. As microtasks, they run when
// that callback ends, and what they send goes out with it. A copy, so the scheduler of
// the application's Bluebird stays as it is; copies share Bluebird's error classes
// (`TimeoutError` is the application's), and each recognizes the others' promises.
const Promise = require('bluebird').getNewLibraryCopy();

Promise.setScheduler(queueMicrotask);
// A reaction runs in the async context where `.then` was called, not in the one of the
// delivery that settled the promise: an AsyncLocalStorage store (a request's id, a
// trace) set around a call is there in its `.then` callbacks, as after an `await`.
Promise.config({ asyncHooks: true });

module.exports = Promise;
