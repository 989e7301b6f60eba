// jsforce 3.10.16 against Conflux: describe, Tooling API custom objects, CRUD, upsert,
// relationship queries and the errors jsforce surfaces.
import {
  env,
  JSFORCE_DEFAULT_VERSION as V,
  DATETIME_RE,
  assertSaveResult,
  assertValidId,
  randomId,
  randomToken,
  rejection,
  soqlQuote,
  toolingCreateField,
  toolingCreateObject,
} from '../support/conflux.mjs';
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import jsforce from 'jsforce';

const TIMEOUT = { timeout: 120_000 };
const run = randomToken();
const CUSTOM = `JsConf_${run}__c`;
const CHILD_REL = `JsConfs_${run}__r`;

let conn; // OAuth2 password login over plain HTTP, jsforce default API version
let adminId;
let tooling = {};

before(async () => {
  conn = new jsforce.Connection({
    loginUrl: env.httpUrl,
    oauth2: { clientId: env.clientId, clientSecret: env.clientSecret, loginUrl: env.httpUrl },
  });
  adminId = (await conn.login(env.username, env.password)).id;

  tooling.object = await toolingCreateObject(conn, CUSTOM, `JsConf ${run}`);
  tooling.External_Id__c = await toolingCreateField(conn, CUSTOM, 'External_Id__c', {
    type: 'Text',
    label: 'External Id',
    length: 80,
    externalId: true,
    unique: true,
    required: false,
  });
  tooling.Amount__c = await toolingCreateField(conn, CUSTOM, 'Amount__c', {
    type: 'Number',
    label: 'Amount',
    precision: 16,
    scale: 2,
    required: false,
  });
  tooling.Account__c = await toolingCreateField(conn, CUSTOM, 'Account__c', {
    type: 'Lookup',
    label: 'Account',
    referenceTo: 'Account',
    relationshipName: CHILD_REL.replace(/__r$/, ''),
    relationshipLabel: `JsConfs ${run}`,
    deleteConstraint: 'SetNull',
    required: false,
  });
});

function fieldsByName(desc) {
  return Object.fromEntries(desc.fields.map((f) => [f.name, f]));
}

function assertField(fields, name, type, expected = {}) {
  const f = fields[name];
  assert.ok(f, `field ${name} missing; have ${Object.keys(fields).sort().join(', ')}`);
  assert.equal(f.type, type, `${name}.type`);
  for (const [k, v] of Object.entries(expected)) assert.deepEqual(f[k], v, `${name}.${k}`);
}

describe('Tooling API and describe', () => {
  test('custom object and fields were created', () => {
    for (const [what, res] of Object.entries(tooling)) {
      assert.equal(res.success, true, `${what}: ${JSON.stringify(res)}`);
      assertValidId(res.id);
    }
  });

  test('describeGlobal lists standard objects and the new custom object', TIMEOUT, async () => {
    const g = await conn.describeGlobal();
    const byName = Object.fromEntries(g.sobjects.map((s) => [s.name, s]));
    for (const [name, prefix] of Object.entries({ Account: '001', Contact: '003', Lead: '00Q', Opportunity: '006', Case: '500', User: '005' })) {
      assert.equal(byName[name]?.keyPrefix, prefix, name);
    }
    assert.equal(byName[CUSTOM]?.custom, true, `${CUSTOM} missing or not custom`);
    assert.equal(byName[CUSTOM].urls.sobject, `/services/data/v${V}/sobjects/${CUSTOM}`);
  });

  test('describe(Account) has typed fields and child relationships', TIMEOUT, async () => {
    const d = await conn.describe('Account');
    assert.equal(d.name, 'Account');
    assert.equal(d.keyPrefix, '001');
    const fields = fieldsByName(d);
    assertField(fields, 'Id', 'id');
    assertField(fields, 'Name', 'string', { nameField: true });
    assertField(fields, 'NumberOfEmployees', 'int');
    assertField(fields, 'OwnerId', 'reference', { referenceTo: ['User'], relationshipName: 'Owner' });
    assertField(fields, 'CreatedDate', 'datetime');
    const rels = d.childRelationships;
    assert.ok(rels.some((r) => r.childSObject === 'Contact' && r.field === 'AccountId' && r.relationshipName === 'Contacts'));
    assert.ok(
      rels.some((r) => r.childSObject === CUSTOM && r.field === 'Account__c' && r.relationshipName === CHILD_REL),
      'the new lookup adds a child relationship on Account',
    );
  });

  test('describe(custom object) has the new fields at once', TIMEOUT, async () => {
    const d = await conn.describe(CUSTOM);
    assert.equal(d.custom, true);
    assert.match(d.keyPrefix, /^[0-9A-Za-z]{3}$/);
    const fields = fieldsByName(d);
    assertField(fields, 'Name', 'string', { nameField: true });
    assertField(fields, 'External_Id__c', 'string', { externalId: true, unique: true, length: 80, custom: true });
    assertField(fields, 'Amount__c', 'double', { precision: 16, scale: 2 });
    assertField(fields, 'Account__c', 'reference', { referenceTo: ['Account'], relationshipName: 'Account__r' });
  });

  test('describe of an unknown object is NOT_FOUND', TIMEOUT, async () => {
    const err = await rejection(conn.describe(`NoSuch_${run}__c`));
    assert.equal(err.errorCode, 'NOT_FOUND', String(err));
  });
});

