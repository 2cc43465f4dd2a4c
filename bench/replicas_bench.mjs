#!/usr/bin/env node
// bench/replicas_bench.mjs: several `grid broker` replicas on one PostgreSQL
// database (issue 7): "lease creations/s with one replica and with two
// (state the scaling)" and "the offer index's cross-replica staleness,
// median and p99 (goal <= 1 s)".
//
// Setup: a throwaway PostgreSQL 15 cluster (scripts/pg-test-cluster.sh via
// tests/functional/pg.mjs: 127.0.0.1, fsync=on, synchronous_commit=on), a
// fresh database per run, and the REAL broker binary as replicas:
//   grid broker --db postgres://postgres@127.0.0.1:PORT/DB --listen 127.0.0.1:0
//     --dev --tick 1 --fee-bps 250 --threads T
// each killed by PID at the end of its run (the cluster at the end of all).
// Per run, over HTTP exactly as a client would: K renters (ethers wallets,
// SIWE login, faucet), one provider whose G-GPU machines are registered and
// listed (POST /v1/machines, PUT /v1/machines/ID/offer). Lease creations are
// POST /v1/leases with EIP-712 orders signed by the renters' keys (the digest
// computed once per order with ethers' keccak, checked against ethers'
// TypedDataEncoder, then SigningKey.sign), each a 1-GPU lease on its own
// free GPU (order i takes machine floor(i / G)): no order loses to "no
// longer available" by design, so any failure is the replicas'.
// Orders are signed BEFORE the timed window (signing in JS costs 0.4-1 ms
// each here, about what a lease creation costs): a warm-up of W orders gives the
// rate, then rate x seconds x 1.5 orders are signed; if they run out early
// the window ends there (said in the output).
//
// Lease creations/s: C concurrent workers (C/n per replica, requests
// round-robin over the replicas) send the pre-signed orders for --seconds;
// leases/s = 201 answers / elapsed. A 503 "aborted" answer (the replica lost
// the change-log head on all its own attempts; nothing was written) is sent
// again by the client, up to 20 times, and counted. Also: latency
// median/p99 (to the 201, resends included), failures by
// status, the replicas' commit and commit-failure counters (GET /metrics:
// grid_store_commits_total, grid_store_commit_failures_total — a commit
// that lost the change-log head to the other replica counts as a failure
// and is retried by the broker). Checked afterwards: every created lease is
// listed (GET /v1/leases) by its renter on the OTHER replica (the last one),
// the offer count on every replica agrees, and the change-log heads
// (/healthz seq) are equal.
// Runs alternate 1 replica / 2 replicas (--rounds, the order flips each
// round); the ratio is median(2) / median(1).
//
// Staleness (2-replica runs): a dedicated 1-GPU machine, never leased. For
// each sample, its price is changed through replica A (PUT
// /v1/machines/ID/offer, a new price every time); as soon as A answers 200
// (the change is committed), replica B is polled with
// GET /v1/offers?q=machine_id%3DID every --poll-ms (2 ms by default; each
// poll's own round trip comes on top) until the offer shows the new price.
// staleness = time from A's answer to the first poll answer showing it (an
// upper bound: the change may have arrived up to one poll earlier). Printed
// beside it: a lower bound (when the last poll that did not show it was
// sent; 0 if the first poll showed it) and the round trip of the search that
// showed it — under load B's search waits for one of its HTTP threads and
// its lock behind lease creations, and that wait is part of the upper
// bound. The direction alternates (A->B, B->A). Two sets: idle (no other
// load), and loaded (during a second window of lease creations through both
// replicas, whose rate is printed apart).
//
// Usage: node bench/replicas_bench.mjs [--grid build/grid] [--seconds 10]
//          [--rounds 2] [--concurrency 16] [--renters 64] [--gpus 64]
//          [--threads 4] [--samples 200] [--poll-ms 2] [--warmup 200]
//          [--no-loaded]
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Wallet, TypedDataEncoder, keccak256, concat, id, toBeHex, zeroPadValue } from 'ethers';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cliEnv, loginWithEthers, api, apiOk, money, ORDER_TYPES } from '../tests/functional/lib.mjs';
import { pgCluster, pgMissing } from '../tests/functional/pg.mjs';

