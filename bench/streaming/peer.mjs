// A peer Bayeux server for the streaming benchmark, on 127.0.0.1:PORT:
//   node peer.mjs faye PORT     faye 1.4.3, mounted at /faye (timeout 45 s)
//   node peer.mjs cometd PORT   cometd-nodejs-server 1.2.1 at /cometd (maxSessionsPerBrowser -1:
//                               the benchmark's clients share one cookie jar)
// Prints "ready" once listening.
import http from 'node:http';
import faye from 'faye';
import cometdServer from 'cometd-nodejs-server';

const [kind, port] = process.argv.slice(2);
let server;
if (kind === 'faye') {
  const bayeux = new faye.NodeAdapter({ mount: '/faye', timeout: 45 });
  server = http.createServer();
  bayeux.attach(server);
} else if (kind === 'cometd') {
  const cometd = cometdServer.createCometDServer({ maxSessionsPerBrowser: -1 });
  server = http.createServer(cometd.handle);
} else {
  console.error('usage: node peer.mjs faye|cometd PORT');
  process.exit(2);
}
server.listen(Number(port), '127.0.0.1', () => console.log('ready'));
