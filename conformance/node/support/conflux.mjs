// Test plumbing for driving jsforce against a running Conflux server.
//
// Import this module *before* 'jsforce': jsforce 3.10.16 reads https_proxy /
// http_proxy / HTTPS_PROXY / HTTP_PROXY once, when lib/transport.js is loaded, and then
// sends every request (127.0.0.1 included, NO_PROXY is not consulted) through that proxy.
// The suite talks to a local server only, so those variables are dropped here.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';

for (const name of ['https_proxy', 'http_proxy', 'HTTPS_PROXY', 'HTTP_PROXY']) {
  delete process.env[name];
}

const REQUIRED_ENV = [
  'CONFLUX_HTTP_URL',
  'CONFLUX_HTTPS_URL',
  'CONFLUX_CA_FILE',
  'CONFLUX_USERNAME',
  'CONFLUX_PASSWORD',
  'CONFLUX_CLIENT_ID',
  'CONFLUX_CLIENT_SECRET',
  'CONFLUX_JWT_KEY_FILE',
];

export const START_HINT = [
  'These suites need a running Conflux server; they never start one.',
  'Run them through `cargo xtask conformance`, or start a server yourself, e.g.',
  '    conflux serve --data "$(mktemp -d)" --http 127.0.0.1:0 --https 127.0.0.1:0',
  'and export CONFLUX_HTTP_URL, CONFLUX_HTTPS_URL, CONFLUX_CA_FILE, CONFLUX_USERNAME,',
  'CONFLUX_PASSWORD, CONFLUX_CLIENT_ID, CONFLUX_CLIENT_SECRET and CONFLUX_JWT_KEY_FILE',
  'for it before running conformance/run.sh.',
].join('\n');

function loadEnv() {
  const missing = REQUIRED_ENV.filter((name) => !process.env[name]);
  if (missing.length > 0) {
    throw new Error(`Missing environment variables: ${missing.join(', ')}\n${START_HINT}`);
  }
  for (const name of ['CONFLUX_CA_FILE', 'CONFLUX_JWT_KEY_FILE']) {
    if (!fs.existsSync(process.env[name])) {
      throw new Error(`${name}=${process.env[name]} is not a file.\n${START_HINT}`);
    }
  }
  const strip = (url) => url.replace(/\/+$/, '');
  return Object.freeze({
    httpUrl: strip(process.env.CONFLUX_HTTP_URL),
    httpsUrl: strip(process.env.CONFLUX_HTTPS_URL),
    caFile: process.env.CONFLUX_CA_FILE,
    username: process.env.CONFLUX_USERNAME,
    password: process.env.CONFLUX_PASSWORD,
    clientId: process.env.CONFLUX_CLIENT_ID,
    clientSecret: process.env.CONFLUX_CLIENT_SECRET,
    jwtKeyFile: process.env.CONFLUX_JWT_KEY_FILE,
  });
}

// Fails the importing test file at load time, with the hint, when the env is missing.
export const env = loadEnv();

// jsforce 3.10.16 sends requests with node-fetch 2 and passes no agent unless a proxy is
// configured (lib/request.js), so HTTPS requests go through https.globalAgent. Trusting the
// generated CA there is the only TLS set-up needed; nothing in jsforce is changed.
https.globalAgent.options.ca = [...tls.rootCertificates, fs.readFileSync(env.caFile, 'utf8')];

// jsforce 3.10.16 default API version (lib/connection.js defaultConnectionConfig).
export const JSFORCE_DEFAULT_VERSION = '50.0';

export function randomToken() {
  return crypto.randomBytes(4).toString('hex');
}

// ---------------------------------------------------------------------------
// Raw HTTP (out-of-band set-up and wire checks only)
// ---------------------------------------------------------------------------

