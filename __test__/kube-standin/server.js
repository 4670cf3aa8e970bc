'use strict';

// The HTTP face of the stand-in: routing, authentication, RBAC and outage
// simulation, lists, single-object GETs, watches, and minimal discovery.
// Request checks run in the order a real apiserver (behind its load balancer)
// applies them: unavailable (503), authentication (401), method (405), route
// (404), authorization (403), query validation (400/422), then the request.

const http = require('node:http');
const https = require('node:https');
const { EventEmitter } = require('node:events');
const { RESOURCES } = require('./objects');
const { parseLabelSelector, parseFieldSelector, SelectorError } = require('./selector');
const { startWatch } = require('./watch');
const S = require('./status');
const { createLease, updateLease } = require('./leases');

const LEASES = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/;

const ENDPOINTS_DEPRECATION = '299 - "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"';
const VERSION_INFO = {
  major: '1',
  minor: '33',
  emulationMajor: '1',
  emulationMinor: '33',
  minCompatibilityMajor: '1',
  minCompatibilityMinor: '32',
  gitVersion: 'v1.33.0',
  gitCommit: '60a317eadfcb839692a5a5e2de6de3fb6d1a9e13',
  gitTreeState: 'clean',
  buildDate: '2025-04-23T13:07:41Z',
  goVersion: 'go1.24.2',
  compiler: 'gc',
  platform: 'linux/amd64',
};
const ROUTES = [
  { re: /^\/api\/v1\/namespaces\/([^/]+)\/endpoints(?:\/([^/]+))?$/, resource: 'endpoints' },
  { re: /^\/apis\/discovery\.k8s\.io\/v1\/namespaces\/([^/]+)\/endpointslices(?:\/([^/]+))?$/, resource: 'endpointslices' },
  { re: LEASES, resource: 'leases' },
];
const ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