const ROOT = path.resolve(import.meta.dirname, '..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => performance.now();
const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => {
  const v = sorted(xs);
  const n = v.length;
  return n === 0 ? NaN : n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
};
// Nearest-rank percentile.
const pct = (xs, p) => {
  const v = sorted(xs);
  return v.length ? v[Math.min(v.length - 1, Math.ceil((p / 100) * v.length) - 1)] : NaN;
};
const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : String(x));

const USAGE = 'usage: node bench/replicas_bench.mjs [--grid build/grid] [--seconds 10] [--rounds 2] [--concurrency 16] [--renters 64]\n' +
  '         [--gpus 64] [--threads 4] [--samples 200] [--poll-ms 2] [--warmup 200] [--no-loaded]';

function parseArgs(argv) {
  const o = { grid: process.env.GRID_BIN || path.join(ROOT, 'build/grid'), seconds: 10, rounds: 2, concurrency: 16, renters: 64,
    gpus: 64, threads: 4, samples: 200, pollMs: 2, warmup: 200, loaded: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--grid') o.grid = path.resolve(v());
    else if (a === '--seconds') o.seconds = Number(v());
    else if (a === '--rounds') o.rounds = Number(v());
    else if (a === '--concurrency') o.concurrency = Number(v());
    else if (a === '--renters') o.renters = Number(v());
    else if (a === '--gpus') o.gpus = Number(v());
    else if (a === '--threads') o.threads = Number(v());
    else if (a === '--samples') o.samples = Number(v());
    else if (a === '--poll-ms') o.pollMs = Number(v());
    else if (a === '--warmup') o.warmup = Number(v());
    else if (a === '--no-loaded') o.loaded = false;
    else {
      console.error(USAGE);
      process.exit(2);
    }
  }
  for (const k of ['rounds', 'concurrency', 'renters', 'gpus', 'threads', 'samples', 'warmup'])
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new Error(`--${k}: a positive integer`);
  if (!(o.seconds > 0) || !(o.pollMs >= 0)) throw new Error('--seconds must be positive, --poll-ms >= 0');
  if (o.gpus > 999) throw new Error('--gpus: at most 999 (kMaxGpusPerMachine)');
  return o;
}

function machineLine() {
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m) || [, 'unknown'])[1];
  return `nproc=${os.availableParallelism()} cpu="${cpu}" load=${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`;
}

// ---------------------------------------------------------------- CPU

const TICK = 100;  // USER_HZ (getconf CLK_TCK) on Linux
// utime + stime of a process, in seconds (0 if gone); its parent in .ppid.
function procCpu(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { cpu: (Number(f[11]) + Number(f[12])) / TICK, ppid: Number(f[1]) };
  } catch {
    return { cpu: 0, ppid: 0 };
  }
}
// The PostgreSQL server: its postmaster and every child alive now.
function serverCpu(postmaster) {
  let total = procCpu(postmaster).cpu;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const p = procCpu(Number(d));
    if (p.ppid === postmaster) total += p.cpu;
  }
  return total;
}
const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
// CPU seconds so far of: the replicas, the PostgreSQL server, this program.
function cpuNow(run) {
  return { replicas: run.replicas.map((r) => procCpu(r.pid).cpu), server: serverCpu(run.cluster.pid), bench: selfCpu() };
}
function cpuPerSecond(a, b, seconds) {
  const r = b.replicas.map((x, i) => (x - a.replicas[i]) / seconds);
  return `CPU s per wall s: replica${r.length > 1 ? 's' : ''} ${r.map((x) => x.toFixed(2)).join('/')}, ` +
    `PostgreSQL ${((b.server - a.server) / seconds).toFixed(2)}, this program ${((b.bench - a.bench) / seconds).toFixed(2)} (of ${os.availableParallelism()})`;
}

// ---------------------------------------------------------------- orders

