// The market's core loop through the CLI and the HTTP API: register, list,
// search, rent, run, stop, bill, audit; who may see and do what.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Wallet } from 'ethers';
import {
  tempDir, startBroker, grid, gridJson, api, apiOk, account, faucet, provideMachine, provideMachineCli, newKey,
  leaseBody, nonceInfo, micros, money, auditDb, assertApiError, sleep, SLOW,
} from './lib.mjs';

const H = 3_600_000n;
const billedMs = (lease) => BigInt(Math.round(lease.billed_seconds * 1000));
const expectedCharge = (lease) => (micros(lease.price_per_hour) * billedMs(lease)) / H;

async function setup(t, opts = {}) {
  const dir = await tempDir(t);
  const db = path.join(dir, 'b.db');
  const broker = await startBroker(t, { db, dir, ...opts });
  return { dir, db, broker, url: broker.url };
}

test('core loop: register, list, search, rent (CLI and ethers), run, stop, bill, audit', async (t) => {
  const { dir, db, broker, url } = await setup(t, { tick: '0.5', feeBps: 0 });
  const b = { broker: url };
  const prov = await newKey(dir, 'provider');
  const rent = await newKey(dir, 'renter');

  // Provider: an 8-GPU machine at 2.10 per GPU-hour.
  const m = await provideMachineCli(dir, url, prov.key, { price: '2.10' });
  assert.equal(m.listed, true);
  assert.equal(m.price_gpu, '2.100000');
  assert.equal(m.free_gpus, 8);
  assert.equal(m.provider, prov.address.toLowerCase());
  const mine = await gridJson(dir, ['machines', 'list'], { key: prov.key, ...b });
  assert.deepEqual(mine.machines.map((x) => x.id), [m.id]);

  // Renter: money, then search.
  const f = await gridJson(dir, ['wallet', 'faucet', '100'], { key: rent.key, ...b });
  assert.equal(f.available, '100.000000');
  const found = await gridJson(dir, ['offers', 'search', 'gpu_name=RTX_4090'], { key: rent.key, ...b });
  const ids = found.offers.map((o) => o.id);
  assert.ok(ids.includes(m.id * 1000 + 8), JSON.stringify(ids));
  const o8 = found.offers.find((o) => o.id === m.id * 1000 + 8);
  assert.equal(o8.dph_total, '16.800000');
  assert.equal(o8.dph_per_gpu, '2.100000');
  assert.equal(o8.machine_id, m.id);
  const filtered = await gridJson(dir, ['offers', 'search', 'num_gpus>=4', 'dph<=10'], { ...b });
  assert.deepEqual(filtered.offers.map((o) => o.num_gpus).sort(), [4], JSON.stringify(filtered));

  // Rent 4 GPUs through the CLI (it signs the order itself).
  const cli = await gridJson(dir, ['leases', 'create', String(m.id * 1000 + 4), '--image', 'host', '--env', 'A=1', '--', 'echo', 'hi'], { key: rent.key, ...b });
  assert.equal(cli.state, 'pending');
  assert.equal(cli.num_gpus, 4);
  assert.equal(cli.price_per_hour, '8.400000');
  assert.deepEqual(cli.command, ['echo', 'hi']);
  assert.deepEqual(cli.env, ['A=1']);
  assert.equal(cli.held, '1.400000', '10 minutes of 8.40/h');
  assert.match(cli.order.signature, /^0x[0-9a-f]{130}$/i);
  assert.equal(cli.order.price_per_hour, '8.400000');

  // Offers shrink at once.
  const after1 = await apiOk(url, 'GET', `/v1/offers?q=machine_id%3D${m.id}`);
  assert.deepEqual(after1.offers.map((o) => o.num_gpus).sort(), [1, 2, 3, 4]);
  // Renting more than is free is refused as no longer available.
  const { chain_id } = await nonceInfo(url);
  const r3 = await account(url, Wallet.createRandom());
  await faucet(url, r3, '50');
  const tooMany = await api(url, 'POST', '/v1/leases',
    await leaseBody(r3.wallet, chain_id, { offerId: m.id * 1000 + 5, gpus: 5, pricePerHourMicros: 10_500_000n }), r3.token);
  assertApiError(assert, tooMany, 409, { match: /no longer available/ });

  // A second renter, an ethers wallet, over HTTP with its own signed order.
  const r2 = await account(url, Wallet.createRandom());
  await faucet(url, r2, '50');
  const body = await leaseBody(r2.wallet, chain_id, { offerId: m.id * 1000 + 2, gpus: 2, pricePerHourMicros: 4_200_000n, command: ['sleep', '1'] });
  const created = await api(url, 'POST', '/v1/leases', body, r2.token);
  assert.equal(created.status, 201, created.text);
  const got = await apiOk(url, 'GET', `/v1/leases/${created.body.id}`, undefined, r2.token);
  assert.deepEqual(got.order, body.order, 'the stored signed order is echoed back exactly');
  assert.equal(got.renter, r2.address);
  assert.equal(got.provider, prov.address.toLowerCase());
  const gpuSets = [cli.gpus, got.gpus].flat();
  assert.equal(new Set(gpuSets).size, 6, `GPU indexes are distinct: ${gpuSets}`);
  const after2 = await apiOk(url, 'GET', `/v1/offers?q=machine_id%3D${m.id}`);
  assert.deepEqual(after2.offers.map((o) => o.num_gpus).sort(), [1, 2]);
  const mach = await gridJson(dir, ['machines', 'list'], { key: prov.key, ...b });
  assert.equal(mach.machines[0].free_gpus, 2);

  // Pending leases are not billed.
  await sleep(1200);
  const pend = await gridJson(dir, ['leases', 'show', String(cli.id)], { key: rent.key, ...b });
  assert.equal(pend.state, 'pending');
  assert.equal(pend.charged, '0.000000');
  assert.equal(pend.billed_seconds, 0);

  // The host reports running; about two seconds later the renter stops it.
  const run = await gridJson(dir, ['leases', 'report', String(cli.id), '--state', 'running'], { key: prov.key, ...b });
  assert.equal(run.state, 'running');
  assert.ok(run.started_at);
  await sleep(2000);
  const stopped = await gridJson(dir, ['leases', 'stop', String(cli.id)], { key: rent.key, ...b });
  assert.equal(stopped.state, 'ended');
  assert.equal(stopped.end_reason, 'renter_stopped');
  assert.equal(stopped.held, '0.000000');
  const ms = billedMs(stopped);
  assert.ok(ms >= 1900n && ms < 2000n + 10_000n * BigInt(SLOW), `billed ${ms} ms`);
  assert.equal(micros(stopped.charged), expectedCharge(stopped));
  assert.equal(stopped.fee, '0.000000');
  assert.equal(stopped.provider_earned, stopped.charged);
  // Stopping again is a conflict and changes nothing.
  const again = await grid(dir, ['leases', 'stop', String(cli.id)], { key: rent.key, ...b });
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already ended/);
  const show = await gridJson(dir, ['leases', 'show', String(cli.id)], { key: rent.key, ...b });
  assert.equal(show.charged, stopped.charged);

  // Money: the renter paid exactly the charge, the provider earned it.
  const rb = await gridJson(dir, ['wallet', 'balance'], { key: rent.key, ...b });
  assert.equal(rb.held, '0.000000');
  assert.equal(micros(rb.available), 100_000_000n - micros(stopped.charged));
  const pb = await gridJson(dir, ['wallet', 'balance'], { key: prov.key, ...b });
  assert.equal(pb.earned, stopped.charged);
  const hist = await gridJson(dir, ['wallet', 'history'], { key: rent.key, ...b });
  assert.ok(hist.entries.some((e) => e.memo === 'faucet' && e.amount === '100.000000'));
  assert.ok(hist.entries.some((e) => e.lease_id === cli.id && e.kind === 'hold'));
  // The freed GPUs are offered again.
  const after3 = await apiOk(url, 'GET', `/v1/offers?q=machine_id%3D${m.id}`);
  assert.equal(Math.max(...after3.offers.map((o) => o.num_gpus)), 6);

  // The audit passes over the API, then offline after a clean stop.
  const live = await apiOk(url, 'GET', '/v1/admin/audit', undefined, r2.token);
  assert.equal(live.ok, true, JSON.stringify(live.failures));
  const cliAudit = await grid(dir, ['admin', 'audit'], { key: rent.key, ...b });
  assert.equal(cliAudit.code, 0, cliAudit.stdout + cliAudit.stderr);
  await broker.kill('SIGTERM');
  const off = await auditDb(dir, db);
  assert.equal(off.code, 0, off.stdout + off.stderr);
  assert.equal(off.report.ok, true);
  assert.deepEqual(off.report.failures, []);
});

