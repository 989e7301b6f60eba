// jsforce 3.10.16 against Conflux: Bulk API 2.0 (conn.bulk2) and Bulk API 1.0 (conn.bulk).
//
// Expectations come from Salesforce's Bulk API 2.0 and Bulk API developer guides and from what
// jsforce's source needs (lib/api/bulk2.js, lib/api/bulk.js):
// * bulk2 ingest: POST jobs/ingest → JobInfo (jsforce reads `id` and, to shape the CSV it
//   uploads, `operation`); one streamed PUT …/batches (text/csv, 201); PATCH UploadComplete;
//   GET polling until JobComplete; successfulResults / failedResults / unprocessedrecords parsed
//   as CSV by Content-Type. Null values are written as `#N/A` (JobDataV2: nullValue '#N/A').
// * bulk2 query: POST jobs/query; poll; GET …/results then …/results?locator=X (locator appended
//   verbatim) while the last response's Sforce-Locator header is not the string "null".
// * bulk (1.0): XML jobInfo/batchInfo in the http://www.force.com/2009/06/asyncapi/dataload
//   namespace; CSV batches; batch results CSV "Id","Success","Created","Error"; query batch
//   results an XML result-list; the job is closed by jsforce once the batch is done.
import {
  env,
  assertValidId,
  mapPool,
  parseBulkError,
  parseCsvObjects,
  randomId,
  randomToken,
  readRecords,
  recordExchanges,
  rejection,
  soqlQuote,
  toCsv,
  toolingCreateField,
  toolingCreateObject,
} from '../support/conflux.mjs';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { before, describe, test } from 'node:test';
import jsforce from 'jsforce';

const TIMEOUT = { timeout: 240_000 };
const POLL = { pollInterval: 500, pollTimeout: 120_000 };
const V = '59.0';
const run = randomToken();
const CUSTOM = `JsBulk_${run}__c`; // External_Id__c (Text 80, external id, unique), Amount__c
const QUERY_OBJ = `JsBulkQ_${run}__c`; // query dataset
const QUERY_LIVE = 1000;
const QUERY_DELETED = 10;

let conn; // OAuth2 password login over plain HTTP at API 59.0
const dataset = { live: new Map(), deleted: new Map() }; // id -> Name

function inList(ids) {
  return `(${ids.map(soqlQuote).join(', ')})`;
}

before(async () => {
  conn = new jsforce.Connection({
    loginUrl: env.httpUrl,
    version: V,
    oauth2: { clientId: env.clientId, clientSecret: env.clientSecret, loginUrl: env.httpUrl },
  });
  await conn.login(env.username, env.password);
  Object.assign(conn.bulk, POLL); // Bulk 1.0 defaults: 1 s / 30 s
  Object.assign(conn.bulk2, POLL); // Bulk 2.0 defaults: 1 s / 30 s

  for (const [name, label] of [[CUSTOM, `JsBulk ${run}`], [QUERY_OBJ, `JsBulkQ ${run}`]]) {
    const res = await toolingCreateObject(conn, name, label);
    assert.equal(res.success, true, JSON.stringify(res));
  }
  await toolingCreateField(conn, CUSTOM, 'External_Id__c', {
    type: 'Text', label: 'External Id', length: 80, externalId: true, unique: true, required: false,
  });
  await toolingCreateField(conn, CUSTOM, 'Amount__c', { type: 'Number', label: 'Amount', precision: 16, scale: 2, required: false });

  // the query dataset is made over plain REST single creates, not over the Bulk API under test
  const names = Array.from({ length: QUERY_LIVE + QUERY_DELETED }, (_, i) => `jbq-${run}-${String(i).padStart(4, '0')}`);
  const ids = await mapPool(names, 16, async (Name) => (await conn.sobject(QUERY_OBJ).create({ Name })).id);
  await mapPool(ids.slice(0, QUERY_DELETED), 8, (id) => conn.sobject(QUERY_OBJ).destroy(id));
  ids.forEach((id, i) => (i < QUERY_DELETED ? dataset.deleted : dataset.live).set(id, names[i]));
});

