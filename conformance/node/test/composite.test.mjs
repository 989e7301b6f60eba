// jsforce 3.10.16 against Conflux: POST /composite through conn.requestPost, sObject Collections
// through jsforce's record-array API (API >= 42, upsert >= 46: lib/connection.js _createMany,
// _updateMany, _upsertMany, _destroyMany, _retrieveMany) and sObject Tree through requestPost.
//
// Expectations are Salesforce's documented behaviour (REST API Developer Guide: Composite,
// sObject Collections, sObject Tree):
// * /composite answers 200 whenever the request parsed, one subresponse per subrequest in order
//   ({body, httpHeaders, httpStatusCode, referenceId}); `@{ref.field}` resolves in url and body;
//   allOrNone true + a failure rolls everything back, the failing subrequest keeps its error and
//   every other one gets 400 PROCESSING_HALTED.
// * Collections answer 200 with a result per item in input order; per-record errors carry
//   `statusCode`; allOrNone true + a failure commits nothing, the other items report
//   ALL_OR_NONE_OPERATION_ROLLED_BACK. jsforce returns that array as is (no exception).
import {
  env,
  assertSaveResult,
  assertValidId,
  randomId,
  randomToken,
  rejection,
  recordExchanges,
  soqlQuote,
  toolingCreateField,
  toolingCreateObject,
} from '../support/conflux.mjs';
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import jsforce from 'jsforce';

const TIMEOUT = { timeout: 120_000 };
const V = '59.0';
const BASE = `/services/data/v${V}`;
const ROLLED_BACK = 'The transaction was rolled back since another operation in the same transaction failed.';
const run = randomToken();
const CUSTOM = `JsComp_${run}__c`;

let conn; // OAuth2 password login over plain HTTP at API 59.0

before(async () => {
  conn = new jsforce.Connection({
    loginUrl: env.httpUrl,
    version: V,
    oauth2: { clientId: env.clientId, clientSecret: env.clientSecret, loginUrl: env.httpUrl },
  });
  await conn.login(env.username, env.password);
  assert.equal((await toolingCreateObject(conn, CUSTOM, `JsComp ${run}`)).success, true);
  await toolingCreateField(conn, CUSTOM, 'External_Id__c', {
    type: 'Text', label: 'External Id', length: 80, externalId: true, unique: true, required: false,
  });
});

async function composite(allOrNone, compositeRequest) {
  const res = await conn.requestPost(`${BASE}/composite`, { allOrNone, compositeRequest });
  assert.deepEqual(Object.keys(res), ['compositeResponse']);
  assert.deepEqual(res.compositeResponse.map((r) => r.referenceId), compositeRequest.map((s) => s.referenceId));
  return res.compositeResponse;
}

async function count(soql) {
  return (await conn.query(soql)).totalSize;
}

function inList(ids) {
  return `(${ids.map(soqlQuote).join(', ')})`;
}