const CHAIN_ID = 31337;
const DOMAIN = { name: 'Gridmarket', version: '1', chainId: CHAIN_ID };
const DOMAIN_SEPARATOR = TypedDataEncoder.hashDomain(DOMAIN);
const ORDER_TYPEHASH = id('LeaseOrder(uint256 offerId,uint256 gpus,uint256 pricePerHour,uint256 nonce,uint256 expiry)');
const word = (x) => zeroPadValue(toBeHex(BigInt(x)), 32);
function orderDigest(o) {
  const structHash = keccak256(concat([ORDER_TYPEHASH, word(o.offerId), word(o.gpus), word(o.pricePerHour), word(o.nonce), word(o.expiry)]));
  return keccak256(concat(['0x1901', DOMAIN_SEPARATOR, structHash]));
}
{
  // The shortcut must be the EIP-712 digest ethers (and the broker) compute.
  const o = { offerId: 12001n, gpus: 1n, pricePerHour: 123456n, nonce: 77n, expiry: 2_000_000_000n };
  if (orderDigest(o) !== TypedDataEncoder.hash(DOMAIN, ORDER_TYPES, o)) throw new Error('orderDigest differs from ethers TypedDataEncoder.hash');
}

const MAX_CLIENT_ATTEMPTS = 20;  // per request, on 503 "aborted"
const PRICE_GPU = 100_000n;  // 0.10 USD per GPU-hour: holds are small, the faucet covers thousands

// ---------------------------------------------------------------- replicas

// `grid broker` as a child; its URL from the "listening on" line. kill()
// sends a signal by PID and waits for the exit (SIGKILL after 10 s).
async function startReplica(gridBin, dir, db, extraArgs) {
  const args = ['broker', '--db', db, '--listen', '127.0.0.1:0', '--dev', '--tick', '1', '--fee-bps', '250', ...extraArgs];
  const proc = spawn(gridBin, args, { env: cliEnv(dir), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (d) => {
    stderr += d;
    if (stderr.length > 1 << 20) stderr = stderr.slice(-(1 << 19));
  });
  let alive = true;
  const exited = once(proc, 'exit').then(([code, signal]) => {
    alive = false;
    return { code, signal };
  });
  const kill = async (signal = 'SIGTERM') => {
    if (alive) {
      try {
        process.kill(proc.pid, signal);
      } catch {}
      const t = setTimeout(() => alive && process.kill(proc.pid, 'SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
  };
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`broker did not start in 30 s; stderr:\n${stderr}`)), 30000);
    proc.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      const m = out.match(/grid broker listening on (http:\/\/127\.0\.0\.1:\d+)\n/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on('error', (e) => reject(new Error(`cannot run ${gridBin}: ${e.message}`)));
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`broker exited (code ${code}, signal ${signal}) before listening; stderr:\n${stderr}`));
    });
  });
  return { url, pid: proc.pid, kill, get stderr() { return stderr; } };
}

// ---------------------------------------------------------------- one run

const METRICS = ['grid_store_commits_total', 'grid_store_commit_failures_total', 'grid_http_requests_total'];
async function metrics(url) {
  const r = await api(url, 'GET', '/metrics');
  const out = {};
  for (const m of METRICS) {
    const x = String(r.text).match(new RegExp(`^${m}(?:\\{\\})? ([0-9.e+]+)$`, 'm'));
    out[m] = x ? Number(x[1]) : NaN;
  }
  return out;
}

class Run {
  constructor(o, cluster, n, hooks) {
    this.o = o;
    this.cluster = cluster;
    this.n = n;
    this.hooks = hooks;
    this.replicas = [];
    this.machines = [];  // machine ids for lease orders, in order
    this.nextOrder = 0;  // global order index (machine floor(i / gpus), renter i % K, nonce i + 1)
  }

