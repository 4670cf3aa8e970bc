'use strict';

// `swarm.metrics`: the counters of `swarm.stats()` as Prometheus metrics, read from the
// native counters when they are scraped (docs/observability.md). Collectors go into the
// application's own prom-client registry, duck-typed: no dependency on prom-client, and
// no second copy of it. `text()` writes the exposition format for apps that serve
// `/metrics` themselves.
const errors = require('./errors');

// [suffix, type, help, values(snapshot)]: each value `{ labels, value }`, or for a
// histogram `{ labels, durations }`.
const METRICS = [
  ['nodes', 'gauge', 'Endpoints of this pod\'s view that can answer: ready (the nodes), or draining.', s => [
    { labels: { state: 'ready' }, value: s.topology.nodes.ready },
    { labels: { state: 'draining' }, value: s.topology.nodes.draining }
  ]],
  ['is_master', 'gauge', '1 when this pod is the master.', s => [{ value: s.amIMaster ? 1 : 0 }]],
  ['master_changes_total', 'counter', 'Changes of the master seen by this pod.', s => [{ value: s.topology.changes.masterChanged }]],
  ['topology_changes_total', 'counter', 'Topology events, by kind.', s => Object.entries(s.topology.changes)
    .map(([kind, value]) => ({ labels: { kind }, value }))],
  ['ring_info', 'gauge', 'The ring this pod routes keys by: equal checksums route every key the same way.', s => [
    { labels: { ring: s.topology.ring.kind, checksum: s.topology.ring.checksum }, value: 1 }
  ]],
  ['kubernetes_errors_total', 'counter', 'Errors of the Kubernetes API (an outage counts once).', s => [{ value: s.topology.kubernetes.errors }]],
  ['messages_sent_total', 'counter', 'Requests this pod sent that settled, by outcome.', s => Object.entries(s.messages.sent)
    .map(([outcome, value]) => ({ labels: { outcome }, value }))],
  ['messages_received_total', 'counter', 'Requests this pod received: dispatched, or refused before.', s => [
    { labels: { outcome: 'handled' }, value: s.messages.received },
    { labels: { outcome: 'refused' }, value: Object.values(s.messages.refused).reduce((sum, n) => sum + n, 0) }
  ]],
  ['message_duration_seconds', 'histogram', 'From a request made to its outcome, by transport.', s => Object.entries(s.messages.durations)
    .map(([transport, durations]) => ({ labels: { transport }, durations }))],
  ['connections', 'gauge', 'Connections open between this pod and its peers: accepted (in) and opened (out), by transport.', s => ['in', 'out']
    .flatMap(direction => Object.entries(s.messages.connections[direction]).map(([transport, value]) => ({ labels: { direction, transport }, value })))],
  ['messages_in_flight', 'gauge', 'Requests sent and not settled (out), received and not answered (in).', s => [
    { labels: { direction: 'out' }, value: s.messages.inFlight.out },
    { labels: { direction: 'in' }, value: s.messages.inFlight.in }
  ]],
  ['message_bytes_total', 'counter', 'Bytes of the requests\' bodies, by direction.', s => [
    { labels: { direction: 'sent' }, value: s.messages.bytes.sent },
    { labels: { direction: 'received' }, value: s.messages.bytes.received }
  ]],
  ['requests_refused_total', 'counter', 'Requests refused before they were dispatched, by HTTP status.', s => Object.entries(s.messages.refused)
    .map(([status, value]) => ({ labels: { status }, value }))],
  ['task_executions_total', 'counter', 'Executions of each task that ended on this pod, by outcome.', s => tasks(s).flatMap(([task, t]) => [
    { labels: { task, outcome: 'ok' }, value: t.executed - t.failed },
    { labels: { task, outcome: 'failed' }, value: t.failed }
  ])],
  ['task_duration_seconds', 'histogram', 'How long each task\'s executions took on this pod.', s => tasks(s)
    .map(([task, t]) => ({ labels: { task }, durations: t.durations }))],
  ['task_queued', 'gauge', 'Calls of each task queued on this pod, behind the running execution.', s => tasks(s)
    .map(([task, t]) => ({ labels: { task }, value: t.queued }))],
  ['task_timeouts_total', 'counter', 'Calls of each task admitted or held here whose caller stopped waiting at the timeout.', s => tasks(s)
    .map(([task, t]) => ({ labels: { task }, value: t.timedOut }))],
  ['task_retries_total', 'counter', 'Calls of each task sent again by this pod, by reason.', s => tasks(s)
    .map(([task, t]) => ({ labels: { task, reason: 'not_run' }, value: t.retried }))],
  ['task_moved_total', 'counter', 'Calls of each task this pod did not run: the key belongs to another pod now.', s => tasks(s)
    .map(([task, t]) => ({ labels: { task }, value: t.moved }))],
  ['task_queue_full_total', 'counter', 'Calls of each task refused on this pod: its queue was full.', s => tasks(s)
    .map(([task, t]) => ({ labels: { task }, value: t.queueFull }))]
];

