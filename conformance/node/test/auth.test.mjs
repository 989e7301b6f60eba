// jsforce 3.10.16 login paths against Conflux: OAuth2 password, SOAP login, identity,
// client_credentials and JWT bearer through Connection#authorize, HTTPS with the
// generated CA, logout, and re-login after an out-of-band revoke.
import {
  env,
  JSFORCE_DEFAULT_VERSION,
  assertInvalidSession,
  assertValidId,
  jwtAssertion,
  rejection,
  revoke,
  soqlQuote,
} from '../support/conflux.mjs';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, test } from 'node:test';
import jsforce from 'jsforce';

const TIMEOUT = { timeout: 60_000 };

function oauthConnection(loginUrl = env.httpUrl, extra = {}) {
  return new jsforce.Connection({
    loginUrl,
    oauth2: { clientId: env.clientId, clientSecret: env.clientSecret, loginUrl },
    ...extra,
  });
}

function soapConnection(loginUrl = env.httpUrl, extra = {}) {
  return new jsforce.Connection({ loginUrl, ...extra });
}

async function whoami(conn) {
  const res = await conn.query(`SELECT Id, Username FROM User WHERE Username = ${soqlQuote(env.username)}`);
  assert.equal(res.totalSize, 1, JSON.stringify(res));
  return res.records[0];
}

function assertOrigin(url, protocol) {
  const u = new URL(url);
  assert.equal(u.protocol, protocol, `${url} should be ${protocol}`);
  assert.equal(`${u.protocol}//${u.host}`, url, `instance URL must be scheme://host[:port]: ${url}`);
}

function assertUserInfo(userInfo) {
  assertValidId(userInfo.id, '005');
  assertValidId(userInfo.organizationId, '00D');
  assert.ok(userInfo.url.endsWith(`/id/${userInfo.organizationId}/${userInfo.id}`), userInfo.url);
}

describe('OAuth2 username-password flow (oauth2 config present)', () => {
  test('login, instance URL and identity()', TIMEOUT, async () => {
    const conn = oauthConnection();
    const userInfo = await conn.login(env.username, env.password);
    assertUserInfo(userInfo);
    assert.equal(conn._sessionType, 'oauth2');
    assertOrigin(conn.instanceUrl, 'http:');
    assert.equal(conn.accessToken.split('.').length === 3, false, 'access token must be opaque, not a JWT');
    assert.equal((await whoami(conn)).Id, userInfo.id);

    // identity(): GET {id URL}?format=json&oauth_token=... (lib/connection.js identity)
    const ident = await conn.identity();
    assert.equal(ident.user_id, userInfo.id);
    assert.equal(ident.organization_id, userInfo.organizationId);
    assert.equal(ident.username, env.username);
    assert.ok(ident.id.endsWith(`/id/${userInfo.organizationId}/${userInfo.id}`), ident.id);
  });

  test('identity() without a stored identity URL reads it from the version resource', TIMEOUT, async () => {
    const first = oauthConnection();
    const userInfo = await first.login(env.username, env.password);
    const conn = new jsforce.Connection({ instanceUrl: first.instanceUrl, accessToken: first.accessToken });
    const ident = await conn.identity(); // GET /services/data/v50.0 -> "identity"
    assert.equal(ident.user_id, userInfo.id);
  });

  test('bad password is rejected with invalid_grant', TIMEOUT, async () => {
    const conn = oauthConnection();
    const err = await rejection(conn.login(env.username, `${env.password}-wrong`));
    assert.equal(err.name, 'invalid_grant', String(err));
    assert.equal(err.message, 'authentication failure');
  });

  test('logout() revokes the access token through /services/oauth2/revoke', TIMEOUT, async () => {
    const conn = oauthConnection();
    await conn.login(env.username, env.password);
    const { instanceUrl, accessToken } = conn;
    await conn.logout();
    assert.equal(conn.accessToken, null);
    await assertInvalidSession(instanceUrl, accessToken);
  });
});

