'use strict';

// metav1.Status bodies, as the apiserver writes them for failed requests (and
// inside ERROR watch events). Field order follows the apiserver's JSON.

function status(code, reason, message, details) {
  const s = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason };
  if (details) s.details = details;
  s.code = code;
  return s;
}

const unauthorized = () => status(401, 'Unauthorized', 'Unauthorized');

/** RBAC denial, e.g. verb 'list' on endpointslices.discovery.k8s.io in namespace ns. */
function forbidden(info, verb, user, namespace, name) {
  const qualified = info.group ? `${info.plural}.${info.group}` : info.plural;
  const what = name ? `${qualified} "${name}"` : qualified;
  const msg = `${what} is forbidden: User "${user}" cannot ${verb} resource "${info.plural}" ` +
    `in API group "${info.group}" in the namespace "${namespace}"`;
  const details = { group: info.group || undefined, kind: info.plural };
  if (name) details.name = name;
  return status(403, 'Forbidden', msg, JSON.parse(JSON.stringify(details)));
}

const notFound = () => status(404, 'NotFound', 'the server could not find the requested resource', {});

function objectNotFound(info, name) {
  const qualified = info.group ? `${info.plural}.${info.group}` : info.plural;
  const details = { name, kind: info.plural };
  if (info.group) details.group = info.group;
  return status(404, 'NotFound', `${qualified} "${name}" not found`, details);
}

const methodNotAllowed = () =>
  status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource', {});

const serviceUnavailable = () =>
  status(503, 'ServiceUnavailable', 'the server is currently unable to handle the request', {});

const badRequest = (message) => status(400, 'BadRequest', message);

/** A ListOptions validation failure (HTTP 422, reason Invalid). */
function invalidListOptions(field, message) {
  return status(422, 'Invalid', `ListOptions.meta.k8s.io "" is invalid: ${field}: Forbidden: ${message}`, {
    group: 'meta.k8s.io',
    kind: 'ListOptions',
    causes: [{ reason: 'FieldValueForbidden', message: `Forbidden: ${message}`, field }],
  });
}

/** The watch cache no longer holds `rv`: 410 Expired. `oldest` is the oldest resumable rv. */
function expired(rv, oldest) {
  return status(410, 'Expired', `too old resource version: ${rv} (${oldest})`);
}

/** `rv` is ahead of the server (the apiserver gives up waiting for it). */
function tooLarge(rv, current) {
  return status(504, 'Timeout', `Too large resource version: ${rv}, current: ${current}`, {
    causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
    retryAfterSeconds: 1,
  });
}

module.exports = {
  status,
  unauthorized,
  forbidden,
  notFound,
  objectNotFound,
  methodNotAllowed,
  serviceUnavailable,
  badRequest,
  invalidListOptions,
  expired,
  tooLarge,
};
