'use strict';

// Traces of what crosses pods (docs/observability.md): OpenTelemetry spans when
// `@opentelemetry/api` is installed (an optional peer dependency) and the application
// registered a tracer provider, and the diagnostics_channel tracing channels
// `node-swarm-kb:send`, `:exec` and `:handle` for whoever subscribes. The trace context
// travels as W3C `traceparent`/`tracestate` (headers over HTTP/1.1, fields of the
// multiplexed frame); the native side hands it to us as `traceparent`, then a line feed
// and `tracestate` when there is one. With neither OpenTelemetry nor a subscriber, a
// call costs one check.
const dc = require('node:diagnostics_channel');
const errors = require('./errors');
const { version } = require('../package.json');

const api = optional('@opentelemetry/api');
const tracer = api && api.trace.getTracer('node-swarm-kb', version);
const channels = typeof dc.tracingChannel === 'function'
  ? {
      send: dc.tracingChannel('node-swarm-kb:send'),
      exec: dc.tracingChannel('node-swarm-kb:exec'),
      handle: dc.tracingChannel('node-swarm-kb:handle')
    }
  : {};

function optional (name) {
  try {
    return require(name);
  } catch (_) {
    return null;
  }
}

// Whether anyone listens on `channel` (`TracingChannel.hasSubscribers` is Node 20.13+).
function watched (channel) {
  return channel !== undefined && (channel.start.hasSubscribers || channel.end.hasSubscribers ||
    channel.asyncStart.hasSubscribers || channel.asyncEnd.hasSubscribers || channel.error.hasSubscribers);
}

