// Typings of node-swarm-kb 1.x: the 0.5.1 singleton API, with close(), tasks.owner()
// and the masterChanged event. `require('node-swarm-kb')` (and `import swarm from` with
// esModuleInterop) is typed here; the ESM entry's named exports in index.d.mts.
import Bluebird = require('bluebird');
import type * as stats from './stats';

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
    /** The app's name; the selector defaults to `app=<appName>` (env: derived from HOSTNAME or OPENSHIFT_BUILD_NAME). */
    appName?: string;
    /** Where the service account's token, namespace and ca.crt are read (env KUBERNETES_FOLDER_PATH). */
    folderPath?: string;
    /** The API server's host (env KUBERNETES_SERVICE_HOST, default kubernetes.default.svc.cluster.local). */
    host?: string;
    /** The API server's port (env KUBERNETES_SERVICE_PORT, default 443). */
    port?: number | string;
    /** Full API URL, e.g. `https://10.0.0.1:443`; overrides host, port and noSSL. */
    url?: string;
    /** The label selector of this app's pods (env KUBERNETES_SELECTOR, default `app=<appName>`). */
    selector?: string;
    /** Bearer token (env KUBERNETES_TOKEN, default the service account's). */
    token?: string;
    /** The namespace (env KUBERNETES_NS, default the service account's). */
    namespace?: string;
    /** PEM CA bundle of the API server (env KUBERNETES_CA, default the service account's ca.crt). */
    ca?: string;
    /** Plain http to the API (0.5.1's option). */
    noSSL?: boolean;
    /** Skip TLS verification of the API server (logged as a warning). */
    insecureSkipTlsVerify?: boolean;
    /**
     * 0.5.1's polling interval, in ms: accepted and unused, as topology changes come from
     * a watch.
     */
    refreshInterval?: number;
    /**
     * How long `init()` may wait for the first topology, in ms; past it, `init()` rejects
     * with `ERR_SWARM_KUBERNETES` naming the last error. Off (0) by default: `init()` waits
     * as long as the API does not answer, as 0.5.1 did.
     */
    initTimeout?: number;
  }

  interface MessagesOptions {
    /**
     * The messaging port of every node (default 45892, env SWARM_MESSAGING_PORT). A
     * standalone node listens only when this or `bind` (or their environment variables)
     * is given.
     */
    port?: number;
    /** The address the server binds (default all interfaces, env SWARM_MESSAGING_BIND). */
    bind?: string;
    /** Largest accepted message body in bytes (default 10 MiB). */
    maxBodySize?: number;
    /** How long a handler may run, in ms (default 5 minutes; 0.5.1's option). */
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
    /**
     * ms before the caller's promise rejects with Bluebird's `TimeoutError`
     * (`operation timed out`, code `ERR_SWARM_TIMEOUT`; default 30000). The handler is not
     * cancelled: it keeps its slot until it settles.
     */
    timeout?: number;
    /**
     * One run at a time **per task name on a node** (default true): every call of this
     * task that the node runs waits in one FIFO queue, whatever its arguments (calls
     * for different keys included); other nodes run theirs at the same time. `false`:
     * every call runs at once, concurrently.
     */
    serialized?: boolean;
    /**
     * With `serialized`: `true`, a call joins the running run (else the queued one) and
     * gets its result; `'N'`, a call joins the one queued run, so a burst during a run
     * makes exactly one more run after it. Joining ignores the arguments: calls with
     * different arguments share one run and its result. Default false.
     */
    singleTrigger?: SingleTrigger;
    /** Queued runs allowed (default 20); past it a call rejects with `ERR_SWARM_QUEUE_FULL`. */
    maxQueueLength?: number;
  }

  /**
   * A task's handler: its arguments are the caller's own when the task runs on the
   * calling node, and decoded from JSON when the call came from another node
   * (`undefined` becomes `null`). Unannotated parameters are `unknown`: annotate them
   * (`(customerId: string) => ...`). Its value (or promise) is the result; to another
   * node it travels as JSON (a string as text).
   */
  type TaskHandler = { bivarianceHack (...args: unknown[]): unknown }['bivarianceHack'];

  interface TaskDefinition extends TaskOptions {
    handler: TaskHandler;
  }

  /** What task `name` is doing on this node. */
  type TaskStats = stats.TaskStats;
  type Durations = stats.Durations;
  type TaskReport = stats.TaskReport;
  type SwarmStats = stats.SwarmStats;

  /** The times of the master's Lease, in ms; `retryPeriod < renewDeadline < duration`. */
  interface LeaseOptions {
    /** How long a holder that stops renewing keeps the lease (15000). */
    duration?: number;
    /** How long the master stays master without a successful renewal (10000). */
    renewDeadline?: number;
    /** How often the lease is read, and renewed by its holder (2000). */
    retryPeriod?: number;
  }

  /** The options of `init()`: exactly these (a misspelled option is a compile error). */
  interface InitOptions {
    /**
     * No Kubernetes: `nodes` holds only this process, messages to it are delivered in the
     * process. Also the mode when no token, namespace or app name is found (logged). A
     * standalone node listens on no port unless `messages.port` or `messages.bind` is given.
     */
    standalone?: boolean;
    /** This process's IP(s); default POD_IP, then the interfaces. */
    ip?: string | string[];
    /** Shorthand of kubernetes.appName (which wins when both are given). */
    appName?: string;
    kubernetes?: KubernetesOptions;
    messages?: MessagesOptions;
    /** The defaults of every task registered (timeout 30000, serialized true, singleTrigger false, maxQueueLength 20). */
    tasks?: TaskOptions;
    /**
     * How the master is chosen: `'ip'` (default, as 0.5.1), the smallest IP of `nodes`;
     * or `'lease'`, the holder of a `coordination.k8s.io/v1` Lease, which needs get,
     * create and update on `leases` (without them: `'ip'`, with one warning).
     */
    masterElection?: 'ip' | 'lease';
    /** The Lease of `masterElection: 'lease'`; default `<appName>-master`. */
    leaseName?: string;
    /** The ring that places task keys, the same on every pod (default `SWARM_RING`, else `'hashring'`, as 0.5.1 and 1.0.0): docs/rings.md. */
    ring?: RingKind;
    /** The Lease's times in ms: duration 15000, renewDeadline 10000, retryPeriod 2000. */
    lease?: LeaseOptions;
    /** A listener of `ready`, added on every `init()` call (as `on('ready', ...)`). */
    onReady?: (...args: EventMap['ready']) => void;
    /** A listener of `error`. */
    onError?: (...args: EventMap['error']) => void;
    /** A listener of `nodeAdded`. */
    onNodeAdded?: (...args: EventMap['nodeAdded']) => void;
    /** A listener of `nodeRemoved`. */
    onNodeRemoved?: (...args: EventMap['nodeRemoved']) => void;
    /** A listener of `masterChanged`. */
    onMasterChanged?: (...args: EventMap['masterChanged']) => void;
    /** A listener of `readinessChanged`. */
    onReadinessChanged?: (...args: EventMap['readinessChanged']) => void;
  }

  /** A topic, or a path of topics (`['a', 'b']` travels as `a/b`). */
  type Topic = string | string[];

  /**
   * What a send resolves to: for a string `data` (type `D`), the reply as raw text, a
   * string whatever the handler returned (`undefined` when it answered nothing), as in
   * 0.5.1; otherwise `R`, the handler's reply decoded from JSON (a text reply stays a
   * string, no reply is `undefined`). `R` is what the caller asserts, not checked.
   */
  type Reply<R, D> = D extends string ? string | undefined : R;

  /**
   * A message handler, called for every segment of the path that it was registered on,
   * with the message decoded from JSON (or the raw text for a string, `''` for no body),
   * the path's segments and the sender's IP. Its value (or promise) is the reply: with
   * several handlers called, the array of their values. `undefined` answers nothing; a
   * throw or rejection answers its `statusCode` (400-599, else 500) and `message`.
   */
  type MessageHandler<M = unknown> = (message: M, topics: string[], from: string) => unknown;

  interface Messages {
    /**
     * Registers `handler` for `topic` (or each of the topics). The message is `unknown`
     * unless typed: `messages.on<Order>('order', order => ...)`, or annotate the
     * parameter. `M` is asserted, not checked: a peer may send anything.
     */
    on<M = unknown>(topic: Topic, handler: MessageHandler<M>): void;
    /**
     * Sends `data` to the node at `host` and resolves its reply, also to this node
     * (whose handlers run). A string `data` gets the reply as raw text (a string, or
     * `undefined`), as in 0.5.1. A reply status outside 2xx rejects with a
     * `StatusCodeError` (`statusCode`, code `ERR_SWARM_STATUS`).
     */
    send<R = unknown, D = unknown>(host: string, topic: Topic, data?: D): Bluebird<Reply<R, D>>;
  }

  /**
   * What `metrics.register` needs of a registry: prom-client's `Registry` has it. The
   * metrics handed to it are collectors of prom-client's shape (`name`, `help`, `type`,
   * `get()`), not instances of its classes: `never` lets any such registry in.
   */
  interface PromRegistry {
    registerMetric(metric: never): void;
  }

  interface MetricsOptions {
    /** Before every metric's name (`'swarm_'`). */
    prefix?: string;
    /** Labels added to every sample, e.g. `{ service: 'orders' }`. */
    labels?: { [name: string]: string };
  }

  /**
   * `swarm.stats()` as Prometheus metrics, read from the native counters at each scrape
   * (docs/observability.md lists them). No label per peer, key or topic.
   */
  interface Metrics {
    /** Adds the metrics to the app's prom-client registry (once per registry); returns it. */
    register<R extends PromRegistry>(registry: R, options?: MetricsOptions): R;
    /** The metrics in Prometheus' text format, for an app that serves `/metrics` itself. */
    text(options?: MetricsOptions): string;
  }

  /** What every `diagnostics_channel` tracing channel's context holds (docs/observability.md). */
  interface ChannelContext {
    /** The W3C trace context carried, when there is one; a subscriber may set it at `start` of a send or exec. */
    traceparent?: string;
    tracestate?: string;
    /** Set before `asyncStart`: the call's outcome. */
    result?: unknown;
    /** Set before `error`: why the call failed. */
    error?: unknown;
  }

  /** The context of `node-swarm-kb:send`: one per target of a send or broadcast. */
  interface SendChannelContext extends ChannelContext {
    node: string;
    topic: string;
    message: unknown;
  }

  /** The context of `node-swarm-kb:exec`: a `tasks.exec` call. */
  interface ExecChannelContext extends ChannelContext {
    task: string;
    key: string;
    args: unknown[];
  }

  /** The context of `node-swarm-kb:handle`: a message handled (`topic`) or a task run here (`task`). */
  interface HandleChannelContext extends ChannelContext {
    topic?: string;
    from?: string;
    message?: unknown;
    task?: string;
    args?: unknown[];
  }

  interface Tasks {
    /** Registers a task; a name already registered is ignored. */
    register(name: string, handler: TaskHandler, options?: TaskOptions): void;
    /** Registers tasks by name; `options` are applied over each task's own. */
    register(tasks: Record<string, TaskHandler | TaskDefinition>, options?: TaskOptions): void;
    /**
     * Runs task `name` on the node owning the key: `String(args[0])` when `args[0]` is
     * truthy, else the task's name. Resolves the handler's value, typed `R` (asserted,
     * not checked): the handler's own value when it ran here, decoded from JSON when it
     * ran on another node. Rejects with `No such task` (`ERR_SWARM_NO_SUCH_TASK`) unless
     * `name` is registered on this node, and with a `TimeoutError` past `timeout`.
     */
    exec<R = unknown>(name: string, ...args: unknown[]): Bluebird<R>;
    /** The IP of the node owning `key`, or null before init. */
    owner(key: string | number): string | null;
    /** What task `name` is doing on this node, or null when it is not registered. */
    stats(name: string): TaskStats | null;
    /** The defaults of the tasks registered from now on. */
    options: TaskOptions;
  }

  interface SwarmError extends Error {
    /** A stable code, e.g. ERR_SWARM_TIMEOUT, ERR_SWARM_NO_SUCH_TASK (see docs/api.md). */
    code?: string;
    /** The reply's status, for a `StatusCodeError` (and a task that failed with one). */
    statusCode?: number;
    /** The reply's body, for a `StatusCodeError` (as request-promise gave it in 0.5.1). */
    error?: unknown;
    /** The task's name, for `ERR_SWARM_NO_SUCH_TASK`. */
    task?: string;
    /** For `ERR_SWARM_RING_MISMATCH`: the peer's IP, its ring as it said it, and this pod's. */
    peer?: string;
    peerRing?: string;
    ring?: RingKind;
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

  /** hashring@3's ring, or the opt-in xxh3 one (an even spread, for pods that all have it). */
  type RingKind = 'hashring' | 'xxh3';

  /** A consistent-hash ring: hashring@3's exactly, or with `{ ring: 'xxh3' }` that one. */
  interface HashRing {
    get(key: string): string | null;
    getMany(keys: string[]): Array<string | null>;
    readonly servers: string[];
    readonly ring: RingKind;
  }
  interface HashRingConstructor {
    new (servers: string[], options?: { ring?: RingKind }): HashRing;
  }

  /**
   * The singleton. Its functions work detached from it
   * (`const { init, send } = require('node-swarm-kb')`).
   */
  interface Swarm {
    /**
     * Starts the node; resolves `nodes` once the first topology is known. A later call
     * starts nothing: it resolves with `nodes` (once the first call's topology is known),
     * and its `on*` listeners are still added.
     */
    init(options?: InitOptions): Bluebird<Nodes>;
    on<E extends keyof EventMap>(event: E, handler: (...args: EventMap[E]) => void): Swarm;
    once<E extends keyof EventMap>(event: E, handler: (...args: EventMap[E]) => void): Swarm;
    off<E extends keyof EventMap>(event: E, handler: (...args: EventMap[E]) => void): Swarm;
    /** Calls the listeners of `event`; an array `args` is spread into their arguments. */
    emit<E extends keyof EventMap>(event: E, args: EventMap[E] | EventMap[E][0]): boolean;
    /** The nodes of the cluster, keyed by IP (a getter; `{}` before `init()`). */
    readonly nodes: Nodes;
    isReady: boolean;
    /**
     * The master's IP, or null: the smallest IP in string order, or the holder of the
     * Lease with `masterElection: 'lease'` (null while nobody is known to hold it).
     */
    readonly master: string | null;
    /** A getter, not a method: `swarm.amIMaster`, not `swarm.amIMaster()`. */
    readonly amIMaster: boolean;
    /**
     * With `masterElection: 'lease'`, how many times the lease changed hands: a master
     * may stamp its writes with it, and a store refuse those of an older epoch. Null
     * otherwise.
     */
    readonly masterEpoch: number | null;
    isMe(node: string | SwarmNode): boolean;
    /**
     * Sends `data` to one node and resolves its reply (typed `R`, asserted, not checked).
     * A node that is this process resolves `undefined` without delivery (unlike
     * `messages.send`). A string `data` gets the reply as raw text (a string, or
     * `undefined`), as in 0.5.1. `data` may not be `undefined`: see the other overload.
     * Rejects (and emits `error`) without a node or a topic.
     */
    send<R = unknown, D extends {} | null = {} | null>(node: string | SwarmNode, topic: Topic, data: D): Bluebird<Reply<R, D>>;
    /**
     * 0.5.1's quirk, kept: **without `data`** (or with `data` undefined) this is no send
     * to `node` but `broadcast(node, topic)`: every other node of `nodes` gets `topic` as
     * the message, on the topic named by `node` (the handlers registered with
     * `messages.on('10.0.0.2', ...)`), and the promise resolves their replies as an array
     * (`undefined` for this node; raw text for a string `topic`). To reach `node`, pass
     * data: `send(ip, topic, {})`.
     */
    send<R = unknown, T extends Topic = Topic>(node: string, topic: T, data?: undefined): Bluebird<Array<Reply<R, T> | undefined>>;
    /**
     * Sends `data` to every node of `nodes` but this one, and resolves their replies in
     * `Object.keys(nodes)` order: this node's entry is `undefined`, and its own handlers
     * are **not** called (0.5.1's behaviour). A string `data` gets raw text replies. The
     * first failure rejects the whole; the other nodes still get the message.
     */
    broadcast<R = unknown, D = unknown>(topic: Topic, data?: D): Bluebird<Array<Reply<R, D> | undefined>>;
    /** This pod's view and counters now; null before `init()` and after `close()`. */
    stats(): SwarmStats | null;
    /** Stops the node and lets the process exit; safe to call twice. */
    close(graceMs?: number): Bluebird<void>;
    messages: Messages;
    tasks: Tasks;
    metrics: Metrics;
    /** The options of `init()`, merged. */
    options: InitOptions;
    readonly HashRing: HashRingConstructor;
  }
}

declare const swarm: swarm.Swarm;
export = swarm;