  async start() {
    this.dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'grid-bench-rep-'));
    await fsp.mkdir(path.join(this.dir, 'home'));
    this.hooks.push(() => fsp.rm(this.dir, { recursive: true, force: true }).catch(() => {}));
    this.db = await this.cluster.createDatabase('bench');
    const extraArgs = ['--threads', String(this.o.threads)];
    // Started one after the other: the first migrates the schema.
    for (let i = 0; i < this.n; i++) {
      const r = await startReplica(this.o.grid, this.dir, this.db, extraArgs);
      this.replicas.push(r);
      this.hooks.push(() => r.kill('SIGKILL'));
    }
    this.urls = this.replicas.map((r) => r.url);
    const A = this.urls[0];
    // The provider and the renters log in once (a token is good on every replica).
    this.provider = { wallet: Wallet.createRandom() };
    this.provider.token = await loginWithEthers(A, this.provider.wallet);
    this.renters = [];
    for (let k = 0; k < this.o.renters; k++) {
      const wallet = Wallet.createRandom();
      const url = this.urls[k % this.n];
      const token = await loginWithEthers(url, wallet);
      await apiOk(url, 'POST', '/v1/wallet/faucet', { amount: '10000' }, token);
      this.renters.push({ wallet, token, address: wallet.address.toLowerCase() });
    }
    // The staleness probe: a 1-GPU machine nobody rents.
    if (this.n >= 2) this.probe = await this.addMachine(1, A);
  }

  async addMachine(gpus, url = this.urls[0]) {
    const spec = { gpu_name: 'H100 SXM 80GB', num_gpus: gpus, gpu_ram: 80, cpu_cores: 128, cpu_ram: 1024, disk_space: 4000,
      inet_up: 10000, inet_down: 10000, geolocation: 'DE', datacenter: true };
    const m = await apiOk(url, 'POST', '/v1/machines', spec, this.provider.token);
    await apiOk(url, 'PUT', `/v1/machines/${m.id}/offer`, { price_gpu: money(PRICE_GPU) }, this.provider.token);
    return m.id;
  }

  // Signs `count` more orders (registering the machines they need first).
  async sign(count) {
    const G = this.o.gpus;
    const need = Math.ceil((this.nextOrder + count) / G);
    while (this.machines.length < need) this.machines.push(await this.addMachine(G, this.urls[this.machines.length % this.n]));
    const expiry = Math.floor(Date.now() / 1000) + 3600;
    const out = [];
    const t0 = nowMs();
    for (let j = 0; j < count; j++) {
      const i = this.nextOrder++;
      const renter = this.renters[i % this.renters.length];
      const offerId = this.machines[Math.floor(i / G)] * 1000 + 1;
      const o = { offerId: BigInt(offerId), gpus: 1n, pricePerHour: PRICE_GPU, nonce: BigInt(i + 1), expiry: BigInt(expiry) };
      const signature = renter.wallet.signingKey.sign(orderDigest(o)).serialized;
      out.push({
        renter,
        body: JSON.stringify({
          offer_id: offerId, gpus: 1, image: 'host', env: [`RUN=${i}`], command: ['sleep', '3600'],
          order: { offer_id: offerId, gpus: 1, price_per_hour: money(PRICE_GPU), nonce: String(i + 1), expiry, signature },
        }),
      });
    }
    this.signMs = (nowMs() - t0) / Math.max(1, count);
    return out;
  }

  // Sends `orders` with C workers spread over the replicas, for at most `seconds`.
  async fire(orders, seconds) {
    const C = this.o.concurrency;
    const lat = [];
    const fails = new Map();
    const created = [];
    let next = 0;
    let exhaustedAt = null;
    const t0 = nowMs();
    const deadline = t0 + seconds * 1000;
    const before = await Promise.all(this.urls.map(metrics));
    const cpu0 = cpuNow(this);
    let retries = 0;
    const worker = async (w) => {
      const url = this.urls[w % this.n];
      for (;;) {
        if (nowMs() >= deadline) return;
        if (next >= orders.length) {
          exhaustedAt ??= nowMs() - t0;
          return;
        }
        const ord = orders[next++];
        const s = nowMs();
        // A 503 "aborted" (the replica lost the change-log head to the other
        // one kAttempts times in a row; nothing was written) is sent again, as
        // a client should: the same signed order, to the same replica.
        for (let attempt = 1; ; attempt++) {
          let status = 0;
          let text = '';
          try {
            const res = await fetch(url + '/v1/leases', {
              method: 'POST',
              headers: { 'content-type': 'application/json', authorization: `Bearer ${ord.renter.token}` },
              body: ord.body,
            });
            status = res.status;
            text = await res.text();
          } catch (e) {
            text = String(e);
          }
          if (status === 201 || status === 200) {
            lat.push(nowMs() - s);
            created.push({ renter: ord.renter, id: JSON.parse(text).id });
            break;
          }
          let code = '';
          try {
            code = JSON.parse(text).error.code;
          } catch {}
          if (status === 503 && code === 'aborted' && attempt < MAX_CLIENT_ATTEMPTS) {
            retries++;
            continue;
          }
          const key = `${status} ${code || text.slice(0, 80)}`;
          const f = fails.get(key) ?? { count: 0, example: text.slice(0, 200) };
          f.count++;
          fails.set(key, f);
          break;
        }
      }
    };
    await Promise.all(Array.from({ length: C }, (_, w) => worker(w)));
    const elapsed = (nowMs() - t0) / 1000;
    const cpu = cpuPerSecond(cpu0, cpuNow(this), elapsed);
    const after = await Promise.all(this.urls.map(metrics));
    const delta = (m) => after.map((a, i) => a[m] - before[i][m]);
    return {
      ok: created.length, created, elapsed, rate: created.length / elapsed, lat, fails, exhaustedAt, retries, cpu,
      commits: delta('grid_store_commits_total'), commitFailures: delta('grid_store_commit_failures_total'),
    };
  }

  // One staleness sample: change the probe's price via `from`, poll `to`.
  async staleness(i, from, to) {
    const price = 1_000_000n + BigInt(this.nextPrice = (this.nextPrice ?? 0) + 1) * 10_000n;
    const want = money(price);
    const s = nowMs();
    let aborted = 0;
    for (;;) {
      const r = await api(from, 'PUT', `/v1/machines/${this.probe}/offer`, { price_gpu: want }, this.provider.token);
      if (r.status === 200) break;
      if (r.status === 503 && r.body?.error?.code === 'aborted' && ++aborted < MAX_CLIENT_ATTEMPTS) continue;
      throw new Error(`PUT /v1/machines/${this.probe}/offer on ${from}: ${r.status} ${r.text}`);
    }
    const acked = nowMs();
    let prevSent = null;  // when the last poll that did not show it was sent
    for (let polls = 1; ; polls++) {
      const sent = nowMs();
      const r = await api(to, 'GET', `/v1/offers?q=machine_id%3D${this.probe}`);
      if (r.status !== 200) throw new Error(`GET /v1/offers on ${to}: ${r.status} ${r.text}`);
      const seen = r.body.offers.some((o) => o.dph_total === want);
      const t = nowMs();
      // The change became visible on `to` after the previous poll was sent
      // (that poll was answered later, without it) and before this answer.
      if (seen) return { ms: t - acked, lowerMs: prevSent === null ? 0 : Math.max(0, prevSent - acked), pollMs: t - sent, writeMs: acked - s, polls, aborted };
      prevSent = sent;
      if (t - acked > 10_000) throw new Error(`sample ${i}: ${to} did not show price ${want} after 10 s`);
      if (this.o.pollMs > 0) await sleep(this.o.pollMs);
    }
  }

  async stalenessSamples(count, stop = () => false) {
    const out = [];
    for (let i = 0; i < count && !stop(); i++) {
      const [a, b] = i % 2 === 0 ? [this.urls[0], this.urls[1]] : [this.urls[1], this.urls[0]];
      out.push(await this.staleness(i, a, b));
    }
    return out;
  }

  // Every created lease is listed by its renter on the last replica; the
  // replicas agree on the change-log head and the offers.
  async check(created) {
    const last = this.urls[this.n - 1];
    const want = new Map();
    for (const c of created) {
      if (!want.has(c.renter)) want.set(c.renter, new Set());
      want.get(c.renter).add(c.id);
    }
    let listed = 0;
    for (const [renter, ids] of want) {
      const r = await apiOk(last, 'GET', '/v1/leases', undefined, renter.token);
      const got = new Set(r.leases.map((l) => l.id));
      for (const id of ids) if (got.has(id)) listed++;
    }
    // Heads: wait briefly for the watchers to settle.
    let heads = [];
    for (let i = 0; i < 100; i++) {
      heads = (await Promise.all(this.urls.map((u) => apiOk(u, 'GET', '/healthz')))).map((h) => h.seq);
      if (heads.every((h) => h === heads[0])) break;
      await sleep(20);
    }
    const offers = await Promise.all(this.urls.map(async (u) => (await apiOk(u, 'GET', '/v1/offers?limit=10000')).offers.length));
    return { listed, expected: created.length, heads, offers };
  }

  async stop() {
    for (const r of this.replicas) await r.kill('SIGTERM');
  }
}

