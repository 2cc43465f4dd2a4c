// Bad input gets a clear 4xx JSON error and changes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { Wallet } from 'ethers';
import {
  tempDir, startBroker, grid, api, apiOk, account, faucet, provideMachine, nonceInfo, leaseBody, newKey, auditDb, spec,
  assertApiError,
} from './lib.mjs';

// A world with a provider, a listed machine, a funded renter and one lease.
async function world(t) {
  const dir = await tempDir(t);
  const db = path.join(dir, 'b.db');
  const broker = await startBroker(t, { db, dir });
  const url = broker.url;
  const prov = await account(url);
  const rent = await account(url);
  const m = await provideMachine(url, prov, { price: '2.10' });
  await faucet(url, rent, '100');
  const { chain_id } = await nonceInfo(url);
  const body = await leaseBody(rent.wallet, chain_id, { offerId: m.id * 1000 + 1, gpus: 1, pricePerHourMicros: 2_100_000n, nonce: '777' });
  const lease = await apiOk(url, 'POST', '/v1/leases', body, rent.token);
  return { dir, db, broker, url, prov, rent, m, chain_id, lease, leaseReq: body };
}

// Everything a bad request might have changed.
async function snapshot(w) {
  const get = (p, tok) => apiOk(w.url, 'GET', p, undefined, tok);
  return {
    rentBal: await get('/v1/wallet/balance', w.rent.token),
    provBal: await get('/v1/wallet/balance', w.prov.token),
    rentHist: (await get('/v1/wallet/history', w.rent.token)).entries.length,
    leases: (await get('/v1/leases', w.rent.token)).leases.map((l) => ({ ...l, running_seconds: 0 })),
    machines: await get('/v1/machines', w.prov.token),
    offers: await get('/v1/offers'),
  };
}

async function unchanged(w, before, what) {
  assert.deepEqual(await snapshot(w), before, `${what} changed nothing`);
}

test('malformed and non-object JSON bodies get 400 everywhere', async (t) => {
  const w = await world(t);
  const before = await snapshot(w);
  const targets = [
    ['POST', '/v1/wallet/faucet', w.rent.token],
    ['POST', '/v1/machines', w.prov.token],
    ['PUT', `/v1/machines/${w.m.id}/offer`, w.prov.token],
    ['POST', '/v1/leases', w.rent.token],
    ['POST', `/v1/leases/${w.lease.id}/status`, w.prov.token],
    ['POST', '/v1/auth/login', undefined],
  ];
  const bodies = ['{', '{"amount": "1",}', 'not json', '', '[1,2]', '"x"', 'null', '5', 'true', '{"a":' + '['.repeat(100) + ']'.repeat(100) + '}'];
  for (const [method, p, tok] of targets) {
    for (const b of bodies) {
      const r = await api(w.url, method, p, b, tok, { raw: true });
      assertApiError(assert, r, 400, { code: 'invalid_argument' });
      assert.ok(r.body.error.message.length > 5, r.text);
    }
  }
  await unchanged(w, before, 'malformed bodies');
});