test('with --fee-bps 250 the provider earns the charge less the fee', async (t) => {
  const { dir, db, broker, url } = await setup(t, { tick: '0.3', feeBps: 250 });
  const prov = await account(url);
  const rent = await account(url);
  const m = await provideMachine(url, prov, { price: '2.10' });
  await faucet(url, rent, '100');
  const { chain_id } = await nonceInfo(url);
  const l = await apiOk(url, 'POST', '/v1/leases',
    await leaseBody(rent.wallet, chain_id, { offerId: m.id * 1000 + 8, gpus: 8, pricePerHourMicros: 16_800_000n }), rent.token);
  assert.equal(l.fee_bps, 250);
  await apiOk(url, 'POST', `/v1/leases/${l.id}/status`, { state: 'running' }, prov.token);
  await sleep(2000);
  const s = await apiOk(url, 'POST', `/v1/leases/${l.id}/stop`, undefined, rent.token);
  const charged = micros(s.charged), fee = micros(s.fee), earned = micros(s.provider_earned);
  assert.equal(charged, expectedCharge(s));
  assert.ok(charged > 0n);
  assert.equal(fee, (charged * 250n) / 10_000n);
  assert.equal(earned + fee, charged);
  const pb = await apiOk(url, 'GET', '/v1/wallet/balance', undefined, prov.token);
  assert.equal(micros(pb.earned), earned);
  const rb = await apiOk(url, 'GET', '/v1/wallet/balance', undefined, rent.token);
  assert.equal(micros(rb.available), 100_000_000n - charged);
  await broker.kill('SIGTERM');
  const off = await auditDb(dir, db);
  assert.equal(off.code, 0, off.stdout + off.stderr);
});