/** Invalidate a token out-of-band (Node's own fetch, not jsforce). */
export async function revoke(token) {
  const res = await fetch(`${env.httpUrl}/services/oauth2/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
  });
  assert.equal(res.status, 200, `revoke answered ${res.status}: ${await res.text()}`);
}

/** The 401 a revoked token gets: what jsforce's session refresh keys on. */
export async function assertInvalidSession(instanceUrl, token) {
  const res = await fetch(`${instanceUrl}/services/data/v${JSFORCE_DEFAULT_VERSION}/limits`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const text = await res.text();
  assert.equal(res.status, 401, text);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json(;|$)/);
  const body = JSON.parse(text);
  assert.ok(Array.isArray(body) && body.length === 1, text);
  assert.equal(body[0].errorCode, 'INVALID_SESSION_ID');
  assert.equal(body[0].message, 'Session expired or invalid');
}

// ---------------------------------------------------------------------------
// JWT bearer assertion, signed with node:crypto (RS256)
// ---------------------------------------------------------------------------

function base64url(input) {
  return Buffer.from(input).toString('base64url');
}

export function jwtAssertion({ keyPem = fs.readFileSync(env.jwtKeyFile, 'utf8'), aud = 'https://login.salesforce.com' } = {}) {
  const header = { alg: 'RS256' };
  const claims = {
    iss: env.clientId,
    sub: env.username,
    aud,
    exp: Math.floor(Date.now() / 1000) + 180,
  };
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const signature = crypto.sign('RSA-SHA256', Buffer.from(signingInput), keyPem);
  return `${signingInput}.${signature.toString('base64url')}`;
}

// ---------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------

const ID_SUFFIX_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345';

export function id18(id15) {
  assert.equal(id15.length, 15, id15);
  let suffix = '';
  for (let chunk = 0; chunk < 3; chunk++) {
    let bits = 0;
    for (let j = 0; j < 5; j++) {
      const c = id15[chunk * 5 + j];
      if (c >= 'A' && c <= 'Z') bits |= 1 << j;
    }
    suffix += ID_SUFFIX_ALPHABET[bits];
  }
  return id15 + suffix;
}

export function assertValidId(value, prefix) {
  assert.equal(typeof value, 'string', `not an id: ${value}`);
  assert.match(value, /^[0-9A-Za-z]{18}$/, `not an 18-char id: ${value}`);
  assert.equal(id18(value.slice(0, 15)), value, `bad checksum suffix in ${value}`);
  if (prefix) assert.ok(value.startsWith(prefix), `${value} does not start with key prefix ${prefix}`);
}

/** A well-formed 18-char id with the given key prefix that no server will have issued. */
export function randomId(prefix) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let body = '';
  for (const byte of crypto.randomBytes(10)) body += alphabet[byte % alphabet.length];
  return id18(`${prefix}Zz${body}`);
}

export function soqlQuote(value) {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export function assertSaveResult(result, prefix) {
  assert.equal(result.success, true, JSON.stringify(result));
  assert.deepEqual(result.errors, [], JSON.stringify(result));
  assertValidId(result.id, prefix);
  return result.id;
}

// "2013-05-20T20:49:32.000+0000"
export const DATETIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$/;

/**
 * An OAuth2 password login over plain HTTP with jsforce's `Connection` class (passed in: this
 * module must load before jsforce).
 */
export async function passwordLogin(Connection, version) {
  const conn = new Connection({
    loginUrl: env.httpUrl,
    version,
    oauth2: { clientId: env.clientId, clientSecret: env.clientSecret, loginUrl: env.httpUrl },
  });
  await conn.login(env.username, env.password);
  return conn;
}

/** Collects streaming messages; `until(n)` resolves once `n` arrived (with all so far). */
export function collector() {
  const messages = [];
  let waiting = null;
  return {
    messages,
    push(m) {
      messages.push(m);
      if (waiting && messages.length >= waiting.n) {
        waiting.resolve(messages.slice());
        waiting = null;
      }
    },
    until(n) {
      if (messages.length >= n) return Promise.resolve(messages.slice());
      return new Promise((resolve) => {
        waiting = { n, resolve };
      });
    },
  };
}

// ---------------------------------------------------------------------------
// Tooling API custom objects
// ---------------------------------------------------------------------------

export async function toolingCreateObject(conn, apiName, label) {
  // POST /services/data/vXX.X/tooling/sobjects/CustomObject
  return conn.tooling.sobject('CustomObject').create({
    FullName: apiName,
    Metadata: {
      label,
      pluralLabel: `${label}s`,
      nameField: { type: 'Text', label: `${label} Name` },
      deploymentStatus: 'Deployed',
      sharingModel: 'ReadWrite',
    },
  });
}

export async function toolingCreateField(conn, objectName, fieldName, metadata) {
  // Connection-style call: tooling.create(type, record) -> POST .../tooling/sobjects/CustomField
  return conn.tooling.create('CustomField', { FullName: `${objectName}.${fieldName}`, Metadata: metadata });
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

/** Run `fn` over `items` with at most `limit` in flight; results keep input order. */
export async function mapPool(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Await `promise`, expecting it to reject; return the error. */
export async function rejection(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

// ---------------------------------------------------------------------------
// Bulk helpers
// ---------------------------------------------------------------------------

/**
 * Record every HTTP exchange of one jsforce connection, optionally rewriting request URLs.
 *
 * Every jsforce API module (REST, Bulk 1.0, Bulk 2.0) sends through `conn._transport.httpRequest`
 * (lib/http-api.js HttpApi#request). Wrapping that one method on this connection's own
 * Transport instance observes the wire without changing what jsforce does; `rewriteUrl` exists
 * only to add a documented query parameter that jsforce has no option for.
 * Returns an array of {method, url, requestHeaders, requestBody, status, headers, body}, the
 * response fields filled in as responses arrive.
 */
export function recordExchanges(conn, { rewriteUrl } = {}) {
  const log = [];
  const transport = conn._transport;
  const send = transport.httpRequest.bind(transport);
  transport.httpRequest = (req, options) => {
    if (rewriteUrl) req.url = rewriteUrl(req.url, req);
    const entry = {
      method: req.method,
      url: req.url,
      requestHeaders: { ...(req.headers ?? {}) },
      requestBody: typeof req.body === 'string' ? req.body : undefined, // streamed uploads: undefined
    };
    log.push(entry);
    const promise = send(req, options);
    promise.then(
      (res) => Object.assign(entry, { status: res.statusCode, headers: res.headers, body: res.body }),
      (err) => Object.assign(entry, { error: String(err) }),
    );
    return promise;
  };
  return log;
}

// Bulk API 2.0 `sf__Error` / Bulk API 1.0 `Error`: "STATUS_CODE:message:fields --", e.g.
// "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --". The message may
// itself contain colons, the field list never does.
export function parseBulkError(text) {
  const m = /^([A-Z_]+):([\s\S]*):([^:]*) --$/.exec(text ?? '');
  assert.ok(m, `not a Bulk error string 'CODE:message:fields --': ${JSON.stringify(text)}`);
  return { code: m[1], message: m[2], fields: m[3].split(',').filter(Boolean) };
}

/** CSV text with every value quoted ("" escapes a quote), rows joined by `eol`. */
export function toCsv(header, rows, { delimiter = ',', eol = '\n' } = {}) {
  const cell = (v) => `"${String(v ?? '').replace(/"/g, '""')}"`;
  return [header, ...rows.map((r) => header.map((h) => r[h]))].map((line) => line.map(cell).join(delimiter)).join(eol) + eol;
}

/** Drain a jsforce record stream (RecordStream / Parsable) into an array. */
export function readRecords(stream, timeoutMs = 120_000) {
  return new Promise((resolve, reject) => {
    const records = [];
    const timer = setTimeout(() => reject(new Error(`record stream did not end within ${timeoutMs} ms (${records.length} records so far)`)), timeoutMs);
    stream.on('record', (r) => records.push(r));
    stream.on('end', () => {
      clearTimeout(timer);
      resolve(records);
    });
    stream.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Parse CSV text (RFC 4180 quoting, "" escapes, LF or CRLF) into rows of strings. */
export function parseCsvRows(text, delimiter = ',') {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === delimiter) {
      row.push(cell);
      cell = '';
    } else if (c === '\n' || (c === '\r' && text[i + 1] === '\n')) {
      if (c === '\r') i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += c;
  }
  if (cell !== '' || row.length > 0) {
    row.push(cell);
    rows.push(row);
  }
  return rows;
}

/** CSV text with a header line into objects keyed by the header. */
export function parseCsvObjects(text, delimiter = ',') {
  const [header, ...rows] = parseCsvRows(text, delimiter);
  return rows.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i]])));
}