/** Three good Contacts and one row for each of three documented per-record errors. */
function contactRows(tag) {
  const good = [0, 1, 2].map((i) => ({ FirstName: tag, LastName: `Good ${i}`, Email: `good${i}.${run}@example.com` }));
  const bad = {
    REQUIRED_FIELD_MISSING: { FirstName: tag, LastName: '', Email: `nolast.${run}@example.com` },
    STRING_TOO_LONG: { FirstName: tag, LastName: 'L'.repeat(81), Email: `long.${run}@example.com` }, // Contact.LastName is 80 long
    INVALID_EMAIL_ADDRESS: { FirstName: tag, LastName: 'Bad Email', Email: 'not-an-email' },
  };
  return { good, bad };
}

function assertContactErrors(failed, bad, errorOf) {
  const byEmail = new Map(failed.map((row) => [row.Email, row]));
  assert.deepEqual([...byEmail.keys()].sort(), Object.values(bad).map((r) => r.Email).sort(), JSON.stringify(failed));
  const missing = parseBulkError(errorOf(byEmail.get(bad.REQUIRED_FIELD_MISSING.Email)));
  assert.deepEqual(missing, { code: 'REQUIRED_FIELD_MISSING', message: 'Required fields are missing: [LastName]', fields: ['LastName'] });
  const long = parseBulkError(errorOf(byEmail.get(bad.STRING_TOO_LONG.Email)));
  assert.equal(long.code, 'STRING_TOO_LONG');
  assert.match(long.message, /data value too large: .*\(max length=80\)/);
  assert.deepEqual(long.fields, ['LastName']);
  const email = parseBulkError(errorOf(byEmail.get('not-an-email')));
  assert.deepEqual(email, { code: 'INVALID_EMAIL_ADDRESS', message: 'Email: invalid email address: not-an-email', fields: ['Email'] });
}

