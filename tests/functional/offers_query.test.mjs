// Offer search through the real broker (--dev): the query language over
// GET /v1/offers and `grid offers search`, every operator class, order,
// limit, -n, explain, precise errors, and the index kept in step with leases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  tempDir, startBroker, grid, gridJson, api, apiOk, account, faucet, provideMachine, leaseBody, nonceInfo,
  assertApiError,
} from './lib.mjs';

// Every field of the query language: each offer carries all of them.
const FIELDS = [
  'id', 'machine_id', 'host_id', 'gpu_name', 'num_gpus', 'gpu_ram', 'gpu_total_ram', 'gpu_arch', 'compute_cap',
  'cuda_vers', 'driver_version', 'gpu_mem_bw', 'bw_nvlink', 'pcie_bw', 'pci_gen', 'total_flops', 'dlperf',
  'cpu_cores', 'cpu_cores_effective', 'cpu_ram', 'disk_space', 'disk_bw', 'inet_up', 'inet_down', 'geolocation',
  'datacenter', 'verified', 'reliability', 'dph_total', 'dph_per_gpu', 'storage_cost', 'min_bid', 'duration',
  'dlperf_per_dphtotal', 'flops_per_dphtotal', 'rentable', 'rented', 'simulated',
];

const DAY = 86_400_000;
const isoIn = (ms) => new Date(Date.now() + ms).toISOString().replace(/\.\d+Z$/, 'Z');

// Four machines of two providers:
//   A  8x RTX 4090, US, datacenter, cc 890, CUDA 12.4, $0.40/GPU-h in chunks of 2
//   B  8x H100 SXM 80GB, DE, datacenter, cc 900, CUDA 12.2, $2.35/GPU-h, whole machine only
//   C  4x A100 SXM4 80GB, FR, simulated, cc 800, $1.10/GPU-h, ends in a year
//   D  1x RTX 4090, CN, no compute_cap, $0.30/GPU-h, ends in two days (another provider)
async function market(t) {
  const dir = await tempDir(t);
  const broker = await startBroker(t, { db: path.join(dir, 'b.db'), dir, dev: true });
  const url = broker.url;
  const p1 = await account(url);
  const p2 = await account(url);
  const A = await provideMachine(url, p1, {
    price: '0.40', minChunk: 2, gpu_name: 'RTX 4090', num_gpus: 8, gpu_ram: 24, geolocation: 'US',
    compute_cap: 890, cuda_vers: 12.4, gpu_arch: 'nvidia', total_flops: 660.8, driver_version: '550.54.15',
  });
  const B = await provideMachine(url, p1, {
    price: '2.35', minChunk: 8, gpu_name: 'H100 SXM 80GB', num_gpus: 8, gpu_ram: 80, geolocation: 'DE',
    compute_cap: 900, cuda_vers: 12.2,
  });
  const C = await provideMachine(url, p1, {
    price: '1.10', gpu_name: 'A100 SXM4 80GB', num_gpus: 4, gpu_ram: 80, geolocation: 'FR', datacenter: false,
    simulated: true, compute_cap: 800, endDate: isoIn(365 * DAY),
  });
  const D = await provideMachine(url, p2, {
    price: '0.30', gpu_name: 'RTX 4090', num_gpus: 1, gpu_ram: 24, geolocation: 'CN', datacenter: false,
    endDate: isoIn(2 * DAY),
  });
  const id = (m, n) => m.id * 1000 + n;
  return { dir, url, p1, p2, A, B, C, D, id };
}

const search = async (url, q, params = {}) => {
  const qs = new URLSearchParams({ q, ...params });
  return apiOk(url, 'GET', `/v1/offers?${qs}`);
};
const ids = (r) => r.offers.map((o) => o.id);

