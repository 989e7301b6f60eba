// Plumbing for driving salesforce-pubsub-api-client 5.5.2 (unmodified) against Conflux's gRPC
// listener. Import '../support/conflux.mjs' BEFORE this module (it drops proxy variables before
// jsforce loads and trusts CONFLUX_CA_FILE on https.globalAgent, which jsforce's SOAP login and
// Tooling query use).
//
// What the client cannot be told, and how it is handled here without changing its code:
// * TLS trust: connect() always builds `grpc.credentials.createSsl(<its bundled cacert PEM>, null,
//   null, {rejectUnauthorized})` (dist/client.js:642-664). NODE_EXTRA_CA_CERTS does not help
//   (an explicit `ca` replaces Node's store). The client looks `grpc.credentials.createSsl` up at
//   call time on the @grpc/grpc-js module object it imports, so wrapping that one function on the
//   same module instance (resolved from the client's own location) substitutes CONFLUX_CA_FILE
//   as the root. Verification stays on (rejectUnauthorized: true, host 127.0.0.1 vs cert SANs).
// * Ending streams: the client never cancels its Subscribe / ManagedSubscribe / PublishStream
//   calls, and close() only closes the channel, so open streams keep the test process alive.
//   `grpc.Channel.prototype.createCall` (used for every call, client-interceptors.js:257) is
//   wrapped to remember each call and decode what the client sends on it; `cancelAll()` cancels
//   them (do it BEFORE client.close(): close() removes the client's 'error' listeners and a
//   cancelled stream without one throws).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { env } from './conflux.mjs';

const require = createRequire(import.meta.url);
const clientMain = require.resolve('salesforce-pubsub-api-client'); // dist/client.cjs ("require" export)
const fromClient = createRequire(clientMain);
const grpc = fromClient('@grpc/grpc-js');
const protoLoader = fromClient('@grpc/proto-loader');
export { grpc };
export const { default: PubSubApiClient } = await import('salesforce-pubsub-api-client');

function grpcAddr() {
  const addr = process.env.CONFLUX_GRPC_ADDR;
  if (!addr) {
    throw new Error('Missing environment variable CONFLUX_GRPC_ADDR (host:port of the TLS gRPC listener, '
      + 'certificate signed by CONFLUX_CA_FILE).');
  }
  return addr;
}
export const GRPC_ADDR = grpcAddr();
for (const name of ['grpc_proxy', 'GRPC_PROXY']) delete process.env[name]; // grpc-js reads grpc_proxy too

// --- TLS: trust the Conflux CA (or, per client, the bundled roots only) -----------------------
const confluxCa = fs.readFileSync(env.caFile);
const createSsl = grpc.credentials.createSsl;
let useBundledRoots = false;
grpc.credentials.createSsl = (roots, key, chain, verify) => createSsl(useBundledRoots ? roots : confluxCa, key, chain, verify);

// --- call recorder ----------------------------------------------------------------------------
// The client's own proto file (only loaded to decode what the client sends; not copied).
const protoPath = path.join(path.dirname(clientMain), '..', 'pubsub_api.proto');
const service = protoLoader.loadSync(protoPath, {})['eventbus.v1.PubSub'];
export const calls = []; // {method, sent: [decoded request objects], call}
const createCall = grpc.Channel.prototype.createCall;
grpc.Channel.prototype.createCall = function recordCall(method, ...rest) {
  const call = createCall.call(this, method, ...rest);
  const name = method.split('/').pop();
  const rec = { method: name, sent: [], call };
  calls.push(rec);
  const send = call.sendMessageWithContext.bind(call);
  call.sendMessageWithContext = (context, message) => {
    rec.sent.push(service[name].requestDeserialize(message));
    return send(context, message);
  };
  return call;
};

export async function cancelAll() {
  for (const { call } of calls.splice(0)) call.cancelWithStatus(grpc.status.CANCELLED, 'test finished');
  await new Promise((resolve) => setImmediate(resolve));
}

// --- clients ----------------------------------------------------------------------------------
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A connected client. Default: user-supplied auth with `conn`'s token. instanceUrl must start
 * with https:// (configurationLoader), so CONFLUX_HTTPS_URL is passed whatever `conn` used.
 */
export async function connectClient(conn, config = {}, { bundledRoots = false } = {}) {
  const client = new PubSubApiClient({
    authType: 'user-supplied',
    accessToken: conn?.accessToken,
    instanceUrl: env.httpsUrl,
    pubSubEndpoint: GRPC_ADDR,
    ...config,
  }, quiet);
  useBundledRoots = bundledRoots;
  try {
    await client.connect(); // builds the channel credentials synchronously inside
  } finally {
    useBundledRoots = false;
  }
  return client;
}

/** Replay ids are 8-byte big-endian on the wire; the client hands them out as Numbers. */
export function assertReplayId(id) {
  assert.equal(typeof id, 'number', `replay id ${id}`);
  assert.ok(Number.isSafeInteger(id) && id > 0, `replay id ${id}`);
}

/**
 * Subscription sink for the client's callback(info, type, data). Types seen: 'event' (data =
 * {id, schemaId, replayId, payload}), 'lastEvent' (after the requested count, finite requests
 * only), 'grpcKeepAlive' (an event-less FetchResponse), 'error' (stream error or
 * EventParseError), 'grpcStatus', 'end'.
 */
export function sink() {
  const events = [];
  const log = []; // [type, data]
  const waiters = [];
  const settle = () => {
    for (const w of waiters.splice(0)) {
      if (!w.check()) waiters.push(w);
    }
  };
  const s = {
    events,
    log,
    errors: () => log.filter(([t]) => t === 'error').map(([, d]) => d),
    info: null,
    callback: (info, type, data) => {
      s.info = info;
      log.push([type, data]);
      if (type === 'event') events.push(data);
      settle();
    },
    /** Resolves once `pred()` holds; rejects after `ms`. */
    when(pred, what, ms = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; log: ${
          JSON.stringify(log.map(([t, d]) => [t, d?.replayId ?? d?.code ?? '']))}`)), ms);
        const w = { check: () => (pred() ? (clearTimeout(timer), resolve(), true) : false) };
        if (!w.check()) waiters.push(w);
      });
    },
    /**
     * The events sorted by replay id. The client decodes each event after an awaited GetSchema
     * lookup; until its schema cache is warm, several lookups race (one per FetchResponse), so
     * callback order can differ from wire order (dist/client.js:1152-1190).
     */
    byReplayId() { return [...events].sort((a, b) => a.replayId - b.replayId); },
    until(n, ms) { return s.when(() => events.length >= n, `${n} events`, ms).then(() => events.slice(0, n)); },
    lastEvent(ms) { return s.when(() => log.some(([t]) => t === 'lastEvent'), 'lastEvent', ms); },
    error(ms) { return s.when(() => s.errors().length > 0, 'an error', ms).then(() => s.errors()[0]); },
  };
  return s;
}

export const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The FetchRequests (or ManagedFetchRequests) the client wrote on its stream calls so far. */
export function sentOn(method) {
  return calls.filter((c) => c.method === method).flatMap((c) => c.sent);
}
