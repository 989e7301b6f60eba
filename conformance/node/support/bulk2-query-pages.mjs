// Runs jsforce 3.10.16's `conn.bulk2.query()` in a process of its own and prints a JSON report
// of what happened on the wire and what the client delivered.
//
// Why a separate process: when a Bulk API 2.0 query result comes in more than one page,
// jsforce's QueryJobV2#result() (lib/api/bulk2.js) pipes every page's response stream into the
// same CSV stream with the default `end: true`, so the first page ends it and the second page's
// data raises ERR_STREAM_WRITE_AFTER_END as an uncaught 'error' event (jsforce issue #1546).
// Under `node --test` an uncaught exception fails whatever test is running; here it is merely
// recorded, and the test (test/bulk.test.mjs) judges the server by the exchanges jsforce made.
//
// Input: one JSON argument {instanceUrl, accessToken, version, soql, maxRecords, scanAll}.
// jsforce has no maxRecords option for bulk2.query; it is appended to the results URLs jsforce
// builds (`…/results` and `…/results?locator=X`), the documented Bulk 2.0 page-size parameter.
import { recordExchanges } from './conflux.mjs';
import jsforce from 'jsforce';

const opts = JSON.parse(process.argv[2]);
const conn = new jsforce.Connection({ instanceUrl: opts.instanceUrl, accessToken: opts.accessToken, version: opts.version });
const resultsPath = /\/jobs\/query\/[^/?]+\/results(\?|$)/;
const log = recordExchanges(conn, {
  rewriteUrl: (url) =>
    opts.maxRecords && resultsPath.test(url) ? `${url}${url.includes('?') ? '&' : '?'}maxRecords=${opts.maxRecords}` : url,
});
const errors = [];
const records = [];
let ended = false;
let reported = false;

function report() {
  if (reported) return;
  reported = true;
  process.stdout.write(JSON.stringify({ exchanges: log, records, ended, errors }));
  process.exit(0);
}

process.on('uncaughtException', (err) => errors.push({ code: err.code ?? null, message: err.message, where: 'uncaught' }));
setTimeout(report, 110_000).unref();

try {
  const stream = await conn.bulk2.query(opts.soql, { pollInterval: 500, pollTimeout: 100_000, scanAll: !!opts.scanAll });
  // bulk2.query resolves after its result loop fetched every page; give the stream time to drain.
  stream.on('record', (r) => records.push(r));
  stream.on('end', () => {
    ended = true;
    setTimeout(report, 200);
  });
  stream.on('error', (err) => errors.push({ code: err.code ?? null, message: err.message, where: 'stream' }));
  setTimeout(report, 3_000);
} catch (err) {
  errors.push({ code: err.errorCode ?? err.code ?? null, message: err.message, where: 'query' });
  report();
}
