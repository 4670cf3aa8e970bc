'use strict';

// Tests of the Kubernetes API stand-in (__test__/kube-standin/). Every wait is
// bounded; watches are awaited through stats, never through sleeps.

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { apiRequest, openWatch, withStandin } = require('./kube-standin/client');
const { controlClient } = require('./kube-standin/control');

const NS = 'default';
const EP = `/api/v1/namespaces/${NS}/endpoints`;
const ES = `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`;
const SEL = `labelSelector=${encodeURIComponent('app=web')}`;

const pod = (i, extra = {}) => ({ name: `web-${i}`, ip: `10.0.0.${i}`, ...extra });
const pods = (n, from = 1) => Array.from({ length: n }, (_, k) => pod(from + k));


describe('lists', () => {
  test('Endpoints list: shape, sorting, not-ready and terminating pods', () => withStandin({}, async (kube, get) => {
    kube.setPods([pod(9), pod(10, { ready: false }), pod(2), pod(3, { terminating: true, ready: true })]);
    const { status, headers, body } = await get(`${EP}?${SEL}&limit=500`);
    assert.equal(status, 200);
    assert.match(headers['content-type'], /^application\/json/);
    assert.match(headers.warning, /v1 Endpoints is deprecated/);
    assert.equal(body.kind, 'EndpointsList');
    assert.equal(body.apiVersion, 'v1');
    assert.equal(body.metadata.resourceVersion, kube.resourceVersion);
    assert.equal(body.metadata.continue, undefined);
    assert.equal(body.items.length, 1);
    const ep = body.items[0];
    assert.equal(ep.kind, 'Endpoints');
    assert.equal(ep.apiVersion, 'v1');
    assert.equal(ep.metadata.name, 'web');
    assert.equal(ep.metadata.namespace, NS);
    assert.deepEqual(ep.metadata.labels, { app: 'web' });
    assert.ok(ep.metadata.uid && ep.metadata.creationTimestamp && ep.metadata.resourceVersion);
    assert.equal(ep.subsets.length, 1);
    // String order ('10.0.0.2' < '10.0.0.9'); the terminating pod is in neither list.
    assert.deepEqual(ep.subsets[0].addresses.map((a) => a.ip), ['10.0.0.2', '10.0.0.9']);
    assert.deepEqual(ep.subsets[0].notReadyAddresses.map((a) => a.ip), ['10.0.0.10']);
    assert.deepEqual(ep.subsets[0].addresses[0].targetRef,
      { kind: 'Pod', name: 'web-2', namespace: NS, uid: ep.subsets[0].addresses[0].targetRef.uid });
    assert.equal(ep.subsets[0].addresses[0].nodeName, 'node-1');
    assert.deepEqual(ep.subsets[0].ports, [{ name: 'messaging', port: 45892, protocol: 'TCP' }]);

    kube.setPods([pod(1)]);
    const again = (await get(EP)).body.items[0];
    assert.equal(again.subsets[0].notReadyAddresses, undefined, 'empty arrays are omitted');
    kube.setPods([]);
    assert.equal((await get(EP)).body.items[0].subsets, undefined, 'no subsets without pods');
  }));

  test('EndpointSlice list: shape, conditions, placeholder', () => withStandin({}, async (kube, get) => {
    let { body } = await get(`${ES}?${SEL}`);
    assert.equal(body.kind, 'EndpointSliceList');
    assert.equal(body.apiVersion, 'discovery.k8s.io/v1');
    assert.equal(body.items.length, 1, 'a Service without pods keeps one slice');
    assert.equal(body.items[0].endpoints, null);
    kube.setPods([pod(1), pod(2, { ready: false }), pod(3, { terminating: true })]);
    ({ body } = await get(`${ES}?${SEL}`));
    assert.equal(body.items.length, 1);
    const s = body.items[0];
    assert.equal(s.kind, 'EndpointSlice');
    assert.equal(s.apiVersion, 'discovery.k8s.io/v1');
    assert.match(s.metadata.name, /^web-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
    assert.deepEqual(s.metadata.labels, {
      app: 'web',
      'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
      'kubernetes.io/service-name': 'web',
    });
    assert.equal(s.metadata.ownerReferences[0].kind, 'Service');
    assert.equal(s.addressType, 'IPv4');
    assert.deepEqual(s.ports, [{ name: 'messaging', port: 45892, protocol: 'TCP' }]);
    const byIp = Object.fromEntries(s.endpoints.map((e) => [e.addresses[0], e]));
    assert.deepEqual(byIp['10.0.0.1'].conditions, { ready: true, serving: true, terminating: false });
    assert.deepEqual(byIp['10.0.0.2'].conditions, { ready: false, serving: false, terminating: false });
    assert.deepEqual(byIp['10.0.0.3'].conditions, { ready: false, serving: true, terminating: true });
    assert.equal(byIp['10.0.0.1'].zone, 'zone-a');
    assert.equal(byIp['10.0.0.1'].nodeName, 'node-1');
    assert.deepEqual(byIp['10.0.0.1'].targetRef.name, 'web-1');
  }));

  test('label and field selectors', () => withStandin({ pods: pods(2) }, async (kube, get) => {
    const count = async (p, sel) => (await get(`${p}?labelSelector=${encodeURIComponent(sel)}`)).body.items.length;
    assert.equal(await count(EP, 'app=web'), 1);
    assert.equal(await count(EP, 'app==web'), 1);
    assert.equal(await count(EP, 'app!=web'), 0);
    assert.equal(await count(EP, 'app'), 1);
    assert.equal(await count(EP, '!app'), 0);
    assert.equal(await count(EP, 'app=web,tier=db'), 0);
    assert.equal(await count(EP, 'tier!=db'), 1, '!= matches a missing label');
    assert.equal(await count(EP, 'app in (api,web)'), 1);
    assert.equal(await count(EP, 'kubernetes.io/service-name=web'), 0);
    assert.equal(await count(ES, 'kubernetes.io/service-name=web,app=web'), 1);
    assert.equal((await get(`${EP}?fieldSelector=metadata.name%3Dweb`)).body.items.length, 1);
    assert.equal((await get(`${EP}?fieldSelector=metadata.name%3Dother`)).body.items.length, 0);
    assert.equal((await get(`/api/v1/namespaces/other/endpoints?${SEL}`)).body.items.length, 0);
    const bad = await get(`${EP}?labelSelector=${encodeURIComponent('app=web=x')}`);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.reason, 'BadRequest');
  }));

  test('single GET, discovery, 404 and 405', () => withStandin({}, async (kube, get) => {
    assert.equal((await get(`${EP}/web`)).body.metadata.name, 'web');
    const missing = await get(`${EP}/nope`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.message, 'endpoints "nope" not found');
    assert.deepEqual((await get('/version')).body.gitVersion, 'v1.33.0');
    assert.deepEqual((await get('/api')).body.versions, ['v1']);
    assert.equal((await get('/apis')).body.groups[0].name, 'discovery.k8s.io');
    const nf = await get('/api/v1/namespaces/default/pods');
    assert.equal(nf.status, 404);
    assert.equal(nf.body.kind, 'Status');
    const post = await get(EP, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.body.reason, 'MethodNotAllowed');
  }));

  test('over-capacity Endpoints are truncated at 1000 and annotated', () => withStandin({}, async (kube, get) => {
    const many = Array.from({ length: 1005 }, (_, i) => ({ name: `p${i}`, ip: `10.1.${i >> 8}.${i & 255}` }));
    kube.setPods(many);
    let ep = (await get(EP)).body.items[0];
    assert.equal(ep.subsets[0].addresses.length, 1000);
    assert.equal(ep.metadata.annotations['endpoints.kubernetes.io/over-capacity'], 'truncated');
    kube.setPods(many.map((p, i) => (i < 20 ? { ...p, ready: false } : p)));
    ep = (await get(EP)).body.items[0];
    assert.equal(ep.subsets[0].addresses.length, 985, 'ready addresses are kept first');
    assert.equal(ep.subsets[0].notReadyAddresses.length, 15);
    kube.setPods(many.slice(0, 1000));
    ep = (await get(EP)).body.items[0];
    assert.equal(ep.subsets[0].addresses.length, 1000);
    assert.equal(ep.metadata.annotations, undefined);
  }));
});

