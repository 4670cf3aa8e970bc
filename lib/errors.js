'use strict';

// Error objects of the facade: 0.5.1's messages, plus a stable `code` on each.
const Promise = require('./promise');

function swarmError (code, message, extra) {
  const error = new Error(message);
  error.code = code;
  return Object.assign(error, extra);
}

// Bluebird's TimeoutError, as 0.5.1's `.timeout()` rejected with.
function timeoutError () {
  const error = new Promise.TimeoutError('operation timed out');
  error.code = 'ERR_SWARM_TIMEOUT';
  return error;
}

// request-promise's StatusCodeError, as 0.5.1's `messages.send` rejected with.
function statusCodeError (statusCode, body) {
  const error = swarmError('ERR_SWARM_STATUS', `${statusCode} - ${JSON.stringify(body)}`, { statusCode, error: body });
  error.name = 'StatusCodeError';
  return error;
}

// Names what was given: its type, and a short value as it was written (never a secret:
// no option that holds one is checked by value).
function invalidArgument (name, expected, value) {
  const type = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  const shown = type === 'string' ? ` ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`
    : type === 'number' || type === 'boolean' ? ` ${value}` : '';
  return swarmError('ERR_SWARM_INVALID_ARG', `Invalid argument ${name}: expected ${expected}, got ${type}${shown}`);
}

// What a handler's failure answers its caller with: `[status, text]`, the status its
// `statusCode` says (400-599, else 500) and its message, or the thrown value as text.
// Whatever was thrown (an object without a prototype, a throwing getter or toString),
// the caller gets an answer and the handler's node goes on.
function handlerFailure (error) {
  let status = 500;
  try {
    const code = error && error.statusCode;
    if (Number.isInteger(code) && code >= 400 && code < 600) status = code;
    return [status, String(error && error.message !== undefined ? error.message : error)];
  } catch (_) {
    return [status, `the handler failed with a value that has no text (${kindOf(error)})`];
  }
}

// `[object Object]` and the like; the type of a value that will not say even that (a
// revoked Proxy, a throwing `Symbol.toStringTag`).
function kindOf (value) {
  const kind = readSafely(() => Object.prototype.toString.call(value));
  return kind === undefined ? typeof value : kind;
}

// What `read()` returns, or undefined when it throws.
function readSafely (read) {
  try {
    return read();
  } catch (_) {
    return undefined;
  }
}

module.exports = { swarmError, timeoutError, statusCodeError, invalidArgument, handlerFailure, readSafely };
