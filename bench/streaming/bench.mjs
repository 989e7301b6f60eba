// The streaming benchmark driver (run by `cargo xtask bench streaming`, see ../README.md).
// The same client, the CometD project's JavaScript client (cometd 9.0.0 + cometd-nodejs-client
// 2.0.0, long polling only), subscribes 100 clients to one channel of each server in turn:
//   faye 1.4.3 and cometd-nodejs-server 1.2.1 (started here as child processes, published to
//   through a Bayeux publisher client; a burst window is one Bayeux batch; the data published is
//   shaped like Conflux's platform event messages), and Conflux (already running; published to through REST:
//   one platform event per request at the steady rate, sObject collections of WINDOW events in
//   the burst; every publish is durable when acknowledged).
// Phases per server: a steady 174 messages/s for STEADY seconds (latency from publish call to
// delivery, p50/p99), then a burst of BURST messages with at most WINDOW unacknowledged
// (deliveries per second until the last delivery). Then, on Conflux only, HELD subscribers
// connect at once and the server's resident memory is read from /proc.
// Prints a JSON object with the results on the last line.
//
// usage: node bench.mjs CONFLUX_URL TOKEN CONFLUX_PID [SUBSCRIBERS STEADY BURST WINDOW HELD]
import { spawn } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { CometD } from 'cometd';
import { adapt } from 'cometd-nodejs-client';

adapt();
const [confluxUrl, token, pid, subs = '100', steady = '10', burst = '2000', window = '50', held = '2000'] =
  process.argv.slice(2);
const SUBSCRIBERS = Number(subs);
const STEADY_SECS = Number(steady);
const BURST = Number(burst);
const WINDOW = Number(window);
const HELD = Number(held);
const RATE = 174;
const now = () => performance.timeOrigin + performance.now();
// BENCH_SERVERS=conflux (or faye,cometd) runs a subset, for profiling one server.
const SERVERS = (process.env.BENCH_SERVERS || 'faye,cometd,conflux').split(',');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('   ', ...a);

/** CPU seconds (user + system) process `p` has used, from /proc/<p>/stat. */
function cpuOf(p) {
  const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100/s)
}

/** CPU seconds this Node process (the clients) has used. */
function ownCpu() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** A CometD client on long polling. */
function client(url, headers) {
  const c = new CometD();
  c.unregisterTransport('websocket');
  c.configure({ url, requestHeaders: headers, appendMessageTypeToURL: false, maxNetworkDelay: 130_000 });
  return c;
}

function handshake(c) {
  return new Promise((resolve, reject) => {
    c.handshake((m) => (m.successful ? resolve(m) : reject(new Error(JSON.stringify(m)))));
  });
}

function subscribe(c, channel, onData) {
  return new Promise((resolve, reject) => {
    c.subscribe(channel, (m) => onData(m.data), (m) => (m.successful ? resolve(m) : reject(new Error(JSON.stringify(m)))));
  });
}

/** Subscribes `n` clients; `onData(data)` sees every delivery. */
async function subscribers(url, headers, channel, n, onData) {
  const clients = [];
  for (let k = 0; k < n; k += 50) {
    const batch = [];
    for (let j = k; j < Math.min(n, k + 50); j++) {
      const c = client(url, headers);
      clients.push(c);
      batch.push(handshake(c).then(() => subscribe(c, channel, onData)));
    }
    await Promise.all(batch);
  }
  return clients;
}

async function disconnect(clients) {
  await Promise.all(clients.map((c) => new Promise((r) => c.disconnect(r))));
}

/**
 * Runs both phases against one server. `publish(t)` sends one message stamped `t`;
 * `publishMany(ts)` sends several and resolves when all are acknowledged.
 */
async function phases(name, serverPid, url, headers, channel, stamp, publish, publishMany) {
  log(`${name}: subscribing ${SUBSCRIBERS} clients`);
  let sink = () => {};
  const clients = await subscribers(url, headers, channel, SUBSCRIBERS, (d) => sink(d));

  // Steady: RATE messages per second.
  const lat = [];
  let delivered = 0;
  sink = (d) => {
    delivered++;
    lat.push(now() - stamp(d));
  };
  log(`${name}: steady ${RATE} msgs/s for ${STEADY_SECS} s`);
  const total = RATE * STEADY_SECS;
  const start = now();
  const pending = [];
  for (let k = 0; k < total; k++) {
    const due = start + (k * 1000) / RATE;
    const wait = due - now();
    if (wait > 1) await sleep(wait);
    pending.push(publish(now()));
  }
  await Promise.all(pending);
  const deadline = now() + 30_000;
  while (delivered < total * SUBSCRIBERS && now() < deadline) await sleep(20);
  lat.sort((a, b) => a - b);
  const steadyResult = {
    sent: total,
    delivered,
    expected: total * SUBSCRIBERS,
    rate: total / ((now() - start) / 1000),
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
  };

  // Burst: BURST messages, at most WINDOW unacknowledged.
  let got = 0;
  let last = 0;
  sink = () => {
    got++;
    last = now();
  };
  log(`${name}: burst of ${BURST} (window ${WINDOW})`);
  const t0 = now();
  const cpu0 = [cpuOf(serverPid), ownCpu()];
  for (let k = 0; k < BURST; k += WINDOW) {
    const n = Math.min(WINDOW, BURST - k);
    await publishMany(Array.from({ length: n }, () => now()));
  }
  const end = now() + 60_000;
  while (got < BURST * SUBSCRIBERS && now() < end) await sleep(10);
  const cpu1 = [cpuOf(serverPid), ownCpu()];
  const burstResult = {
    serverCpu: cpu1[0] - cpu0[0],
    clientCpu: cpu1[1] - cpu0[1],
    delivered: got,
    expected: BURST * SUBSCRIBERS,
    seconds: (last - t0) / 1000,
    rate: got / ((last - t0) / 1000),
  };
  await disconnect(clients);
  return { steady: steadyResult, burst: burstResult };
}

