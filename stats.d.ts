// What a pod reports of itself (`swarm.stats()`), in a file of its own; index.d.ts
// names each of these types in the `swarm` namespace.
import type swarm = require('./index');

export interface TaskStats {
  running: number;
  queued: number;
  waiters: number;
}

/** Durations by bucket: `counts[i]` took at most `le[i]` seconds; `count` and `sum` in all. */
export interface Durations {
  le: number[];
  counts: number[];
  count: number;
  sum: number;
}

/** A task's state on this node, and what became of its calls since `init()`. */
export interface TaskReport extends TaskStats {
  /** Executions that ended here, whatever their outcome. */
  executed: number;
  /** Executions whose handler threw or rejected. */
  failed: number;
  /** Calls admitted or held here whose caller (here or on another pod) stopped waiting at the timeout. */
  timedOut: number;
  /** Calls sent again to the key's owner after one that did not run. */
  retried: number;
  /** Calls this node did not run because the key belongs to another node now. */
  moved: number;
  /** Calls refused here with `ERR_SWARM_QUEUE_FULL`: the queue held `maxQueueLength` calls. */
  queueFull: number;
  /** How long its executions here took. */
  durations: Durations;
}

/**
 * `swarm.stats()`: this pod's view and its counters, cumulative since `init()`.
 * Requests are counted whatever their topic: messages, task calls between pods, and
 * the hand-off's own.
 */
export interface SwarmStats {
  /** This process's IPs. */
  ips: string[];
  master: string | null;
  amIMaster: boolean;
  masterEpoch: number | null;
  /** Since this node started (the last `init()`). */
  uptimeMs: number;
  /** The version of node-swarm-kb. */
  version: string;
  topology: {
    /** Counts the views this node applied. */
    generation: number;
    /** `kind`: the ring (option `ring`). `checksum`: equal on pods that route keys the same way. `epoch`: counts its changes. */
    ring: { kind: swarm.RingKind; checksum: string; epoch: number };
    /** The endpoints of this pod's view that can answer: ready (the nodes), or draining (serving while not ready, as a terminating pod). */
    nodes: { ready: number; draining: number };
    /** Topology events so far, by event name. */
    changes: { nodeAdded: number; nodeRemoved: number; localLeft: number; readinessChanged: number; masterChanged: number };
    /**
     * The Kubernetes resource watched (null standalone); `failing` from an error of
     * the API until it answers again; its errors so far (an outage counts once).
     */
    kubernetes: { resource: string | null; state: 'ok' | 'failing'; errors: number };
  };
  messages: {
    /** Requests this pod sent that settled, by outcome (`abandoned`: its caller stopped waiting first). */
    sent: { ok: number; refused: number; timeout: number; unreachable: number; failed: number; left: number; abandoned: number };
    /** Requests received and dispatched: to a handler, the task engine or the hand-off. */
    received: number;
    /** Sent and not settled; received and not answered. */
    inFlight: { out: number; in: number };
    /** Bytes of the requests' bodies, each way. */
    bytes: { sent: number; received: number };
    /** Requests refused before they were dispatched, by HTTP status (`other` for the rest). */
    refused: { [status: string]: number };
    /** Connections open now: accepted (`in`) and opened (`out`), by transport. */
    connections: {
      in: { multiplexed: number; http1: number };
      out: { multiplexed: number; http1: number };
    };
    /** How long this pod's requests took, from made to outcome, by the transport that carried them. */
    durations: { multiplexed: Durations; http1: Durations };
  };
  /** By name, the tasks registered on this pod. */
  tasks: { [name: string]: TaskReport };
}
