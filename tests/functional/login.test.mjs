// Sign-In with Ethereum (EIP-4361) against the real broker, signed by ethers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Wallet } from 'ethers';
import { tempDir, startBroker, api, apiOk, nonceInfo, siweMessage, loginWithEthers, gridJson, newKey, assertApiError } from './lib.mjs';

async function setup(t) {
  const dir = await tempDir(t);
  const broker = await startBroker(t, { db: path.join(dir, 'b.db'), dir });
  return { dir, url: broker.url, broker };
}

// A signed login body for `wallet` with optional message overrides.
async function signedLogin(url, wallet, over = {}, signer = wallet) {
  const n = await nonceInfo(url);
  const message = siweMessage({ domain: n.domain, address: wallet.address, uri: n.uri, chainId: n.chain_id, nonce: n.nonce, ...over });
  return { message, signature: await signer.signMessage(message) };
}

test('an ethers-signed SIWE message logs in; the token works; a replay is refused', async (t) => {
  const { url } = await setup(t);
  const w = Wallet.createRandom();
  const n = await nonceInfo(url);
  assert.match(n.nonce, /^[A-Za-z0-9]{8,}$/);
  assert.match(n.domain, /^127\.0\.0\.1:\d+$/);
  assert.equal(n.uri, url);
  assert.equal(typeof n.chain_id, 'number');
  const message = siweMessage({ domain: n.domain, address: w.address, uri: n.uri, chainId: n.chain_id, nonce: n.nonce });
  const signature = await w.signMessage(message);
  const r = await api(url, 'POST', '/v1/auth/login', { message, signature });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.address, w.address.toLowerCase());
  assert.ok(Date.parse(r.body.expires_at) > Date.now());
  const bal = await api(url, 'GET', '/v1/wallet/balance', undefined, r.body.token);
  assert.equal(bal.status, 200, bal.text);
  assert.deepEqual(bal.body, { available: '0.000000', held: '0.000000', earned: '0.000000' });

  // The same message and signature again: the nonce is single-use.
  const again = await api(url, 'POST', '/v1/auth/login', { message, signature });
  assertApiError(assert, again, 401, { code: 'unauthenticated', match: /nonce/ });
});

test('a nonce the broker never issued is refused', async (t) => {
  const { url } = await setup(t);
  const w = Wallet.createRandom();
  const body = await signedLogin(url, w, { nonce: 'ZZZZZZZZZZZZZZZZ' });
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', body), 401);
});

test('a message for another domain is refused', async (t) => {
  const { url } = await setup(t);
  const w = Wallet.createRandom();
  const body = await signedLogin(url, w, { domain: 'evil.example.com' });
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', body), 401, { match: /domain/ });
});

test('a message for another chain id is refused', async (t) => {
  const { url } = await setup(t);
  const w = Wallet.createRandom();
  const body = await signedLogin(url, w, { chainId: 1 });
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', body), 401, { match: /chain/i });
});

test('a signature by another wallet is refused', async (t) => {
  const { url } = await setup(t);
  const victim = Wallet.createRandom();
  const attacker = Wallet.createRandom();
  const body = await signedLogin(url, victim, {}, attacker);
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', body), 401, { match: /signed by/ });
  // A signature that is not even 65 bytes.
  const body2 = await signedLogin(url, victim);
  body2.signature = body2.signature.slice(0, 40);
  const r2 = await api(url, 'POST', '/v1/auth/login', body2);
  assert.ok(r2.status === 400 || r2.status === 401, r2.text);
  assertApiError(assert, r2, r2.status);
});

test('an expired Expiration Time is refused; a future one is accepted', async (t) => {
  const { url } = await setup(t);
  const w = Wallet.createRandom();
  const past = new Date(Date.now() - 60_000).toISOString();
  const body = await signedLogin(url, w, { expirationTime: past });
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', body), 401, { match: /expir/i });
  const token = await loginWithEthers(url, w, { expirationTime: new Date(Date.now() + 600_000).toISOString() });
  assert.ok(token);
});

test('an Issued At far in the future or long ago is refused', async (t) => {
  const { url } = await setup(t);
  const w = Wallet.createRandom();
  const future = await signedLogin(url, w, { issuedAt: new Date(Date.now() + 3600_000).toISOString() });
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', future), 401);
  const old = await signedLogin(url, w, { issuedAt: new Date(Date.now() - 3600_000).toISOString() });
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', old), 401);
});