describe('Bulk API 2.0 ingest (conn.bulk2)', () => {
  test('insert from CSV text: bad rows land in failedResults with their errors', TIMEOUT, async () => {
    const tag = `jb2ins-${run}`;
    const { good, bad } = contactRows(tag);
    const input = toCsv(['FirstName', 'LastName', 'Email'], [...good, ...Object.values(bad)]);
    const res = await conn.bulk2.loadAndWaitForResults({ object: 'Contact', operation: 'insert', input, ...POLL });

    assert.equal(res.successfulResults.length, 3);
    assert.deepEqual(Object.keys(res.successfulResults[0]).slice(0, 2), ['sf__Id', 'sf__Created']);
    for (const row of res.successfulResults) {
      assertValidId(row.sf__Id, '003');
      assert.equal(row.sf__Created, 'true');
    }
    assert.deepEqual(res.successfulResults.map((r) => r.LastName).sort(), good.map((r) => r.LastName).sort(), 'original columns echoed');

    assert.equal(res.failedResults.length, 3);
    assert.deepEqual(Object.keys(res.failedResults[0]).slice(0, 2), ['sf__Id', 'sf__Error']);
    assert.deepEqual(res.failedResults.map((r) => r.sf__Id), ['', '', ''], 'nothing was created for a failed insert row');
    assertContactErrors(res.failedResults, bad, (row) => row.sf__Error);
    assert.deepEqual(res.unprocessedRecords, []);

    const stored = await conn.query(`SELECT Id FROM Contact WHERE FirstName = ${soqlQuote(tag)}`);
    assert.deepEqual(stored.records.map((r) => r.Id).sort(), res.successfulResults.map((r) => r.sf__Id).sort());
  });

  test('update from records: null is sent as #N/A and clears, an empty value leaves the field alone', TIMEOUT, async () => {
    const a = (await conn.sobject('Contact').create({ LastName: `NA a ${run}`, Title: 'Title a', Phone: '111' })).id;
    const b = (await conn.sobject('Contact').create({ LastName: `NA b ${run}`, Title: 'Title b', Phone: '222' })).id;
    const gone = (await conn.sobject('Contact').create({ LastName: `NA gone ${run}` })).id;
    await conn.sobject('Contact').destroy(gone);

    const res = await conn.bulk2.loadAndWaitForResults({
      object: 'Contact',
      operation: 'update',
      input: [
        { Id: a, Title: null, Phone: '' },
        { Id: b, Title: 'Title b2', Phone: null },
        { Id: gone, Title: 'x', Phone: 'y' },
      ],
      ...POLL,
    });
    assert.deepEqual(res.successfulResults.map((r) => r.sf__Id).sort(), [a, b].sort());
    assert.ok(res.successfulResults.every((r) => r.sf__Created === 'false'));
    assert.equal(res.failedResults.length, 1);
    assert.equal(res.failedResults[0].Id, gone);
    assert.equal(parseBulkError(res.failedResults[0].sf__Error).code, 'ENTITY_IS_DELETED');

    const ra = await conn.sobject('Contact').retrieve(a);
    const rb = await conn.sobject('Contact').retrieve(b);
    assert.deepEqual([ra.Title, ra.Phone], [null, '111']);
    assert.deepEqual([rb.Title, rb.Phone], ['Title b2', null]);
  });

  test('upsert by external id: sf__Created tells inserts from updates', TIMEOUT, async () => {
    const existing = (await conn.sobject(CUSTOM).create({ Name: 'before', External_Id__c: `jb2up-${run}-0`, Amount__c: 1 })).id;
    const rows = [
      { External_Id__c: `jb2up-${run}-0`, Name: 'after', Amount__c: '2' },
      { External_Id__c: `jb2up-${run}-1`, Name: 'new', Amount__c: '3.5' },
      { External_Id__c: `jb2up-${run}-2`, Name: 'N'.repeat(81), Amount__c: '4' }, // Name is Text(80)
    ];
    const res = await conn.bulk2.loadAndWaitForResults({
      object: CUSTOM,
      operation: 'upsert',
      externalIdFieldName: 'External_Id__c',
      input: toCsv(['External_Id__c', 'Name', 'Amount__c'], rows),
      ...POLL,
    });
    const byExt = Object.fromEntries(res.successfulResults.map((r) => [r.External_Id__c, r]));
    assert.deepEqual(Object.keys(byExt).sort(), [`jb2up-${run}-0`, `jb2up-${run}-1`]);
    assert.equal(byExt[`jb2up-${run}-0`].sf__Created, 'false');
    assert.equal(byExt[`jb2up-${run}-0`].sf__Id, existing);
    assert.equal(byExt[`jb2up-${run}-1`].sf__Created, 'true');
    assert.equal(res.failedResults.length, 1);
    const err = parseBulkError(res.failedResults[0].sf__Error);
    assert.deepEqual([err.code, err.fields], ['STRING_TOO_LONG', ['Name']]);
    const rec = await conn.sobject(CUSTOM).retrieve(existing);
    assert.deepEqual([rec.Name, rec.Amount__c], ['after', 2]);
  });

  test('delete: ids in, deleted ids out; an already deleted id fails', TIMEOUT, async () => {
    const ids = await mapPool([0, 1, 2], 3, async (i) => (await conn.sobject('Account').create({ Name: `jb2del-${run}-${i}` })).id);
    const gone = (await conn.sobject('Account').create({ Name: `jb2del-${run}-gone` })).id;
    await conn.sobject('Account').destroy(gone);
    const res = await conn.bulk2.loadAndWaitForResults({
      object: 'Account',
      operation: 'delete',
      input: [...ids, gone].map((Id) => ({ Id })),
      ...POLL,
    });
    assert.deepEqual(res.successfulResults.map((r) => r.sf__Id).sort(), [...ids].sort());
    assert.equal(res.failedResults.length, 1);
    assert.equal(parseBulkError(res.failedResults[0].sf__Error).code, 'ENTITY_IS_DELETED');
    const left = await conn.query(`SELECT Id FROM Account WHERE Id IN ${inList(ids)}`);
    assert.equal(left.totalSize, 0);
  });

  test('job lifecycle by hand with PIPE delimiter and CRLF line endings', TIMEOUT, async () => {
    const names = [`Pipe | name ${run}`, `Comma, "quoted" ${run}`];
    const job = conn.bulk2.createJob({ object: 'Account', operation: 'insert', columnDelimiter: 'PIPE', lineEnding: 'CRLF' });
    const opened = await job.open();
    assertValidId(opened.id, '750');
    assert.equal(opened.state, 'Open');
    assert.deepEqual(
      [opened.object, opened.operation, opened.contentType, opened.columnDelimiter, opened.lineEnding, opened.apiVersion],
      ['Account', 'insert', 'CSV', 'PIPE', 'CRLF', 59],
    );
    assert.equal(opened.contentUrl, `services/data/v${V}/jobs/ingest/${opened.id}/batches`);

    await job.uploadData(toCsv(['Name', 'Description'], [{ Name: names[0], Description: 'a|b' }, { Name: names[1], Description: '#N/A' }], { delimiter: '|', eol: '\r\n' }));
    await job.close();
    await job.poll(POLL.pollInterval, POLL.pollTimeout);
    const info = await job.check();
    assert.deepEqual([info.state, info.numberRecordsProcessed, info.numberRecordsFailed], ['JobComplete', 2, 0]);
    const ok = await job.getSuccessfulResults();
    assert.deepEqual(ok.map((r) => r.Name).sort(), [...names].sort());

    const stored = await conn.query(`SELECT Name, Description FROM Account WHERE Name IN ${inList(names)}`);
    assert.deepEqual(Object.fromEntries(stored.records.map((r) => [r.Name, r.Description])), { [names[0]]: 'a|b', [names[1]]: null });

    await job.delete(); // 204
    const err = await rejection(job.check());
    assert.equal(err.errorCode, 'NOT_FOUND', String(err));
  });

  test('a rejected upload leaves the kept-alive connection usable for the next call', TIMEOUT, async () => {
    // jsforce sends through Node's global agent, which keeps connections alive; a server that
    // answers before reading a large body must drain it or say `Connection: close`, otherwise
    // the next request on that socket dies with EPIPE (and jsforce retries only GET/PUT/DELETE…)
    const job = conn.bulk2.job('ingest', { id: randomId('750') });
    const csv = toCsv(['Name'], Array.from({ length: 10_000 }, (_, i) => ({ Name: `rejected upload ${run} ${i}` })));
    assert.ok(csv.length > 200_000);
    const err = await rejection(job.uploadData(csv));
    assert.equal(err.errorCode, 'NOT_FOUND', String(err));
    const next = await conn.sobject('Account').create({ Name: `after rejected upload ${run}` }); // a POST: not retried
    assertValidId(next.id, '001');
  });

  test('abort an open job', TIMEOUT, async () => {
    const job = conn.bulk2.createJob({ object: 'Account', operation: 'insert' });
    await job.open();
    await job.abort();
    assert.equal((await job.check()).state, 'Aborted');
    const err = await rejection(job.poll(POLL.pollInterval, POLL.pollTimeout));
    assert.match(err.message, /aborted/);
  });
});

