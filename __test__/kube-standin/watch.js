'use strict';

// One watch stream: HTTP 200, chunked `application/json`, one WatchEvent JSON
// object per line, as the apiserver serves `?watch=true` over HTTP/1.1.
//
// Where the stream starts, as the apiserver's watch cache decides it:
// - resourceVersion absent or "0": synthetic ADDED events for the current state
//   ("get state and start at most recent"), then live changes;
// - resourceVersion R: every retained event after R, then live changes; if R is
//   older than the retained history, one ERROR event carrying a 410 Expired
//   Status, then the stream ends (the HTTP status is still 200);
// - sendInitialEvents=true (streaming lists): the current state as ADDED, then,
//   with allowWatchBookmarks, a BOOKMARK annotated k8s.io/initial-events-end.
// With allowWatchBookmarks=true a BOOKMARK carrying the current resourceVersion is
// sent every `bookmarkMs` during which nothing else was sent.

const { bookmarkObject } = require('./objects');
const { expired } = require('./status');

let nextWatchId = 1;

/**
 * Starts streaming on `res`. `match(object)` applies the label/field selectors.
 * `onEnd(watcher)` is called once when the stream is over, however it ended.
 */
function startWatch({ res, store, resource, params, match, bookmarkMs, onEnd }) {
  const watcher = {
    id: nextWatchId++,
    resource,
    closed: false,
    /** Ends the stream cleanly (as a server-side timeout does). */
    end() {
      if (!watcher.closed) res.end();
      cleanup();
    },
    /** Drops the connection without finishing the chunked body (an outage). */
    destroy() {
      res.destroy();
      cleanup();
    },
  };

  let sentSinceTick = false;
  const send = (type, object) => {
    if (watcher.closed) return;
    res.write(`${JSON.stringify({ type, object })}\n`);
    sentSinceTick = true;
  };

  const onEvent = (entry) => {
    if (entry.resource === resource && match(entry.object)) send(entry.type, entry.object);
  };

  let bookmarkTimer = null;
  let timeoutTimer = null;
  function cleanup() {
    if (watcher.closed) return;
    watcher.closed = true;
    store.removeListener('event', onEvent);
    clearInterval(bookmarkTimer);
    clearTimeout(timeoutTimer);
    onEnd(watcher);
  }
  res.on('close', cleanup);

  res.writeHead(200, {
    'Content-Type': 'application/json',
    'Cache-Control': 'no-cache, private',
    'Transfer-Encoding': 'chunked',
  });
  res.flushHeaders();

  // Replay and subscribe in the same tick, so no change can fall in between.
  const initial = params.sendInitialEvents === true ||
    (params.sendInitialEvents !== false && (params.rv === undefined || params.rv === '' || params.rv === '0'));
  if (initial) {
    for (const obj of store.list(resource)) if (match(obj)) send('ADDED', obj);
  } else if (params.rv !== undefined && params.rv !== '' && params.rv !== '0') {
    const rv = Number(params.rv);
    const events = store.eventsSince(resource, rv);
    if (events === null) {
      send('ERROR', expired(params.rv, store.historyStart));
      watcher.end();
      return watcher;
    }
    for (const e of events) onEvent(e);
  }
  store.on('event', onEvent);

  if (params.sendInitialEvents === true && params.allowBookmarks) {
    send('BOOKMARK', bookmarkObject(resource, store.resourceVersion, { 'k8s.io/initial-events-end': 'true' }));
  }
  if (params.allowBookmarks) {
    bookmarkTimer = setInterval(() => {
      if (!sentSinceTick) send('BOOKMARK', bookmarkObject(resource, store.resourceVersion));
      sentSinceTick = false;
    }, bookmarkMs);
    bookmarkTimer.unref();
  }
  if (params.timeoutSeconds > 0) {
    timeoutTimer = setTimeout(() => watcher.end(), params.timeoutSeconds * 1000);
    timeoutTimer.unref();
  }
  return watcher;
}

module.exports = { startWatch };