describe('CRUD', () => {
  test('Account create / retrieve / update / destroy', TIMEOUT, async () => {
    const name = `Js Account ${run}`;
    const id = assertSaveResult(await conn.sobject('Account').create({ Name: name, NumberOfEmployees: 7 }), '001');
    const rec = await conn.sobject('Account').retrieve(id);
    assert.deepEqual(rec.attributes, { type: 'Account', url: `/services/data/v${V}/sobjects/Account/${id}` });
    assert.equal(rec.Id, id);
    assert.equal(rec.Name, name);
    assert.equal(rec.NumberOfEmployees, 7);
    assert.equal(rec.OwnerId, adminId);
    assert.match(rec.CreatedDate, DATETIME_RE);

    const part = await conn.sobject('Account').retrieve(id, { fields: ['Name'] }); // ?fields=Name
    assert.equal(part.Name, name);
    assert.equal('NumberOfEmployees' in part, false, 'fields= restricts the record');

    // PATCH -> 204; jsforce turns it into {id, success: true, errors: []}
    assert.deepEqual(await conn.sobject('Account').update({ Id: id, Name: `${name} v2` }), { id, success: true, errors: [] });
    assert.equal((await conn.sobject('Account').retrieve(id)).Name, `${name} v2`);

    assert.deepEqual(await conn.sobject('Account').destroy(id), { id, success: true, errors: [] });
    const err = await rejection(conn.sobject('Account').retrieve(id));
    assert.ok(['ENTITY_IS_DELETED', 'NOT_FOUND'].includes(err.errorCode), String(err));
  });

  test('retrieve of an unknown id is NOT_FOUND', TIMEOUT, async () => {
    const err = await rejection(conn.sobject('Account').retrieve(randomId('001')));
    assert.equal(err.errorCode, 'NOT_FOUND', String(err));
  });

  test('record arrays at API 41.0 (parallel single-record calls, no collections)', TIMEOUT, async () => {
    const conn41 = new jsforce.Connection({ instanceUrl: conn.instanceUrl, accessToken: conn.accessToken, version: '41.0' });
    const names = [0, 1, 2].map((i) => `Js Array ${i} ${run}`);
    const created = await conn41.sobject('Account').create(names.map((Name) => ({ Name })));
    const ids = created.map((r) => assertSaveResult(r, '001'));

    const failed = await conn41.sobject('Account').create([{ Name: `Js Array ok ${run}` }, { NumberOfEmployees: 1 }]);
    assertSaveResult(failed[0], '001');
    assert.equal(failed[1].success, false);
    assert.equal(failed[1].errors[0].errorCode, 'REQUIRED_FIELD_MISSING');

    const recs = await conn41.retrieve('Account', ids);
    assert.deepEqual(recs.map((r) => r.Name), names);
    assert.equal(recs[0].attributes.url, `/services/data/v41.0/sobjects/Account/${ids[0]}`);

    const updated = await conn41.sobject('Account').update(ids.map((Id, i) => ({ Id, NumberOfEmployees: i })));
    assert.ok(updated.every((r) => r.success === true));
    const res = await conn41.query(`SELECT Id, NumberOfEmployees FROM Account WHERE Id IN ('${ids.join("','")}') ORDER BY NumberOfEmployees`);
    assert.deepEqual(res.records.map((r) => r.Id), ids);

    const destroyed = await conn41.sobject('Account').destroy(ids);
    assert.deepEqual(destroyed.map((r) => r.success), [true, true, true]);
  });

  test('Contact with an Account lookup and a date field', TIMEOUT, async () => {
    const accId = assertSaveResult(await conn.sobject('Account').create({ Name: `Js Contact Parent ${run}` }));
    const id = assertSaveResult(
      await conn.sobject('Contact').create({ FirstName: 'Ada', LastName: `Js ${run}`, Birthdate: '1815-12-10', AccountId: accId }),
      '003',
    );
    const rec = await conn.sobject('Contact').retrieve(id);
    assert.equal(rec.Name, `Ada Js ${run}`);
    assert.equal(rec.Birthdate, '1815-12-10');
    assert.equal(rec.AccountId, accId);
    await conn.sobject('Contact').update({ Id: id, AccountId: null });
    assert.equal((await conn.sobject('Contact').retrieve(id, { fields: ['AccountId'] })).AccountId, null);
  });

  test('custom object record round trip', TIMEOUT, async () => {
    const prefix = (await conn.describe(CUSTOM)).keyPrefix;
    const accId = assertSaveResult(await conn.sobject('Account').create({ Name: `Js Conf Parent ${run}` }));
    const id = assertSaveResult(
      await conn.sobject(CUSTOM).create({ Name: `crud ${run}`, External_Id__c: `crud-${run}`, Amount__c: 12.5, Account__c: accId }),
      prefix,
    );
    const rec = await conn.sobject(CUSTOM).retrieve(id);
    assert.equal(rec.attributes.type, CUSTOM);
    assert.equal(rec.Amount__c, 12.5);
    assert.equal(rec.Account__c, accId);
    assert.equal(rec.External_Id__c, `crud-${run}`);
    await conn.sobject(CUSTOM).update({ Id: id, Amount__c: 99.25 });
    assert.equal((await conn.sobject(CUSTOM).retrieve(id)).Amount__c, 99.25);
    await conn.sobject(CUSTOM).destroy(id);
    await rejection(conn.sobject(CUSTOM).retrieve(id));
  });
});