test('visibility: strangers see nothing, providers see but cannot stop, renters cannot report', async (t) => {
  const { url } = await setup(t);
  const prov = await account(url);
  const rent = await account(url);
  const stranger = await account(url);
  const m = await provideMachine(url, prov);
  await faucet(url, rent, '100');
  const { chain_id } = await nonceInfo(url);
  const l = await apiOk(url, 'POST', '/v1/leases',
    await leaseBody(rent.wallet, chain_id, { offerId: m.id * 1000 + 1, gpus: 1, pricePerHourMicros: 2_100_000n }), rent.token);

  // A stranger: the lease does not exist for them.
  assertApiError(assert, await api(url, 'GET', `/v1/leases/${l.id}`, undefined, stranger.token), 404);
  assertApiError(assert, await api(url, 'POST', `/v1/leases/${l.id}/stop`, undefined, stranger.token), 404);
  assertApiError(assert, await api(url, 'POST', `/v1/leases/${l.id}/status`, { state: 'running' }, stranger.token), 404);
  assert.deepEqual((await apiOk(url, 'GET', '/v1/leases', undefined, stranger.token)).leases, []);
  // Nor the provider's machine.
  assertApiError(assert, await api(url, 'GET', `/v1/machines/${m.id}`, undefined, stranger.token), 404);
  const unl = await api(url, 'DELETE', `/v1/machines/${m.id}/offer`, undefined, stranger.token);
  assert.ok(unl.status === 403 || unl.status === 404, unl.text);
  const relist = await api(url, 'PUT', `/v1/machines/${m.id}/offer`, { price_gpu: '0.01' }, stranger.token);
  assert.ok(relist.status === 403 || relist.status === 404, relist.text);

  // The provider sees it but cannot stop it.
  assert.equal((await apiOk(url, 'GET', `/v1/leases/${l.id}`, undefined, prov.token)).id, l.id);
  assert.deepEqual((await apiOk(url, 'GET', '/v1/leases', undefined, prov.token)).leases.map((x) => x.id), [l.id]);
  assertApiError(assert, await api(url, 'POST', `/v1/leases/${l.id}/stop`, undefined, prov.token), 403);
  // The renter cannot report the host's state.
  assertApiError(assert, await api(url, 'POST', `/v1/leases/${l.id}/status`, { state: 'running' }, rent.token), 403);
  assertApiError(assert, await api(url, 'POST', `/v1/leases/${l.id}/status`, { state: 'ended' }, rent.token), 403);

  // None of that changed anything.
  const now = await apiOk(url, 'GET', `/v1/leases/${l.id}`, undefined, rent.token);
  assert.equal(now.state, 'pending');
  const mm = await apiOk(url, 'GET', `/v1/machines/${m.id}`, undefined, prov.token);
  assert.equal(mm.listed, true);
  assert.equal(mm.price_gpu, '2.100000');

  // A provider cannot rent its own machine.
  await faucet(url, prov, '100');
  const own = await api(url, 'POST', '/v1/leases',
    await leaseBody(prov.wallet, chain_id, { offerId: m.id * 1000 + 1, gpus: 1, pricePerHourMicros: 2_100_000n }), prov.token);
  assertApiError(assert, own, 400, { match: /your own/ });

  // A host reporting failure ends the lease unbilled (it never ran).
  const failed = await apiOk(url, 'POST', `/v1/leases/${l.id}/status`, { state: 'failed', message: 'image pull failed' }, prov.token);
  assert.equal(failed.state, 'ended');
  assert.equal(failed.charged, '0.000000');
  assert.equal(failed.message, 'image pull failed');
  const rb = await apiOk(url, 'GET', '/v1/wallet/balance', undefined, rent.token);
  assert.deepEqual(rb, { available: '100.000000', held: '0.000000', earned: '0.000000' });
});