test('wrong types, bad amounts and unknown fields get 400', async (t) => {
  const w = await world(t);
  const before = await snapshot(w);
  const cases = [
    ['POST', '/v1/wallet/faucet', { amount: 100 }, w.rent.token, /decimal string/],
    ['POST', '/v1/wallet/faucet', { amount: '-5' }, w.rent.token],
    ['POST', '/v1/wallet/faucet', { amount: '0' }, w.rent.token],
    ['POST', '/v1/wallet/faucet', { amount: '99999999999999999999' }, w.rent.token],
    ['POST', '/v1/wallet/faucet', { amount: '9223372036854.775808' }, w.rent.token],
    ['POST', '/v1/wallet/faucet', { amount: '1.0000001' }, w.rent.token],
    ['POST', '/v1/wallet/faucet', { amount: '1e3' }, w.rent.token],
    ['POST', '/v1/wallet/faucet', { amount: ' 1' }, w.rent.token],
    ['POST', '/v1/wallet/faucet', { amount: '' }, w.rent.token],
    ['POST', '/v1/wallet/faucet', { amount: '0x10' }, w.rent.token],
    ['POST', '/v1/wallet/faucet', { amount: '10001' }, w.rent.token, /at most/],
    ['POST', '/v1/wallet/faucet', {}, w.rent.token, /required/],
    ['POST', '/v1/wallet/faucet', { amount: '1', bonus: true }, w.rent.token, /unknown field/],
    ['POST', '/v1/wallet/faucet', { amount: '1', idempotency_key: 5 }, w.rent.token],
    ['POST', '/v1/wallet/faucet', { amount: '1', idempotency_key: 'k'.repeat(129) }, w.rent.token],
    ['POST', '/v1/machines', spec({ num_gpus: '8' }), w.prov.token, /num_gpus/],
    ['POST', '/v1/machines', spec({ num_gpus: 0 }), w.prov.token, /num_gpus/],
    ['POST', '/v1/machines', spec({ num_gpus: 8.5 }), w.prov.token, /num_gpus/],
    ['POST', '/v1/machines', spec({ num_gpus: 1e30 }), w.prov.token, /num_gpus/],
    ['POST', '/v1/machines', spec({ num_gpus: 18446744073709551615 }), w.prov.token, /num_gpus/],
    ['POST', '/v1/machines', spec({ gpu_ram: '24' }), w.prov.token, /gpu_ram/],
    ['POST', '/v1/machines', spec({ datacenter: 'yes' }), w.prov.token, /datacenter/],
    ['POST', '/v1/machines', spec({ gpu_name: undefined }), w.prov.token, /gpu_name/],
    ['POST', '/v1/machines', spec({ id: 5 }), w.prov.token, /set by the broker/],
    ['POST', '/v1/machines', spec({ extra: { nested: 1 } }), w.prov.token],
    ['PUT', `/v1/machines/${w.m.id}/offer`, { price_gpu: 2.1 }, w.prov.token, /decimal string/],
    ['PUT', `/v1/machines/${w.m.id}/offer`, { price_gpu: '-1' }, w.prov.token],
    ['PUT', `/v1/machines/${w.m.id}/offer`, { price_gpu: '1.1234567' }, w.prov.token],
    ['PUT', `/v1/machines/${w.m.id}/offer`, { price_gpu: '1', min_chunk: 0 }, w.prov.token],
    ['PUT', `/v1/machines/${w.m.id}/offer`, { price_gpu: '1', min_chunk: '2' }, w.prov.token],
    ['PUT', `/v1/machines/${w.m.id}/offer`, { price_gpu: '1', end_date: 'tomorrow' }, w.prov.token, /end_date/],
    ['PUT', `/v1/machines/${w.m.id}/offer`, { price_gpu: '1', discount: '5' }, w.prov.token, /unknown field/],
    ['POST', `/v1/leases/${w.lease.id}/status`, { state: 'pending' }, w.prov.token, /state/],
    ['POST', `/v1/leases/${w.lease.id}/status`, { state: 'exploded' }, w.prov.token, /state/],
    ['POST', `/v1/leases/${w.lease.id}/status`, { state: 'running', extra: 1 }, w.prov.token, /unknown field/],
    ['POST', `/v1/leases/${w.lease.id}/status`, { state: 'running', message: 'x'.repeat(2000) }, w.prov.token],
    ['GET', `/v1/offers?q=${encodeURIComponent('num_gpus>=abc')}`, undefined, undefined, /num_gpus/],
    ['GET', `/v1/offers?q=${encodeURIComponent('dph<-1x')}`, undefined, undefined, /dph/],
    ['GET', '/v1/offers?num_gpus=4', undefined, undefined, /search fields go in the query/],
    ['GET', '/v1/offers?limit=10001', undefined, undefined, /limit/],
    ['GET', '/v1/offers?colour=blue', undefined, undefined, /unknown search parameter/],
    ['GET', '/v1/wallet/history?limit=0', undefined, w.rent.token],
  ];
  for (const [method, p, body, tok, match] of cases) {
    const r = await api(w.url, method, p, body, tok);
    assert.equal(r.status, 400, `${method} ${p} ${JSON.stringify(body)?.slice(0, 120)} -> ${r.status} ${r.text}`);
    assertApiError(assert, r, 400, { code: 'invalid_argument', match });
  }
  await unchanged(w, before, 'bad fields');
});