test('offer search: each operator class, exact money, nulls, order, limit, defaults', async (t) => {
  const { url, A, B, C, D, id } = await market(t);

  // = on a string: case-insensitive, `_` for a space; cheapest first, ties by id.
  let r = await search(url, 'gpu_name=rtx_4090');
  assert.deepEqual(ids(r), [id(D, 1), id(A, 2), id(A, 4), id(A, 6), id(A, 8)]);
  assert.equal(r.total, 5);
  assert.equal(r.query, 'gpu_name=rtx_4090 rentable=true rented=false', 'the effective query: --dev leaves verified out');
  assert.equal(r.order, 'dph_total');
  // Every field is there, typed as documented.
  for (const o of r.offers) for (const f of FIELDS) assert.ok(f in o, `offer ${o.id} lacks ${f}`);
  const a4 = r.offers.find((o) => o.id === id(A, 4));
  assert.equal(a4.dph_total, '1.600000');
  assert.equal(a4.dph_per_gpu, '0.400000');
  assert.equal(a4.num_gpus, 4);
  assert.equal(a4.gpu_total_ram, 96);
  assert.equal(a4.compute_cap, 890);
  assert.equal(a4.cuda_vers, 12.4);
  assert.equal(a4.total_flops, 330.4, 'the chunk’s share of the machine');
  assert.equal(a4.cpu_cores_effective, 32);
  assert.equal(a4.flops_per_dphtotal, 206.5);
  assert.equal(a4.min_bid, null);
  assert.equal(a4.disk_bw, null);
  assert.equal(a4.reliability, null, 'a hand-registered machine has no measured reliability');
  assert.equal(a4.verified, false);
  assert.equal(a4.duration, null, 'no end date');
  assert.equal(a4.rentable, true);
  assert.equal(a4.rented, false);
  assert.equal(typeof a4.host_id, 'number');
  assert.equal(a4.min_chunk, 2);
  const d1 = r.offers.find((o) => o.id === id(D, 1));
  assert.ok(d1.duration > 1.99 && d1.duration <= 2, `duration ${d1.duration}`);
  assert.notEqual(d1.host_id, a4.host_id, 'another provider');

  // != and notin; in with a list.
  assert.deepEqual(ids(await search(url, 'gpu_name!=RTX_4090')), [id(C, 1), id(C, 2), id(C, 3), id(C, 4), id(B, 8)]);
  assert.deepEqual(ids(await search(url, 'gpu_name in [H100_SXM_80GB, A100_SXM4_80GB] geolocation notin [FR]')),
    [id(B, 8)]);
  // Numeric comparisons, also as words.
  assert.deepEqual(ids(await search(url, 'num_gpus>=4 num_gpus<8')), [id(A, 4), id(A, 6), id(C, 4)]);
  assert.deepEqual(ids(await search(url, 'num_gpus gte 8')), [id(A, 8), id(B, 8)]);
  assert.deepEqual(ids(await search(url, 'cuda_vers>12.3')), [id(A, 2), id(A, 4), id(A, 6), id(A, 8)]);
  // Money is exact: 0.80 is not below 0.8.
  assert.deepEqual(ids(await search(url, 'dph<0.8')), [id(D, 1)]);
  assert.deepEqual(ids(await search(url, 'dph<=0.8')), [id(D, 1), id(A, 2)]);
  // A clause on a null never matches, not even !=.
  assert.deepEqual(ids(await search(url, 'compute_cap>=890 gpu_name=RTX_4090')), [id(A, 2), id(A, 4), id(A, 6), id(A, 8)]);
  assert.deepEqual(ids(await search(url, 'compute_cap!=890 gpu_name=RTX_4090')), []);
  assert.deepEqual(ids(await search(url, 'reliability>0.5')), []);
  // Booleans; durations in days.
  assert.deepEqual(ids(await search(url, 'simulated=true')), [id(C, 1), id(C, 2), id(C, 3), id(C, 4)]);
  assert.deepEqual(ids(await search(url, 'datacenter=false num_gpus=1')), [id(D, 1), id(C, 1)]);
  assert.deepEqual(ids(await search(url, 'duration<3')), [id(D, 1)]);
  // any removes a clause.
  assert.equal((await search(url, 'gpu_ram=any')).total, 10);
  assert.equal((await search(url, '')).total, 10);

  // Order: descending, several keys; limit keeps the total exact.
  r = await search(url, 'gpu_ram>=80', { order: 'num_gpus-,dph' });
  assert.deepEqual(ids(r), [id(B, 8), id(C, 4), id(C, 3), id(C, 2), id(C, 1)]);
  assert.equal(r.order, 'num_gpus-,dph_total');
  r = await search(url, '', { order: 'dph-', limit: '2' });
  assert.deepEqual(ids(r), [id(B, 8), id(C, 4)]);
  assert.equal(r.total, 10);
  assert.equal(r.offers.length, 2);
  assert.deepEqual((await search(url, '', { limit: '0' })).offers, []);
});

