// Typings of the ESM entry (index.mjs): the singleton as the default export, its
// functions and objects as named exports, exactly those index.mjs exports. The getters
// (`nodes`, `master`, `amIMaster`, `isReady`) change as the cluster does, which a named
// export cannot: read them on the default export (`swarm.nodes`).
import swarm from './index.js';

export default swarm;

export declare const init: typeof swarm.init;
export declare const close: typeof swarm.close;
export declare const stats: typeof swarm.stats;
export declare const send: typeof swarm.send;
export declare const broadcast: typeof swarm.broadcast;
export declare const isMe: typeof swarm.isMe;
export declare const on: typeof swarm.on;
export declare const once: typeof swarm.once;
export declare const off: typeof swarm.off;
export declare const emit: typeof swarm.emit;
export declare const messages: typeof swarm.messages;
export declare const tasks: typeof swarm.tasks;
export declare const metrics: typeof swarm.metrics;
export declare const options: typeof swarm.options;
/** The ring class, `swarm.HashRing`; the addon loads at the first `new`, not at import. */
export declare const HashRing: typeof swarm.HashRing;
export type HashRing = swarm.HashRing;

export type {
  SwarmNode,
  Nodes,
  KubernetesOptions,
  MessagesOptions,
  SingleTrigger,
  TaskOptions,
  TaskHandler,
  TaskDefinition,
  TaskStats,
  TaskReport,
  Durations,
  SwarmStats,
  InitOptions,
  Topic,
  Reply,
  MessageHandler,
  Messages,
  Tasks,
  Metrics,
  MetricsOptions,
  PromRegistry,
  ChannelContext,
  SendChannelContext,
  ExecChannelContext,
  HandleChannelContext,
  SwarmError,
  EventMap,
  HashRingConstructor,
  RingKind,
  Swarm
} from './index.js';
