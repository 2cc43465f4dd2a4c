// Several `grid broker` replicas on one PostgreSQL database (issue 7): any
// replica serves any request, writes through one are read at once through
// the other, offer search follows within a second, a GPU is never leased
// twice whichever replica a request reaches, exactly one replica runs the
// background work and another takes it over when it is kill -9'ed, and the
// books audit clean through a broker and directly on the database.
//
// Needs PostgreSQL: the suite's cluster (GRID_TEST_PG_URL, scripts/test.sh)
// or, without one, a throwaway cluster of this file's own; each test gets a
// fresh database in it. Skipped when PostgreSQL is not installed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Wallet } from 'ethers';
import {
  tempDir, startBroker, grid, gridJson, api, apiOk, account, faucet, provideMachine, provideMachineCli, newKey,
  leaseBody, nonceInfo, siweMessage, micros, money, auditDb, assertApiError, sleep, SLOW,
} from './lib.mjs';
import { pgCluster, pgMissing } from './pg.mjs';

const H = 3_600_000n;
const billedMs = (lease) => BigInt(Math.round(lease.billed_seconds * 1000));
const expectedCharge = (lease) => (micros(lease.price_per_hour) * billedMs(lease)) / H;
// The staleness the replicas promise for offer search, and for a dead
// leader's replacement.
const OFFER_LAG_MS = 1000;
const TAKEOVER_MS = 5000;

let cluster = null;
const clusterHooks = [];
before(async () => {
  if (pgMissing()) return;
  cluster = await pgCluster({ after: (f) => clusterHooks.push(f) });
});
after(async () => {
  for (const f of clusterHooks) await f();
});

// Starts `n` replicas at once on a fresh database (so they race for the
// migrations too). Returns {dir, db, replicas: [broker...], start()} where
// start() adds one more replica on the same database.
async function setup(t, { n = 2, tick = '0.5' } = {}) {
  if (!cluster) {
    t.skip(pgMissing() ?? 'no PostgreSQL cluster');
    return null;
  }
  const dir = await tempDir(t);
  const db = await cluster.createDatabase();
  const start = () => startBroker(t, { db, dir, tick, extraArgs: ['--threads', '4'] });
  const replicas = await Promise.all(Array.from({ length: n }, start));
  return { dir, db, replicas, start };
}

async function health(url) {
  const r = await api(url, 'GET', '/healthz');
  assert.equal(r.status, 200, `GET ${url}/healthz: ${r.status} ${r.text}`);
  assert.equal(r.body.status, 'ok', r.text);
  assert.equal(typeof r.body.leader, 'boolean', `healthz has a boolean "leader": ${r.text}`);
  assert.ok(Number.isSafeInteger(r.body.seq) && r.body.seq >= 0, `healthz has a non-negative integer "seq": ${r.text}`);
  return r.body;
}

// Polls every 20 ms (waitFor's 100 ms is too coarse to measure a lag).
async function poll(what, fn, ms) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return { value: v, ms: Date.now() - t0 };
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

// Exactly one of the live replicas says it is the leader; returns it.
async function oneLeader(replicas, ms = TAKEOVER_MS * SLOW) {
  let last = [];
  const { value } = await poll('exactly one leader', async () => {
    last = await Promise.all(replicas.map((r) => health(r.url)));
    const leaders = replicas.filter((_, i) => last[i].leader);
    return leaders.length === 1 ? leaders[0] : null;
  }, ms).catch((e) => {
    e.message += `: ${JSON.stringify(last.map((h) => h.leader))}`;
    throw e;
  });
  return value;
}

const offerIdsOn = async (url, machineId) => {
  const r = await api(url, 'GET', `/v1/offers?q=machine_id%3D${machineId}`);
  assert.equal(r.status, 200, r.text);
  return r.body.offers.map((o) => o.id);
};

// The audit through a broker (CLI, as the key's account) and directly on the
// database (`grid admin audit --db postgres://…`, read-only, brokers running).
async function auditBoth(dir, db, url, key) {
  const r = await grid(dir, ['--json', 'admin', 'audit'], { key, broker: url });
  assert.equal(r.code, 0, `grid admin audit via ${url}: ${r.stdout}${r.stderr}`);
  const live = JSON.parse(r.stdout);
  assert.equal(live.ok, true, JSON.stringify(live.failures));
  assert.ok(live.checks.some((c) => /conservation/.test(c)), JSON.stringify(live.checks));
  const off = await auditDb(dir, db);
  assert.equal(off.code, 0, `grid admin audit --db: ${off.stdout}${off.stderr}`);
  assert.equal(off.report.ok, true);
  assert.deepEqual(off.report.failures, []);
  assert.deepEqual(off.report.checks.length, live.checks.length, 'the same checks both ways');
}