test('grid offers search: table, --json, -o, --limit, -n, --explain, bad queries', async (t) => {
  const { dir, url, A, B, id } = await market(t);
  const b = { broker: url };

  const table = await grid(dir, ['offers', 'search', 'gpu_ram>=80'], b);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /ID\s+GPUS\s+\$\/H\s+\$\/GPU-H\s+GPU_RAM\s+RELIABILITY\s+GEO\s+CUDA/);
  for (const line of table.stdout.split('\n').filter((l) => l.includes('A100'))) {
    assert.match(line, /SIMULATED/, `simulated offers are labelled: ${line}`);
  }
  const h100 = table.stdout.split('\n').find((l) => l.includes('H100'));
  assert.ok(h100 && !/SIMULATED/.test(h100), h100);
  assert.match(table.stdout, /8x H100 SXM 80GB/);
  assert.match(table.stdout, /5 of 5 offers shown/);

  // Several words are one query; -o and --limit.
  const j = await gridJson(dir, ['offers', 'search', 'gpu_name=RTX_4090', 'num_gpus>=2', '-o', 'dph-', '--limit', '2'], b);
  assert.deepEqual(Object.keys(j).sort(), ['offers', 'total']);
  assert.deepEqual(j.offers.map((o) => o.id), [id(A, 8), id(A, 6)]);
  assert.equal(j.total, 4);
  for (const f of FIELDS) assert.ok(f in j.offers[0], `--json offer lacks ${f}`);

  // --explain on an empty result names the clause and the nearest offer.
  const ex = await gridJson(dir, ['offers', 'search', 'gpu_name=H100_SXM_80GB dph<2', '--explain'], b);
  assert.equal(ex.total, 0);
  assert.deepEqual(ex.offers, []);
  const byClause = Object.fromEntries(ex.explain.clauses.map((c) => [c.clause, c]));
  assert.equal(byClause['dph_total<2'].alone, 1);
  assert.ok(byClause['gpu_name=H100_SXM_80GB'], JSON.stringify(ex.explain.clauses));
  assert.equal(byClause['rentable=true'].default, true);
  const near = ex.explain.near_misses.find((n) => n.clause === 'dph_total<2');
  assert.ok(near, JSON.stringify(ex.explain));
  assert.equal(near.offer.id, id(B, 8));
  assert.equal(near.offer.dph_total, '18.800000');
  assert.match(ex.explain.summary, /dph_total<2/);
  assert.match(ex.explain.summary, new RegExp(`machine ${B.id}\\b`));
  const exText = await grid(dir, ['offers', 'search', 'gpu_name=H100_SXM_80GB dph<2', '--explain'], b);
  assert.equal(exText.code, 0, exText.stderr);
  assert.match(exText.stdout, /no offers match/);
  assert.match(exText.stdout, /dph_total<2\s+excludes \d+ \(alone 1\)/);
  assert.match(exText.stdout, /rentable=true \(default\)\s+excludes 0 \(alone 0\)/);
  assert.match(exText.stdout, new RegExp(`without dph_total<2: offer ${id(B, 8)}, 8x H100 SXM 80GB at \\$18\\.800000/h`));
  assert.match(exText.stdout, /No offer matches\./);

  // Bad queries: the CLI names the clause and fails before the network; the API answers 400 with the same words.
  for (const [q, re] of [
    ['gpu_nme=RTX_4090', /gpu_nme: unknown field; did you mean gpu_name\?/],
    ['num_gpus>=x', /num_gpus>=x \(column 1\).*num_gpus takes a number/],
    ['dph<1.1234567', /dph/],
    ['gpu_name~RTX', /gpu_name/],
  ]) {
    const bad = await grid(dir, ['offers', 'search', q], b);
    assert.notEqual(bad.code, 0, q);
    assert.match(bad.stderr, re, bad.stderr);
    const r = await api(url, 'GET', `/v1/offers?q=${encodeURIComponent(q)}`);
    assertApiError(assert, r, 400, { code: 'invalid_argument', match: re });
  }
  const badOrder = await grid(dir, ['offers', 'search', '', '-o', 'dph,colour-'], b);
  assert.notEqual(badOrder.code, 0);
  assert.match(badOrder.stderr, /colour/);
  assertApiError(assert, await api(url, 'GET', '/v1/offers?order=colour'), 400, { match: /colour/ });
  assertApiError(assert, await api(url, 'GET', '/v1/offers?limit=10001'), 400, { match: /limit: at most 10000/ });
  assertApiError(assert, await api(url, 'GET', '/v1/offers?limit=-1'), 400, { match: /limit/ });
  assertApiError(assert, await api(url, 'GET', '/v1/offers?explain=maybe'), 400, { match: /explain/ });
  assertApiError(assert, await api(url, 'GET', '/v1/offers?gpu_name=RTX_4090'), 400, { match: /go in the query/ });
  const tooMany = await grid(dir, ['offers', 'search', '--limit', '10001'], b);
  assert.notEqual(tooMany.code, 0);
});

