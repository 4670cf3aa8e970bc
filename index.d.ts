// Typings of node-swarm-kb 1.x: the 0.5.1 singleton API, with close(), tasks.owner()
// and the masterChanged event.
import Bluebird = require('bluebird');

declare namespace swarm {
  /** What is known of one member of the cluster. */
  interface SwarmNode {
    ip: string;
    /** The pod's name, when known. */
    name?: string | null;
    /** The Kubernetes node the pod runs on. */
    nodeName?: string | null;
    zone?: string | null;
    ready: boolean;
    serving: boolean;
    terminating: boolean;
  }

  /** The nodes of the cluster, keyed by IP; the local node included. */
  type Nodes = Record<string, SwarmNode>;

  interface KubernetesOptions {
    appName?: string;
    folderPath?: string;
    host?: string;
    port?: number | string;
    /** Full API URL, e.g. `https://10.0.0.1:443`; overrides host, port and noSSL. */
    url?: string;
    selector?: string;
    token?: string;
    namespace?: string;
    /** PEM CA bundle of the API server. */
    ca?: string;
    /** Plain http to the API (0.5.1's option). */
    noSSL?: boolean;
    /** Skip TLS verification of the API server (logged as a warning). */
    insecureSkipTlsVerify?: boolean;
    refreshInterval?: number;
    /**
     * How long `init()` may wait for the first topology, in ms; past it, `init()` rejects
     * with `ERR_SWARM_KUBERNETES` naming the last error. Off (0) by default: `init()` waits
     * as long as the API does not answer, as 0.5.1 did.
     */
    initTimeout?: number;
  }

  interface MessagesOptions {
    /** The messaging port of every node (default 45892, env SWARM_MESSAGING_PORT). */
    port?: number;
    /** The address the server binds (default all interfaces, env SWARM_MESSAGING_BIND). */
    bind?: string;
    /** Largest accepted message body in bytes (default 10 MiB). */
    maxBodySize?: number;
    /** How long a handler may run, in ms (default 5 minutes). */
    maxProcessingTime?: number;
    /** How long connecting to a peer may take, in ms (default 3000). */
    connectTimeout?: number;
    /** How long a request to a peer may take, in ms. */
    requestTimeout?: number;
    /** How long sent data may stay unacknowledged by a peer before its connection is given up, in ms (default 8000): a cut link is noticed in this time. */
    linkTimeout?: number;
    /**
     * How long a pod that left the endpoints has to show it is alive, in ms (default 1000):
     * calls waiting on it fail only if it does not answer a ping in this time (or its
     * connection ends); one that cannot be pinged (0.5.1) has this long to answer them.
     */
    departureTimeout?: number;
    /** How long a client may take to send its request headers, in ms (default 10000). */
    headerTimeout?: number;
    /** Largest request head in bytes (default 64 KiB); larger ones get 431. */
    maxHeaderSize?: number;
    /** Open connections at most (default 4096); more wait to be accepted. */
    maxConnections?: number;
    /** Requests handled at once at most (default 1024); more get 503 at once. */
    maxInFlight?: number;
    /** Between pods of this version, send over one multiplexed connection per peer once the peer offers it (default true; env SWARM_MESSAGING_MULTIPLEX=false turns it off). Pods of 0.5.1 always get HTTP/1.1. */
    multiplex?: boolean;
    /** Shared secret (env SWARM_SECRET): sign and require signatures on pod traffic. */
    secret?: string;
    /** With a secret, refuse unsigned requests (default true; env SWARM_REQUIRE_SIGNATURES=false while rolling out). */
    requireSignatures?: boolean;
  }

  type SingleTrigger = boolean | 'N';

  interface TaskOptions {
    /** ms before the caller's promise rejects with `operation timed out` (default 30000). */
    timeout?: number;
    /** One execution at a time, queued (default true). */
    serialized?: boolean;
    /** Join the running or queued execution (true) or only the queued one ('N'). */
    singleTrigger?: SingleTrigger;
    /** Queued executions allowed (default 20). */
    maxQueueLength?: number;
  }

  type TaskHandler = (...args: any[]) => any;

