'use strict';

// Runs `fn(i)` n times with `concurrency` calls in flight; returns throughput and
// latency percentiles (µs). Shared by every peer so all are measured the same way.
const { performance } = require('node:perf_hooks');

async function measure (n, concurrency, fn) {
  const latencies = new Float64Array(n);
  let next = 0;
  const started = performance.now();
  async function worker () {
    while (next < n) {
      const i = next++;
      const t = performance.now();
      await fn(i);
      latencies[i] = performance.now() - t;
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  const elapsed = performance.now() - started;
  latencies.sort();
  const at = q => Math.round(latencies[Math.min(n - 1, Math.floor(n * q))] * 1000);
  return { n, concurrency, opsPerSec: Math.round(n / elapsed * 1000), p50: at(0.5), p99: at(0.99) };
}

module.exports = { measure };