test('a machine listed via one replica is rented via the other; each write is read at once on the other', { timeout: 120_000 }, async (t) => {
  const s = await setup(t);
  if (!s) return;
  const { dir, db, replicas: [A, B] } = s;
  const prov = await newKey(dir, 'provider');
  const rent = await newKey(dir, 'renter');
  const onA = { broker: A.url };
  const onB = { broker: B.url };

  // Money through B, read through A at once.
  const f = await gridJson(dir, ['wallet', 'faucet', '100'], { key: rent.key, ...onB });
  assert.equal(f.available, '100.000000');
  assert.equal((await gridJson(dir, ['wallet', 'balance'], { key: rent.key, ...onA })).available, '100.000000');

  // The provider registers and lists a 4-GPU machine through A; B's offer
  // search shows it within the promised lag.
  const m = await provideMachineCli(dir, A.url, prov.key, { price: '2.10', num_gpus: 4 });
  const listedAt = Date.now();
  assert.equal(m.listed, true);
  const offerId = m.id * 1000 + 4;
  const seen = await poll(`offer ${offerId} in B's search`, async () => (await offerIdsOn(B.url, m.id)).includes(offerId), 10_000 * SLOW);
  const lagMs = Date.now() - listedAt;
  t.diagnostic(`offer listed via A seen in B's search after ${lagMs} ms (${seen.ms} ms polling)`);
  assert.ok(lagMs <= (OFFER_LAG_MS + 500) * SLOW, `offer search on B lagged ${lagMs} ms (promised ≤ ${OFFER_LAG_MS} ms)`);
  const found = await gridJson(dir, ['offers', 'search', `machine_id=${m.id}`], { key: rent.key, ...onB });
  assert.ok(found.offers.some((o) => o.id === offerId && o.dph_total === '8.400000'), JSON.stringify(found));
  // The machine itself (a read, not a search) is on B at once.
  const mb = await gridJson(dir, ['machines', 'list'], { key: prov.key, ...onB });
  assert.deepEqual(mb.machines.map((x) => [x.id, x.free_gpus, x.listed]), [[m.id, 4, true]]);

  // The renter rents all 4 GPUs through B; A shows the lease at once, to
  // the renter and to the provider, and the machine as full.
  const l = await gridJson(dir, ['leases', 'create', String(offerId), '--image', 'host', '--', 'sleep', '1'], { key: rent.key, ...onB });
  assert.equal(l.state, 'pending');
  assert.equal(l.num_gpus, 4);
  const la = await gridJson(dir, ['leases', 'show', String(l.id)], { key: rent.key, ...onA });
  assert.equal(la.id, l.id);
  assert.equal(la.renter, rent.address.toLowerCase());
  assert.equal(la.provider, prov.address.toLowerCase());
  assert.deepEqual([...la.gpus].sort(), [0, 1, 2, 3]);
  assert.deepEqual(la.order, l.order, 'the signed order is the same on both replicas');
  const lp = await gridJson(dir, ['leases', 'list'], { key: prov.key, ...onA });
  assert.deepEqual(lp.leases.map((x) => x.id), [l.id]);
  const ma = await gridJson(dir, ['machines', 'list'], { key: prov.key, ...onA });
  assert.equal(ma.machines[0].free_gpus, 0);
  const ba = await gridJson(dir, ['wallet', 'balance'], { key: rent.key, ...onA });
  assert.equal(ba.held, l.held, 'the hold made via B is on A');
  // Renting it again, through A this time, is refused: the GPUs are taken.
  const again = await grid(dir, ['leases', 'create', String(offerId), '--image', 'host'], { key: rent.key, ...onA });
  assert.notEqual(again.code, 0, again.stdout);
  assert.match(again.stderr, /no longer available|not.available/i);
  // A's offer search drops the machine within the promised lag.
  await poll("the full machine gone from A's search", async () => (await offerIdsOn(A.url, m.id)).length === 0, (OFFER_LAG_MS + 500) * SLOW);

  // The host reports running through A; B reads it; the renter stops it
  // through B after about a second; A reads the final bill.
  const run = await gridJson(dir, ['leases', 'report', String(l.id), '--state', 'running'], { key: prov.key, ...onA });
  assert.equal(run.state, 'running');
  const rb = await gridJson(dir, ['leases', 'show', String(l.id)], { key: rent.key, ...onB });
  assert.equal(rb.state, 'running');
  assert.equal(rb.started_at, run.started_at);
  await sleep(1200);
  const stopped = await gridJson(dir, ['leases', 'stop', String(l.id)], { key: rent.key, ...onB });
  assert.equal(stopped.state, 'ended');
  assert.equal(stopped.end_reason, 'renter_stopped');
  assert.ok(billedMs(stopped) >= 1100n, `billed ${stopped.billed_seconds} s`);
  assert.equal(micros(stopped.charged), expectedCharge(stopped));
  const sa = await gridJson(dir, ['leases', 'show', String(l.id)], { key: prov.key, ...onA });
  assert.equal(sa.state, 'ended');
  assert.equal(sa.charged, stopped.charged);
  assert.equal(sa.ended_at, stopped.ended_at);
  const stopA = await grid(dir, ['leases', 'stop', String(l.id)], { key: rent.key, ...onA });
  assert.notEqual(stopA.code, 0, 'a second stop, via the other replica, is refused');
  assert.match(stopA.stderr, /already ended/);
  const balA = await gridJson(dir, ['wallet', 'balance'], { key: rent.key, ...onA });
  assert.equal(balA.held, '0.000000');
  assert.equal(micros(balA.available), 100_000_000n - micros(stopped.charged));
  const provB = await gridJson(dir, ['wallet', 'balance'], { key: prov.key, ...onB });
  assert.equal(provB.earned, stopped.charged);
  // The GPUs are offered again on both replicas.
  for (const r of [A, B])
    await poll(`offer ${offerId} back in search`, async () => (await offerIdsOn(r.url, m.id)).includes(offerId), (OFFER_LAG_MS + 500) * SLOW);

  await auditBoth(dir, db, A.url, rent.key);
});