test('the faucet is closed on a broker without --dev', async (t) => {
  const { dir, url } = await setup(t, { dev: false });
  const a = await account(url);
  assertApiError(assert, await api(url, 'POST', '/v1/wallet/faucet', { amount: '100' }, a.token), 403, { match: /--dev/ });
  const k = await newKey(dir, 'k');
  const r = await grid(dir, ['wallet', 'faucet', '100'], { key: k.key, broker: url });
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /--dev/);
  // The audit API is for --admin addresses only without --dev.
  assertApiError(assert, await api(url, 'GET', '/v1/admin/audit', undefined, a.token), 403);
  assert.equal((await apiOk(url, 'GET', '/v1/wallet/balance', undefined, a.token)).available, '0.000000');
});

test('a lease needs 10 minutes of money up front (402), and the signed price must match (409)', async (t) => {
  const { dir, url } = await setup(t);
  const prov = await account(url);
  const rent = await account(url);
  const m = await provideMachine(url, prov, { price: '2.10' });
  await faucet(url, rent, '2.799999'); // 10 minutes of 16.80/h is 2.80
  const { chain_id } = await nonceInfo(url);
  const r = await api(url, 'POST', '/v1/leases',
    await leaseBody(rent.wallet, chain_id, { offerId: m.id * 1000 + 8, gpus: 8, pricePerHourMicros: 16_800_000n }), rent.token);
  assertApiError(assert, r, 402, { code: 'insufficient_funds', match: /insufficient funds.*2\.800000.*2\.799999/ });
  // The signed price differs from the offer's: a conflict, whichever way.
  for (const p of [16_799_999n, 1_000_000n, 20_000_000n]) {
    const c = await api(url, 'POST', '/v1/leases',
      await leaseBody(rent.wallet, chain_id, { offerId: m.id * 1000 + 8, gpus: 8, pricePerHourMicros: p }), rent.token);
    assertApiError(assert, c, 409, { match: /price/ });
  }
  // Nothing moved, nothing was rented.
  assert.deepEqual(await apiOk(url, 'GET', '/v1/wallet/balance', undefined, rent.token),
    { available: '2.799999', held: '0.000000', earned: '0.000000' });
  assert.deepEqual((await apiOk(url, 'GET', '/v1/leases', undefined, rent.token)).leases, []);
  assert.equal((await apiOk(url, 'GET', `/v1/machines/${m.id}`, undefined, prov.token)).free_gpus, 8);
  // One more micro and it starts; the CLI says the same thing in one line when short.
  await faucet(url, rent, '0.000001');
  const ok = await api(url, 'POST', '/v1/leases',
    await leaseBody(rent.wallet, chain_id, { offerId: m.id * 1000 + 8, gpus: 8, pricePerHourMicros: 16_800_000n }), rent.token);
  assert.equal(ok.status, 201, ok.text);
  assert.equal(ok.body.held, '2.800000');
  assert.equal((await apiOk(url, 'GET', '/v1/wallet/balance', undefined, rent.token)).available, '0.000000');

  const poor = await newKey(dir, 'poor');
  const m2 = await provideMachine(url, prov, { price: '1.00' });
  const c = await grid(dir, ['leases', 'create', String(m2.id * 1000 + 1), '--image', 'host'], { key: poor.key, broker: url });
  assert.equal(c.code, 1);
  assert.equal(c.stderr.trim().split('\n').length, 1, c.stderr);
  assert.match(c.stderr, /insufficient funds/);
});