describe('POST /composite', () => {
  test('references: @{ref.id} in bodies and urls, Location headers, a 204 subresponse', TIMEOUT, async () => {
    const name = `Js cmp refs ${run}`;
    const [acc, con, get, patch] = await composite(false, [
      { method: 'POST', url: `${BASE}/sobjects/Account`, referenceId: 'refAccount', body: { Name: name } },
      { method: 'POST', url: `${BASE}/sobjects/Contact`, referenceId: 'refContact', body: { LastName: `Js cmp ${run}`, AccountId: '@{refAccount.id}' } },
      { method: 'GET', url: `${BASE}/sobjects/Account/@{refAccount.id}?fields=Name`, referenceId: 'refGet' },
      { method: 'PATCH', url: `${BASE}/sobjects/Contact/@{refContact.id}`, referenceId: 'refPatch', body: { Title: '@{refGet.Name}' } },
    ]);
    assert.equal(acc.httpStatusCode, 201);
    const accountId = assertSaveResult(acc.body, '001');
    assert.equal(acc.httpHeaders.Location, `${BASE}/sobjects/Account/${accountId}`);
    assert.equal(con.httpStatusCode, 201);
    const contactId = assertSaveResult(con.body, '003');
    assert.equal(get.httpStatusCode, 200);
    assert.equal(get.body.Name, name);
    assert.deepEqual([patch.httpStatusCode, patch.body], [204, null]);

    const rec = await conn.sobject('Contact').retrieve(contactId);
    assert.deepEqual([rec.AccountId, rec.Title], [accountId, name], 'references resolved inside bodies');
  });

  test('allOrNone false: independent subrequests commit, dependents of a failure are PROCESSING_HALTED', TIMEOUT, async () => {
    const okName = `Js cmp ok ${run}`;
    const depName = `Js cmp dep ${run}`;
    const [ok, bad, dependent] = await composite(false, [
      { method: 'POST', url: `${BASE}/sobjects/Account`, referenceId: 'refOk', body: { Name: okName } },
      { method: 'POST', url: `${BASE}/sobjects/Account`, referenceId: 'refBad', body: { NumberOfEmployees: 1 } },
      { method: 'POST', url: `${BASE}/sobjects/Contact`, referenceId: 'refDep', body: { LastName: depName, AccountId: '@{refBad.id}' } },
    ]);
    assert.equal(ok.httpStatusCode, 201);
    assert.equal(bad.httpStatusCode, 400);
    assert.deepEqual(bad.body, [{ errorCode: 'REQUIRED_FIELD_MISSING', message: 'Required fields are missing: [Name]', fields: ['Name'] }]);
    assert.equal(dependent.httpStatusCode, 400);
    assert.deepEqual(dependent.body.map((e) => e.errorCode), ['PROCESSING_HALTED']);
    assert.equal((await conn.sobject('Account').retrieve(ok.body.id)).Name, okName);
    assert.equal(await count(`SELECT Id FROM Contact WHERE LastName = ${soqlQuote(depName)}`), 0);
  });

  test('allOrNone true: one failure rolls back creates, updates and deletes', TIMEOUT, async () => {
    const kept = assertSaveResult(await conn.sobject('Account').create({ Name: `Js cmp keep ${run}`, NumberOfEmployees: 1 }));
    const survivor = assertSaveResult(await conn.sobject('Account').create({ Name: `Js cmp survivor ${run}` }));
    const newName = `Js cmp rolled back ${run}`;
    const out = await composite(true, [
      { method: 'POST', url: `${BASE}/sobjects/Account`, referenceId: 'refNew', body: { Name: newName } },
      { method: 'POST', url: `${BASE}/sobjects/Contact`, referenceId: 'refChild', body: { LastName: newName, AccountId: '@{refNew.id}' } },
      { method: 'PATCH', url: `${BASE}/sobjects/Account/${kept}`, referenceId: 'refUpdate', body: { NumberOfEmployees: 99 } },
      { method: 'DELETE', url: `${BASE}/sobjects/Account/${survivor}`, referenceId: 'refDelete' },
      { method: 'POST', url: `${BASE}/sobjects/Contact`, referenceId: 'refBad', body: { LastName: `x ${run}`, Email: 'not-an-email' } },
    ]);
    for (const sub of out.slice(0, 4)) {
      assert.equal(sub.httpStatusCode, 400, JSON.stringify(sub));
      assert.deepEqual(sub.body, [{ errorCode: 'PROCESSING_HALTED', message: ROLLED_BACK }]);
    }
    assert.equal(out[4].httpStatusCode, 400);
    assert.deepEqual(out[4].body, [{ errorCode: 'INVALID_EMAIL_ADDRESS', message: 'Email: invalid email address: not-an-email', fields: ['Email'] }]);

    assert.equal(await count(`SELECT Id FROM Account WHERE Name = ${soqlQuote(newName)}`), 0, 'the create was rolled back');
    assert.equal(await count(`SELECT Id FROM Contact WHERE LastName = ${soqlQuote(newName)}`), 0);
    assert.equal((await conn.sobject('Account').retrieve(kept)).NumberOfEmployees, 1, 'the update was rolled back');
    const still = await conn.query(`SELECT Id, IsDeleted FROM Account WHERE Id = '${survivor}'`);
    assert.deepEqual(still.records.map((r) => [r.Id, r.IsDeleted]), [[survivor, false]], 'the delete was rolled back');
  });
});

