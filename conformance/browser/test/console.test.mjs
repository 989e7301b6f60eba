// The Conflux console in Debian's Chromium, driven by playwright-core: log in, browse to an
// Account, see a change made through the REST API appear without a reload, and keep typed input
// when the record changes during an edit. Screenshots of each page go to CONFLUX_SCREENSHOTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

const base = process.env.CONFLUX_HTTP_URL;
const shots = process.env.CONFLUX_SCREENSHOTS || path.resolve('screenshots');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
let browser;
let token;

async function rest(method, p, body) {
  const r = await fetch(`${base}/services/data/v60.0${p}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

before(async () => {
  assert.ok(base, 'CONFLUX_HTTP_URL is not set (run through conformance/run.sh)');
  assert.ok(fs.existsSync(executablePath), `no Chromium at ${executablePath}: apt-get install -y chromium (or set CHROMIUM)`);
  fs.mkdirSync(shots, { recursive: true });
  const form = new URLSearchParams({
    grant_type: 'password',
    client_id: process.env.CONFLUX_CLIENT_ID,
    client_secret: process.env.CONFLUX_CLIENT_SECRET,
    username: process.env.CONFLUX_USERNAME,
    password: process.env.CONFLUX_PASSWORD,
  });
  const r = await fetch(`${base}/services/oauth2/token`, { method: 'POST', body: form });
  token = (await r.json()).access_token;
  assert.ok(token, 'an API session for the test itself');
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
});

after(async () => {
  await browser?.close();
});

async function loggedIn(width = 1280, username = process.env.CONFLUX_USERNAME, password = process.env.CONFLUX_PASSWORD) {
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  await page.goto(`${base}/`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Objects' }).waitFor();
  return page;
}

test('a wrong password is refused with a message, on the login page', async () => {
  const page = await browser.newPage();
  await page.goto(`${base}/`);
  await page.getByLabel('Username').fill(process.env.CONFLUX_USERNAME);
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'check your username and password' }).waitFor();
  await page.screenshot({ path: path.join(shots, 'login.png') });
  await page.close();
});

test('an Account on screen follows changes made elsewhere, without a reload', async () => {
  const created = await rest('POST', '/sobjects/Account', { Name: 'Browser Test Co', Phone: '555-0100' });
  const page = await loggedIn();
  await page.screenshot({ path: path.join(shots, 'objects.png') });
  await page.getByRole('link', { name: 'Accounts' }).click();
  await page.getByRole('heading', { name: 'Accounts' }).waitFor();
  await page.getByLabel('Filter by Account Name').fill('Browser Test');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.getByRole('link', { name: 'Browser Test Co' }).click();
  await page.locator('dd[data-field="Phone"]', { hasText: '555-0100' }).waitFor();
  await page.goto(`${base}/#/o/Account`);
  await page.getByRole('heading', { name: 'Accounts' }).waitFor();
  await page.screenshot({ path: path.join(shots, 'list.png') });
  await page.goBack();
  await page.locator('dd[data-field="Phone"]', { hasText: '555-0100' }).waitFor();
  await page.screenshot({ path: path.join(shots, 'record.png') });

  // Marked so a reload would show: the page object must survive the update.
  await page.evaluate(() => { window.__noReload = true; });
  await rest('PATCH', `/sobjects/Account/${created.id}`, { Phone: '555-0199' });
  await page.locator('dd[data-field="Phone"]', { hasText: '555-0199' }).waitFor({ timeout: 10_000 });
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page did not reload');
  await page.getByRole('status').filter({ hasText: 'Updated by' }).waitFor();

  // While editing: a notice, and the typed input stays.
  await page.getByRole('button', { name: 'Edit' }).click();
  assert.equal(await page.getByRole('button', { name: 'Edit' }).isVisible(), false, 'no Edit button while editing');
  const phone = page.getByLabel('Account Phone');
  await phone.fill('typed, not saved');
  await rest('PATCH', `/sobjects/Account/${created.id}`, { Website: 'example.com' });
  await page.getByRole('status').filter({ hasText: 'changed' }).waitFor({ timeout: 10_000 });
  assert.equal(await phone.inputValue(), 'typed, not saved');
  await page.screenshot({ path: path.join(shots, 'edit.png') });
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('dd[data-field="Phone"]', { hasText: 'typed, not saved' }).waitFor();
  const saved = await rest('GET', `/sobjects/Account/${created.id}`);
  assert.equal(saved.Phone, 'typed, not saved');
  assert.equal(saved.Website, 'example.com', 'the other change is kept');
  await page.close();
});