describe('Bulk API 2.0 query (conn.bulk2.query)', () => {
  test('a result that fits in one page (no maxRecords) streams every record', TIMEOUT, async () => {
    const log = recordExchanges(conn);
    const records = await readRecords(await conn.bulk2.query(`SELECT Id, Name FROM ${QUERY_OBJ}`, POLL));
    assert.equal(records.length, QUERY_LIVE);
    assert.deepEqual(Object.keys(records[0]), ['Id', 'Name'], 'columns in SELECT order');
    assert.deepEqual(new Map(records.map((r) => [r.Id, r.Name])), dataset.live);
    const pages = log.filter((e) => /\/results(\?|$)/.test(e.url));
    assert.equal(pages.length, 1, 'jsforce 3.10.16 can only read single-page results (see the next test)');
    assert.equal(pages[0].headers['sforce-locator'], 'null');
    assert.equal(pages[0].headers['sforce-numberofrecords'], String(QUERY_LIVE));
  });

  test('scanAll (queryAll) includes deleted records', TIMEOUT, async () => {
    const records = await readRecords(await conn.bulk2.query(`SELECT Id, IsDeleted FROM ${QUERY_OBJ}`, { ...POLL, scanAll: true }));
    assert.equal(records.length, QUERY_LIVE + QUERY_DELETED);
    assert.deepEqual(new Set(records.filter((r) => r.IsDeleted === 'true').map((r) => r.Id)), new Set(dataset.deleted.keys()));
  });

  test('several pages: jsforce follows Sforce-Locator until "null"', TIMEOUT, async (t) => {
    const maxRecords = 300;
    const child = fileURLToPath(new URL('../support/bulk2-query-pages.mjs', import.meta.url));
    const arg = JSON.stringify({ instanceUrl: conn.instanceUrl, accessToken: conn.accessToken, version: V, soql: `SELECT Id, Name FROM ${QUERY_OBJ}`, maxRecords });
    const stdout = await new Promise((resolve, reject) =>
      execFile(process.execPath, [child, arg], { timeout: 150_000, maxBuffer: 64 << 20 }, (err, out, errOut) =>
        err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out),
      ),
    );
    const report = JSON.parse(stdout);
    const calls = report.exchanges.filter((e) => /\/results(\?|$)/.test(e.url));
    assert.ok(calls.length >= Math.ceil(QUERY_LIVE / maxRecords), `only ${calls.length} result pages`);
    let previous;
    const seen = new Map();
    for (const [i, call] of calls.entries()) {
      assert.equal(call.status, 200, JSON.stringify(call));
      const locator = new URL(call.url).searchParams.get('locator');
      assert.equal(locator, i === 0 ? null : previous, 'each page is asked for with the previous Sforce-Locator');
      previous = call.headers['sforce-locator'];
      assert.ok(previous, `page ${i + 1} has no Sforce-Locator header: jsforce would loop forever`);
      assert.match(call.headers['content-type'], /^text\/csv(;|$)/);
      const rows = parseCsvObjects(call.body);
      assert.equal(Number(call.headers['sforce-numberofrecords']), rows.length);
      assert.ok(rows.length <= maxRecords, `page ${i + 1} has ${rows.length} rows`);
      for (const r of rows) {
        assert.equal(seen.has(r.Id), false, `${r.Id} on two pages`);
        seen.set(r.Id, r.Name);
      }
    }
    assert.equal(previous, 'null', 'the last page says Sforce-Locator: null');
    assert.equal(calls.filter((c) => c.headers['sforce-locator'] === 'null').length, 1);
    assert.deepEqual(seen, dataset.live);

    // What the client made of it: jsforce 3.10.16 pipes every page into one CSV stream that the
    // first page already ended (lib/api/bulk2.js QueryJobV2#result, jsforce issue #1546).
    assert.ok(report.errors.every((e) => e.code === 'ERR_STREAM_WRITE_AFTER_END'), JSON.stringify(report.errors));
    if (report.errors.length === 0) {
      assert.equal(report.records.length, QUERY_LIVE);
    } else {
      t.diagnostic(`jsforce delivered ${report.records.length} records and raised ERR_STREAM_WRITE_AFTER_END (jsforce#1546)`);
    }
  });
});

