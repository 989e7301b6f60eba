// jsforce 3.10.16 query paging over 5,000+ records (explicit queryMore, autoFetch with
// maxFetch, scanAll), getUpdated/getDeleted windows, and limits.
import {
  env,
  JSFORCE_DEFAULT_VERSION as V,
  DATETIME_RE,
  assertSaveResult,
  mapPool,
  randomToken,
  toolingCreateObject,
} from '../support/conflux.mjs';
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import jsforce from 'jsforce';

const TIMEOUT = { timeout: 300_000 };
const run = randomToken();
const PAGED = `JsPage_${run}__c`;
const LIVE = 5050;
const DELETED = 50;

let conn;
let liveIds;
let deletedIds;
let setupStart;

before(async () => {
  setupStart = new Date(Date.now() - 2 * 60_000);
  conn = new jsforce.Connection({
    loginUrl: env.httpUrl,
    oauth2: { clientId: env.clientId, clientSecret: env.clientSecret, loginUrl: env.httpUrl },
  });
  await conn.login(env.username, env.password);
  assertSaveResult(await toolingCreateObject(conn, PAGED, `JsPage ${run}`));
  const names = Array.from({ length: LIVE + DELETED }, (_, i) => `page-${String(i).padStart(5, '0')}`);
  const ids = await mapPool(names, 16, async (Name) => assertSaveResult(await conn.sobject(PAGED).create({ Name })));
  assert.equal(new Set(ids).size, LIVE + DELETED);
  deletedIds = new Set(ids.slice(0, DELETED));
  await mapPool([...deletedIds], 8, async (id) => {
    assert.equal((await conn.sobject(PAGED).destroy(id)).success, true);
  });
  liveIds = new Set(ids.slice(DELETED));
}, { timeout: 600_000 });

function ids(records) {
  return records.map((r) => r.Id);
}

function assertExactly(actualIds, expected) {
  assert.equal(actualIds.length, expected.size, 'record count');
  assert.equal(new Set(actualIds).size, actualIds.length, 'a record was returned twice');
  for (const id of actualIds) assert.ok(expected.has(id), `unexpected record ${id}`);
}

describe('query paging', () => {
  test('the server returns a path nextRecordsUrl and 2000-record pages', TIMEOUT, async () => {
    const raw = await conn.request(`/services/data/v${V}/query?q=${encodeURIComponent(`SELECT Id FROM ${PAGED}`)}`);
    assert.equal(raw.totalSize, LIVE);
    assert.equal(raw.done, false);
    assert.equal(raw.records.length, 2000);
    assert.match(raw.nextRecordsUrl, new RegExp(`^/services/data/v${V}/query/[^/]+$`));
  });

  test('explicit paging with queryMore (URL and bare locator)', TIMEOUT, async () => {
    const soql = `SELECT Id, Name FROM ${PAGED}`;
    const page1 = await conn.query(soql);
    assert.equal(page1.totalSize, LIVE);
    assert.equal(page1.done, false);
    assert.equal(page1.records.length, 2000);
    // jsforce rebuilds the next URL as {base}/query/{last path segment} (lib/query.js locatorToUrl)
    const locator1 = page1.nextRecordsUrl.split('/').pop();
    assert.equal(page1.nextRecordsUrl, `${conn.instanceUrl}/services/data/v${V}/query/${locator1}`);

    const page2 = await conn.queryMore(page1.nextRecordsUrl);
    assert.equal(page2.done, false);
    assert.equal(page2.records.length, 2000);

    const page3 = await conn.queryMore(page2.nextRecordsUrl.split('/').pop());
    assert.equal(page3.done, true);
    assert.equal(page3.nextRecordsUrl, undefined);
    assert.equal(page3.records.length, LIVE - 4000);

    assertExactly([...ids(page1.records), ...ids(page2.records), ...ids(page3.records)], liveIds);
  });

  test('autoFetch with a maxFetch above the total returns every record once', TIMEOUT, async () => {
    const res = await conn.query(`SELECT Id FROM ${PAGED}`, { autoFetch: true, maxFetch: 20000 });
    assert.equal(res.totalSize, LIVE);
    assert.equal(res.done, true);
    assertExactly(ids(res.records), liveIds);
  });

  test('autoFetch stops at maxFetch', TIMEOUT, async () => {
    // page 1 (2000) + 1000 of page 2: `done` is page 2's, and the locator is kept
    const res = await conn.query(`SELECT Id FROM ${PAGED}`).run({ autoFetch: true, maxFetch: 3000 });
    assert.equal(res.records.length, 3000);
    assert.equal(res.totalSize, LIVE);
    assert.equal(res.done, false);
    assert.match(res.nextRecordsUrl, new RegExp(`/services/data/v${V}/query/[^/]+$`));
    assert.equal(new Set(ids(res.records)).size, 3000);
  });

  test('record events stream every record', TIMEOUT, async () => {
    const seen = [];
    await new Promise((resolve, reject) => {
      conn
        .query(`SELECT Id FROM ${PAGED}`)
        .on('record', (rec) => seen.push(rec.Id))
        .on('end', resolve)
        .on('error', reject)
        .run({ autoFetch: true, maxFetch: 20000 });
    });
    assertExactly(seen, liveIds);
  });

  test('scanAll (queryAll) includes deleted records, paged via /query/{locator}', TIMEOUT, async () => {
    const res = await conn.query(`SELECT Id, IsDeleted FROM ${PAGED}`, { scanAll: true, autoFetch: true, maxFetch: 20000 });
    assert.equal(res.totalSize, LIVE + DELETED);
    assertExactly(ids(res.records), new Set([...liveIds, ...deletedIds]));
    const deleted = res.records.filter((r) => r.IsDeleted === true).map((r) => r.Id);
    assertExactly(deleted, deletedIds);
  });

  test('SELECT COUNT()', TIMEOUT, async () => {
    const res = await conn.query(`SELECT COUNT() FROM ${PAGED}`);
    assert.equal(res.totalSize, LIVE);
    assert.deepEqual(res.records, []);
  });
});