const tasks = snapshot => Object.entries(snapshot.tasks);

class Metrics {
  constructor (swarm) {
    this._swarm = swarm;
    this._snapshot = null;
  }

  // Adds a collector per metric to a prom-client `Registry` (or anything with its
  // `registerMetric`), read at each scrape; `labels` are added to every sample.
  register (registry, { prefix = 'swarm_', labels = {} } = {}) {
    if (!registry || typeof registry.registerMetric !== 'function') {
      throw errors.invalidArgument('metrics.register(registry)', 'a prom-client Registry (with registerMetric)', registry);
    }
    checkLabels(prefix, labels);
    const metrics = this;
    for (const [suffix, type, help, values] of METRICS) {
      const aggregator = type === 'gauge' ? 'max' : 'sum';
      registry.registerMetric({
        name: prefix + suffix,
        help,
        type,
        aggregator,
        // By the name it is registered under now: an OpenMetrics registry takes
        // `_total` off a counter's name, and writes it back on each sample.
        get () {
          return Promise.resolve({ name: this.name, help, type, aggregator, values: metrics._samples(this.name, type, values, labels) });
        },
        reset () {}
      });
    }
    return registry;
  }

  // The exposition text of every metric (Prometheus' text format 0.0.4).
  text ({ prefix = 'swarm_', labels = {} } = {}) {
    checkLabels(prefix, labels);
    return METRICS.map(([suffix, type, help, values]) => {
      const name = prefix + suffix;
      const lines = this._samples(name, type, values, labels).map(v => `${v.metricName || name}${labelText(v.labels)} ${number(v.value)}`);
      return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines].join('\n');
    }).join('\n\n') + '\n';
  }

  // The samples of one metric, from this turn's snapshot: a scrape reads every metric at
  // once, and one call of `stats()` serves them all.
  _samples (name, type, values, labels) {
    if (!this._snapshot) {
      this._snapshot = { stats: this._swarm.stats() };
      queueMicrotask(() => { this._snapshot = null; });
    }
    const stats = this._snapshot.stats;
    if (!stats) return [];
    const samples = values(stats).map(v => Object.assign({}, v, { labels: Object.assign({}, labels, v.labels) }));
    return type === 'histogram' ? samples.flatMap(v => buckets(name, v.labels, v.durations)) : samples;
  }
}

// A histogram's samples, as prom-client writes them.
function buckets (name, labels, { le, counts, count, sum }) {
  return [
    ...le.map((bound, i) => ({ metricName: `${name}_bucket`, labels: Object.assign({}, labels, { le: number(bound) }), value: counts[i] })),
    { metricName: `${name}_bucket`, labels: Object.assign({}, labels, { le: '+Inf' }), value: count },
    { metricName: `${name}_sum`, labels, value: sum },
    { metricName: `${name}_count`, labels, value: count }
  ];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
// The labels of the metrics themselves: one of the app's would be overwritten.
const OURS = ['state', 'kind', 'ring', 'checksum', 'outcome', 'direction', 'transport', 'status', 'task', 'reason', 'le'];

function checkLabels (prefix, labels) {
  if (typeof prefix !== 'string' || !NAME.test(`${prefix}x`)) throw errors.invalidArgument('metrics prefix', 'a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)', prefix);
  if (labels === null || typeof labels !== 'object') throw errors.invalidArgument('metrics labels', 'an object of label values', labels);
  for (const name of Object.keys(labels)) {
    if (!LABEL.test(name) || name.startsWith('__') || OURS.includes(name)) {
      throw errors.invalidArgument(`metrics labels.${name}`, `a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __, none of ${OURS.join(', ')})`, name);
    }
  }
}

function labelText (labels) {
  const pairs = Object.entries(labels || {}).map(([k, v]) => `${k}="${String(v).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`);
  return pairs.length ? `{${pairs.join(',')}}` : '';
}

function number (value) {
  if (value === Infinity) return '+Inf';
  return String(value);
}

module.exports = { Metrics };