test('sessions work on every replica; a SIWE nonce is used once, on the replica that issued it', { timeout: 60_000 }, async (t) => {
  const s = await setup(t);
  if (!s) return;
  const { replicas: [A, B] } = s;
  // A token from A works on B.
  const acct = await account(A.url);
  const bal = await api(B.url, 'GET', '/v1/wallet/balance', undefined, acct.token);
  assert.equal(bal.status, 200, bal.text);
  await faucet(B.url, acct, '5');
  assert.equal((await apiOk(A.url, 'GET', '/v1/wallet/balance', undefined, acct.token)).available, '5.000000');

  // A nonce issued by A, signed for A, sent to B.
  const w = Wallet.createRandom();
  const n = await nonceInfo(A.url);
  const message = siweMessage({ domain: n.domain, address: w.address, uri: n.uri, chainId: n.chain_id, nonce: n.nonce });
  const signature = await w.signMessage(message);
  const onB = await api(B.url, 'POST', '/v1/auth/login', { message, signature });
  const onA = await api(A.url, 'POST', '/v1/auth/login', { message, signature });
  t.diagnostic(`A's nonce on B: ${onB.status}; then on A: ${onA.status}`);
  if (onB.status === 200) {
    // B knew A's nonce (shared nonces): then it is still single-use across replicas.
    assertApiError(assert, onA, 401);
    assert.equal((await api(A.url, 'GET', '/v1/wallet/balance', undefined, onB.body.token)).status, 200);
  } else {
    assertApiError(assert, onB, 401);
    assert.equal(onA.status, 200, `the nonce B refused still works on A: ${onA.text}`);
    assert.equal((await api(B.url, 'GET', '/v1/wallet/balance', undefined, onA.body.token)).status, 200);
    // Used once: a replay is refused on both.
    assertApiError(assert, await api(A.url, 'POST', '/v1/auth/login', { message, signature }), 401);
    assertApiError(assert, await api(B.url, 'POST', '/v1/auth/login', { message, signature }), 401);
  }
});

