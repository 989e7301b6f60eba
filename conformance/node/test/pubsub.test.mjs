// The Pub/Sub API (gRPC service eventbus.v1.PubSub at CONFLUX_GRPC_ADDR, TLS signed by
// CONFLUX_CA_FILE) against the unmodified salesforce-pubsub-api-client 5.5.2 (with avro-js pinned
// to 1.12.1: 1.12.2 requires 'underscore' without declaring it, so the client cannot be imported).
// jsforce defines the platform event and the CDC entity (Tooling API) and publishes over REST.
//
// Expectations are Salesforce's documented behaviour (Pub/Sub API Developer Guide, proto comments):
// GetTopic gives the schema id, GetSchema the Avro writer schema; a Subscribe stream starts at the
// tip (LATEST), the oldest retained event (EARLIEST) or after a replay id (CUSTOM), delivers no
// more events than requested, and later FetchRequests only add to the count; replay ids are
// 8-byte big-endian; an event's id is its EventUuid; CDC bitmaps name changed / nulled fields;
// Publish and PublishStream answer one PublishResult per event, correlation_key = ProducerEvent.id.
import {
  collector, env, passwordLogin, randomToken, toolingCreateField, toolingCreateObject,
} from '../support/conflux.mjs';
import {
  GRPC_ADDR, assertReplayId, cancelAll, connectClient, grpc, pause, sentOn, sink,
} from '../support/pubsub.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, afterEach, before, describe, test } from 'node:test';
import jsforce from 'jsforce';

const TIMEOUT = { timeout: 120_000 };
const V = '59.0';
const run = randomToken();
const EVENT = `JsPs_${run}__e`;
const PE = `/event/${EVENT}`;
const OBJECT = `JsPsCdc_${run}__c`;
const CDC = `/data/JsPsCdc_${run}__ChangeEvent`;
const QUIET_MS = 1500; // how long "nothing more arrives" is watched
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let conn; // jsforce admin session (plain HTTP): set-up and REST publishing
const clients = [];
const published = []; // {model, id} in publication order on PE (id = EventUuid / correlation key)

async function client(config, options) {
  const c = await connectClient(conn, config, options);
  clients.push(c);
  return c;
}

/** REST publish: 201 OPERATION_ENQUEUED whose message is the EventUuid (= Pub/Sub event id). */
async function restPublish(model) {
  const r = await conn.sobject(EVENT).create({ Printer_Model__c: model, Ink_Percentage__c: 0.5 });
  assert.equal(r.success, true, JSON.stringify(r));
  assert.equal(r.errors[0].statusCode, 'OPERATION_ENQUEUED', JSON.stringify(r));
  published.push({ model, id: r.errors[0].message });
  return r.errors[0].message;
}

/** A payload as avro-js wants it for the writer schema: nullable fields as {type: value}. */
function pePayload(model, ink = 0.25) {
  return {
    CreatedDate: Date.now(), // required long; the server does not validate it (doc)
    CreatedById: '005000000000000AAA',
    Printer_Model__c: { string: model },
    Ink_Percentage__c: ink === null ? null : { double: ink },
  };
}

function checkPe(e, { model, id }) {
  assert.equal(e.id, id, JSON.stringify(e));
  assert.equal(typeof e.schemaId, 'string');
  assertReplayId(e.replayId);
  assert.equal(e.payload.Printer_Model__c, model, JSON.stringify(e)); // union flattened by the client
  assert.equal(typeof e.payload.CreatedDate, 'number'); // long via the client's BigInt-safe type
  assert.ok(Math.abs(e.payload.CreatedDate - Date.now()) < 3_600_000, `CreatedDate ${e.payload.CreatedDate}`);
  assert.match(e.payload.CreatedById, /^005/);
}

const increasing = (ids) => ids.every((id, k) => k === 0 || id > ids[k - 1]);

before(async () => {
  conn = await passwordLogin(jsforce.Connection, V);
  const created = await conn.tooling.sobject('CustomObject').create({
    FullName: EVENT,
    Metadata: { label: `JsPs ${run}`, pluralLabel: `JsPs ${run}`, publishBehavior: 'PublishImmediately' },
  });
  assert.equal(created.success, true, JSON.stringify(created));
  await toolingCreateField(conn, EVENT, 'Printer_Model__c', { type: 'Text', label: 'Model', length: 40 });
  await toolingCreateField(conn, EVENT, 'Ink_Percentage__c', { type: 'Number', label: 'Ink', precision: 16, scale: 2 });

  const object = await toolingCreateObject(conn, OBJECT, `JsPsCdc ${run}`);
  assert.equal(object.success, true, JSON.stringify(object));
  await toolingCreateField(conn, OBJECT, 'Amount__c', { type: 'Number', label: 'Amount', precision: 16, scale: 2 });
  const member = await conn.tooling.sobject('PlatformEventChannelMember').create({
    FullName: `ChangeEvents_JsPsCdc_${run}__ChangeEvent`,
    Metadata: { eventChannel: 'ChangeEvents', selectedEntity: `JsPsCdc_${run}__ChangeEvent` },
  });
  assert.equal(member.success, true, JSON.stringify(member));
});