describe('Bulk API 1.0 (conn.bulk)', () => {
  test('load insert (CSV): per-row results in request order, errors as "CODE:message:fields --"', TIMEOUT, async () => {
    const tag = `jb1ins-${run}`;
    const { good, bad } = contactRows(tag);
    const rows = [...good, ...Object.values(bad)];
    const log = recordExchanges(conn);
    const batch = conn.bulk.load('Contact', 'insert', rows);
    let jobId;
    batch.on('queue', (info) => (jobId = info.jobId));
    const results = await batch;

    assert.equal(results.length, rows.length);
    for (const res of results.slice(0, 3)) {
      assert.deepEqual([res.success, res.created, res.errors], [true, true, []]);
      assertValidId(res.id, '003');
    }
    for (const res of results.slice(3)) assert.deepEqual([res.id, res.success, res.created], [null, false, false]);
    assertContactErrors(rows.slice(3).map((r, i) => ({ ...r, error: results[3 + i].errors[0] })), bad, (row) => row.error);

    const create = log.find((e) => e.method === 'POST' && e.url.endsWith('/job'));
    assert.equal(create.status, 201);
    assert.match(create.headers['content-type'], /^application\/xml(;|$)/);
    const upload = log.find((e) => e.method === 'POST' && e.url.endsWith('/batch'));
    assert.equal(upload.status, 201);
    assert.match(log.find((e) => e.url.endsWith('/result')).headers['content-type'], /^text\/csv(;|$)/);

    assertValidId(jobId, '750');
    let info;
    for (let i = 0; i < 20 && info?.state !== 'Closed'; i++) {
      if (i) await new Promise((r) => setTimeout(r, 250));
      info = await conn.bulk.job(jobId).check(); // jsforce closes the job once the batch is done
    }
    assert.deepEqual([info.state, info.object, info.operation, info.contentType, info.numberRecordsFailed], ['Closed', 'Contact', 'insert', 'CSV', '3']);

    const stored = await conn.query(`SELECT Id FROM Contact WHERE FirstName = ${soqlQuote(tag)}`);
    assert.deepEqual(stored.records.map((r) => r.Id).sort(), results.slice(0, 3).map((r) => r.id).sort());
  });

  test('load update: null is sent as #N/A and clears the field', TIMEOUT, async () => {
    const id = (await conn.sobject('Contact').create({ LastName: `jb1upd ${run}`, Title: 'Title', Phone: '333' })).id;
    const [res] = await conn.bulk.load('Contact', 'update', [{ Id: id, Title: null, Phone: '444' }]);
    assert.deepEqual([res.id, res.success, res.created], [id, true, false]);
    const rec = await conn.sobject('Contact').retrieve(id);
    assert.deepEqual([rec.Title, rec.Phone], [null, '444']);
  });

  test('load upsert with extIdField, then delete', TIMEOUT, async () => {
    const existing = (await conn.sobject(CUSTOM).create({ Name: 'before', External_Id__c: `jb1up-${run}-0` })).id;
    const results = await conn.bulk.load(CUSTOM, 'upsert', { extIdField: 'External_Id__c' }, [
      { External_Id__c: `jb1up-${run}-0`, Name: 'after' },
      { External_Id__c: `jb1up-${run}-1`, Name: 'new' },
    ]);
    assert.deepEqual(results.map((r) => [r.success, r.created]), [[true, false], [true, true]]);
    assert.equal(results[0].id, existing);
    assert.equal((await conn.sobject(CUSTOM).retrieve(existing)).Name, 'after');

    const deleted = await conn.bulk.load(CUSTOM, 'delete', results.map((r) => ({ Id: r.id })));
    assert.deepEqual(deleted.map((r) => [r.id, r.success]), results.map((r) => [r.id, true]));
    assert.equal((await conn.query(`SELECT Id FROM ${CUSTOM} WHERE Id IN ${inList(results.map((r) => r.id))}`)).totalSize, 0);
  });

  test('bulk.query streams every record of the result files', TIMEOUT, async () => {
    const log = recordExchanges(conn);
    const records = await readRecords(await conn.bulk.query(`SELECT Id, Name FROM ${QUERY_OBJ}`));
    assert.equal(records.length, QUERY_LIVE);
    assert.deepEqual(new Map(records.map((r) => [r.Id, r.Name])), dataset.live);
    const list = log.find((e) => /\/batch\/[^/]+\/result$/.test(e.url));
    assert.match(list.headers['content-type'], /^application\/xml(;|$)/, 'the result-list of a query batch is XML');
  });
});