test('renters racing for the same GPUs through both replicas: each GPU goes to exactly one', { timeout: 120_000 }, async (t) => {
  const s = await setup(t);
  if (!s) return;
  const { dir, db, replicas } = s;
  const [A, B] = replicas;
  const urls = replicas.map((r) => r.url);
  const { chain_id } = await nonceInfo(A.url);
  const prov = await account(A.url);
  const N = 10;
  const renters = [];
  for (let i = 0; i < N; i++) {
    const r = await account(urls[i % 2], Wallet.createRandom());
    await faucet(urls[(i + 1) % 2], r, '100');
    renters.push(r);
  }
  const auditor = await newKey(dir, 'auditor');

  // Races on a single-GPU machine (one winner), then on a 4-GPU one rented
  // by the GPU (four winners, four different GPUs).
  const one = await provideMachine(B.url, prov, { price: '2.10', num_gpus: 1, minChunk: 1 });
  const four = await provideMachine(A.url, prov, { price: '2.10', num_gpus: 4, minChunk: 1 });
  const rounds = [
    { m: one, gpus: 1, winners: 1 },
    { m: one, gpus: 1, winners: 1 },
    { m: one, gpus: 1, winners: 1 },
    { m: four, gpus: 1, winners: 4 },
    { m: four, gpus: 2, winners: 2 },
  ];
  let nonce = 1;
  for (const [k, { m, gpus, winners }] of rounds.entries()) {
    const offerId = m.id * 1000 + gpus;
    // Both replicas' search shows the offer (a stale index must not be what
    // decides the race).
    for (const url of urls)
      await poll(`offer ${offerId} in search`, async () => (await offerIdsOn(url, m.id)).includes(offerId), 10_000 * SLOW);
    const bodies = await Promise.all(renters.map((r) =>
      leaseBody(r.wallet, chain_id, { offerId, gpus, pricePerHourMicros: 2_100_000n * BigInt(gpus), nonce: String(nonce++) })));
    const results = await Promise.all(bodies.map((b, i) => api(urls[(i + k) % 2], 'POST', '/v1/leases', b, renters[i].token)));
    const statuses = results.map((r) => r.status);
    const ok = results.map((r, i) => ({ r, i })).filter(({ r }) => r.status === 201);
    assert.equal(ok.length, winners, `round ${k}: ${winners} winner(s) expected; statuses ${statuses}`);
    for (const x of results.filter((r) => r.status !== 201)) assertApiError(assert, x, 409, { code: 'not_available' });
    const gpuIdx = ok.flatMap(({ r }) => r.body.gpus).sort();
    assert.equal(new Set(gpuIdx).size, winners * gpus, `round ${k}: distinct GPUs ${gpuIdx}`);
    assert.ok(gpuIdx.every((g) => g >= 0 && g < m.spec.num_gpus), `${gpuIdx}`);

    // Both replicas agree at once: the winners' leases, the machine full,
    // holds only on the winners.
    for (const url of urls) {
      const mv = await apiOk(url, 'GET', `/v1/machines/${m.id}`, undefined, prov.token);
      assert.equal(mv.free_gpus, m.spec.num_gpus - winners * gpus, `round ${k} on ${url}`);
      const active = (await apiOk(url, 'GET', '/v1/leases', undefined, prov.token)).leases.filter((l) => l.state !== 'ended');
      assert.deepEqual(active.map((l) => l.id).sort(), ok.map(({ r }) => r.body.id).sort(), `round ${k} on ${url}`);
      for (const { r, i } of ok) {
        const got = await apiOk(url, 'GET', `/v1/leases/${r.body.id}`, undefined, renters[i].token);
        assert.equal(got.renter, renters[i].address);
        assert.deepEqual(got.gpus, r.body.gpus);
      }
    }
    const winnerIdx = new Set(ok.map(({ i }) => i));
    for (const [i, r] of renters.entries()) {
      const b = await apiOk(urls[i % 2], 'GET', '/v1/wallet/balance', undefined, r.token);
      if (!winnerIdx.has(i)) assert.equal(b.held, '0.000000', `round ${k}: loser ${i} holds nothing`);
      else assert.notEqual(b.held, '0.000000', `round ${k}: winner ${i} holds its escrow`);
    }
    // The winners stop through the replica they did not win on.
    for (const { r, i } of ok) {
      const via = urls[(i + k + 1) % 2];
      const st = await apiOk(via, 'POST', `/v1/leases/${r.body.id}/stop`, undefined, renters[i].token);
      assert.equal(st.state, 'ended');
    }
  }
  await auditBoth(dir, db, B.url, auditor.key);
});