// `traceparent[\ntracestate]` of a span's context; undefined for an invalid one (no
// tracer provider, nothing to continue).
function textOf (spanContext) {
  if (!api.isSpanContextValid(spanContext)) return undefined;
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, '0');
  const parent = `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
  const state = spanContext.traceState && spanContext.traceState.serialize();
  return state ? `${parent}\n${state}` : parent;
}

// The context of a remote parent from its text (checked by the native side).
function remoteContext (text) {
  const [parent, state] = text.split('\n');
  const [, traceId, spanId, flags] = parent.split('-');
  return api.trace.setSpanContext(api.ROOT_CONTEXT, {
    traceId,
    spanId,
    traceFlags: parseInt(flags, 16) & 1,
    isRemote: true,
    traceState: state ? api.createTraceState(state) : undefined
  });
}

// The two W3C values of a text, as a channel's context shows them.
function splitText (text, into) {
  if (!text) return into;
  const at = text.indexOf('\n');
  into.traceparent = at === -1 ? text : text.slice(0, at);
  if (at !== -1) into.tracestate = text.slice(at + 1);
  return into;
}

// One traced operation: its span (named `name`, with `attributes`), its channel and the
// channel's context object.
class Operation {
  constructor (channel, context, span, otelContext, trace, name, attributes) {
    this.channel = channel;
    this.context = context;
    this.span = span;
    this.otelContext = otelContext;
    this.trace = trace;
    this.name = name;
    this.attributes = attributes;
    // While `run` calls its function: an operation that ends meanwhile (a handler that
    // answered at once) settles after the channel's `end`, as every operation's
    // `asyncStart` and `asyncEnd` come after its `end`.
    this.running = false;
    this.ended = null;
  }

  // Calls `fn(trace)` in the span's context and the channel's start, `trace` being the
  // context to carry: the span's, or one a subscriber's start handler put on the
  // channel's context (`traceparent`, `tracestate`).
  run (fn) {
    const start = () => this.channel ? this._published(fn) : fn(this.trace);
    try {
      return this.otelContext ? api.context.with(this.otelContext, start) : start();
    } catch (error) {
      // Thrown before any promise: the span ends here (the channel told its error).
      if (this.span !== null) this.failed(error);
      throw error;
    }
  }

  _published (fn) {
    const { channel, context } = this;
    return channel.start.runStores(context, () => {
      this.running = true;
      try {
        const trace = this.trace || (context.traceparent
          ? (context.tracestate ? `${context.traceparent}\n${context.tracestate}` : context.traceparent)
          : undefined);
        return fn(trace);
      } catch (error) {
        context.error = error;
        channel.error.publish(context);
        throw error;
      } finally {
        channel.end.publish(context);
        this.running = false;
        if (this.ended !== null) this.settle(this.ended.error, this.ended.result);
      }
    });
  }

  // The operation ended: `error` (a failure) or `result`.
  settle (error, result) {
    if (this.running) {
      this.ended = { error, result };
      return;
    }
    const { channel, context, span } = this;
    if (channel) {
      if (error) {
        context.error = error;
        channel.error.publish(context);
      } else {
        context.result = result;
      }
      channel.asyncStart.publish(context);
      channel.asyncEnd.publish(context);
    }
    if (span) {
      // What the tracer throws (a span processor of the application's) is raised after
      // this call, as diagnostics_channel raises what a subscriber throws: the call's
      // answer, and a serialized queue's next run handed back with it, go on.
      try {
        if (error) this.failed(error);
        else span.end();
      } catch (thrown) {
        process.nextTick(() => { throw thrown; });
      }
    }
  }

  // Ends the span in error.
  failed (error) {
    const span = this.span;
    // Whatever was thrown (a revoked Proxy, a throwing getter), reading it does not throw.
    if (errors.readSafely(() => error instanceof Error)) span.recordException(error);
    span.setStatus({ code: api.SpanStatusCode.ERROR, message: errors.handlerFailure(error)[1] });
    const status = errors.readSafely(() => error && error.statusCode);
    if (status) span.setAttribute('node_swarm_kb.status_code', status);
    span.end();
  }

  // The attempts of this call that did not run (a task call sent again, its key's owner
  // having moved), as children of its CLIENT span: each with its node, its times (ms
  // since the epoch) and why.
  retried (attempts) {
    if (this.span === null) return;
    for (const attempt of attempts) {
      const attributes = Object.assign({}, this.attributes, { 'server.address': attempt.ip, 'node_swarm_kb.not_run': attempt.reason });
      const span = tracer.startSpan(this.name, { kind: api.SpanKind.CLIENT, startTime: attempt.startMs, attributes }, this.otelContext);
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: `not run: ${attempt.reason}` });
      span.end(attempt.endMs);
    }
  }

  // `promise`, settling this operation when it settles.
  watch (promise) {
    return promise.then(result => {
      this.settle(null, result);
      return result;
    }, error => {
      this.settle(error);
      throw error;
    });
  }
}

// Whether a call of `kind` ('send', 'exec' or 'handle') may be traced: a tracer, or a
// subscriber to its channel. The one check an untraced call pays.
function watching (kind) {
  return tracer !== null || watched(channels[kind]);
}

// A call made from this pod (`kind` 'send' or 'exec'): a CLIENT span, child of the
// active context, and the channel's events; null when nothing listens (no subscriber,
// and no tracer provider registered: nothing to record or carry).
function outbound (kind, name, attributes, context) {
  const channel = channels[kind];
  const published = watched(channel);
  let span = null;
  let otelContext = null;
  let trace;
  if (tracer) {
    const parent = api.context.active();
    span = tracer.startSpan(name, { kind: api.SpanKind.CLIENT, attributes }, parent);
    otelContext = api.trace.setSpan(parent, span);
    trace = textOf(span.spanContext());
  }
  if (!published && trace === undefined) return null;
  return new Operation(published ? channel : null, published ? splitText(trace, context) : context, span, otelContext, trace, name, attributes);
}

// A message handled or a task run here, for a call that carried `trace` (or none): a
// SERVER span whose parent is the caller's span, and the `handle` channel's events;
// null when nothing listens. Without a tracer provider, the caller's context is still
// the handler's, so that what it calls carries the trace on.
function inbound (name, attributes, context, trace) {
  const channel = channels.handle;
  const published = watched(channel);
  let span = null;
  let otelContext = null;
  if (tracer) {
    const parent = trace ? remoteContext(trace) : api.ROOT_CONTEXT;
    span = tracer.startSpan(name, { kind: api.SpanKind.SERVER, attributes }, parent);
    otelContext = api.trace.setSpan(parent, span);
  }
  if (!published && !trace && !(span && span.isRecording())) return null;
  return new Operation(published ? channel : null, published ? splitText(trace, context) : context, span, otelContext, trace, name, attributes);
}

// The RPC attributes of a call of `method` of `service` ('messages' or 'tasks').
function rpc (service, method, extra) {
  return Object.assign({ 'rpc.system': 'node-swarm-kb', 'rpc.service': service, 'rpc.method': method }, extra);
}

module.exports = { watching, outbound, inbound, rpc };