test('the console works on a narrow screen', async () => {
  const page = await loggedIn(360);
  await page.getByRole('link', { name: 'Accounts' }).click();
  await page.getByRole('heading', { name: 'Accounts' }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  assert.equal(overflow, false, 'no horizontal scrolling at 360 px');
  await page.screenshot({ path: path.join(shots, 'narrow.png') });
  await page.close();
});

test('the events page tails a channel live and shows payloads', async () => {
  const name = `Console_Ping_${Date.now()}__e`;
  await rest('POST', '/tooling/sobjects/CustomObject', {
    FullName: name,
    Metadata: { label: 'Console Ping', pluralLabel: 'Console Pings', publishBehavior: 'PublishImmediately' },
  });
  await rest('POST', '/tooling/sobjects/CustomField', {
    FullName: `${name}.Note__c`,
    Metadata: { type: 'Text', label: 'Note', length: 80 },
  });
  const page = await loggedIn();
  await page.getByRole('link', { name: 'Events' }).click();
  await page.getByLabel('Channel').fill(`/event/${name}`);
  await page.getByLabel(/^Replay from/).fill('-1');
  await page.getByRole('button', { name: 'Subscribe' }).click();
  await page.getByText(`Subscribed to /event/${name}.`).waitFor();
  await rest('POST', `/sobjects/${name}`, { Note__c: 'hello from the API' });
  const item = page.locator('ol#events li').first();
  await item.waitFor({ timeout: 10_000 });
  await item.getByRole('button', { name: 'Inspect' }).click();
  await item.locator('pre', { hasText: 'hello from the API' }).waitFor();
  await page.screenshot({ path: path.join(shots, 'events.png') });
  await page.getByRole('button', { name: 'Stop' }).click();
  await page.close();
});

test('a dead-lettered message is requeued from the integrations page and delivered', async () => {
  // A receiver that refuses everything until told otherwise.
  let healthy = false;
  const received = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      if (!healthy) {
        res.writeHead(500).end('down');
        return;
      }
      received.push({ headers: req.headers, body });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/hook`;
  const flow = `Console_Hook_${Date.now()}`;
  await rest('PUT', `/conflux/flows/${flow}`, {
    object: 'Contact',
    on: ['create'],
    expire_seconds: 2,
    actions: [{ type: 'webhook', name: flow, url }],
  });
  const contact = await rest('POST', '/sobjects/Contact', { LastName: 'Dead Letter' });

  const page = await loggedIn();
  await page.getByRole('link', { name: 'Integrations' }).click();
  await page.getByRole('heading', { name: 'Integrations' }).waitFor();
  const requeue = page.getByRole('button', { name: new RegExp(`^Requeue ${flow} `) });
  await requeue.waitFor({ timeout: 30_000 });
  await page.getByText('Delivery latency p50 (ms)').waitFor();
  await page.screenshot({ path: path.join(shots, 'integrations.png'), fullPage: true });

  healthy = true;
  await requeue.click();
  await page.getByRole('status').filter({ hasText: 'Requeued' }).waitFor();
  const deadline = Date.now() + 30_000;
  while (!received.some((r) => r.body.includes(contact.id)) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(received.some((r) => r.body.includes(contact.id)), 'the webhook arrived after the requeue');
  await requeue.waitFor({ state: 'detached', timeout: 10_000 });
  await rest('DELETE', `/conflux/flows/${flow}`);
  server.close();
  await page.close();
});

test('a user without access to a field never sees it, in the page or in live updates', async () => {
  const run = Date.now();
  const field = `Hidden_${run}__c`;
  await rest('POST', '/tooling/sobjects/CustomField', {
    FullName: `Account.${field}`,
    Metadata: { type: 'Text', label: `Hidden ${run}`, length: 40 },
  });
  const account = await rest('POST', '/sobjects/Account', { Name: `Field Check ${run}`, [field]: 'classified' });
  const profile = (await rest('GET', `/query?q=${encodeURIComponent("SELECT Id FROM Profile WHERE Name = 'Standard User'")}`)).records[0].Id;
  const username = `viewer.${run}@console.test`;
  const user = await rest('POST', '/sobjects/User', {
    Username: username, LastName: 'Viewer', Email: 'viewer@console.test', Alias: 'viewer', ProfileId: profile,
  });
  await rest('POST', `/sobjects/User/${user.id}/password`, { NewPassword: 'Viewer-passw0rd1' });

  const page = await loggedIn(1280, username, 'Viewer-passw0rd1');
  await page.goto(`${base}/#/r/Account/${account.id}`);
  await page.locator('dd[data-field="Name"]', { hasText: `Field Check ${run}` }).waitFor();
  const visible = async () => (await page.content()).includes('classified') || (await page.content()).includes(`Hidden ${run}`);
  assert.equal(await visible(), false, 'the field is not on the page');
  await rest('PATCH', `/sobjects/Account/${account.id}`, { [field]: 'still classified', Phone: '555-0777' });
  await page.locator('dd[data-field="Phone"]', { hasText: '555-0777' }).waitFor({ timeout: 10_000 });
  assert.equal(await visible(), false, 'nor after a live update');
  await page.getByRole('button', { name: 'Edit' }).click();
  assert.equal(await visible(), false, 'nor in the edit form');
  await page.close();
});

test('every main page passes axe-core\'s WCAG 2 A/AA checks (no serious or critical findings)', async () => {
  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const audit = async (name) => {
    await page.addScriptTag({ path: axePath });
    const result = await page.evaluate(() => window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa'] }));
    const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(' ')})`), [], name);
  };
  await page.goto(`${base}/`);
  await page.getByLabel('Username').waitFor();
  await audit('login');
  await page.getByLabel('Username').fill(process.env.CONFLUX_USERNAME);
  await page.getByLabel('Password').fill(process.env.CONFLUX_PASSWORD);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Objects' }).waitFor();
  await audit('objects');
  const a = await rest('POST', '/sobjects/Account', { Name: 'Audit Co' });
  await page.goto(`${base}/#/o/Account`);
  await page.getByRole('heading', { name: 'Accounts' }).waitFor();
  await audit('list view');
  await page.goto(`${base}/#/r/Account/${a.id}`);
  await page.locator('dd[data-field="Name"]', { hasText: 'Audit Co' }).waitFor();
  await audit('record');
  await page.getByRole('button', { name: 'Edit' }).click();
  await audit('edit form');
  await page.goto(`${base}/#/events`);
  await page.getByLabel('Channel').waitFor();
  await audit('events');
  await page.goto(`${base}/#/integrations`);
  await page.getByRole('heading', { name: 'Integrations' }).waitFor();
  await audit('integrations');
  await context.close();
});

test('the integrations page shows sync jobs with their runs, cursors and refused rows', async () => {
  const job = `Console_Sync_${Date.now()}`;
  await rest('POST', '/sobjects/Account', { Name: `${job} source` });
  await rest('PUT', `/conflux/sync-jobs/${job}`, {
    source: { type: 'org', object: 'Account' },
    target: { type: 'file', path: `${job}.jsonl` },
    mapping: { id: '.Id', name: '.Name' },
  });
  const run = await rest('POST', `/conflux/sync-jobs/${job}/run`);
  const deadline = Date.now() + 30_000;
  let last = { status: 'running' };
  while (last.status === 'running' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    last = (await rest('GET', `/conflux/sync-jobs/${job}/runs?limit=1`)).runs[0];
  }
  assert.equal(last.status, 'succeeded', JSON.stringify(last));
  const page = await loggedIn();
  await page.goto(`${base}/#/integrations`);
  const row = page.locator('table:has(caption:text("Recent runs")) tr', { hasText: job });
  await row.filter({ hasText: 'succeeded' }).filter({ hasText: String(run.runId) }).waitFor();
  await page.locator('table:has(caption:text("Sync jobs")) tr', { hasText: job }).filter({ hasText: 'value' }).waitFor();
  await rest('DELETE', `/conflux/sync-jobs/${job}`);
  await page.close();
});