test('a lease is billed only while running; the hold drains when the renter has nothing more', async (t) => {
  const { dir, db, broker, url } = await setup(t, { tick: '0.2' });
  const prov = await account(url);
  const rent = await account(url);
  // A high price: 8 x 900/h = 7200/h, 2/s. The renter has exactly the 10-minute hold (1200).
  const m = await provideMachine(url, prov, { price: '900' });
  await faucet(url, rent, '1200');
  const { chain_id } = await nonceInfo(url);
  const l = await apiOk(url, 'POST', '/v1/leases',
    await leaseBody(rent.wallet, chain_id, { offerId: m.id * 1000 + 8, gpus: 8, pricePerHourMicros: 7_200_000_000n }), rent.token);
  assert.equal(l.held, '1200.000000');
  await sleep(1000);
  const p = await apiOk(url, 'GET', `/v1/leases/${l.id}`, undefined, rent.token);
  assert.equal(p.charged, '0.000000', 'pending: not billed');
  assert.equal(p.held, '1200.000000');
  await apiOk(url, 'POST', `/v1/leases/${l.id}/status`, { state: 'running' }, prov.token);
  await sleep(1500);
  const r = await apiOk(url, 'GET', `/v1/leases/${l.id}`, undefined, rent.token);
  assert.equal(r.state, 'running');
  const charged = micros(r.charged);
  assert.ok(charged > 0n, 'settled while running');
  assert.equal(charged, expectedCharge(r));
  assert.equal(micros(r.held) + charged, 1_200_000_000n, 'no top-up: the hold only drains');
  const bal = await apiOk(url, 'GET', '/v1/wallet/balance', undefined, rent.token);
  assert.equal(bal.available, '0.000000');
  const s = await apiOk(url, 'POST', `/v1/leases/${l.id}/stop`, undefined, rent.token);
  assert.equal(micros(s.charged), expectedCharge(s));
  const after = await apiOk(url, 'GET', '/v1/wallet/balance', undefined, rent.token);
  assert.equal(micros(after.available), 1_200_000_000n - micros(s.charged));
  assert.equal(after.held, '0.000000');
  await broker.kill('SIGTERM');
  assert.equal((await auditDb(dir, db)).code, 0);
});