/** Starts a peer server; resolves with its child process once it listens. */
function peer(kind, port) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [new URL('./peer.mjs', import.meta.url).pathname, kind, String(port)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    child.stdout.on('data', (b) => {
      if (String(b).includes('ready')) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`${kind} exited with ${code}`)));
  });
}

/**
 * What a peer's publisher sends: the shape and size of the platform event message Conflux
 * delivers, so every server moves the same bytes to the same client code.
 */
function peerData(t, n) {
  return {
    schema: 'Hq1zAQwOAeVh4Zb8eXE2Cw',
    payload: { CreatedDate: '2026-12-02T14:43:55.123Z', CreatedById: '005Ny4000000001AAA', T__c: t },
    event: { EventUuid: `2ec0e371-9c1f-4f7e-9a43-${String(n).padStart(12, '0')}`, replayId: n },
  };
}

async function bayeuxPeer(kind, port, path) {
  const child = await peer(kind, port);
  const url = `http://127.0.0.1:${port}${path}`;
  const pub = client(url, {});
  await handshake(pub);
  let n = 0;
  const send = (t) => new Promise((resolve) => pub.publish('/bench/ticks', peerData(t, ++n), () => resolve()));
  // A window of publishes goes out as one Bayeux batch (one HTTP request), as the performance
  // anchors' runs did.
  const sendMany = (ts) => {
    let all;
    pub.batch(() => {
      all = Promise.all(ts.map(send));
    });
    return all;
  };
  try {
    return await phases(kind, child.pid, url, {}, '/bench/ticks', (d) => d.payload.T__c, send, sendMany);
  } finally {
    await new Promise((r) => pub.disconnect(r));
    child.kill('SIGKILL');
  }
}

// Conflux's REST calls go through node:http with a kept-alive agent, the HTTP stack the CometD
// client (and so the peers' publisher) uses; `fetch` (undici) costs this process ≈ 0.6 ms more
// per call, which the steady latency would count against Conflux.
const AGENT = new http.Agent({ keepAlive: true });

function rest(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${confluxUrl}/services/data/v59.0${path}`,
      {
        method,
        agent: AGENT,
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode >= 300) reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`));
          else resolve(text ? JSON.parse(text) : null);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body && JSON.stringify(body));
  });
}

function rssMb(p) {
  const status = fs.readFileSync(`/proc/${p}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
  return kb / 1024;
}

async function conflux() {
  await rest('POST', '/tooling/sobjects/CustomObject', {
    FullName: 'Bench_Tick__e',
    Metadata: { label: 'Bench Tick', pluralLabel: 'Bench Ticks', publishBehavior: 'PublishAfterCommit' },
  });
  await rest('POST', '/tooling/sobjects/CustomField', {
    FullName: 'Bench_Tick__e.T__c',
    Metadata: { type: 'Number', label: 'T', precision: 18, scale: 3 },
  });
  const url = `${confluxUrl}/cometd/59.0`;
  const headers = { Authorization: `Bearer ${token}` };
  const channel = '/event/Bench_Tick__e';
  const one = (t) => rest('POST', '/sobjects/Bench_Tick__e', { T__c: t });
  const many = (ts) =>
    rest('POST', '/composite/sobjects', {
      allOrNone: true,
      records: ts.map((t) => ({ attributes: { type: 'Bench_Tick__e' }, T__c: t })),
    });
  const result = await phases('conflux', pid, url, headers, channel, (d) => d.payload.T__c, one, many);
  if (HELD === 0) return result;

  log(`conflux: ${HELD} subscribers held at once`);
  const rssBefore = rssMb(pid);
  let seen = 0;
  const clients = await subscribers(url, headers, channel, HELD, () => seen++);
  await sleep(2000); // every client is now in a held /meta/connect
  const rssHeld = rssMb(pid);
  const t0 = now();
  await one(now());
  const deadline = now() + 60_000;
  while (seen < HELD && now() < deadline) await sleep(10);
  const fanout = (now() - t0) / 1000;
  await disconnect(clients);
  result.held = { clients: HELD, delivered: seen, rssBeforeMb: rssBefore, rssHeldMb: rssHeld, fanoutSeconds: fanout };
  return result;
}

const out = {};
if (SERVERS.includes('faye')) out.faye = await bayeuxPeer('faye', 18000, '/faye');
if (SERVERS.includes('cometd')) out.cometd = await bayeuxPeer('cometd', 18100, '/cometd');
if (SERVERS.includes('conflux')) out.conflux = await conflux();
console.log(JSON.stringify(out));
process.exit(0);