describe('upsert by external id', () => {
  test('API 50.0: insert (201, created: true) then update (200, created: false)', TIMEOUT, async () => {
    const ext = `js-up-${run}`;
    const first = await conn.sobject(CUSTOM).upsert({ External_Id__c: ext, Name: 'first', Amount__c: 1 }, 'External_Id__c');
    const id = assertSaveResult(first);
    assert.equal(first.created, true);
    const second = await conn.sobject(CUSTOM).upsert({ External_Id__c: ext, Name: 'second' }, 'External_Id__c');
    assert.deepEqual(second, { id, success: true, errors: [], created: false });
    const rec = await conn.sobject(CUSTOM).retrieve(id);
    assert.equal(rec.Name, 'second');
    assert.equal(rec.Amount__c, 1);
    const count = await conn.query(`SELECT COUNT() FROM ${CUSTOM} WHERE External_Id__c = ${soqlQuote(ext)}`);
    assert.equal(count.totalSize, 1);
  });

  test('API 45.0: update answers 204, which jsforce reports as success', TIMEOUT, async () => {
    const conn45 = new jsforce.Connection({ instanceUrl: conn.instanceUrl, accessToken: conn.accessToken, version: '45.0' });
    const ext = `js-up45-${run}`;
    const first = await conn45.sobject(CUSTOM).upsert({ External_Id__c: ext, Name: 'first' }, 'External_Id__c');
    const id = assertSaveResult(first);
    const second = await conn45.sobject(CUSTOM).upsert({ External_Id__c: ext, Name: 'second' }, 'External_Id__c');
    assert.deepEqual(second, { success: true, errors: [] }, 'a 204 body is replaced by jsforce noContentResponse');
    assert.equal((await conn45.sobject(CUSTOM).retrieve(id)).Name, 'second');
  });

  test('a duplicate value in a unique external id field is DUPLICATE_VALUE', TIMEOUT, async () => {
    const ext = `js-dup-${run}`;
    assertSaveResult(await conn.sobject(CUSTOM).create({ Name: 'one', External_Id__c: ext }));
    const err = await rejection(conn.sobject(CUSTOM).create({ Name: 'two', External_Id__c: ext }));
    assert.equal(err.errorCode, 'DUPLICATE_VALUE', String(err));
  });
});