describe('sObject Collections through record arrays', () => {
  test('create: one save result per record, in order; failures carry statusCode', TIMEOUT, async () => {
    const log = recordExchanges(conn);
    const names = [0, 1].map((i) => `Js coll ${run} ${i}`);
    const res = await conn.sobject('Account').create([{ Name: names[0] }, { NumberOfEmployees: 2 }, { Name: names[1] }]);
    const call = log.find((e) => e.method === 'POST');
    assert.equal(new URL(call.url).pathname, `${BASE}/composite/sobjects`, 'jsforce uses collections at API >= 42');
    assert.equal(res.length, 3);
    assertSaveResult(res[0], '001');
    assertSaveResult(res[2], '001');
    assert.equal(res[1].success, false);
    assert.deepEqual(res[1].errors, [{ statusCode: 'REQUIRED_FIELD_MISSING', message: 'Required fields are missing: [Name]', fields: ['Name'] }]);
    const stored = await conn.query(`SELECT Id, Name FROM Account WHERE Id IN ${inList([res[0].id, res[2].id])} ORDER BY Name`);
    assert.deepEqual(stored.records.map((r) => r.Name), names);
  });

  test('create with allOrNone: nothing is committed', TIMEOUT, async () => {
    const name = `Js coll aon ${run}`;
    const res = await conn.sobject('Account').create([{ Name: name }, { Description: 'no name' }], { allOrNone: true });
    assert.deepEqual(res.map((r) => r.success), [false, false]);
    assert.deepEqual(res[0].errors.map((e) => e.statusCode), ['ALL_OR_NONE_OPERATION_ROLLED_BACK']);
    assert.deepEqual(res[1].errors.map((e) => e.statusCode), ['REQUIRED_FIELD_MISSING']);
    assert.equal(await count(`SELECT Id FROM Account WHERE Name = ${soqlQuote(name)}`), 0);
  });

  test('retrieve: records in the order asked, null for an unknown id, all fields when none given', TIMEOUT, async () => {
    const a = assertSaveResult(await conn.sobject('Account').create({ Name: `Js get a ${run}`, NumberOfEmployees: 1 }));
    const b = assertSaveResult(await conn.sobject('Account').create({ Name: `Js get b ${run}`, NumberOfEmployees: 2 }));
    const res = await conn.sobject('Account').retrieve([b, randomId('001'), a], { fields: ['Name', 'NumberOfEmployees'] });
    assert.equal(res.length, 3);
    assert.deepEqual(res[0].attributes, { type: 'Account', url: `${BASE}/sobjects/Account/${b}` });
    assert.deepEqual([res[0].Name, res[0].NumberOfEmployees], [`Js get b ${run}`, 2]);
    assert.equal(res[1], null);
    assert.equal(res[2].Name, `Js get a ${run}`);

    // without fields jsforce describes the object and asks for every field name
    const [full] = await conn.sobject('Account').retrieve([a]);
    const described = (await conn.describe('Account')).fields.map((f) => f.name);
    for (const f of ['Id', 'Name', 'NumberOfEmployees', 'OwnerId', 'CreatedDate']) assert.ok(f in full, `${f} missing`);
    assert.ok(described.every((f) => f in full), 'every described field is in the record');
  });

  test('update: records carry lower-case id; allOrNone true changes nothing, false changes the valid ones', TIMEOUT, async () => {
    const a = assertSaveResult(await conn.sobject('Account').create({ Name: `Js upd a ${run}` }));
    const b = assertSaveResult(await conn.sobject('Account').create({ Name: `Js upd b ${run}` }));
    const log = recordExchanges(conn);
    const records = [{ Id: a, Name: `Js upd a2 ${run}` }, { Id: b, Name: '' }];
    const aon = await conn.sobject('Account').update(records, { allOrNone: true });
    const sent = JSON.parse(log.find((e) => e.method === 'PATCH').requestBody);
    assert.deepEqual(sent.records.map((r) => [r.id, r.attributes.type]), [[a, 'Account'], [b, 'Account']]);
    assert.equal(sent.allOrNone, true);
    assert.deepEqual(aon.map((r) => r.success), [false, false]);
    assert.deepEqual(aon[0].errors.map((e) => e.statusCode), ['ALL_OR_NONE_OPERATION_ROLLED_BACK']);
    assert.deepEqual(aon[1].errors.map((e) => e.statusCode), ['REQUIRED_FIELD_MISSING']);
    assert.equal((await conn.sobject('Account').retrieve(a)).Name, `Js upd a ${run}`);

    const partial = await conn.sobject('Account').update(records);
    assert.deepEqual(partial[0], { id: a, success: true, errors: [] });
    assert.equal(partial[1].success, false);
    assert.equal((await conn.sobject('Account').retrieve(a)).Name, `Js upd a2 ${run}`);
    assert.equal((await conn.sobject('Account').retrieve(b)).Name, `Js upd b ${run}`);
  });

  test('upsert by external id (API >= 46): created true/false per record', TIMEOUT, async () => {
    const existing = assertSaveResult(await conn.sobject(CUSTOM).create({ Name: 'before', External_Id__c: `js-coll-up-${run}-0` }));
    const log = recordExchanges(conn);
    const res = await conn.sobject(CUSTOM).upsert(
      [
        { External_Id__c: `js-coll-up-${run}-0`, Name: 'after' },
        { External_Id__c: `js-coll-up-${run}-1`, Name: 'new' },
      ],
      'External_Id__c',
    );
    assert.equal(new URL(log.find((e) => e.method === 'PATCH').url).pathname, `${BASE}/composite/sobjects/${CUSTOM}/External_Id__c`);
    assert.deepEqual(res[0], { id: existing, success: true, errors: [], created: false });
    assertSaveResult(res[1]);
    assert.equal(res[1].created, true);
    assert.equal((await conn.sobject(CUSTOM).retrieve(existing)).Name, 'after');
  });

  test('destroy: allOrNone with an already deleted id deletes nothing; without it deletes all', TIMEOUT, async () => {
    const ids = [];
    for (const i of [0, 1]) ids.push(assertSaveResult(await conn.sobject('Account').create({ Name: `Js del ${i} ${run}` })));
    const gone = assertSaveResult(await conn.sobject('Account').create({ Name: `Js del gone ${run}` }));
    await conn.sobject('Account').destroy(gone);

    const aon = await conn.sobject('Account').destroy([ids[0], gone], { allOrNone: true });
    assert.deepEqual(aon.map((r) => r.success), [false, false]);
    assert.deepEqual(aon[0].errors.map((e) => e.statusCode), ['ALL_OR_NONE_OPERATION_ROLLED_BACK']);
    assert.deepEqual(aon[1].errors.map((e) => e.statusCode), ['ENTITY_IS_DELETED']);
    assert.equal(await count(`SELECT Id FROM Account WHERE Id = '${ids[0]}'`), 1);

    const res = await conn.sobject('Account').destroy(ids);
    assert.deepEqual(res, ids.map((id) => ({ id, success: true, errors: [] })));
    assert.equal(await count(`SELECT Id FROM Account WHERE Id IN ${inList(ids)}`), 0);
  });
});

