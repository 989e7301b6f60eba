// Change Data Capture and PushTopic channels of the Streaming API against the same unmodified
// clients as streaming.test.mjs: jsforce 3.10.16 streaming (faye) and cometd 9.0.0 with
// cometd-nodejs-client 2.0.0. jsforce defines the objects (Tooling API), selects the entity
// (PlatformEventChannelMember on ChangeEvents) and creates the PushTopic (a PushTopic record).
//
// Expectations are Salesforce's documented behaviour (Change Data Capture Developer Guide,
// Streaming API Developer Guide): /data/<Name>__ChangeEvent carries {schema, payload:
// {ChangeEventHeader, fields…}, event: {replayId}}; CREATE bodies hold the non-null fields,
// UPDATE bodies the changed ones with changedFields naming them (LastModifiedDate included);
// /topic/<Name> carries {event: {createdDate, replayId, type}, sobject: {Id, selected fields}}
// for records matching the topic's query.
import {
  collector, env, passwordLogin, randomToken, toolingCreateField, toolingCreateObject,
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
const run = randomToken().slice(0, 8);
const OBJECT = `JsCdc_${run}__c`;
const CDC = `/data/JsCdc_${run}__ChangeEvent`;
const TOPIC_NAME = `JsBig${run}`;
const TOPIC = `/topic/${TOPIC_NAME}`;

let conn;
const clients = [];
const created = []; // {id, name, amount} in creation order

async function createRecord(name, amount) {
  const r = await conn.sobject(OBJECT).create({ Name: name, Amount__c: amount });
  assert.equal(r.success, true, JSON.stringify(r));
  created.push({ id: r.id, name, amount });
  return r.id;
}

function checkCreate(m, { id, name, amount }) {
  const h = m.payload.ChangeEventHeader;
  assert.equal(h.entityName, OBJECT, JSON.stringify(m));
  assert.equal(h.changeType, 'CREATE');
  assert.deepEqual(h.recordIds.map((x) => x.slice(0, 15)), [id.slice(0, 15)]);
  assert.deepEqual(h.changedFields, []);
  assert.equal(typeof h.commitTimestamp, 'number');
  assert.equal(typeof h.transactionKey, 'string');
  assert.equal(h.sequenceNumber, 1);
  assert.match(h.commitUser, /^005/);
  assert.equal(m.payload.Name, name);
  assert.equal(m.payload.Amount__c, amount);
  assert.match(m.payload.CreatedDate, /Z$/);
  assert.equal(typeof m.event.replayId, 'number');
}

before(async () => {
  conn = await passwordLogin(jsforce.Connection, V);
  const object = await toolingCreateObject(conn, OBJECT, `JsCdc ${run}`);
  assert.equal(object.success, true, JSON.stringify(object));
  await toolingCreateField(conn, OBJECT, 'Amount__c', { type: 'Number', label: 'Amount', precision: 16, scale: 2 });
  const member = await conn.tooling.sobject('PlatformEventChannelMember').create({
    FullName: `ChangeEvents_JsCdc_${run}__ChangeEvent`,
    Metadata: { eventChannel: 'ChangeEvents', selectedEntity: `JsCdc_${run}__ChangeEvent` },
  });
  assert.equal(member.success, true, JSON.stringify(member));
  const topic = await conn.sobject('PushTopic').create({
    Name: TOPIC_NAME,
    Query: `SELECT Id, Name, Amount__c FROM ${OBJECT} WHERE Amount__c > 100`,
    ApiVersion: 59.0,
    NotifyForFields: 'Referenced',
  });
  assert.equal(topic.success, true, JSON.stringify(topic));
});

after(() => {
  for (const c of clients) c.disconnect();
});

describe('jsforce streaming (faye): change events and PushTopics', () => {
  test('a CDC channel and a PushTopic receive the changes in order', TIMEOUT, async () => {
    const changes = collector();
    const notes = collector();
    await conn.streaming.topic(CDC).subscribe((m) => changes.push(m));
    clients.push(conn.streaming._getFayeClient(CDC));
    await conn.streaming.topic(TOPIC).subscribe((m) => notes.push(m));
    clients.push(conn.streaming._getFayeClient(TOPIC));

    const big = await createRecord('Big', 500);
    await createRecord('Small', 5);
    const got = await changes.until(2);
    checkCreate(got[0], created[0]);
    checkCreate(got[1], created[1]);
    assert.ok(got[1].event.replayId > got[0].event.replayId);

    const [note] = await notes.until(1);
    assert.equal(note.event.type, 'created', JSON.stringify(note));
    assert.match(note.event.createdDate, /^\d{4}-\d\d-\d\dT/);
    assert.equal(typeof note.event.replayId, 'number');
    assert.deepEqual(note.sobject, { Id: big, Name: 'Big', Amount__c: 500 });

    // An update: only the changed fields, named in changedFields; the topic sees it too.
    await conn.sobject(OBJECT).update({ Id: big, Amount__c: 750 });
    const [, , update] = await changes.until(3);
    const h = update.payload.ChangeEventHeader;
    assert.equal(h.changeType, 'UPDATE');
    assert.deepEqual([...h.changedFields].sort(), ['Amount__c', 'LastModifiedDate']);
    assert.equal(update.payload.Amount__c, 750);
    assert.equal(update.payload.Name, undefined, 'unchanged fields are left out');
    const [, updated] = await notes.until(2);
    assert.equal(updated.event.type, 'updated');
    assert.equal(updated.sobject.Amount__c, 750);
    assert.equal(notes.messages.length, 2, 'the small record never matched the topic');
  });

  test('-2 replays the retained change events; a stored replay id resumes after it', TIMEOUT, async () => {
    const all = collector();
    const everything = conn.streaming.createClient([new StreamingExtension.Replay(CDC, -2)]);
    clients.push(everything);
    await everything.subscribe(CDC, (m) => all.push(m));
    const replayed = await all.until(3);
    checkCreate(replayed[0], created[0]);
    checkCreate(replayed[1], created[1]);
    assert.equal(replayed[2].payload.ChangeEventHeader.changeType, 'UPDATE');

    const last = replayed[2].event.replayId;
    everything.disconnect();
    await createRecord('Missed 1', 1);
    await createRecord('Missed 2', 2);
    const missed = collector();
    const again = conn.streaming.createClient([new StreamingExtension.Replay(CDC, last)]);
    clients.push(again);
    await again.subscribe(CDC, (m) => missed.push(m));
    const got = await missed.until(2);
    checkCreate(got[0], created[2]);
    checkCreate(got[1], created[3]);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(missed.messages.length, 2, 'exactly the missed events');
  });
});

describe('cometd + cometd-nodejs-client: change events and PushTopics', () => {
  test('replays both channels from -2 and receives live changes', TIMEOUT, async () => {
    adapt();
    const cometd = new CometD();
    cometd.configure({
      url: `${env.httpUrl}/cometd/${V}`,
      requestHeaders: { Authorization: `Bearer ${conn.accessToken}` },
      appendMessageTypeToURL: false,
    });
    cometd.registerExtension('replay', {
      outgoing(message) {
        if (message.channel === '/meta/subscribe') {
          message.ext = { ...(message.ext || {}), replay: { [message.subscription]: -2 } };
        }
        return message;
      },
    });
    await new Promise((resolve) => {
      cometd.addListener('/meta/handshake', (m) => {
        if (m.successful) resolve(m);
      });
      cometd.handshake();
    });
    const changes = collector();
    const notes = collector();
    for (const [channel, sink] of [[CDC, changes], [TOPIC, notes]]) {
      const ok = await new Promise((resolve) => {
        cometd.subscribe(channel, (m) => sink.push(m.data), resolve);
      });
      assert.equal(ok.successful, true, JSON.stringify(ok));
    }
    // In commit order: two creates, the update, the two creates made while nobody listened.
    const retained = await changes.until(5);
    checkCreate(retained[0], created[0]);
    checkCreate(retained[1], created[1]);
    assert.equal(retained[2].payload.ChangeEventHeader.changeType, 'UPDATE');
    checkCreate(retained[3], created[2]);
    checkCreate(retained[4], created[3]);
    const topicNotes = await notes.until(2);
    assert.deepEqual(topicNotes.map((n) => n.event.type), ['created', 'updated']);

    const id = await createRecord('Live', 101);
    const live = await changes.until(6);
    checkCreate(live[5], created[4]);
    const [, , note] = await notes.until(3);
    assert.deepEqual(note.sobject, { Id: id, Name: 'Live', Amount__c: 101 });
    await new Promise((resolve) => cometd.disconnect(resolve));
  });
});