describe('SOAP login (no oauth2 config)', () => {
  test('login posts to {loginUrl}/services/Soap/u/50.0 and uses <serverUrl>', TIMEOUT, async () => {
    const conn = soapConnection();
    const userInfo = await conn.login(env.username, env.password);
    assertUserInfo(userInfo);
    assert.equal(conn._sessionType, 'soap');
    // jsforce synthesises the identity URL as {loginUrl}/id/{orgId}/{userId}
    assert.equal(userInfo.url, `${env.httpUrl}/id/${userInfo.organizationId}/${userInfo.id}`);
    assertOrigin(conn.instanceUrl, 'http:');
    assert.equal((await whoami(conn)).Id, userInfo.id);
    const ident = await conn.identity();
    assert.equal(ident.user_id, userInfo.id);
    assert.equal(ident.username, env.username);
  });

  test('older API version', TIMEOUT, async () => {
    const conn = soapConnection(env.httpUrl, { version: '31.0' });
    const userInfo = await conn.login(env.username, env.password);
    assert.equal((await whoami(conn)).Id, userInfo.id);
  });

  test('bad password is rejected with INVALID_LOGIN', TIMEOUT, async () => {
    const conn = soapConnection();
    const err = await rejection(conn.login(env.username, `${env.password}-wrong`));
    // jsforce throws new Error(<faultstring>) (lib/connection.js loginBySoap)
    assert.match(err.message, /^INVALID_LOGIN\b/);
  });

  test('logout() ends the session with SOAP logout', TIMEOUT, async () => {
    const conn = soapConnection();
    await conn.login(env.username, env.password);
    const { instanceUrl, accessToken } = conn;
    await conn.logout();
    await assertInvalidSession(instanceUrl, accessToken);
  });
});

describe('other OAuth grants through Connection#authorize', () => {
  test('client_credentials (client id/secret in the form body) runs as the admin user', TIMEOUT, async () => {
    const conn = oauthConnection();
    const userInfo = await conn.authorize({ grant_type: 'client_credentials' });
    assertUserInfo(userInfo);
    assert.equal(conn.refreshToken, undefined);
    const me = await whoami(conn);
    assert.equal(me.Id, userInfo.id, 'client_credentials must run as the configured run-as (admin) user');
  });

  test('JWT bearer (RS256, aud https://login.salesforce.com)', TIMEOUT, async () => {
    const conn = new jsforce.Connection({ oauth2: { loginUrl: env.httpUrl } });
    const userInfo = await conn.authorize({
      grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
      assertion: jwtAssertion(),
    });
    assertUserInfo(userInfo);
    assert.equal((await whoami(conn)).Id, userInfo.id);
  });

  test('JWT bearer signed with an unregistered key is rejected with invalid_grant', TIMEOUT, async () => {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const conn = new jsforce.Connection({ oauth2: { loginUrl: env.httpUrl } });
    const err = await rejection(
      conn.authorize({
        grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
        assertion: jwtAssertion({ keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) }),
      }),
    );
    assert.equal(err.name, 'invalid_grant', String(err));
  });
});

describe('HTTPS with the generated CA', () => {
  test('OAuth2 password login and a query over TLS', TIMEOUT, async () => {
    const conn = oauthConnection(env.httpsUrl);
    const userInfo = await conn.login(env.username, env.password);
    assertOrigin(conn.instanceUrl, 'https:');
    assert.equal((await whoami(conn)).Id, userInfo.id);
  });

  test('SOAP login over TLS', TIMEOUT, async () => {
    const conn = soapConnection(env.httpsUrl);
    const userInfo = await conn.login(env.username, env.password);
    assertOrigin(conn.instanceUrl, 'https:');
    assert.equal((await whoami(conn)).Id, userInfo.id);
  });
});

describe('re-login after the session is revoked out-of-band', () => {
  for (const [kind, makeConn] of [
    ['OAuth2 password', () => oauthConnection()],
    ['SOAP', () => soapConnection()],
  ]) {
    test(`${kind}: the next call logs in again and succeeds`, TIMEOUT, async () => {
      const conn = makeConn();
      const userInfo = await conn.login(env.username, env.password);
      let refreshes = 0;
      conn.on('refresh', () => {
        refreshes += 1;
      });

      const first = conn.accessToken;
      await revoke(first);
      await assertInvalidSession(conn.instanceUrl, first);
      assert.equal((await whoami(conn)).Id, userInfo.id);
      assert.notEqual(conn.accessToken, first);
      assert.equal(refreshes, 1);

      // a REST call other than query (GET /sobjects/User/{id}) after a second revoke
      const second = conn.accessToken;
      await revoke(second);
      const user = await conn.sobject('User').retrieve(userInfo.id);
      assert.equal(user.Id, userInfo.id);
      assert.equal(refreshes, 2);
      assert.ok(![first, second].includes(conn.accessToken));
    });
  }

  test('a connection built from an access token alone surfaces INVALID_SESSION_ID', TIMEOUT, async () => {
    const login = oauthConnection();
    await login.login(env.username, env.password);
    const conn = new jsforce.Connection({ instanceUrl: login.instanceUrl, accessToken: login.accessToken });
    await revoke(login.accessToken);
    const err = await rejection(conn.query('SELECT Id FROM User LIMIT 1'));
    assert.equal(err.errorCode, 'INVALID_SESSION_ID', String(err));
  });
});

test('default API version used by this suite is jsforce\'s own', () => {
  assert.equal(new jsforce.Connection({}).version, JSFORCE_DEFAULT_VERSION);
});
