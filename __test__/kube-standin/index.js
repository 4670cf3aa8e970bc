'use strict';

// A Kubernetes API stand-in for tests: serves the Endpoints and EndpointSlices of
// one Service (`app=<appName>`) over plain HTTP, with lists, watches (resume,
// bookmarks, 410 Expired, timeouts), bearer-token auth, RBAC denials and outages,
// shaped as kube-apiserver v1.33 serves them. Plain Node, no dependencies.
//
//   const kube = await startStandin({ sliceSize: 2 });
//   kube.setPods([{ name: 'web-a', ip: '10.0.0.1' }]);
//   // point a client at kube.url with `Authorization: Bearer ${kube.token}`
//   await kube.waitForWatch('endpoints');
//   await kube.close();

const { Store } = require('./store');
const { ApiServer } = require('./server');

/**
 * @param {object} [opts]
 * @param {string} [opts.host='127.0.0.1']
 * @param {number} [opts.port=0]
 * @param {string} [opts.token='test-token']
 * @param {string} [opts.namespace='default']
 * @param {string} [opts.appName='web']
 * @param {number} [opts.sliceSize=100]     endpoints per EndpointSlice
 * @param {number} [opts.historyLimit=1000] watch events retained for resumption
 * @param {number} [opts.bookmarkMs=1000]   idle time before a BOOKMARK
 * @param {boolean} [opts.dualStack=false]  also serve IPv6 slices (fd00::…)
 * @param {number} [opts.messagingPort=45892] the Service port in the objects
 * @param {boolean} [opts.listItemTypeMeta=true] kind/apiVersion on list items
 * @param {object[]} [opts.pods]            initial pods
 * @param {object} [opts.tls]               { key, cert } (PEM): serve HTTPS
 */
async function startStandin(opts = {}) {
  const host = opts.host || '127.0.0.1';
  const store = new Store(opts);
  if (opts.pods) store.setPods(opts.pods);
  const api = new ApiServer(store, opts);
  const address = await api.listen(opts.port || 0, host);
  const hostPart = host.includes(':') ? `[${host}]` : host;

  const standin = {
    url: `http${opts.tls ? 's' : ''}://${hostPart}:${address.port}`,
    port: address.port,
    get token() { return api.token; },
    namespace: store.namespace,
    appName: store.appName,
    selector: `app=${store.appName}`,
    /** The current global resourceVersion, as a string. */
    get resourceVersion() { return store.resourceVersion; },

    // Pods. Each mutation returns the new resourceVersion (string).
    setPods: (pods) => store.setPods(pods),
    addPod: (pod) => store.addPod(pod),
    removePod: (nameOrIp) => store.removePod(nameOrIp),
    updatePod: (nameOrIp, patch) => store.updatePod(nameOrIp, patch),
    pods: () => store.podList(),
    setDualStack: (on = true) => store.setDualStack(on),

    // Current objects, as a list would return them.
    endpoints: () => store.objects.endpoints.get(store.appName),
    endpointSlices: () => store.list('endpointslices'),
    leases: () => store.list('leases'),

    // Failure modes.
    forbid: (resource, on = true) => api.setForbidden(resource, on),
    setOutage: (on = true) => api.setOutage(on),
    setHang: (on = true) => api.setHang(on),
    setToken: (token) => { api.token = String(token); },
    compact: () => store.compact(),
    endWatches: () => api.endWatches(),

    // Observation.
    stats: () => api.stats(),
    waitFor: (predicate, timeoutMs = 5000) => api.waitFor(predicate, timeoutMs),
    waitForWatch: (resource, n = 1, timeoutMs = 5000) =>
      api.waitFor((s) => s.openWatches[resource] >= n, timeoutMs, `${n} open watch(es) of ${resource}`),

    close: () => api.close(),
  };
  return standin;
}

module.exports = { startStandin };