// A lease always starts with a 10-minute hold, so running out of money takes
// about 10 minutes of wall time however small the balance or high the price.
// Run with GRID_LONG_TESTS=1.
test('a lease ends with insufficient_funds when the money runs out', { skip: !process.env.GRID_LONG_TESTS && 'takes ~10 minutes (the 10-minute hold); set GRID_LONG_TESTS=1', timeout: 15 * 60_000 }, async (t) => {
  const { dir, db, broker, url } = await setup(t, { tick: '0.2' });
  const prov = await account(url);
  const rent = await account(url);
  const m = await provideMachine(url, prov, { price: '3.60' }); // 1 GPU: 0.001 per second
  await faucet(url, rent, '0.610000'); // 0.60 hold + 0.01 (10 s) to top up
  const { chain_id } = await nonceInfo(url);
  const l = await apiOk(url, 'POST', '/v1/leases',
    await leaseBody(rent.wallet, chain_id, { offerId: m.id * 1000 + 1, gpus: 1, pricePerHourMicros: 3_600_000n }), rent.token);
  await apiOk(url, 'POST', `/v1/leases/${l.id}/status`, { state: 'running' }, prov.token);
  let cur;
  for (let i = 0; i < 700; i++) {
    await sleep(1000);
    cur = await apiOk(url, 'GET', `/v1/leases/${l.id}`, undefined, rent.token);
    if (cur.state === 'ended') break;
  }
  assert.equal(cur.state, 'ended');
  assert.equal(cur.end_reason, 'insufficient_funds');
  assert.ok(micros(cur.charged) <= 610_000n);
  assert.equal(micros(cur.charged), expectedCharge(cur));
  const bal = await apiOk(url, 'GET', '/v1/wallet/balance', undefined, rent.token);
  assert.ok(micros(bal.available) >= 0n);
  assert.equal(micros(bal.available) + micros(cur.charged), 610_000n);
  await broker.kill('SIGTERM');
  assert.equal((await auditDb(dir, db)).code, 0);
});

test('a host reports a lease running, then ended (exited) or failed; both bill to that moment', async (t) => {
  const { dir, db, broker, url } = await setup(t);
  const prov = await account(url);
  const rent = await account(url);
  const m = await provideMachine(url, prov, { price: '3.60' });
  await faucet(url, rent, '100');
  const { chain_id } = await nonceInfo(url);
  const mk = () => leaseBody(rent.wallet, chain_id, { offerId: m.id * 1000 + 1, gpus: 1, pricePerHourMicros: 3_600_000n });
  const a = await apiOk(url, 'POST', '/v1/leases', await mk(), rent.token);
  const b2 = await apiOk(url, 'POST', '/v1/leases', await mk(), rent.token);
  for (const l of [a, b2]) await apiOk(url, 'POST', `/v1/leases/${l.id}/status`, { state: 'running' }, prov.token);
  // A repeated running report is harmless.
  const rep = await apiOk(url, 'POST', `/v1/leases/${a.id}/status`, { state: 'running' }, prov.token);
  assert.equal(rep.state, 'running');
  await sleep(600);
  const ended = await apiOk(url, 'POST', `/v1/leases/${a.id}/status`, { state: 'ended', message: 'exit 0' }, prov.token);
  assert.equal(ended.state, 'ended');
  assert.equal(ended.end_reason, 'exited');
  assert.equal(ended.message, 'exit 0');
  const failed = await apiOk(url, 'POST', `/v1/leases/${b2.id}/status`, { state: 'failed', message: 'OOM' }, prov.token);
  assert.equal(failed.end_reason, 'failed');
  for (const l of [ended, failed]) {
    assert.ok(billedMs(l) >= 600n, `billed ${l.billed_seconds}s`);
    assert.equal(micros(l.charged), expectedCharge(l));
    assert.equal(l.held, '0.000000');
  }
  // Reports after the end are conflicts.
  assertApiError(assert, await api(url, 'POST', `/v1/leases/${a.id}/status`, { state: 'running' }, prov.token), 409);
  assertApiError(assert, await api(url, 'POST', `/v1/leases/${a.id}/stop`, undefined, rent.token), 409);
  const bal = await apiOk(url, 'GET', '/v1/wallet/balance', undefined, rent.token);
  assert.equal(micros(bal.available), 100_000_000n - micros(ended.charged) - micros(failed.charged));
  await broker.kill('SIGTERM');
  assert.equal((await auditDb(dir, db)).code, 0);
});