afterEach(cancelAll); // every subscription stream is per test
after(async () => {
  await cancelAll();
  for (const c of clients) c.close();
});

describe('salesforce-pubsub-api-client: platform events', () => {
  test('publish: GetTopic, GetSchema, Publish; the result has the replay id and our correlation key', TIMEOUT, async () => {
    const c = await client();
    const key = crypto.randomUUID();
    const result = await c.publish(PE, pePayload('PS-1'), key);
    assertReplayId(result.replayId);
    assert.equal(result.correlationKey, key);
    assert.equal(result.error, undefined, JSON.stringify(result));
    published.push({ model: 'PS-1', id: key });
    // What the client asked for: GetTopic, GetSchema (schema not cached yet), Publish.
    for (const m of ['GetTopic', 'GetSchema', 'Publish']) assert.equal(sentOn(m).length, 1, `${m} calls`);
    assert.deepEqual(sentOn('GetTopic')[0], { topicName: PE });
    const [req] = sentOn('Publish');
    assert.equal(req.topicName, PE);
    assert.equal(req.events.length, 1);
    assert.equal(req.events[0].id, key);
  });

  test('publishBatch: one PublishStream request, one response with a result per event', TIMEOUT, async () => {
    const c = await client();
    const events = ['PS-2', 'PS-3', 'PS-4'].map((model) => ({ id: crypto.randomUUID(), payload: pePayload(model, null) }));
    const responses = [];
    const answered = new Promise((resolve, reject) => {
      c.publishBatch(PE, events, (info, type, data) => {
        if (type === 'publishResponse') {
          responses.push(data);
          resolve();
        } else if (type === 'error') reject(data);
      }).catch(reject);
    });
    await answered;
    const [res] = responses;
    assert.equal(res.results.length, 3, JSON.stringify(res));
    assert.deepEqual(res.results.map((r) => r.correlationKey), events.map((e) => e.id));
    res.results.forEach((r) => assertReplayId(r.replayId));
    assert.ok(increasing(res.results.map((r) => r.replayId)), 'replay ids increase in batch order');
    assert.equal(typeof res.schemaId, 'string');
    events.forEach((e, k) => published.push({ model: `PS-${k + 2}`, id: e.id }));
    assert.equal(sentOn('PublishStream').length, 1);
  });

  test('events published over Pub/Sub reach CometD subscribers (jsforce streaming)', TIMEOUT, async () => {
    const got = collector();
    const faye = conn.streaming.createClient();
    try {
      await faye.subscribe(PE, (m) => got.push(m));
      const c = await client();
      const key = crypto.randomUUID();
      const result = await c.publish(PE, pePayload('PS-CometD', 0.75), key);
      assert.equal(result.error, undefined, JSON.stringify(result));
      published.push({ model: 'PS-CometD', id: key });
      const [m] = await got.until(1);
      assert.equal(m.event.EventUuid, key, 'the Pub/Sub event id is the EventUuid CometD sees');
      assert.equal(m.event.replayId, result.replayId, 'one replay id for both APIs');
      assert.equal(m.payload.Printer_Model__c, 'PS-CometD');
      assert.equal(m.payload.Ink_Percentage__c, 0.75);
      assert.match(m.payload.CreatedById, /^005/);
    } finally {
      faye.disconnect();
    }
  });

  test('REST publishes and Pub/Sub publishes share one stream', TIMEOUT, async () => {
    for (const model of ['R-1', 'R-2', 'R-3']) {
      assert.match(await restPublish(model), UUID_RE);
    }
  });

  test('EARLIEST replays every retained event in order, then lastEvent', TIMEOUT, async () => {
    const c = await client();
    const s = sink();
    c.subscribeFromEarliestEvent(PE, s.callback, published.length);
    await s.until(published.length);
    await s.lastEvent();
    const got = s.byReplayId();
    got.forEach((e, k) => checkPe(e, published[k]));
    assert.ok(increasing(got.map((e) => e.replayId)));
    assert.deepEqual(sentOn('Subscribe'), [{ topicName: PE, replayPreset: 1, numRequested: published.length }]);
    assert.ok(s.info.lastReplayId >= got.at(-1).replayId);
    // Only GetSchema calls for schema ids the events named.
    for (const req of sentOn('GetSchema')) assert.equal(req.schemaId, got[0].schemaId);
  });

  test('CUSTOM starts right after the given replay id', TIMEOUT, async () => {
    const all = sink();
    (await client()).subscribeFromEarliestEvent(PE, all.callback, published.length);
    await all.until(published.length);
    const ids = all.byReplayId().map((e) => e.replayId);
    await cancelAll();

    const c = await client();
    const s = sink();
    c.subscribeFromReplayId(PE, s.callback, 2, ids[1]);
    await s.until(2);
    const got = s.byReplayId();
    checkPe(got[0], published[2]);
    checkPe(got[1], published[3]);
    assert.deepEqual(got.map((e) => e.replayId), ids.slice(2, 4));
    const [first] = sentOn('Subscribe');
    assert.equal(first.replayPreset, 2);
    assert.equal(first.replayId.length, 8);
    assert.equal(Number(first.replayId.readBigUInt64BE()), ids[1]);
  });

  test('LATEST delivers only events published after the subscription', TIMEOUT, async () => {
    const before = published.length;
    const c = await client();
    const s = sink();
    c.subscribe(PE, s.callback, 3); // no replayPreset field on the wire: proto3 default LATEST
    // The protocol has no subscribe acknowledgement: publish until the first one shows up.
    let first = null;
    for (let k = 0; k < 20 && !first; k++) {
      await restPublish(`L-${k}`);
      first = await s.until(1, 1500).then((e) => e[0], () => null);
    }
    assert.ok(first, 'a LATEST subscription received an event published after it');
    const at = published.findIndex((p) => p.id === first.id);
    assert.ok(at >= before, 'nothing retained from before the subscription was replayed');
    await restPublish('L-last-1');
    await restPublish('L-last-2');
    await s.until(3);
    const got = s.byReplayId();
    got.forEach((e, k) => checkPe(e, published[at + k]));
    assert.equal(sentOn('Subscribe')[0].replayPreset, undefined);
  });

  test('an unknown replay id ends the stream with INVALID_ARGUMENT', TIMEOUT, async () => {
    const c = await client();
    const s = sink();
    c.subscribeFromReplayId(PE, s.callback, 1, Number.MAX_SAFE_INTEGER);
    const err = await s.error();
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${err.code} ${err.details}`);
    assert.deepEqual(err.metadata.get('error-code'), ['sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted']);
    assert.equal(s.events.length, 0);
  });

  test('flow control: no more events than requested; a later request only adds to the count', TIMEOUT, async () => {
    while (published.length < 8) await restPublish(`F-${published.length}`);
    const c = await client();
    const s = sink();
    c.subscribeFromEarliestEvent(PE, s.callback, 3);
    await s.lastEvent();
    await pause(QUIET_MS);
    assert.equal(s.events.length, 3, 'exactly the 3 requested events');
    c.requestAdditionalEvents(PE, 2);
    await s.until(5);
    await pause(QUIET_MS);
    assert.equal(s.events.length, 5, 'exactly 2 more');
    s.byReplayId().forEach((e, k) => checkPe(e, published[k])); // the second request did not restart the replay
    assert.deepEqual(sentOn('Subscribe').map((r) => r.numRequested), [3, 2]);
    assert.deepEqual(sentOn('Subscribe')[1], { topicName: PE, numRequested: 2 });
  });

  test('an open-ended subscription is re-requested by 100s and never over-delivered', TIMEOUT, async () => {
    const c = await client();
    const start = published.length;
    const batch = Array.from({ length: 150 }, (_, k) => ({ id: crypto.randomUUID(), payload: pePayload(`B-${k}`, null) }));
    const anchor = sink();
    (await client()).subscribeFromEarliestEvent(PE, anchor.callback, start);
    await anchor.until(start);
    const lastBefore = anchor.byReplayId().at(-1).replayId;
    await cancelAll();

    await new Promise((resolve, reject) => {
      c.publishBatch(PE, batch, (info, type, data) => (type === 'publishResponse' ? resolve() : type === 'error' && reject(data)));
    });
    batch.forEach((e, k) => published.push({ model: `B-${k}`, id: e.id }));

    const s = sink();
    const over = [];
    const requested = () => sentOn('Subscribe').reduce((n, r) => n + Math.min(100, r.numRequested), 0);
    const cb = s.callback;
    s.callback = (info, type, data) => {
      if (type === 'event' && s.events.length + 1 > requested()) over.push(data.replayId);
      cb(info, type, data);
    };
    const sub = await client();
    sub.subscribeFromReplayId(PE, s.callback, null, lastBefore);
    await s.until(150, 60_000);
    assert.deepEqual(over, [], 'events beyond the outstanding request count');
    assert.deepEqual(s.byReplayId().map((e) => e.id), batch.map((e) => e.id));
    assert.deepEqual(sentOn('Subscribe').map((r) => r.numRequested), [100, 100]);
  });
});

describe('salesforce-pubsub-api-client: change data capture', () => {
  const records = []; // {id, name, amount}
  let ids; // replay ids of the change events, in order

  function header(e) {
    const h = e.payload.ChangeEventHeader;
    assert.ok(h, JSON.stringify(e));
    assert.equal(h.entityName, OBJECT);
    assert.equal(typeof h.commitTimestamp, 'number');
    assert.equal(typeof h.transactionKey, 'string');
    assert.match(h.commitUser, /^005/);
    return h;
  }

  test('EARLIEST: CREATE and UPDATE events, bitmaps expanded to field names', TIMEOUT, async () => {
    for (const [name, amount] of [['C-1', 10], ['C-2', 20]]) {
      const r = await conn.sobject(OBJECT).create({ Name: name, Amount__c: amount });
      assert.equal(r.success, true, JSON.stringify(r));
      records.push({ id: r.id, name, amount });
    }
    await conn.sobject(OBJECT).update({ Id: records[0].id, Amount__c: 15 });
    await conn.sobject(OBJECT).update({ Id: records[1].id, Amount__c: null });

    const c = await client();
    const s = sink();
    c.subscribeFromEarliestEvent(CDC, s.callback, 4);
    await s.until(4);
    await s.lastEvent();
    const got = s.byReplayId();
    ids = got.map((e) => e.replayId);
    assert.ok(increasing(ids));
    assert.deepEqual(s.errors(), [], 'no EventParseError (bitmaps must be 0x + uppercase hex)');

    got.slice(0, 2).forEach((e, k) => {
      const h = header(e);
      assert.equal(h.changeType, 'CREATE');
      assert.deepEqual(h.recordIds.map((x) => x.slice(0, 15)), [records[k].id.slice(0, 15)]);
      assert.deepEqual(h.changedFields, []);
      assert.deepEqual(h.nulledFields, []);
      assert.equal(e.payload.Name, records[k].name);
      assert.equal(e.payload.Amount__c, records[k].amount);
      assert.equal(typeof e.payload.CreatedDate, 'number');
      assert.match(e.id, UUID_RE);
    });

    const upd = header(got[2]);
    assert.equal(upd.changeType, 'UPDATE');
    assert.deepEqual([...upd.changedFields].sort(), ['Amount__c', 'LastModifiedDate']);
    assert.deepEqual(upd.nulledFields, []);
    assert.equal(got[2].payload.Amount__c, 15);
    assert.equal(got[2].payload.Name, null, 'unchanged fields are null in an UPDATE');

    const nulled = header(got[3]);
    assert.equal(nulled.changeType, 'UPDATE');
    assert.deepEqual(nulled.nulledFields, ['Amount__c']);
    assert.ok(nulled.changedFields.includes('Amount__c') && nulled.changedFields.includes('LastModifiedDate'),
      JSON.stringify(nulled.changedFields));
    assert.equal(got[3].payload.Amount__c, null);
  });

  test('CUSTOM resumes after a stored replay id; LATEST sees only new changes', TIMEOUT, async () => {
    const custom = sink();
    (await client()).subscribeFromReplayId(CDC, custom.callback, 2, ids[1]);
    await custom.until(2);
    const resumed = custom.byReplayId();
    assert.deepEqual(resumed.map((e) => e.replayId), ids.slice(2, 4));
    await cancelAll();

    const latest = sink();
    (await client()).subscribe(CDC, latest.callback, 1);
    let seen = null;
    for (let k = 0; k < 20 && !seen; k++) {
      const r = await conn.sobject(OBJECT).create({ Name: `Live-${k}`, Amount__c: k });
      assert.equal(r.success, true);
      seen = await latest.until(1, 1500).then((e) => e[0], () => null);
    }
    assert.ok(seen, 'a LATEST CDC subscription received a change made after it');
    assert.ok(seen.replayId > ids[3]);
    assert.equal(header(seen).changeType, 'CREATE');
    assert.match(seen.payload.Name, /^Live-/);
  });
});

describe('salesforce-pubsub-api-client: authentication and TLS', () => {
  const probe = async (c) => {
    const key = crypto.randomUUID();
    const r = await c.publish(PE, pePayload('AUTH'), key);
    assert.equal(r.correlationKey, key);
    published.push({ model: 'AUTH', id: key });
  };

  test('user-supplied: tenantid is the 15-character org id cut from the token', TIMEOUT, async () => {
    assert.match(conn.accessToken, /^00D[0-9A-Za-z]{12}!/, 'tokens are <orgId15>!<opaque>');
    await probe(await client());
  });

  test('username-password: jsforce SOAP login at {loginUrl}/services/Soap/u/50.0', TIMEOUT, async () => {
    await probe(await client({
      authType: 'username-password', loginUrl: env.httpsUrl, username: env.username, password: env.password,
      accessToken: undefined, instanceUrl: undefined,
    }));
  });

  test('oauth-client-credentials: /services/oauth2/token then /services/oauth2/userinfo', TIMEOUT, async () => {
    // undici's fetch does not use https.globalAgent: the plain-HTTP base URL avoids a CA set-up.
    await probe(await client({
      authType: 'oauth-client-credentials', loginUrl: env.httpUrl, clientId: env.clientId, clientSecret: env.clientSecret,
      accessToken: undefined, instanceUrl: undefined,
    }));
  });

  test('oauth-jwt-bearer: the assertion audience is loginUrl itself', TIMEOUT, async () => {
    // The client signs {iss: clientId, sub: username, aud: loginUrl} (dist/client.js:499-505).
    await probe(await client({
      authType: 'oauth-jwt-bearer', loginUrl: env.httpUrl, clientId: env.clientId, username: env.username,
      privateKey: fs.readFileSync(env.jwtKeyFile, 'utf8'), accessToken: undefined, instanceUrl: undefined,
    }));
  });

  test('TLS is verified: the bundled public roots refuse the Conflux certificate', TIMEOUT, async () => {
    const strict = await client({}, { bundledRoots: true });
    await assert.rejects(strict.publish(PE, pePayload('TLS')), (err) => {
      assert.equal(err.cause?.code, grpc.status.UNAVAILABLE, String(err.cause));
      return true;
    });
    const lax = await client({ rejectUnauthorizedSsl: false }, { bundledRoots: true });
    await probe(lax);
  });

  test('a bad token is refused', TIMEOUT, async () => {
    const c = await client({ accessToken: `${conn.accessToken.split('!')[0]}!not-a-session` });
    await assert.rejects(c.publish(PE, pePayload('X')), (err) => {
      assert.equal(err.cause?.code, grpc.status.UNAUTHENTICATED, String(err.cause));
      assert.deepEqual(err.cause.metadata.get('error-code'), ['sfdc.platform.eventbus.grpc.service.auth.error']);
      return true;
    });
  });
});

describe('salesforce-pubsub-api-client: managed subscriptions (beta)', () => {
  test('Tooling lookup, ManagedSubscribe, commitReplayId, resume after the commit', TIMEOUT, async () => {
    const name = `JsPsManaged_${run}`;
    const created = await conn.tooling.sobject('ManagedEventSubscription').create({
      FullName: name,
      Metadata: { label: name, topicName: PE, defaultReplay: 'EARLIEST', errorRecoveryReplay: 'EARLIEST', state: 'RUN' },
    });
    assert.equal(created.success, true, JSON.stringify(created));
    assert.match(created.id, /^18x/);

    const c = await client();
    const s = sink();
    await c.subscribeWithManagedSubscription(name, s.callback, 2);
    await s.until(2);
    const got = s.byReplayId();
    got.forEach((e, k) => checkPe(e, published[k]));
    assert.equal(s.info.subscriptionId, created.id);
    const requestId = c.commitReplayId(created.id, got[1].replayId);
    assert.match(requestId, UUID_RE);
    await pause(QUIET_MS); // the commit answer arrives as an event-less ManagedFetchResponse
    const sent = sentOn('ManagedSubscribe');
    assert.deepEqual(sent[0], { subscriptionId: created.id, numRequested: 2 });
    assert.equal(sent[1].commitReplayIdRequest.commitRequestId, requestId);
    assert.equal(Number(sent[1].commitReplayIdRequest.replayId.readBigUInt64BE()), got[1].replayId);
    await cancelAll();
    await pause(1000); // let the server see the cancel before the same subscription is used again

    const again = sink();
    await (await client()).subscribeWithManagedSubscription(created.id, again.callback, 1); // by id this time
    const [next] = await again.until(1);
    checkPe(next, published[2]);
  });
});

test('CONFLUX_GRPC_ADDR is a host:port', () => {
  assert.match(GRPC_ADDR, /^[^:]+:\d+$|^\[[^\]]+\]:\d+$/);
});
