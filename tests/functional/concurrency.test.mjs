// Many renters race for one machine's GPUs: exactly as many leases as GPUs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Wallet } from 'ethers';
import { tempDir, startBroker, api, apiOk, account, faucet, provideMachine, nonceInfo, leaseBody, auditDb, money, SANITIZED } from './lib.mjs';

test('50 parallel lease creates on one 8-GPU machine: exactly 8 succeed', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'b.db');
  const broker = await startBroker(t, { db, dir, extraArgs: ['--threads', '8'] });
  const url = broker.url;
  const prov = await account(url);
  const m = await provideMachine(url, prov, { price: '2.10', minChunk: 1 });
  const { chain_id } = await nonceInfo(url);

  const N = 50;
  const WALLETS = SANITIZED ? 10 : 25; // each wallet sends N/WALLETS requests with distinct nonces
  const renters = [];
  for (let i = 0; i < WALLETS; i++) renters.push(await account(url, Wallet.createRandom()));
  await Promise.all(renters.map((r) => faucet(url, r, '100')));
  const offerId = m.id * 1000 + 1;
  const bodies = await Promise.all(Array.from({ length: N }, (_, i) => {
    const r = renters[i % WALLETS];
    return leaseBody(r.wallet, chain_id, { offerId, gpus: 1, pricePerHourMicros: 2_100_000n, nonce: String(1000 + i) }).then((b) => ({ r, b }));
  }));

  const results = await Promise.all(bodies.map(({ r, b }) => api(url, 'POST', '/v1/leases', b, r.token)));
  const ok = results.filter((x) => x.status === 201);
  const conflicts = results.filter((x) => x.status === 409);
  const other = results.filter((x) => x.status !== 201 && x.status !== 409);
  assert.deepEqual(other.map((x) => `${x.status} ${x.text}`), []);
  assert.equal(ok.length, 8, `successes: ${ok.length}`);
  assert.equal(conflicts.length, N - 8);
  for (const c of conflicts) {
    assert.equal(c.body.error.code, 'not_available', c.text);
    assert.match(c.body.error.message, /no longer available/);
  }

  // Every GPU index once; the leases are what the broker lists.
  const gpus = ok.flatMap((x) => x.body.gpus).sort((a, b) => a - b);
  assert.deepEqual(gpus, [0, 1, 2, 3, 4, 5, 6, 7]);
  const listed = await apiOk(url, 'GET', '/v1/leases', undefined, prov.token);
  const active = listed.leases.filter((l) => l.state !== 'ended');
  assert.equal(active.length, 8);
  assert.deepEqual(active.flatMap((l) => l.gpus).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal((await apiOk(url, 'GET', `/v1/machines/${m.id}`, undefined, prov.token)).free_gpus, 0);
  assert.deepEqual((await apiOk(url, 'GET', `/v1/offers?q=machine_id%3D${m.id}`)).offers, []);

  // Money: each winner holds exactly 10 minutes of 2.10/h; losers hold nothing.
  const held = new Map();
  for (const x of ok) held.set(x.body.renter, (held.get(x.body.renter) ?? 0) + 1);
  for (const r of renters) {
    const b = await apiOk(url, 'GET', '/v1/wallet/balance', undefined, r.token);
    const n = held.get(r.address) ?? 0;
    assert.equal(b.held, money(350_000n * BigInt(n)), `${r.address} holds for ${n} leases`);
  }

  // A race between stops and new creates keeps the invariant too.
  const stopIds = ok.slice(0, 4).map((x) => x.body);
  const more = await Promise.all(Array.from({ length: 8 }, (_, i) => {
    const r = renters[i % WALLETS];
    return leaseBody(r.wallet, chain_id, { offerId, gpus: 1, pricePerHourMicros: 2_100_000n, nonce: String(5000 + i) }).then((b) => ({ r, b }));
  }));
  const owner = new Map(renters.map((r) => [r.address, r]));
  const race = await Promise.all([
    ...stopIds.map((l) => api(url, 'POST', `/v1/leases/${l.id}/stop`, undefined, owner.get(l.renter).token)),
    ...more.map(({ r, b }) => api(url, 'POST', '/v1/leases', b, r.token)),
  ]);
  for (const x of race) assert.ok([200, 201, 409].includes(x.status), `${x.status} ${x.text}`);
  const after = (await apiOk(url, 'GET', '/v1/leases', undefined, prov.token)).leases.filter((l) => l.state !== 'ended');
  const idx = after.flatMap((l) => l.gpus);
  assert.equal(new Set(idx).size, idx.length, `no GPU in two active leases: ${idx}`);
  assert.ok(idx.length <= 8);

  const audit = await apiOk(url, 'GET', '/v1/admin/audit', undefined, prov.token);
  assert.equal(audit.ok, true, JSON.stringify(audit.failures));
  await broker.kill('SIGTERM');
  const off = await auditDb(dir, db);
  assert.equal(off.code, 0, off.stdout + off.stderr);
});