test('exactly one leader; kill -9 it and another takes over, settlement goes on, nothing billed twice', { timeout: 120_000 }, async (t) => {
  const s = await setup(t, { tick: '0.3' });
  if (!s) return;
  const { dir, db, start } = s;
  let replicas = s.replicas;
  const leader = await oneLeader(replicas);
  const follower = replicas.find((r) => r !== leader);
  t.diagnostic(`leader ${leader.url} (pid ${leader.pid}), follower ${follower.url}`);

  // A running lease, made and run through the follower; the leader bills it.
  const seq0 = Math.max(...(await Promise.all(replicas.map((r) => health(r.url)))).map((h) => h.seq));
  const prov = await account(follower.url);
  const rent = await account(follower.url);
  await faucet(follower.url, rent, '100');
  const m = await provideMachine(follower.url, prov, { price: '36.00', num_gpus: 2 });
  await poll('the offer in search', async () => (await offerIdsOn(follower.url, m.id)).includes(m.id * 1000 + 2), 10_000 * SLOW);
  const { chain_id } = await nonceInfo(follower.url);
  const l = await apiOk(follower.url, 'POST', '/v1/leases',
    await leaseBody(rent.wallet, chain_id, { offerId: m.id * 1000 + 2, gpus: 2, pricePerHourMicros: 72_000_000n }), rent.token);
  const seq1 = (await health(follower.url)).seq;
  assert.ok(seq1 > seq0, `the follower's change-log position moved with its writes: ${seq0} -> ${seq1}`);
  // Both replicas apply the change log within a bounded time.
  await poll('the leader applies the follower\'s changes', async () => (await health(leader.url)).seq >= seq1, 2000 * SLOW);
  await apiOk(follower.url, 'POST', `/v1/leases/${l.id}/status`, { state: 'running' }, prov.token);
  const charged = async (url) => micros((await apiOk(url, 'GET', `/v1/leases/${l.id}`, undefined, rent.token)).charged);
  await poll('settlement of the running lease', async () => (await charged(follower.url)) > 0n, 5000 * SLOW);

  // kill -9 the leader: the follower takes over within the promised time.
  await leader.kill('SIGKILL');
  const killedAt = Date.now();
  const c0 = await charged(follower.url);
  const takeover = await poll('the follower to become leader', async () => (await health(follower.url)).leader, TAKEOVER_MS * SLOW);
  t.diagnostic(`takeover after ${Date.now() - killedAt} ms`);
  assert.ok(takeover.value);
  // Settlement goes on under the new leader.
  await poll('settlement after the takeover', async () => (await charged(follower.url)) > c0, 5000 * SLOW);

  // The killed replica comes back as a follower; still exactly one leader.
  const back = await start();
  replicas = [follower, back];
  await oneLeader(replicas);
  await poll('the restarted replica catches up', async () => (await health(back.url)).seq >= (await health(follower.url)).seq, 2000 * SLOW);

  // Stopped through the restarted replica: the bill is exactly the price
  // times the running time, whatever replica settled which part.
  const stopped = await apiOk(back.url, 'POST', `/v1/leases/${l.id}/stop`, undefined, rent.token);
  assert.equal(stopped.state, 'ended');
  assert.equal(micros(stopped.charged), expectedCharge(stopped), JSON.stringify(stopped));
  assert.ok(billedMs(stopped) > BigInt(Date.now() - killedAt) - 1000n, `billed ${stopped.billed_seconds} s`);
  const rb = await apiOk(follower.url, 'GET', '/v1/wallet/balance', undefined, rent.token);
  assert.equal(rb.held, '0.000000');
  assert.equal(micros(rb.available), 100_000_000n - micros(stopped.charged));
  const pb = await apiOk(back.url, 'GET', '/v1/wallet/balance', undefined, prov.token);
  assert.equal(pb.earned, stopped.charged);

  const k = await newKey(dir, 'auditor');
  await auditBoth(dir, db, back.url, k.key);
});