// ---------------------------------------------------------------- main

function printFire(label, f, n) {
  const fails = [...f.fails.entries()].map(([k, v]) => `${v.count}x ${k} (e.g. ${v.example})`).join('; ');
  console.log(`  ${label}: ${fmt(f.ok)} leases in ${f.elapsed.toFixed(2)} s = ${fmt(f.rate)} leases/s; latency median ${f.lat.length ? median(f.lat).toFixed(1) : '-'} ms, ` +
    `p99 ${f.lat.length ? pct(f.lat, 99).toFixed(1) : '-'} ms; commits per replica ${f.commits.join('/')}, ` +
    `commit failures (lost the change-log head; the broker retries) ${f.commitFailures.join('/')}; ` +
    `503 "aborted" answers re-sent by the client ${f.retries}` +
    `; ${f.cpu}` +
    (f.exhaustedAt !== null ? `; pre-signed orders ran out at ${(f.exhaustedAt / 1000).toFixed(2)} s` : '') +
    (fails ? `; FAILED: ${fails}` : ''));
}

function summary(label, xs) {
  if (!xs.length) return `${label}: no samples`;
  return `${label}: n=${xs.length} median ${median(xs).toFixed(1)} ms, p90 ${pct(xs, 90).toFixed(1)} ms, p99 ${pct(xs, 99).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms`;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(o.grid)) throw new Error(`${o.grid} not found (build it, or pass --grid PATH)`);
  const missing = pgMissing({ own: true });
  if (missing) throw new Error(missing);
  console.log(`replicas_bench: grid broker replicas on one PostgreSQL database (issue 7)`);
  console.log(`machine: ${machineLine()}`);
  console.log(`grid: ${o.grid}; ${o.rounds} rounds of [1 replica, 2 replicas] (order flips each round), ${o.seconds} s windows, ` +
    `${o.concurrency} concurrent POST /v1/leases, ${o.renters} renters, ${o.gpus}-GPU machines, --threads ${o.threads}, ` +
    `staleness: ${o.samples} samples idle${o.loaded ? ' + loaded' : ''}, poll every ${o.pollMs} ms`);

  const hooks = [];
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    for (const f of hooks.reverse()) {
      try {
        await f();
      } catch {}
    }
  };
  process.on('SIGINT', () => cleanup().then(() => process.exit(130)));
  process.on('SIGTERM', () => cleanup().then(() => process.exit(143)));
  let ok = true;
  try {
    const cluster = await pgCluster({ after: (f) => hooks.push(f) }, { own: true });
    console.log(`cluster: ${cluster.url()} (own, fsync=on, synchronous_commit=on), dir ${cluster.dir}`);
    const rates = { 1: [], 2: [] };
    const idle = [], loaded = [], loadedRates = [], writeMs = [];
    const idleLower = [], idlePoll = [], loadedLower = [], loadedPoll = [];
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 === 0 ? [1, 2] : [2, 1];
      for (const n of order) {
        const run = new Run(o, cluster, n, hooks);
        const t0 = nowMs();
        await run.start();
        // Warm-up: W orders, whose rate sizes the signing for the window.
        const warm = await run.sign(o.warmup);
        const w = await run.fire(warm, 60);
        const budget = Math.ceil(Math.max(w.rate, 50) * o.seconds * 1.5);
        const orders = await run.sign(budget);
        console.log(`round ${round + 1}, ${n} replica${n > 1 ? 's' : ''} (${run.urls.join(' ')}; db ${run.db}): setup ${((nowMs() - t0) / 1000).toFixed(1)} s; ` +
          `warm-up ${w.ok} leases at ${fmt(w.rate)}/s; signed ${budget} orders (${run.signMs.toFixed(2)} ms each, before the window)`);
        if (w.fails.size) printFire('warm-up', w, n);
        const f = await run.fire(orders, o.seconds);
        printFire(`window ${n} replica${n > 1 ? 's' : ''}`, f, n);
        rates[n].push(f.rate);
        const all = [...w.created, ...f.created];
        if (f.fails.size) ok = false;
        if (n >= 2) {
          // Idle staleness.
          const s = await run.stalenessSamples(o.samples);
          idle.push(...s.map((x) => x.ms));
          writeMs.push(...s.map((x) => x.writeMs));
          idleLower.push(...s.map((x) => x.lowerMs));
          idlePoll.push(...s.map((x) => x.pollMs));
          console.log(`  ${summary('staleness idle', s.map((x) => x.ms))}; polls per sample median ${median(s.map((x) => x.polls))}; ` +
            `the PUT through A took median ${median(s.map((x) => x.writeMs)).toFixed(1)} ms`);
          if (o.loaded) {
            const more = await run.sign(budget);
            let done = false;
            const load = run.fire(more, o.seconds).then((r) => {
              done = true;
              return r;
            });
            const [lsr, lfr] = await Promise.allSettled([run.stalenessSamples(1e9, () => done), load]);
            if (lsr.status === 'rejected') throw lsr.reason;
            if (lfr.status === 'rejected') throw lfr.reason;
            const ls = lsr.value;
            const lf = lfr.value;
            printFire('window 2 replicas + staleness sampler', lf, n);
            loadedRates.push(lf.rate);
            loaded.push(...ls.map((x) => x.ms));
            loadedLower.push(...ls.map((x) => x.lowerMs));
            loadedPoll.push(...ls.map((x) => x.pollMs));
            all.push(...lf.created);
            if (lf.fails.size) ok = false;
            console.log(`  ${summary('staleness under load', ls.map((x) => x.ms))}; first poll showed it in ` +
              `${ls.filter((x) => x.polls === 1).length}/${ls.length}; ${summary('that search\'s own round trip', ls.map((x) => x.pollMs))}; the PUT through A took median ` +
              `${median(ls.map((x) => x.writeMs)).toFixed(1)} ms, p99 ${pct(ls.map((x) => x.writeMs), 99).toFixed(1)} ms ` +
              `(${ls.reduce((a, x) => a + x.aborted, 0)} 503 "aborted" answers re-sent)`);
          }
        }
        const c = await run.check(all);
        const good = c.listed === c.expected && c.heads.every((h) => h === c.heads[0]) && c.offers.every((x) => x === c.offers[0]);
        if (!good) ok = false;
        console.log(`  check: ${c.listed}/${c.expected} created leases listed on ${run.urls[n - 1]}; change-log heads ${c.heads.join('/')}; ` +
          `offers per replica ${c.offers.join('/')} -> ${good ? 'ok' : 'MISMATCH'}`);
        await run.stop();
      }
    }
    console.log('');
    console.log(`lease creations/s, 1 replica:  per round ${rates[1].map((x) => fmt(x)).join(' ')}; median ${fmt(median(rates[1]))}`);
    console.log(`lease creations/s, 2 replicas: per round ${rates[2].map((x) => fmt(x)).join(' ')}; median ${fmt(median(rates[2]))}`);
    const perRound = rates[1].map((x, i) => rates[2][i] / x);
    console.log(`scaling 2 replicas / 1 replica = ${(median(rates[2]) / median(rates[1])).toFixed(2)}x (per round ${perRound.map((x) => x.toFixed(2)).join(' ')})`);
    if (loadedRates.length) console.log(`lease creations/s, 2 replicas with the staleness sampler running: ${loadedRates.map((x) => fmt(x)).join(' ')}`);
    console.log(`offer-index staleness across replicas (A answered 200 -> B's search shows it; goal <= 1000 ms):`);
    console.log(`  ${summary('idle', idle)}`);
    console.log(`    ${summary('lower bound (the last poll not showing it had been sent by then)', idleLower)}`);
    console.log(`    ${summary('the round trip of the search that showed it', idlePoll)}`);
    if (loaded.length) {
      console.log(`  ${summary('under lease load', loaded)}`);
      console.log(`    ${summary('lower bound', loadedLower)}`);
      console.log(`    ${summary('the round trip of the search that showed it', loadedPoll)}`);
    }
    const worst = Math.max(pct(idle, 99), loaded.length ? pct(loaded, 99) : 0);
    console.log(`  goal p99 <= 1000 ms: ${worst <= 1000 ? 'met' : 'NOT met'} (worst p99 ${worst.toFixed(1)} ms, upper bounds)`);
    console.log(`machine at the end: ${machineLine()}`);
  } catch (e) {
    ok = false;
    console.error(`replicas_bench: ${e.stack || e}`);
  } finally {
    await cleanup();
  }
  process.exitCode = ok ? 0 : 1;
}

main();