describe('EndpointSlice packing', () => {
  test('slices split at sliceSize and a change touches only its slice', () =>
    withStandin({ sliceSize: 3, pods: pods(7) }, async (kube, get, watch) => {
      const { body } = await get(`${ES}?${SEL}`);
      assert.deepEqual(body.items.map((s) => s.endpoints.length).sort(), [1, 3, 3]);
      const names = body.items.map((s) => s.metadata.name).sort();
      const w = await watch(`${ES}?watch=true&resourceVersion=${body.metadata.resourceVersion}`);
      kube.updatePod('10.0.0.5', { ready: false });
      const [e] = await w.take(1);
      assert.equal(e.type, 'MODIFIED');
      assert.ok(e.object.endpoints.some((x) => x.addresses[0] === '10.0.0.5'));
      assert.equal(e.object.metadata.generation, 2);
      kube.addPod(pod(8));
      const [e2] = await w.take(1);
      assert.equal(e2.type, 'MODIFIED', 'a new pod fills a slice with room');
      assert.equal(e2.object.endpoints.length, 2);
      kube.setPods([]);
      const rest = await w.take(3);
      assert.deepEqual(rest.map((x) => x.type).sort(), ['DELETED', 'DELETED', 'MODIFIED']);
      const after = (await get(ES)).body.items;
      assert.equal(after.length, 1, 'one slice is kept');
      assert.equal(after[0].endpoints, null);
      assert.ok(names.includes(after[0].metadata.name), 'the kept slice keeps its name');
      w.close();
    }));

  test('dual-stack serves a separate IPv6 slice family', () =>
    withStandin({ dualStack: true, pods: [pod(1), { name: 'web-x', ip: '10.2.3.4' }] }, async (kube, get, watch) => {
      const items = (await get(`${ES}?${SEL}`)).body.items;
      const v6 = items.filter((s) => s.addressType === 'IPv6');
      assert.equal(items.length, 2);
      assert.equal(v6.length, 1);
      assert.deepEqual(v6[0].endpoints.map((e) => e.addresses[0]).sort(), ['fd00::a00:1', 'fd00::a02:304']);
      const w = await watch(`${ES}?watch=1&resourceVersion=${kube.resourceVersion}`);
      kube.setDualStack(false);
      const [e] = await w.take(1);
      assert.equal(e.type, 'DELETED');
      assert.equal(e.object.addressType, 'IPv6');
      assert.equal((await get(ES)).body.items.length, 1);
      w.close();
    }));
});