test('malformed login requests get 400', async (t) => {
  const { url } = await setup(t);
  const w = Wallet.createRandom();
  const n = await nonceInfo(url);
  const garbage = 'hello, this is not a SIWE message';
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', { message: garbage, signature: await w.signMessage(garbage) }), 400);
  // Missing the Nonce line.
  const good = siweMessage({ domain: n.domain, address: w.address, uri: n.uri, chainId: n.chain_id, nonce: n.nonce });
  const noNonce = good.replace(/\nNonce: .*/, '');
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', { message: noNonce, signature: await w.signMessage(noNonce) }), 400);
  // Not JSON, missing fields, wrong types, unknown fields.
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', '{"message":', undefined, { raw: true }), 400);
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', { message: good }), 400);
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', { message: 5, signature: '0x' }), 400);
  assertApiError(assert, await api(url, 'POST', '/v1/auth/login', { message: good, signature: await w.signMessage(good), extra: 1 }), 400);
  // The nonce was not burned by any of these: a correct login still works.
  const r = await api(url, 'POST', '/v1/auth/login', { message: good, signature: await w.signMessage(good) });
  assert.equal(r.status, 200, r.text);
});

test('tampered, garbage and missing tokens get 401', async (t) => {
  const { url } = await setup(t);
  const w = Wallet.createRandom();
  const other = Wallet.createRandom();
  const token = await loginWithEthers(url, w);
  assert.equal((await api(url, 'GET', '/v1/wallet/balance', undefined, token)).status, 200);
  // Swap the address in the token for another account's.
  const parts = token.split('.');
  assert.equal(parts.length, 4, token);
  const swapped = [parts[0], other.address.toLowerCase(), parts[2], parts[3]].join('.');
  // Extend the expiry.
  const extended = [parts[0], parts[1], String(Number(parts[2]) + 1e9), parts[3]].join('.');
  // Flip one hex digit of the MAC.
  const last = parts[3];
  const flipped = [parts[0], parts[1], parts[2], last.slice(0, -1) + (last.at(-1) === '0' ? '1' : '0')].join('.');
  for (const bad of [swapped, extended, flipped, 'garbage', 'gm1.', token + 'x', 'gm1.a.b.c', 'gm1.0x00.99999999999999999999.00']) {
    const r = await api(url, 'GET', '/v1/wallet/balance', undefined, bad);
    assertApiError(assert, r, 401, { code: 'unauthenticated' });
  }
  assertApiError(assert, await api(url, 'GET', '/v1/wallet/balance'), 401);
  assertApiError(assert, await api(url, 'GET', '/v1/wallet/balance', undefined, undefined, { headers: { authorization: token } }), 401);
  assertApiError(assert, await api(url, 'GET', '/v1/wallet/balance', undefined, undefined, { headers: { authorization: 'Basic ' + token } }), 401);
  assertApiError(assert, await api(url, 'POST', '/v1/wallet/faucet', { amount: '1' }, 'garbage'), 401);
});

test('grid login --json prints {token, address, expires_at} and the token works', async (t) => {
  const { dir, url } = await setup(t);
  const k = await newKey(dir, 'me');
  const r = await gridJson(dir, ['login'], { key: k.key, broker: url });
  assert.deepEqual(Object.keys(r).sort(), ['address', 'expires_at', 'token']);
  assert.equal(r.address, k.address.toLowerCase());
  assert.ok(Date.parse(r.expires_at) > Date.now() + 3600_000);
  const bal = await apiOk(url, 'GET', '/v1/wallet/balance', undefined, r.token);
  assert.equal(bal.available, '0.000000');
});

test('a token survives a broker restart on the same database', async (t) => {
  const { dir, url, broker } = await setup(t);
  const w = Wallet.createRandom();
  const token = await loginWithEthers(url, w);
  await broker.kill('SIGTERM');
  const b2 = await startBroker(t, { db: path.join(dir, 'b.db'), dir });
  const r = await api(b2.url, 'GET', '/v1/wallet/balance', undefined, token);
  assert.equal(r.status, 200, r.text);
});