test('end dates, relisting and unlisting: running leases keep their terms', async (t) => {
  const { dir, db, broker, url } = await setup(t, { tick: '0.2' });
  const prov = await account(url);
  const rent = await account(url);
  await faucet(url, rent, '100');
  const { chain_id } = await nonceInfo(url);
  // An end date in the past is refused.
  const m0 = await apiOk(url, 'POST', '/v1/machines', (await import('./lib.mjs')).spec(), prov.token);
  assertApiError(assert, await api(url, 'PUT', `/v1/machines/${m0.id}/offer`, { price_gpu: '1', end_date: '2001-01-01' }, prov.token), 400, { match: /end_date/ });

  // A machine whose listing ends in ~2.5 s: its running lease ends then, billed to the end date.
  const endAt = Date.now() + 2500 * SLOW;
  const m = await provideMachine(url, prov, { price: '3.60', endDate: new Date(endAt).toISOString() });
  assert.ok(m.end_date);
  const l = await apiOk(url, 'POST', '/v1/leases',
    await leaseBody(rent.wallet, chain_id, { offerId: m.id * 1000 + 1, gpus: 1, pricePerHourMicros: 3_600_000n }), rent.token);
  await apiOk(url, 'POST', `/v1/leases/${l.id}/status`, { state: 'running' }, prov.token);
  let cur;
  for (let i = 0; i < 100; i++) {
    await sleep(200);
    cur = await apiOk(url, 'GET', `/v1/leases/${l.id}`, undefined, rent.token);
    if (cur.state === 'ended') break;
  }
  assert.equal(cur.state, 'ended');
  assert.equal(cur.end_reason, 'end_date');
  assert.equal(micros(cur.charged), expectedCharge(cur));
  const startedMs = Date.parse(cur.started_at);
  assert.ok(Number(billedMs(cur)) <= Date.parse(m.end_date) - startedMs + 1, `billed ${cur.billed_seconds}s, not past the end date`);
  // Past its end date the machine offers nothing.
  assert.deepEqual((await apiOk(url, 'GET', `/v1/offers?q=machine_id%3D${m.id}`)).offers, []);
  const late = await api(url, 'POST', '/v1/leases',
    await leaseBody(rent.wallet, chain_id, { offerId: m.id * 1000 + 1, gpus: 1, pricePerHourMicros: 3_600_000n }), rent.token);
  assertApiError(assert, late, 409, { match: /no longer available/ });

  // Relisting at a new price does not change a running lease's price; unlisting does not end it.
  const m2 = await provideMachine(url, prov, { price: '1.00' });
  const l2 = await apiOk(url, 'POST', '/v1/leases',
    await leaseBody(rent.wallet, chain_id, { offerId: m2.id * 1000 + 2, gpus: 2, pricePerHourMicros: 2_000_000n }), rent.token);
  await apiOk(url, 'POST', `/v1/leases/${l2.id}/status`, { state: 'running' }, prov.token);
  const re = await apiOk(url, 'PUT', `/v1/machines/${m2.id}/offer`, { price_gpu: '5.00' }, prov.token);
  assert.equal(re.price_gpu, '5.000000');
  assert.equal(re.free_gpus, 6);
  // An order signed at the old price no longer buys.
  const stale = await api(url, 'POST', '/v1/leases',
    await leaseBody(rent.wallet, chain_id, { offerId: m2.id * 1000 + 1, gpus: 1, pricePerHourMicros: 1_000_000n }), rent.token);
  assertApiError(assert, stale, 409, { match: /price/ });
  const un = await apiOk(url, 'DELETE', `/v1/machines/${m2.id}/offer`, undefined, prov.token);
  assert.equal(un.listed, false);
  assert.deepEqual((await apiOk(url, 'GET', `/v1/offers?q=machine_id%3D${m2.id}`)).offers, []);
  const unl = await api(url, 'POST', '/v1/leases',
    await leaseBody(rent.wallet, chain_id, { offerId: m2.id * 1000 + 1, gpus: 1, pricePerHourMicros: 5_000_000n }), rent.token);
  assertApiError(assert, unl, 409, { match: /no longer available/ });
  await sleep(500);
  const still = await apiOk(url, 'GET', `/v1/leases/${l2.id}`, undefined, rent.token);
  assert.equal(still.state, 'running');
  assert.equal(still.price_per_hour, '2.000000');
  const s = await apiOk(url, 'POST', `/v1/leases/${l2.id}/stop`, undefined, rent.token);
  assert.equal(micros(s.charged), expectedCharge(s));
  await broker.kill('SIGTERM');
  assert.equal((await auditDb(dir, db)).code, 0);
});