  interface TaskDefinition extends TaskOptions {
    handler: TaskHandler;
  }

  interface InitOptions {
    standalone?: boolean;
    /** This process's IP(s); default POD_IP, then the interfaces. */
    ip?: string | string[];
    /** Shorthand of kubernetes.appName. */
    appName?: string;
    kubernetes?: KubernetesOptions;
    messages?: MessagesOptions;
    tasks?: TaskOptions;
    onReady?: (nodes: Nodes) => void;
    onError?: (error: Error) => void;
    onNodeAdded?: (node: SwarmNode) => void;
    onNodeRemoved?: (node: SwarmNode) => void;
    onMasterChanged?: (master: string | null, previous: string | null) => void;
    onReadinessChanged?: (node: SwarmNode) => void;
    [option: string]: unknown;
  }

  type Topic = string | string[];

  /** A message handler; its return value (or promise) is the reply. */
  type MessageHandler = (message: any, topics: string[], from: string) => any;

  interface Messages {
    on(topic: Topic, handler: MessageHandler): void;
    /** Sends to `ip`, itself included. */
    send(ip: string, topic: Topic, data?: any): Bluebird<any>;
  }

  interface Tasks {
    register(name: string, handler: TaskHandler, options?: TaskOptions): void;
    register(tasks: Record<string, TaskHandler | TaskDefinition>, options?: TaskOptions): void;
    /** Runs task `name` on the node owning `String(args[0])` (or the name). */
    exec(name: string, ...args: any[]): Bluebird<any>;
    /** The IP of the node owning `key`, or null before init. */
    owner(key: string | number): string | null;
    /** What task `name` is doing on this node, or null when it is not registered. */
    stats(name: string): { running: number; queued: number; waiters: number } | null;
    options: TaskOptions;
  }

  interface SwarmError extends Error {
    /** A stable code, e.g. ERR_SWARM_TIMEOUT, ERR_SWARM_NO_SUCH_TASK (see README). */
    code?: string;
    statusCode?: number;
  }

  interface EventMap {
    ready: [nodes: Nodes];
    error: [error: SwarmError];
    nodeAdded: [node: SwarmNode];
    nodeRemoved: [node: SwarmNode];
    masterChanged: [master: string | null, previous: string | null];
    /**
     * This pod turned not ready (`node.ready` false: out of every ring, no new tasks come
     * to it, it still answers) or ready again. New: 0.5.1 sent the SIGTERM heads-up.
     */
    readinessChanged: [node: SwarmNode];
  }

  /** A consistent-hash ring placing keys exactly as hashring@3 does. */
  interface HashRing {
    get(key: string): string | null;
    getMany(keys: string[]): Array<string | null>;
    readonly servers: string[];
  }
  interface HashRingConstructor {
    new (servers: string[]): HashRing;
  }

  interface Swarm {
    init(options?: InitOptions): Bluebird<Nodes>;
    on<E extends keyof EventMap>(event: E, handler: (...args: EventMap[E]) => void): Swarm;
    once<E extends keyof EventMap>(event: E, handler: (...args: EventMap[E]) => void): Swarm;
    off<E extends keyof EventMap>(event: E, handler: (...args: EventMap[E]) => void): Swarm;
    emit<E extends keyof EventMap>(event: E, args: EventMap[E] | EventMap[E][0]): boolean;
    readonly nodes: Nodes;
    isReady: boolean;
    readonly master: string | null;
    readonly amIMaster: boolean;
    isMe(node: string | SwarmNode): boolean;
    /** Sends to one node; a local IP resolves undefined without delivery. */
    send(node: string | SwarmNode, topic: Topic, data?: any): Bluebird<any>;
    /** Sends to every node, itself included, in `Object.keys(nodes)` order. */
    broadcast(topic: Topic, data?: any): Bluebird<any[]>;
    /** Stops the node and lets the process exit; safe to call twice. */
    close(graceMs?: number): Bluebird<void>;
    messages: Messages;
    tasks: Tasks;
    options: InitOptions;
    readonly HashRing: HashRingConstructor;
  }
}

declare const swarm: swarm.Swarm;
export = swarm;
