// The Streaming API (CometD long polling at /cometd/NN.N) against two unmodified clients:
// jsforce 3.10.16's streaming (faye 1.4.3 underneath, with jsforce's Replay and AuthFailure
// extensions) and the CometD project's own JavaScript client (cometd 9.0.0 with
// cometd-nodejs-client 2.0.0, which tries WebSocket first and falls back to long polling).
//
// Expectations are Salesforce's documented behaviour (Platform Events Developer Guide, Streaming
// API Developer Guide): a platform event published through REST answers OPERATION_ENQUEUED with
// the EventUuid; subscribers receive events in publication order as
// {schema, payload: {CreatedDate, CreatedById, fields…}, event: {EventUuid, replayId}}; replay id
// -2 replays the retained events, a stored replay id replays exactly what came after it; a
// revoked session gets `401::Authentication invalid` with advice reconnect none.
import {
  collector, env, passwordLogin, randomToken, revoke, toolingCreateField,
} from '../support/conflux.mjs';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import jsforce from 'jsforce';
import streamingModule from 'jsforce/lib/api/streaming.js';
import { adapt } from 'cometd-nodejs-client';
import { CometD } from 'cometd';

const { StreamingExtension } = streamingModule;
const TIMEOUT = { timeout: 120_000 };
const V = '59.0';
const run = randomToken();
const EVENT = `JsInk_${run}__e`;
const CHANNEL = `/event/${EVENT}`;

let conn; // the publisher (and jsforce subscriber) session, over plain HTTP
const published = []; // {model, uuid} in publication order
const faye = []; // clients to disconnect at the end

const login = () => passwordLogin(jsforce.Connection, V);