test('lease bodies: bad fields, mismatches, replays, expired and foreign orders', async (t) => {
  const w = await world(t);
  const before = await snapshot(w);
  const offerId = w.m.id * 1000 + 1;
  const sign = (over = {}, wallet = w.rent.wallet) =>
    leaseBody(wallet, w.chain_id, { offerId, gpus: 1, pricePerHourMicros: 2_100_000n, ...over });
  const post = (body, tok = w.rent.token) => api(w.url, 'POST', '/v1/leases', body, tok);

  // Shape errors: 400.
  const good = await sign();
  const shape = [
    { ...good, image: '' },
    { ...good, image: 'x'.repeat(300) },
    { ...good, image: 5 },
    { ...good, env: ['NOEQUALS'] },
    { ...good, env: ['=v'] },
    { ...good, env: 'A=1' },
    { ...good, command: [1, 2] },
    { ...good, offer_id: '1001' },
    { ...good, offer_id: -1 },
    { ...good, gpus: 1000 },
    { ...good, surprise: 1 },
    { ...good, ports: 22 },
    { ...good, ports: [0] },
    { ...good, ports: [70000] },
    { ...good, ports: ['22'] },
    { ...good, ports: [80, 80] },
    { ...good, ports: Array.from({ length: 17 }, (_, i) => 1000 + i) },
    { ...good, ssh_key: 'hello' },
    { ...good, ssh_key: 'ssh-ed25519' },
    { ...good, ssh_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\nssh-rsa AAAA' },
    { ...good, ssh_key: '-----BEGIN OPENSSH PRIVATE KEY-----' },
    { ...good, ssh_key: 7 },
    { ...good, order: undefined },
    { ...good, order: 'signed' },
    { ...good, order: { ...good.order, nonce: 7 } },
    { ...good, order: { ...good.order, nonce: '-1' } },
    { ...good, order: { ...good.order, nonce: '18446744073709551616' } },
    { ...good, order: { ...good.order, price_per_hour: 2.1 } },
    { ...good, order: { ...good.order, expiry: '123' } },
    { ...good, order: { ...good.order, signature: '0x1234' } },
    { ...good, order: { ...good.order, signature: 'zz' } },
    { ...good, order: { ...good.order, extra: 1 } },
    // The request and the signed order disagree.
    { ...good, gpus: 2 },
    { ...good, offer_id: w.m.id * 1000 + 2, gpus: 1 },
  ];
  for (const b of shape) {
    const r = await post(b);
    assert.equal(r.status, 400, `${JSON.stringify(b).slice(0, 300)} -> ${r.status} ${r.text}`);
    assertApiError(assert, r, 400);
  }

  // A tampered order: the signature no longer matches what it says, so it
  // recovers to some other address.
  const tampered = { ...good, order: { ...good.order, expiry: good.order.expiry + 1 } };
  const rt = await post(tampered);
  assert.ok(rt.status === 403 || rt.status === 400, rt.text);
  assertApiError(assert, rt, rt.status, { match: /signed by/ });

  // Signed by someone else (a valid signature by another wallet).
  const foreign = await sign({}, Wallet.createRandom());
  assertApiError(assert, await post(foreign), 403, { code: 'permission_denied', match: /signed by/ });

  // Expired.
  const expired = await sign({ expiry: Math.floor(Date.now() / 1000) - 10 });
  assertApiError(assert, await post(expired), 400, { match: /expired/ });

  // The nonce of the existing lease again: 409, even on another offer.
  assertApiError(assert, await post(w.leaseReq), 409, { code: 'conflict', match: /nonce 777 already used/ });
  const reuse = await sign({ nonce: '777', offerId: w.m.id * 1000 + 2, gpus: 2, pricePerHourMicros: 4_200_000n });
  assertApiError(assert, await post(reuse), 409, { match: /nonce/ });

  // Unknown offers: 404.
  const unknown = await sign({ offerId: 999999 });
  assertApiError(assert, await post(unknown), 404);

  await unchanged(w, before, 'rejected lease creates');
});

test('unknown and non-numeric ids, unknown routes', async (t) => {
  const w = await world(t);
  const before = await snapshot(w);
  const R = w.rent.token, P = w.prov.token;
  const notFound = [
    ['GET', '/v1/leases/999999', R],
    ['POST', '/v1/leases/999999/stop', R],
    ['POST', '/v1/leases/999999/status', P, { state: 'running' }],
    ['GET', '/v1/machines/999999', P],
    ['PUT', '/v1/machines/999999/offer', P, { price_gpu: '1' }],
    ['DELETE', '/v1/machines/999999/offer', P],
    ['GET', '/v1/offers/999999'],
    ['GET', '/v1/offers/1000'],
    ['GET', `/v1/offers/${w.m.id * 1000 + 9}`],
    ['GET', '/v1/offers/9223372036854775807'],
    // Unknown routes.
    ['GET', '/nope'],
    ['GET', '/v2/leases', R],
    ['GET', '/v1', R],
    ['GET', '/v1/nothing', R],
    ['GET', '/v1/nothing'],
    ['DELETE', '/v1/leases', R],
    ['GET', `/v1/leases/${w.lease.id}/stop`, R],
    ['POST', '/v1/wallet/balance', R],
    ['GET', '/v1/wallet/balance/extra', R],
    ['PUT', '/healthz'],
  ];
  for (const [method, p, tok, body] of notFound) {
    const r = await api(w.url, method, p, body, tok);
    assert.equal(r.status, 404, `${method} ${p} -> ${r.status} ${r.text}`);
    assertApiError(assert, r, 404, { code: 'not_found' });
  }
  const badIds = [
    ['GET', '/v1/leases/abc', R],
    ['GET', '/v1/leases/-1', R],
    ['GET', '/v1/leases/0', R],
    ['GET', '/v1/leases/1.5', R],
    ['GET', '/v1/leases/99999999999999999999999', R],
    ['POST', '/v1/leases/abc/stop', R],
    ['GET', '/v1/machines/abc', P],
    ['PUT', '/v1/machines/1e3/offer', P, { price_gpu: '1' }],
    ['GET', '/v1/offers/abc'],
    ['GET', '/v1/offers/-5'],
  ];
  for (const [method, p, tok, body] of badIds) {
    const r = await api(w.url, method, p, body, tok);
    assert.equal(r.status, 400, `${method} ${p} -> ${r.status} ${r.text}`);
    assertApiError(assert, r, 400, { match: /positive integer id/ });
  }
  await unchanged(w, before, 'unknown ids');
});

// Sends a raw body with node:http (fetch may fail on an early 413 + close).
function rawPost(url, p, body, token) {
  return new Promise((resolve, reject) => {
    const u = new URL(url + p);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${token}` } }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode, text: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('a 2 MB body gets 413 and the broker goes on serving', async (t) => {
  const w = await world(t);
  const before = await snapshot(w);
  const big = JSON.stringify({ amount: '1', idempotency_key: 'x'.repeat(2 << 20) });
  const r = await rawPost(w.url, '/v1/wallet/faucet', big, w.rent.token);
  assert.equal(r.status, 413, r.text);
  const body = JSON.parse(r.text);
  assert.equal(typeof body.error.message, 'string');
  assert.match(body.error.message, /too large/);
  // fetch too (it may see the early close; if it gets an answer, it is 413).
  try {
    const f = await api(w.url, 'POST', '/v1/machines', spec({ notes: 'y'.repeat(2 << 20) }), w.prov.token);
    assert.equal(f.status, 413, f.text);
  } catch (e) {
    assert.match(String(e.cause?.code ?? e.message), /EPIPE|ECONNRESET|fetch failed|UND_ERR/);
  }
  await unchanged(w, before, 'oversized bodies');
  assert.equal((await api(w.url, 'GET', '/healthz')).status, 200);
});

test('bad input leaves the books balanced', async (t) => {
  const w = await world(t);
  // A mix of everything above, then the audit.
  for (const amount of ['-1', '1.0000001', '99999999999999999999', 'abc']) {
    assert.equal((await api(w.url, 'POST', '/v1/wallet/faucet', { amount }, w.rent.token)).status, 400);
  }
  assert.equal((await api(w.url, 'POST', '/v1/leases', w.leaseReq, w.rent.token)).status, 409);
  await w.broker.kill('SIGTERM');
  const off = await auditDb(w.dir, w.db);
  assert.equal(off.code, 0, off.stdout + off.stderr);
});

test('CLI: a bad amount exits 1 with one line; an unknown subcommand exits 2', async (t) => {
  const dir = await tempDir(t);
  const k = await newKey(dir, 'k');
  // No broker is needed: the amount is checked before any network call.
  for (const amt of ['-5', '1.0000001', 'abc', '99999999999999999999']) {
    const r = await grid(dir, ['wallet', 'faucet', amt], { key: k.key, broker: 'http://127.0.0.1:9' });
    assert.equal(r.code, 1, `${amt}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^grid: .*amount/);
    assert.equal(r.stdout, '');
  }
  const bad = await grid(dir, ['machines', 'list-offer', '1', '--price-gpu', '1.2345678'], { key: k.key, broker: 'http://127.0.0.1:9' });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /price-gpu/);
  for (const args of [['frobnicate'], ['wallet', 'frobnicate'], ['leases'], [], ['--no-such-flag', 'wallet', 'balance']]) {
    const r = await grid(dir, args);
    assert.equal(r.code, 2, `grid ${args.join(' ')} -> ${r.code}: ${r.stderr}`);
  }
  // No broker running: a clear one-line error, exit 1.
  const down = await grid(dir, ['wallet', 'balance'], { key: k.key, broker: 'http://127.0.0.1:9' });
  assert.equal(down.code, 1, down.stderr);
  assert.equal(down.stderr.trim().split('\n').length, 1, down.stderr);
});
