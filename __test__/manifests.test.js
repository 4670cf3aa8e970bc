'use strict';

// The example manifests (examples/kubernetes/) hold together: what the schema check in
// `npm test` cannot see — labels that match, least privilege, the grace period.
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const yaml = require('js-yaml');
const { DEFAULTS } = require('../lib/tasks');

const dir = path.join(__dirname, '..', 'examples', 'kubernetes');
const docs = fs.readdirSync(dir).filter(f => f.endsWith('.yaml'))
  .flatMap(f => yaml.loadAll(fs.readFileSync(path.join(dir, f), 'utf8')));
const one = (kind) => {
  const found = docs.filter(d => d.kind === kind);
  assert.strictEqual(found.length, 1, `one ${kind}`);
  return found[0];
};
const matches = (selector, labels) => Object.entries(selector).every(([k, v]) => labels[k] === v);

test('the Deployment, Service and NetworkPolicy select the same pods', () => {
  const deployment = one('Deployment');
  const labels = deployment.spec.template.metadata.labels;
  assert.ok(matches(deployment.spec.selector.matchLabels, labels));
  assert.ok(matches(one('Service').spec.selector, labels));
  assert.ok(matches(one('NetworkPolicy').spec.podSelector.matchLabels, labels));
  const env = Object.fromEntries(deployment.spec.template.spec.containers[0].env.map(e => [e.name, e]));
  assert.strictEqual(env.POD_IP.valueFrom.fieldRef.fieldPath, 'status.podIP');
  assert.ok(matches(Object.fromEntries([env.KUBERNETES_SELECTOR.value.split('=')]), one('Service').metadata.labels),
    'the selector finds the Service\'s EndpointSlices (they carry its labels)');
});

test('RBAC grants only reads of endpointslices and endpoints, and what the master\'s Lease needs, to the pods\' account', () => {
  const role = one('Role');
  const granted = Object.fromEntries(role.rules.flatMap(r => r.resources.map(res => [`${res}.${r.apiGroups[0]}`, [...r.verbs].sort()])));
  assert.deepStrictEqual(granted, {
    'endpoints.': ['get', 'list', 'watch'],
    'endpointslices.discovery.k8s.io': ['get', 'list', 'watch'],
    'leases.coordination.k8s.io': ['create', 'get', 'update']
  });
  const binding = one('RoleBinding');
  assert.strictEqual(binding.roleRef.name, role.metadata.name);
  assert.strictEqual(binding.subjects[0].name, one('Deployment').spec.template.spec.serviceAccountName);
  assert.strictEqual(one('ServiceAccount').metadata.name, binding.subjects[0].name);
});

test('the messaging port is open only inside the namespace; readiness and grace fit close()', () => {
  const policy = one('NetworkPolicy');
  const swarmRule = policy.spec.ingress.find(r => r.ports.some(p => p.port === 45892));
  assert.deepStrictEqual(swarmRule.from, [{ podSelector: {} }], 'same-namespace pods only');
  const pod = one('Deployment').spec.template.spec;
  assert.ok(pod.containers[0].readinessProbe, 'a readiness probe');
  assert.ok(pod.containers[0].ports.some(p => p.containerPort === 45892));
  assert.ok(pod.terminationGracePeriodSeconds * 1000 > DEFAULTS.timeout,
    'the grace period outlasts a queued task\'s timeout, so close() can drain');
});