describe('replication and limits', () => {
  test('sobject(T).updated / deleted windows contain this test\'s changes', TIMEOUT, async () => {
    // start/end are truncated to the minute by the API: widen the window on both sides.
    const start = new Date(Date.now() - 2 * 60_000);
    const kept = assertSaveResult(await conn.sobject('Account').create({ Name: `Js Replicated ${run}` }));
    const gone = assertSaveResult(await conn.sobject('Account').create({ Name: `Js Replicated gone ${run}` }));
    await conn.sobject('Account').update({ Id: kept, Name: `Js Replicated ${run} v2` });
    await conn.sobject('Account').destroy(gone);
    const end = new Date(Date.now() + 2 * 60_000);

    const updated = await conn.sobject('Account').updated(start, end);
    assert.ok(updated.ids.includes(kept));
    assert.match(updated.latestDateCovered, DATETIME_RE);

    const deleted = await conn.sobject('Account').deleted(start, end);
    const gone1 = deleted.deletedRecords.find((d) => d.id === gone);
    assert.ok(gone1, 'deleted record missing from getDeleted');
    assert.match(gone1.deletedDate, DATETIME_RE);
    assert.match(deleted.earliestDateAvailable, DATETIME_RE);
    assert.match(deleted.latestDateCovered, DATETIME_RE);

    const pagedDeleted = await conn.sobject(PAGED).deleted(setupStart.toISOString(), end.toISOString());
    for (const id of deletedIds) {
      assert.ok(pagedDeleted.deletedRecords.some((d) => d.id === id), `${id} missing from getDeleted`);
    }
  });

  test('limits() and the Sforce-Limit-Info api-usage header', TIMEOUT, async () => {
    const limits = await conn.limits();
    assert.equal(Number.isInteger(limits.DailyApiRequests.Max), true);
    assert.equal(Number.isInteger(limits.DailyApiRequests.Remaining), true);
    await conn.query('SELECT Id FROM User LIMIT 1');
    const usage = conn.limitInfo.apiUsage; // parsed from Sforce-Limit-Info (lib/connection.js request)
    assert.ok(usage, 'Sforce-Limit-Info: api-usage=N/M missing');
    assert.equal(usage.limit, limits.DailyApiRequests.Max);
    assert.ok(usage.used >= 1 && usage.used <= usage.limit);
  });
});
