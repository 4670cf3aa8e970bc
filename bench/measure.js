'use strict';

// Runs `fn(i)` up to n times with `concurrency` calls in flight, and no new call once
// `seconds` have passed when given; returns throughput and latency percentiles (µs) of
// the calls made. Shared by every peer so all are measured the same way.
const { performance } = require('node:perf_hooks');

async function measure (n, concurrency, fn, seconds = Infinity) {
  const latencies = new Float64Array(n);
  let next = 0;
  const started = performance.now();
  const until = started + seconds * 1000;
  async function worker () {
    while (next < n && performance.now() < until) {
      const i = next++;
      const t = performance.now();
      await fn(i);
      latencies[i] = performance.now() - t;
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  const elapsed = performance.now() - started;
  const made = latencies.subarray(0, next).sort();
  const at = q => Math.round(made[Math.min(next - 1, Math.floor(next * q))] * 1000);
  return { n: next, concurrency, opsPerSec: Math.round(next / elapsed * 1000), p50: at(0.5), p99: at(0.99) };
}

module.exports = { measure };