test('the faucet is idempotent by key', async (t) => {
  const { url } = await setup(t);
  const a = await account(url);
  assert.equal((await faucet(url, a, '5', 'k1')).available, '5.000000');
  assert.equal((await faucet(url, a, '5', 'k1')).available, '5.000000', 'same key, same amount: credited once');
  assertApiError(assert, await api(url, 'POST', '/v1/wallet/faucet', { amount: '6', idempotency_key: 'k1' }, a.token), 409,
    { code: 'exists_with_different_content' });
  // The same key is per account.
  const b = await account(url);
  assert.equal((await faucet(url, b, '5', 'k1')).available, '5.000000');
  assert.equal((await faucet(url, a, '1')).available, '6.000000');
  assert.equal((await faucet(url, a, '1')).available, '7.000000', 'no key: each request credits');
  const h = await apiOk(url, 'GET', '/v1/wallet/history', undefined, a.token);
  assert.equal(h.entries.length, 3);
  assert.equal((await apiOk(url, 'GET', '/v1/wallet/history?limit=1', undefined, a.token)).entries.length, 1);
});

// GET /v1/offers/{id} never presents an unrentable offer as rentable: a size
// that is not a multiple of min_chunk, or any size of an unlisted machine, is
// 404; a listed size whose GPUs are taken answers rentable=false.
test('GET /v1/offers/{id} does not present an unrentable offer as rentable', async (t) => {
  const { url } = await setup(t);
  const prov = await account(url);
  const m = await provideMachine(url, prov, { price: '2.10', minChunk: 4 });
  assert.equal((await api(url, 'GET', `/v1/offers/${m.id * 1000 + 3}`)).status, 404, 'not a multiple of min_chunk');
  const free = await apiOk(url, 'GET', `/v1/offers/${m.id * 1000 + 8}`);
  assert.equal(free.rentable, true);
  const renter = await account(url);
  await faucet(url, renter, '100');
  const { chain_id } = await nonceInfo(url);
  const lease = await apiOk(url, 'POST', '/v1/leases',
    await leaseBody(renter.wallet, chain_id, { offerId: m.id * 1000 + 4, gpus: 4, pricePerHourMicros: 8_400_000n }), renter.token);
  assert.equal(lease.state, 'pending');
  const taken = await apiOk(url, 'GET', `/v1/offers/${m.id * 1000 + 8}`);
  assert.equal(taken.rentable, false, 'only 4 of 8 GPUs are free');
  assert.equal((await apiOk(url, 'GET', `/v1/offers/${m.id * 1000 + 4}`)).rentable, true);
  await apiOk(url, 'DELETE', `/v1/machines/${m.id}/offer`, undefined, prov.token);
  assert.equal((await api(url, 'GET', `/v1/offers/${m.id * 1000 + 4}`)).status, 404, 'unlisted machines offer nothing');
});