test('the index is in step: a leased chunk is rented at once, and back when stopped', async (t) => {
  const { dir, url, A, id } = await market(t);
  const renter = await account(url);
  await faucet(url, renter, '100');
  const { chain_id } = await nonceInfo(url);
  const q = `machine_id=${A.id}`;
  assert.deepEqual(ids(await search(url, q)), [id(A, 2), id(A, 4), id(A, 6), id(A, 8)]);

  const created = await api(url, 'POST', '/v1/leases',
    await leaseBody(renter.wallet, chain_id, { offerId: id(A, 4), gpus: 4, pricePerHourMicros: 1_600_000n }), renter.token);
  assert.equal(created.status, 201, created.text);
  // Immediately after the acknowledgement: the chunks that need the leased GPUs are gone by default...
  assert.deepEqual(ids(await search(url, q)), [id(A, 2), id(A, 4)]);
  // ...and shown as rented, not rentable, with -n.
  const all = await search(url, q, { no_default: '1' });
  assert.equal(all.query, q);
  const by = Object.fromEntries(all.offers.map((o) => [o.num_gpus, o]));
  assert.deepEqual(Object.keys(by).map(Number), [2, 4, 6, 8]);
  for (const n of [6, 8]) {
    assert.equal(by[n].rented, true, `${n} rented`);
    assert.equal(by[n].rentable, false, `${n} not rentable`);
  }
  for (const n of [2, 4]) assert.equal(by[n].rentable, true);
  assert.deepEqual(ids(await search(url, `${q} rented=true`, { no_default: '1' })), [id(A, 6), id(A, 8)]);
  const cli = await gridJson(dir, ['offers', 'search', `${q} rented=true`, '-n'], { broker: url });
  assert.deepEqual(cli.offers.map((o) => o.id), [id(A, 6), id(A, 8)]);
  assert.equal((await apiOk(url, 'GET', `/v1/offers/${id(A, 8)}`)).rented, true);

  const stopped = await api(url, 'POST', `/v1/leases/${created.body.id}/stop`, undefined, renter.token);
  assert.equal(stopped.status, 200, stopped.text);
  assert.deepEqual(ids(await search(url, q)), [id(A, 2), id(A, 4), id(A, 6), id(A, 8)]);
  assert.deepEqual(ids(await search(url, `${q} rented=true`, { no_default: '1' })), []);
});