async function publish(model) {
  const r = await conn.sobject(EVENT).create({ Printer_Model__c: model, Ink_Percentage__c: 0.5 });
  assert.equal(r.success, true, JSON.stringify(r));
  assert.equal(r.errors[0].statusCode, 'OPERATION_ENQUEUED', JSON.stringify(r));
  const uuid = r.errors[0].message;
  assert.match(uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  published.push({ model, uuid });
  return uuid;
}

function checkEvent(m, { model, uuid }) {
  assert.equal(m.payload.Printer_Model__c, model, JSON.stringify(m));
  assert.equal(m.payload.Ink_Percentage__c, 0.5);
  assert.match(m.payload.CreatedDate, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.match(m.payload.CreatedById, /^005/);
  assert.equal(m.event.EventUuid, uuid);
  assert.equal(typeof m.event.replayId, 'number');
  assert.equal(typeof m.schema, 'string');
}

before(async () => {
  conn = await login();
  const created = await conn.tooling.sobject('CustomObject').create({
    FullName: EVENT,
    Metadata: { label: `JsInk ${run}`, pluralLabel: `JsInk ${run}`, publishBehavior: 'PublishAfterCommit' },
  });
  assert.equal(created.success, true, JSON.stringify(created));
  await toolingCreateField(conn, EVENT, 'Printer_Model__c', { type: 'Text', label: 'Model', length: 40 });
  await toolingCreateField(conn, EVENT, 'Ink_Percentage__c', {
    type: 'Number', label: 'Ink', precision: 16, scale: 2,
  });
});

after(() => {
  for (const c of faye) c.disconnect();
});

describe('jsforce streaming (faye)', () => {
  test('a topic subscription receives every published event in order', TIMEOUT, async () => {
    const got = collector();
    const sub = conn.streaming.topic(CHANNEL).subscribe((m) => got.push(m));
    await sub; // the subscribe was acknowledged
    faye.push(conn.streaming._getFayeClient(CHANNEL));
    for (const model of ['A-1', 'A-2', 'A-3']) await publish(model);
    const messages = await got.until(3);
    messages.forEach((m, k) => checkEvent(m, published[k]));
    const ids = messages.map((m) => m.event.replayId);
    assert.deepEqual([...ids].sort((a, b) => a - b), ids, 'replay ids increase');
    assert.equal(new Set(ids).size, 3);
  });

  test('the Replay extension: -2 replays the retained log; a stored id replays what was missed', TIMEOUT, async () => {
    const all = collector();
    const everything = conn.streaming.createClient([new StreamingExtension.Replay(CHANNEL, -2)]);
    faye.push(everything);
    await everything.subscribe(CHANNEL, (m) => all.push(m));
    const replayed = await all.until(published.length);
    replayed.forEach((m, k) => checkEvent(m, published[k]));

    // Disconnect, miss two events, resubscribe from the last replay id seen.
    const last = replayed[replayed.length - 1].event.replayId;
    everything.disconnect();
    await publish('B-1');
    await publish('B-2');
    const missed = collector();
    const again = conn.streaming.createClient([new StreamingExtension.Replay(CHANNEL, last)]);
    faye.push(again);
    await again.subscribe(CHANNEL, (m) => missed.push(m));
    const got = await missed.until(2);
    checkEvent(got[0], published[published.length - 2]);
    checkEvent(got[1], published[published.length - 1]);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(missed.messages.length, 2, 'exactly the missed events, nothing twice');
  });

  test('an invalid replay id fails the subscribe with a 400 error', TIMEOUT, async () => {
    const client = conn.streaming.createClient([new StreamingExtension.Replay(CHANNEL, 987654321)]);
    faye.push(client);
    const error = await client.subscribe(CHANNEL, () => {}).then(
      () => null,
      (e) => e,
    );
    assert.ok(error, 'the subscribe must fail');
    assert.equal(error.code, 400, JSON.stringify(error)); // faye parsed the Bayeux error code
  });

  test('AuthFailure: a revoked session is told to stop (advice reconnect none)', TIMEOUT, async () => {
    const victim = await login();
    let failure = null;
    const failed = new Promise((resolve) => {
      const client = victim.streaming.createClient([
        new StreamingExtension.AuthFailure((m) => {
          failure = m;
          resolve();
        }),
      ]);
      faye.push(client);
      client.subscribe(CHANNEL, () => {}).then(async () => {
        await revoke(victim.accessToken);
        // The connect being held returns with this event; the next one meets the revoked session.
        await publish('C-1');
      });
    });
    await failed;
    assert.equal(failure.error, '401::Authentication invalid', JSON.stringify(failure));
    assert.equal(failure.advice.reconnect, 'none');
  });
});

describe('cometd + cometd-nodejs-client', () => {
  test('falls back to long polling, subscribes with replay and receives events', TIMEOUT, async () => {
    adapt();
    const cometd = new CometD();
    cometd.configure({
      url: `${env.httpUrl}/cometd/${V}`,
      requestHeaders: { Authorization: `Bearer ${conn.accessToken}` },
      appendMessageTypeToURL: false,
    });
    // Salesforce's sample replay extension: ext.replay on every subscribe.
    let replayFrom = -2;
    cometd.registerExtension('replay', {
      outgoing(message) {
        if (message.channel === '/meta/subscribe') {
          message.ext = { ...(message.ext || {}), replay: { [CHANNEL]: replayFrom } };
        }
        return message;
      },
    });
    // The first handshake attempt goes over WebSocket and fails (the server refuses upgrades);
    // the client then retries over long polling.
    const handshake = await new Promise((resolve) => {
      cometd.addListener('/meta/handshake', (m) => {
        if (m.successful) resolve(m);
      });
      cometd.handshake();
    });
    assert.equal(cometd.getTransport().type, 'long-polling');
    assert.deepEqual(handshake.supportedConnectionTypes, ['long-polling']);

    const got = collector();
    let handle;
    const subscribed = await new Promise((resolve) => {
      handle = cometd.subscribe(CHANNEL, (m) => got.push(m.data), resolve);
    });
    assert.equal(subscribed.successful, true, JSON.stringify(subscribed));
    const retained = await got.until(published.length);
    retained.forEach((m, k) => checkEvent(m, published[k]));

    await publish('D-1');
    const live = await got.until(published.length);
    checkEvent(live[live.length - 1], published[published.length - 1]);

    // Unsubscribe, miss one, resubscribe from the last id seen: exactly the missed one.
    replayFrom = live[live.length - 1].event.replayId;
    const gone = await new Promise((resolve) => cometd.unsubscribe(handle, resolve));
    assert.equal(gone.successful, true, JSON.stringify(gone));
    const missed = collector();
    const before = published.length;
    await publish('D-2');
    const again = await new Promise((resolve) => {
      cometd.subscribe(CHANNEL, (m) => missed.push(m.data), resolve);
    });
    assert.equal(again.successful, true, JSON.stringify(again));
    const got2 = await missed.until(1);
    checkEvent(got2[0], published[before]);
    await new Promise((resolve) => cometd.disconnect(resolve));
  });
});