describe('watches', () => {
  test('initial ADDED, then MODIFIED/DELETED in order with rising resourceVersions', () =>
    withStandin({ sliceSize: 2, pods: pods(3) }, async (kube, get, watch) => {
      const w = await watch(`${ES}?watch=true&${SEL}`);
      assert.equal(w.status, 200);
      assert.match(w.headers['content-type'], /^application\/json/);
      assert.equal(w.headers['transfer-encoding'], 'chunked');
      const initial = await w.take(2);
      assert.deepEqual(initial.map((e) => e.type), ['ADDED', 'ADDED']);
      await kube.waitForWatch('endpointslices');
      kube.removePod('web-3'); // empties the second slice
      kube.removePod('10.0.0.1');
      kube.addPod(pod(4));
      const evs = await w.take(3);
      assert.deepEqual(evs.map((e) => e.type), ['DELETED', 'MODIFIED', 'MODIFIED']);
      const rvs = evs.map((e) => Number(e.object.metadata.resourceVersion));
      assert.deepEqual([...rvs].sort((a, b) => a - b), rvs);
      assert.equal(String(rvs[2]), kube.resourceVersion);
      assert.deepEqual(evs[2].object.endpoints.map((e) => e.addresses[0]), ['10.0.0.2', '10.0.0.4']);

      const ew = await watch(`${EP}?watch=true`);
      assert.equal((await ew.next()).type, 'ADDED');
      kube.updatePod('web-2', { ready: false });
      const m = await ew.next();
      assert.equal(m.type, 'MODIFIED');
      assert.deepEqual(m.object.subsets[0].notReadyAddresses.map((a) => a.ip), ['10.0.0.2']);
      w.close();
      ew.close();
    }));

  test('resume from a resourceVersion replays only later events', () =>
    withStandin({ pods: pods(2) }, async (kube, get, watch) => {
      const rv = (await get(EP)).body.metadata.resourceVersion;
      kube.addPod(pod(3));
      kube.removePod('web-1');
      const w = await watch(`${EP}?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`);
      const evs = await w.take(2);
      assert.deepEqual(evs.map((e) => e.type), ['MODIFIED', 'MODIFIED']);
      assert.deepEqual(evs[1].object.subsets[0].addresses.map((a) => a.ip), ['10.0.0.2', '10.0.0.3']);
      w.close();
    }));

  test('410 Expired after compact() and past historyLimit', () =>
    withStandin({ historyLimit: 3, pods: pods(1) }, async (kube, get, watch) => {
      const rv = kube.resourceVersion;
      kube.addPod(pod(2));
      kube.compact();
      const w = await watch(`${EP}?watch=true&resourceVersion=${rv}`);
      const e = await w.next();
      assert.equal(e.type, 'ERROR');
      assert.deepEqual(e.object, {
        kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
        message: `too old resource version: ${rv} (${kube.resourceVersion})`, reason: 'Expired', code: 410,
      });
      assert.deepEqual(await w.ended, { complete: true });
      const exact = await get(`${EP}?resourceVersion=${rv}&resourceVersionMatch=Exact`);
      assert.equal(exact.status, 410);
      const plain = await get(`${EP}?resourceVersion=${rv}`);
      assert.equal(plain.status, 200);
      assert.equal(plain.body.metadata.resourceVersion, kube.resourceVersion);

      const rv2 = kube.resourceVersion;
      for (let i = 3; i < 8; i++) kube.addPod(pod(i)); // 10 writes, history keeps 3
      const w2 = await watch(`${ES}?watch=true&resourceVersion=${rv2}`);
      assert.equal((await w2.next()).object.code, 410);
    }));

  test('list with resourceVersionMatch=Exact returns the past state', () =>
    withStandin({ pods: pods(1) }, async (kube, get) => {
      const rv = kube.resourceVersion;
      kube.addPod(pod(2));
      const { body } = await get(`${EP}?resourceVersion=${rv}&resourceVersionMatch=Exact`);
      assert.equal(body.metadata.resourceVersion, rv);
      assert.deepEqual(body.items[0].subsets[0].addresses.map((a) => a.ip), ['10.0.0.1']);
      assert.equal((await get(`${EP}?resourceVersionMatch=Exact`)).status, 422);
    }));

  test('timeoutSeconds ends the stream cleanly', () => withStandin({}, async (kube, get, watch) => {
    const t0 = Date.now();
    const w = await watch(`${EP}?watch=true&timeoutSeconds=1`);
    await w.next();
    const ended = await Promise.race([w.ended, new Promise((r) => setTimeout(() => r('late'), 4000).unref())]);
    assert.deepEqual(ended, { complete: true });
    assert.ok(Date.now() - t0 >= 900);
    await kube.waitFor((s) => s.openWatches.endpoints === 0, 1000);
  }));

  test('bookmarks when idle, endWatches() ends streams', () =>
    withStandin({ bookmarkMs: 50 }, async (kube, get, watch) => {
      const w = await watch(`${ES}?watch=true&allowWatchBookmarks=true&resourceVersion=${kube.resourceVersion}`);
      const b = await w.next(2000);
      assert.deepEqual(b, {
        type: 'BOOKMARK',
        object: { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', metadata: { resourceVersion: kube.resourceVersion } },
      });
      await kube.waitForWatch('endpointslices', 1);
      kube.endWatches();
      assert.deepEqual(await w.ended, { complete: true });
      assert.equal(kube.stats().openWatches.endpointslices, 0);
      assert.equal(kube.stats().watch.endpointslices, 1);
    }));
});

describe('failures', () => {
  test('401 without or with a wrong token; setToken()', () => withStandin({}, async (kube) => {
    for (const token of [undefined, 'wrong']) {
      const r = await apiRequest(kube.url, EP, { token });
      assert.equal(r.status, 401);
      assert.deepEqual(r.body, {
        kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
        message: 'Unauthorized', reason: 'Unauthorized', code: 401,
      });
    }
    kube.setToken('rotated');
    assert.equal((await apiRequest(kube.url, EP, { token: 'test-token' })).status, 401);
    assert.equal((await apiRequest(kube.url, EP, { token: 'rotated' })).status, 200);
  }));

  test('403 when forbidden; open watches of the resource end', () => withStandin({}, async (kube, get, watch) => {
    const w = await watch(`${ES}?watch=true`);
    const ew = await watch(`${EP}?watch=true`);
    await kube.waitForWatch('endpointslices');
    kube.forbid('endpointslices');
    assert.deepEqual(await w.ended, { complete: true });
    assert.equal(kube.stats().openWatches.endpoints, 1, 'other resources keep their watches');
    const r = await get(`${ES}?${SEL}`);
    assert.equal(r.status, 403);
    assert.deepEqual(r.body, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:default:web" ' +
        'cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace "default"',
      reason: 'Forbidden', details: { group: 'discovery.k8s.io', kind: 'endpointslices' }, code: 403,
    });
    assert.equal((await get(`${ES}?watch=true`)).status, 403);
    kube.forbid('endpointslices', false);
    assert.equal((await get(ES)).status, 200);
    ew.close();
  }));

  test('outage: 503 for everything, watch connections cut', () => withStandin({}, async (kube, get, watch) => {
    const w = await watch(`${EP}?watch=true`);
    await kube.waitForWatch('endpoints');
    kube.setOutage(true);
    assert.deepEqual(await w.ended, { complete: false });
    const r = await get(EP);
    assert.equal(r.status, 503);
    assert.equal(r.body.reason, 'ServiceUnavailable');
    assert.equal((await get('/version')).status, 503);
    kube.setOutage(false);
    assert.equal((await get(EP)).status, 200);
  }));

  test('hang: watches end, then requests wait unanswered until it ends; requests counted by client', () => withStandin({}, async (kube, get, watch) => {
    const w = await watch(`${EP}?watch=true`);
    await kube.waitForWatch('endpoints');
    kube.setHang(true);
    assert.deepEqual(await w.ended, { complete: true });
    const waiting = get(EP, { timeoutMs: 60000 });
    await kube.waitFor((s) => s.hanging === 1, 5000);
    kube.setHang(false);
    await assert.rejects(waiting, /socket hang up|ECONNRESET/);
    assert.equal((await get(EP)).status, 200);
    assert.equal(kube.stats().requestsFrom['127.0.0.1'], 3, 'the watch, the request left waiting, the last one');
  }));
});