class ApiServer extends EventEmitter {
  constructor(store, opts = {}) {
    super();
    this.setMaxListeners(0);
    this.store = store;
    this.token = opts.token || 'test-token';
    this.user = `system:serviceaccount:${store.namespace}:${store.appName}`;
    this.bookmarkMs = opts.bookmarkMs || 1000;
    // The real apiserver omits kind/apiVersion on list items; by default the
    // stand-in writes them (set listItemTypeMeta: false to serve them bare).
    this.listItemTypeMeta = opts.listItemTypeMeta !== false;
    this.outage = false;
    // Accepts connections and never answers: an overloaded API server, a broken proxy.
    this.hang = false;
    this.hanging = new Set();
    // Requests by client address, whatever their answer (or none).
    this.requestsFrom = {};
    this.forbidden = new Set();
    this.watchers = new Set();
    this.sockets = new Set();
    this.counts = {};
    for (const r of Object.keys(RESOURCES)) this.counts[r] = { list: 0, watch: 0, get: 0 };
    // With opts.tls ({ key, cert } in PEM), the API is served over HTTPS, as a real one is.
    const handler = (req, res) => this._handle(req, res);
    this.http = opts.tls ? https.createServer(opts.tls, handler) : http.createServer(handler);
    this.http.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  listen(port, host) {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.removeListener('error', reject);
        resolve(this.http.address());
      });
    });
  }

  close() {
    this.setHang(false);
    for (const w of [...this.watchers]) w.destroy();
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.http.close(() => resolve()));
  }

  // ---- controls -----------------------------------------------------------

  watchersOf(resource) {
    return [...this.watchers].filter((w) => resource === undefined || w.resource === resource);
  }

  setForbidden(resource, on) {
    if (!RESOURCES[resource]) throw new Error(`unknown resource: ${resource}`);
    if (on) {
      this.forbidden.add(resource);
      for (const w of this.watchersOf(resource)) w.end();
    } else {
      this.forbidden.delete(resource);
    }
  }

  setOutage(on) {
    this.outage = Boolean(on);
    if (this.outage) for (const w of this.watchersOf()) w.destroy();
  }

  // On: open watches end (as when an API server shuts down) and every request from then
  // on waits for ever (as when it comes back overloaded, or behind a broken proxy).
  // Off: the requests left waiting are dropped.
  setHang(on) {
    this.hang = Boolean(on);
    if (this.hang) {
      for (const w of this.watchersOf()) w.end();
    } else {
      for (const req of this.hanging) req.socket.destroy();
      this.hanging.clear();
    }
  }

  endWatches() {
    for (const w of this.watchersOf()) w.end();
  }

  stats() {
    const out = {
      resourceVersion: this.store.resourceVersion, list: {}, watch: {}, get: {}, openWatches: {},
      requestsFrom: Object.assign({}, this.requestsFrom), hanging: this.hanging.size
    };
    for (const r of Object.keys(RESOURCES)) {
      out.list[r] = this.counts[r].list;
      out.watch[r] = this.counts[r].watch;
      out.get[r] = this.counts[r].get;
      out.openWatches[r] = this.watchersOf(r).length;
    }
    return out;
  }

  /** Resolves with stats() once `predicate(stats())` holds; rejects after timeoutMs. */
  waitFor(predicate, timeoutMs = 5000, what = 'condition') {
    return new Promise((resolve, reject) => {
      const check = () => {
        const s = this.stats();
        if (!predicate(s)) return false;
        clearTimeout(timer);
        this.removeListener('stats', check);
        resolve(s);
        return true;
      };
      const timer = setTimeout(() => {
        this.removeListener('stats', check);
        reject(new Error(`kube stand-in: timed out after ${timeoutMs} ms waiting for ${what}; ` +
          `stats ${JSON.stringify(this.stats())}`));
      }, timeoutMs);
      if (!check()) this.on('stats', check);
    });
  }

  // ---- requests -----------------------------------------------------------

  _handle(req, res) {
    const url = new URL(req.url, 'http://standin.invalid');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const from = req.socket.remoteAddress;
    this.requestsFrom[from] = (this.requestsFrom[from] || 0) + 1;
    if (this.hang) {
      this.hanging.add(req);
      req.socket.once('close', () => this.hanging.delete(req));
      this.emit('stats');
      return;
    }
    if (this.outage) return send(res, 503, S.serviceUnavailable());
    const auth = /^bearer\s+(.+)$/i.exec(req.headers.authorization || '');
    if (!auth || auth[1].trim() !== this.token) return send(res, 401, S.unauthorized());
    if (req.method !== 'GET') {
      const lease = LEASES.exec(path);
      const write = lease && (lease[2] ? req.method === 'PUT' && 'update' : req.method === 'POST' && 'create');
      if (!write) return send(res, 405, S.methodNotAllowed());
      return this._writeLease(req, res, write, decodeURIComponent(lease[1]), lease[2] && decodeURIComponent(lease[2]));
    }

    const discovery = this._discovery(path, req);
    if (discovery) return send(res, 200, discovery);
    for (const route of ROUTES) {
      const m = route.re.exec(path);
      if (m) {
        return this._resource(res, route.resource, decodeURIComponent(m[1]),
          m[2] && decodeURIComponent(m[2]), url.searchParams);
      }
    }
    return send(res, 404, S.notFound());
  }

  _writeLease(req, res, verb, namespace, name) {
    this.counts.leases[verb] = (this.counts.leases[verb] || 0) + 1;
    this.emit('stats');
    // The pods' Role is namespaced: other namespaces are forbidden as its own can be.
    if (this.forbidden.has('leases') || namespace !== this.store.namespace) {
      return send(res, 403, S.forbidden(RESOURCES.leases, verb, this.user, namespace, name));
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        return send(res, 400, S.badRequest(`the body is not JSON: ${err.message}`));
      }
      const [code, answer] = verb === 'create'
        ? createLease(this.store, namespace, body)
        : updateLease(this.store, namespace, name, body);
      return send(res, code, answer);
    });
    return undefined;
  }

  _discovery(path, req) {
    const group = {
      name: 'discovery.k8s.io',
      versions: [{ groupVersion: 'discovery.k8s.io/v1', version: 'v1' }],
      preferredVersion: { groupVersion: 'discovery.k8s.io/v1', version: 'v1' },
    };
    const resource = (name, singularName, kind, shortNames) =>
      ({ name, singularName, namespaced: true, kind, verbs: ALL_VERBS, ...(shortNames && { shortNames }) });
    switch (path) {
      case '/version':
        return VERSION_INFO;
      case '/api':
        return {
          kind: 'APIVersions',
          versions: ['v1'],
          serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: req.headers.host || '' }],
        };
      case '/apis':
        return { kind: 'APIGroupList', apiVersion: 'v1', groups: [group] };
      case '/apis/discovery.k8s.io':
        return { kind: 'APIGroup', apiVersion: 'v1', ...group };
      case '/api/v1':
        return {
          kind: 'APIResourceList',
          groupVersion: 'v1',
          resources: [resource('endpoints', 'endpoints', 'Endpoints', ['ep'])],
        };
      case '/apis/discovery.k8s.io/v1':
        return {
          kind: 'APIResourceList',
          apiVersion: 'v1',
          groupVersion: 'discovery.k8s.io/v1',
          resources: [resource('endpointslices', 'endpointslice', 'EndpointSlice')],
        };
      default:
        return null;
    }
  }

  _resource(res, resource, namespace, name, q) {
    const info = RESOURCES[resource];
    const watch = ['true', '1'].includes(q.get('watch'));
    const verb = name ? 'get' : watch ? 'watch' : 'list';
    this.counts[resource][verb] += 1;
    this.emit('stats');
    if (resource === 'endpoints') res.setHeader('Warning', ENDPOINTS_DEPRECATION);
    if (this.forbidden.has(resource)) return send(res, 403, S.forbidden(info, verb, this.user, namespace, name));

    const store = this.store;
    if (name) {
      const obj = namespace === store.namespace ? store.objects[resource].get(name) : undefined;
      return obj ? send(res, 200, obj) : send(res, 404, S.objectNotFound(info, name));
    }

    let match;
    try {
      const labels = parseLabelSelector(q.get('labelSelector'));
      const fields = parseFieldSelector(q.get('fieldSelector'));
      match = (obj) => obj.metadata.namespace === namespace && labels(obj.metadata.labels) && fields(obj);
    } catch (err) {
      if (err instanceof SelectorError) return send(res, 400, S.badRequest(err.message));
      throw err;
    }
    const rv = q.get('resourceVersion') || undefined;
    if (rv !== undefined && !/^\d+$/.test(rv)) {
      return send(res, 400, S.badRequest(`invalid resource version: ${JSON.stringify(rv)}`));
    }
    const rvNum = rv === undefined ? 0 : Number(rv);
    // The apiserver waits up to 3 s for a resourceVersion it has not reached, then
    // gives up with 504; the stand-in never reaches it, so it answers at once.
    if (rvNum > store.rv) return send(res, 504, S.tooLarge(rv, store.resourceVersion));
    const rvm = q.get('resourceVersionMatch') || undefined;

    if (watch) {
      const timeout = q.get('timeoutSeconds');
      if (timeout !== null && !/^\d+$/.test(timeout)) {
        return send(res, 400, S.badRequest(`invalid timeoutSeconds: ${JSON.stringify(timeout)}`));
      }
      const sie = q.get('sendInitialEvents');
      const params = {
        rv,
        allowBookmarks: ['true', '1'].includes(q.get('allowWatchBookmarks')),
        timeoutSeconds: timeout === null ? 0 : Number(timeout),
        sendInitialEvents: sie === null ? undefined : ['true', '1'].includes(sie),
      };
      const watcher = startWatch({
        res, store, resource, params, match,
        bookmarkMs: this.bookmarkMs,
        onEnd: (w) => {
          this.watchers.delete(w);
          this.emit('stats');
        },
      });
      if (!watcher.closed) {
        this.watchers.add(watcher);
        this.emit('stats');
      }
      return undefined;
    }

    // A list. limit/continue are accepted and ignored: the whole list is one page
    // and no continue token is ever returned (as with resourceVersion=0 from cache).
    if (rvm !== undefined) {
      if (!['Exact', 'NotOlderThan'].includes(rvm)) {
        return send(res, 422, S.invalidListOptions('resourceVersionMatch',
          `supported values: "Exact", "NotOlderThan", got "${rvm}"`));
      }
      if (rv === undefined) {
        return send(res, 422, S.invalidListOptions('resourceVersionMatch',
          'resourceVersionMatch is forbidden unless resourceVersion is provided'));
      }
      if (rvm === 'Exact' && rv === '0') {
        return send(res, 422, S.invalidListOptions('resourceVersionMatch',
          'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'));
      }
    }
    let state;
    let listRv = store.resourceVersion;
    if (rvm === 'Exact') {
      state = store.stateAt(resource, rvNum);
      if (!state) return send(res, 410, S.expired(rv, store.historyStart));
      listRv = rv;
    }
    const items = store.list(resource, state).filter(match).map((obj) => {
      if (this.listItemTypeMeta) return obj;
      const { kind, apiVersion, ...rest } = obj; // the apiserver omits TypeMeta on items
      return rest;
    });
    return send(res, 200, {
      kind: info.listKind,
      apiVersion: info.apiVersion,
      metadata: { resourceVersion: listRv },
      items,
    });
  }
}

function send(res, code, body) {
  const text = JSON.stringify(body);
  res.writeHead(code, {
    'Content-Type': 'application/json',
    'Cache-Control': 'no-cache, private',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

module.exports = { ApiServer };
