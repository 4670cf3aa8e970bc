'use strict';

// Checks of the executions that nodes running fixtures/ordered.js reported (`ran`
// events, start and end on the machine's monotonic clock) against what their callers
// got: no two executions of a task for one key at the same time on any pods, each
// caller's calls for a key in the order it made them, none twice, and each call either
// ran once or failed saying it did not run or may have run.
const assert = require('node:assert');

// The `ran` events of `nodes`, with their times as BigInts.
function executions (nodes) {
  return nodes.flatMap(node => node.events.filter(event => event.event === 'ran'))
    .map(run => ({ ...run, start: BigInt(run.start), end: BigInt(run.end) }));
}

const byStart = (x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0);

// `outcomes`: by caller IP, what `orderedStop` returned on that node.
function checkExecutions (runs, outcomes) {
  const byKey = new Map();
  for (const run of runs) {
    const id = `${run.task}/${run.key}`;
    if (!byKey.has(id)) byKey.set(id, []);
    byKey.get(id).push(run);
  }
  const overlaps = [];
  for (const [id, list] of byKey) {
    list.sort(byStart);
    for (let i = 1; i < list.length; i++) {
      if (list[i].start < list[i - 1].end) {
        const run = r => `${r.pod} ran ${r.caller} #${r.seq}`;
        overlaps.push(`${id}: ${run(list[i - 1])} and, before it ended, ${run(list[i])}`);
      }
    }
  }
  assert.deepStrictEqual(overlaps.slice(0, 5), [], `${overlaps.length} overlaps`);

  const seen = new Set();
  const last = new Map();
  for (const run of runs.filter(r => r.task === 'ordered').sort(byStart)) {
    const call = `${run.caller}/${run.key}/${run.seq}`;
    assert.ok(!seen.has(call), `${call} ran twice`);
    seen.add(call);
    const stream = `${run.caller}/${run.key}`;
    assert.ok((last.get(stream) || 0) < run.seq, `${stream}: #${run.seq} ran after #${last.get(stream)}`);
    last.set(stream, run.seq);
  }

  for (const [caller, list] of Object.entries(outcomes)) {
    for (const outcome of list.filter(o => o.task === 'ordered')) {
      const ran = seen.has(`${caller}/${outcome.key}/${outcome.seq}`);
      const what = `${caller} ${outcome.key} #${outcome.seq}`;
      if (outcome.ok) {
        assert.ok(ran, `${what} succeeded without running`);
      } else {
        assert.match(outcome.message, /did not run|may have|Swarm closed/, `${what}: ${outcome.message}`);
        if (/did not run|Swarm closed/.test(outcome.message)) assert.ok(!ran, `${what} said it did not run, and ran`);
      }
    }
  }
}

module.exports = { executions, checkExecutions };
