// kill -9 durability: SIGKILL a loaded broker at a random moment, restart it
// on the same database, and check that every acknowledged write survived and
// the books still balance. The seed is printed on failure; rerun one with
// GRID_CRASH_SEED=N.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Wallet } from 'ethers';
import {
  tempDir, startBroker, api, apiOk, account, faucet, provideMachine, nonceInfo, leaseBody, auditDb, money, sleep, SANITIZED,
} from './lib.mjs';

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ROUNDS = Number(process.env.GRID_CRASH_ROUNDS || (SANITIZED ? 2 : 5));
const WORKERS = 8;
const MACHINES = 3;
const RENTERS = 5;

test(`kill -9 under load loses no acknowledged write (${ROUNDS} rounds)`, { timeout: 180_000 }, async (t) => {
  const seed = Number(process.env.GRID_CRASH_SEED || Math.floor(Math.random() * 2 ** 31));
  const rand = mulberry32(seed);
  const pick = (arr) => arr[Math.floor(rand() * arr.length)];
  let round = 0;
  let phase = 'setup';
  try {
    const dir = await tempDir(t);
    const db = path.join(dir, 'crash.db');
    let broker = await startBroker(t, { db, dir, tick: '0.2', extraArgs: ['--threads', '4'] });
    let url = broker.url;

    // The world: one provider with machines, renters with money. Tokens
    // survive restarts (the token secret is in the database).
    const prov = await account(url);
    const machines = [];
    for (let i = 0; i < MACHINES; i++) machines.push(await provideMachine(url, prov, { price: '3.60', minChunk: 1 }));
    const renters = [];
    for (let i = 0; i < RENTERS; i++) {
      const r = await account(url, Wallet.createRandom());
      await faucet(url, r, '1000', `init-${i}`);
      renters.push(r);
    }
    const { chain_id } = await nonceInfo(url);

    // Everything acknowledged (2xx) so far, across rounds.
    const ackFaucets = []; // {renter, key, amount}
    const ackLeases = new Map(); // id -> {renter}
    const ackStopped = new Set(); // lease ids
    const ackRunning = new Set(); // lease ids the host reported running
    let nonce = 1;

    for (round = 1; round <= ROUNDS; round++) {
      phase = 'presign';
      // Sign the orders before the load so signing does not slow it.
      const pool = [];
      for (let i = 0; i < 60; i++) {
        const r = pick(renters);
        const m = pick(machines);
        const gpus = 1 + Math.floor(rand() * 2);
        pool.push({ r, body: await leaseBody(r.wallet, chain_id, { offerId: m.id * 1000 + gpus, gpus, pricePerHourMicros: 3_600_000n * BigInt(gpus), nonce: String(nonce++) }) });
      }

      phase = 'load';
      let stop = false;
      let opCount = 0;
      const killAfter = 300 + Math.floor(rand() * 1200);
      const worker = async (w) => {
        const wr = mulberry32(seed ^ (round * 7919 + w * 104729));
        while (!stop) {
          const x = wr();
          opCount++;
          try {
            if (x < 0.35) {
              const r = renters[Math.floor(wr() * renters.length)];
              const key = `s${seed}-r${round}-w${w}-${opCount}`;
              const amount = money(BigInt(1 + Math.floor(wr() * 5_000_000)));
              const res = await api(url, 'POST', '/v1/wallet/faucet', { amount, idempotency_key: key }, r.token);
              if (res.status === 200) ackFaucets.push({ r, key, amount });
            } else if (x < 0.7) {
              const item = pool.pop();
              if (!item) continue;
              const res = await api(url, 'POST', '/v1/leases', item.body, item.r.token);
              if (res.status === 201) ackLeases.set(res.body.id, { r: item.r });
            } else if (x < 0.85) {
              const open = [...ackLeases.keys()].filter((id) => !ackStopped.has(id) && !ackRunning.has(id));
              if (!open.length) continue;
              const id = open[Math.floor(wr() * open.length)];
              const res = await api(url, 'POST', `/v1/leases/${id}/status`, { state: 'running' }, prov.token);
              if (res.status === 200) ackRunning.add(id);
            } else {
              const open = [...ackLeases.keys()].filter((id) => !ackStopped.has(id));
              if (!open.length) continue;
              const id = open[Math.floor(wr() * open.length)];
              const res = await api(url, 'POST', `/v1/leases/${id}/stop`, undefined, ackLeases.get(id).r.token);
              if (res.status === 200) ackStopped.add(id);
            }
          } catch {
            // The broker died mid-request: not acknowledged.
            await sleep(5);
          }
        }
      };
      const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
      await sleep(killAfter);
      phase = 'kill';
      await broker.kill('SIGKILL');
      stop = true;
      await Promise.all(workers);
      t.diagnostic(`round ${round}: killed after ${killAfter} ms, ${opCount} ops; acknowledged so far: ${ackFaucets.length} faucets, ${ackLeases.size} leases, ${ackStopped.size} stops`);

      // The crashed database audits clean even before a restart.
      phase = 'audit-crashed';
      const crashed = await auditDb(dir, db);
      assert.equal(crashed.code, 0, `audit after kill -9: ${crashed.stdout}${crashed.stderr}`);

      phase = 'restart';
      broker = await startBroker(t, { db, dir, tick: '0.2', extraArgs: ['--threads', '4'] });
      url = broker.url;

      phase = 'check';
      for (const [id, { r }] of ackLeases) {
        const res = await api(url, 'GET', `/v1/leases/${id}`, undefined, r.token);
        assert.equal(res.status, 200, `acknowledged lease ${id}: ${res.status} ${res.text}`);
        assert.equal(res.body.renter, r.address);
        if (ackStopped.has(id)) assert.equal(res.body.state, 'ended', `acknowledged stop of lease ${id}`);
        if (ackRunning.has(id)) assert.ok(['running', 'ended'].includes(res.body.state), `acknowledged running of lease ${id}: ${res.body.state}`);
      }
      const histories = new Map();
      for (const r of renters) {
        const h = await apiOk(url, 'GET', '/v1/wallet/history?limit=10000', undefined, r.token);
        histories.set(r.address, new Map(h.entries.map((e) => [e.id, e])));
      }
      for (const { r, key, amount } of ackFaucets) {
        const e = histories.get(r.address).get(`faucet:${r.address}:${key}`);
        assert.ok(e, `acknowledged faucet ${key} for ${r.address} is in the history`);
        assert.equal(e.amount, amount);
      }
      // A retried acknowledged faucet credits nothing the second time.
      if (ackFaucets.length) {
        const { r, key, amount } = ackFaucets[Math.floor(rand() * ackFaucets.length)];
        const before = await apiOk(url, 'GET', '/v1/wallet/balance', undefined, r.token);
        const again = await api(url, 'POST', '/v1/wallet/faucet', { amount, idempotency_key: key }, r.token);
        assert.equal(again.status, 200, again.text);
        const after = await apiOk(url, 'GET', '/v1/wallet/balance', undefined, r.token);
        // Billing may have moved money meanwhile; the retry itself added nothing.
        assert.ok(Number(after.available) + Number(after.held) <= Number(before.available) + Number(before.held) + 1e-9,
          `retry of ${key} did not credit twice: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
      }
      // No GPU is in two active leases after recovery.
      const active = (await apiOk(url, 'GET', '/v1/leases', undefined, prov.token)).leases.filter((l) => l.state !== 'ended');
      for (const m of machines) {
        const idx = active.filter((l) => l.machine_id === m.id).flatMap((l) => l.gpus);
        assert.equal(new Set(idx).size, idx.length, `machine ${m.id}: GPUs ${idx}`);
      }
      const live = await apiOk(url, 'GET', '/v1/admin/audit', undefined, prov.token);
      assert.equal(live.ok, true, JSON.stringify(live.failures));
    }

    phase = 'final-audit';
    await broker.kill('SIGTERM');
    const off = await auditDb(dir, db);
    assert.equal(off.code, 0, off.stdout + off.stderr);
    assert.equal(off.report.ok, true);
  } catch (e) {
    e.message = `[GRID_CRASH_SEED=${seed} round ${round} phase ${phase}] ${e.message}`;
    throw e;
  }
});