describe('POST /composite/tree', () => {
  function tree(tag, email) {
    return {
      records: [
        {
          attributes: { type: 'Account', referenceId: 'acc1' },
          Name: `Js tree ${tag}`,
          Contacts: {
            records: [
              { attributes: { type: 'Contact', referenceId: 'con1' }, LastName: `Js tree a ${tag}` },
              { attributes: { type: 'Contact', referenceId: 'con2' }, LastName: `Js tree b ${tag}`, Email: email },
            ],
          },
        },
      ],
    };
  }

  test('creates a parent with nested children', TIMEOUT, async () => {
    const res = await conn.requestPost(`${BASE}/composite/tree/Account`, tree(run, `tree.${run}@example.com`));
    assert.equal(res.hasErrors, false);
    const ids = Object.fromEntries(res.results.map((r) => [r.referenceId, r.id]));
    assertValidId(ids.acc1, '001');
    assertValidId(ids.con1, '003');
    assertValidId(ids.con2, '003');
    const kids = await conn.query(`SELECT AccountId FROM Contact WHERE Id IN ${inList([ids.con1, ids.con2])}`);
    assert.deepEqual(kids.records.map((r) => r.AccountId), [ids.acc1, ids.acc1]);
  });

  test('a failing record saves nothing; jsforce surfaces the 400 body as ERROR_HTTP_400', TIMEOUT, async () => {
    const tag = `${run}x`;
    const err = await rejection(conn.requestPost(`${BASE}/composite/tree/Account`, tree(tag, 'not-an-email')));
    // the body is an object, not an error array, so jsforce (lib/http-api.js getError) falls back
    // to ERROR_HTTP_<status> with the raw body as the message
    assert.equal(err.errorCode, 'ERROR_HTTP_400');
    assert.deepEqual(JSON.parse(err.message), {
      hasErrors: true,
      results: [
        { referenceId: 'con2', errors: [{ statusCode: 'INVALID_EMAIL_ADDRESS', message: 'Email: invalid email address: not-an-email', fields: ['Email'] }] },
      ],
    });
    assert.equal(await count(`SELECT Id FROM Account WHERE Name = ${soqlQuote(`Js tree ${tag}`)}`), 0);
  });
});