test('cli.js answers --help with its usage, and a mistake with it, without a stack trace', async () => {
  const { execFile } = require('node:child_process');
  const cli = path.join(__dirname, 'kube-standin', 'cli.js');
  const run = (args) => new Promise((resolve) => execFile(process.execPath, [cli, ...args],
    { timeout: 10000 }, (error, stdout, stderr) => resolve({ code: error ? error.code : 0, stdout, stderr })));
  const help = await run(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Runs the kube stand-in as its own process/);
  assert.match(help.stdout, /POST \/hang/);
  for (const [args, said] of [[['--port'], /--port needs a value/], [['--prot', '1'], /unknown flag --prot/]]) {
    const wrong = await run(args);
    assert.equal(wrong.code, 2, args.join(' '));
    assert.match(wrong.stderr, said);
    assert.match(wrong.stderr, /Flags: --port/);
    assert.doesNotMatch(wrong.stderr, /\n\s+at /, 'no stack trace');
  }
});

describe('cli.js and its control API', () => {
  let child;
  let info;
  let ctl;
  const exited = () => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    return child.once('exit', resolve);
  });

  before(async () => {
    child = spawn(process.execPath, [path.join(__dirname, 'kube-standin', 'cli.js'), '--app', 'api',
      '--token', 'cli-token', '--namespace', 'prod'], { stdio: ['pipe', 'pipe', 'inherit'] });
    info = await new Promise((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error('cli.js printed nothing within 5 s')), 5000);
      child.stdout.on('data', (c) => {
        out += c;
        if (out.includes('\n')) {
          clearTimeout(t);
          resolve(JSON.parse(out.split('\n')[0]));
        }
      });
      child.once('exit', (code) => reject(new Error(`cli.js exited early with ${code}`)));
    });
    ctl = controlClient(info.control);
  });

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, 'SIGTERM');
      await Promise.race([exited(), new Promise((r) => setTimeout(r, 3000).unref())]);
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
    }
  });

  test('prints its URLs and serves pods set through the control API', async () => {
    assert.match(info.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(info.control, /^http:\/\/127\.0\.0\.1:\d+$/);
    const list = `/api/v1/namespaces/prod/endpoints?labelSelector=app%3Dapi`;
    const rv = await ctl.setPods([{ name: 'api-1', ip: '10.9.0.1' }, { name: 'api-2', ip: '10.9.0.2' }]);
    let r = await apiRequest(info.url, list, { token: 'cli-token' });
    assert.equal(r.body.metadata.resourceVersion, rv);
    assert.deepEqual(r.body.items[0].subsets[0].addresses.map((a) => a.ip), ['10.9.0.1', '10.9.0.2']);
    await ctl.updatePod('10.9.0.2', { ready: false });
    await ctl.removePod('api-1');
    await ctl.addPod({ name: 'api-3', ip: '10.9.0.3' });
    r = await apiRequest(info.url, list, { token: 'cli-token' });
    assert.deepEqual(r.body.items[0].subsets[0].addresses.map((a) => a.ip), ['10.9.0.3']);

    const w = await openWatch(info.url, `${list}&watch=true`, { token: 'cli-token' });
    await ctl.waitForWatch('endpoints', 1, 3000);
    assert.equal((await ctl.stats()).openWatches.endpoints, 1);
    await ctl.endWatches();
    assert.deepEqual(await w.ended, { complete: true });
    await ctl.forbid('endpoints', true);
    assert.equal((await apiRequest(info.url, list, { token: 'cli-token' })).status, 403);
    await ctl.forbid('endpoints', false);
    await ctl.setOutage(true);
    assert.equal((await apiRequest(info.url, list, { token: 'cli-token' })).status, 503);
    await ctl.setOutage(false);
    await ctl.compact();
    const w2 = await openWatch(info.url, `${list}&watch=true&resourceVersion=${rv}`, { token: 'cli-token' });
    assert.equal((await w2.next()).object.reason, 'Expired');
    await assert.rejects(ctl.removePod('nobody'), /no such pod/);
    const stats = await ctl.stats();
    assert.equal(stats.list.endpoints, 3, 'requests refused during the outage are not counted');
    assert.equal(stats.watch.endpoints, 2);
  });

  test('exits when stdin closes', async () => {
    child.stdin.end();
    await Promise.race([exited(), new Promise((_, rej) => setTimeout(() => rej(new Error('no exit')), 3000).unref())]);
    assert.equal(child.exitCode, 0);
  });
});