describe('relationship queries', () => {
  test('parent fields, including an empty lookup', TIMEOUT, async () => {
    const accName = `Js Parent ${run}`;
    const accId = assertSaveResult(await conn.sobject('Account').create({ Name: accName }));
    const withParent = assertSaveResult(await conn.sobject('Contact').create({ LastName: `A Js ${run}`, AccountId: accId }));
    const orphan = assertSaveResult(await conn.sobject('Contact').create({ LastName: `B Js ${run}` }));
    const res = await conn.query(
      `SELECT Id, Name, Account.Name, Account.Owner.Name FROM Contact WHERE Id IN ('${withParent}', '${orphan}') ORDER BY LastName`,
    );
    assert.equal(res.totalSize, 2);
    assert.equal(res.done, true);
    const [a, b] = res.records;
    assert.deepEqual(Object.keys(a), ['attributes', 'Id', 'Name', 'Account']);
    assert.equal(a.Account.attributes.type, 'Account');
    assert.equal(a.Account.Name, accName);
    assert.equal(a.Account.Owner.attributes.type, 'User');
    assert.equal(typeof a.Account.Owner.Name, 'string');
    assert.equal(b.Account, null);
  });

  test('child subqueries: result object with children, null without', TIMEOUT, async () => {
    const withKids = assertSaveResult(await conn.sobject('Account').create({ Name: `Js Kids A ${run}` }));
    const noKids = assertSaveResult(await conn.sobject('Account').create({ Name: `Js Kids B ${run}` }));
    const k2 = assertSaveResult(await conn.sobject('Contact').create({ LastName: `Beta ${run}`, AccountId: withKids }));
    const k1 = assertSaveResult(await conn.sobject('Contact').create({ LastName: `Alpha ${run}`, AccountId: withKids }));
    const res = await conn.query(
      `SELECT Id, Name, (SELECT Id, LastName FROM Contacts ORDER BY LastName) FROM Account WHERE Id IN ('${withKids}', '${noKids}') ORDER BY Name`,
    );
    const [a, b] = res.records;
    assert.equal(a.Contacts.totalSize, 2);
    assert.equal(a.Contacts.done, true);
    assert.deepEqual(a.Contacts.records.map((r) => r.Id), [k1, k2]);
    assert.equal(a.Contacts.records[0].attributes.type, 'Contact');
    assert.equal(b.Contacts, null);

    // autoFetch walks child nextRecordsUrl when present; with small children it is a no-op
    const auto = await conn.query(
      `SELECT Id, (SELECT Id FROM Contacts) FROM Account WHERE Id = '${withKids}'`,
      { autoFetch: true },
    );
    assert.equal(auto.records[0].Contacts.records.length, 2);
  });

  test('custom lookup: Account__r parent path and the custom child relationship', TIMEOUT, async () => {
    const accName = `Js Custom Rel ${run}`;
    const accId = assertSaveResult(await conn.sobject('Account').create({ Name: accName }));
    const id = assertSaveResult(await conn.sobject(CUSTOM).create({ Name: `rel ${run}`, Account__c: accId }));
    const parent = await conn.query(`SELECT Id, Account__r.Name FROM ${CUSTOM} WHERE Id = '${id}'`);
    assert.equal(parent.records[0].Account__r.Name, accName);
    const child = await conn.query(`SELECT Id, (SELECT Id FROM ${CHILD_REL}) FROM Account WHERE Id = '${accId}'`);
    assert.deepEqual(child.records[0][CHILD_REL].records.map((r) => r.Id), [id]);
  });
});

describe('errors jsforce surfaces', () => {
  test('malformed SOQL is MALFORMED_QUERY', TIMEOUT, async () => {
    const err = await rejection(conn.query('SELECT Id FROM Account WHERE'));
    assert.equal(err.errorCode, 'MALFORMED_QUERY', String(err));
    assert.equal(typeof err.message, 'string');
  });

  test('unknown column is INVALID_FIELD, unknown object in FROM is INVALID_TYPE', TIMEOUT, async () => {
    assert.equal((await rejection(conn.query('SELECT Idd FROM Account'))).errorCode, 'INVALID_FIELD');
    assert.equal((await rejection(conn.query(`SELECT Id FROM NoSuch_${run}__c`))).errorCode, 'INVALID_TYPE');
  });

  test('a wrong JSON type for a field is rejected and nothing is created', TIMEOUT, async () => {
    const name = `Js Wrong Type ${run}`;
    const err = await rejection(conn.sobject('Account').create({ Name: name, NumberOfEmployees: 'abc' }));
    assert.ok(['JSON_PARSER_ERROR', 'INVALID_TYPE_ON_FIELD_IN_RECORD'].includes(err.errorCode), String(err));
    const res = await conn.query(`SELECT Id FROM Account WHERE Name = ${soqlQuote(name)}`);
    assert.equal(res.totalSize, 0);
  });

  test('a missing required field is REQUIRED_FIELD_MISSING', TIMEOUT, async () => {
    const err = await rejection(conn.sobject('Account').create({ NumberOfEmployees: 1 }));
    assert.equal(err.errorCode, 'REQUIRED_FIELD_MISSING', String(err));
    assert.deepEqual(err.data.fields, ['Name']);
  });
});
