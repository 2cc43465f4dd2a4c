// Loads a realistic market into a running broker through the public API, for
// bench/search_http.sh: providers sign in (SIWE, ethers wallets), register
// machines with POST /v1/machines and list them with PUT /v1/machines/ID/offer.
// Deterministic (seeded): the same arguments give the same market.
//
//   node bench/search_http_load.mjs URL [MACHINES] [PROVIDERS]
//
// Prints one JSON line: {machines, providers, offers, seconds}.
import { Wallet } from 'ethers';
import { account, apiOk, money } from '../tests/functional/lib.mjs';

const [url, machinesArg = '3000', providersArg = '60'] = process.argv.slice(2);
if (!url) {
  console.error('usage: node bench/search_http_load.mjs URL [MACHINES] [PROVIDERS]');
  process.exit(2);
}
const MACHINES = Number(machinesArg);
const PROVIDERS = Number(providersArg);

// mulberry32: small seeded PRNG.
let seed = 0x5eed1234;
function rnd() {
  seed |= 0;
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
function weighted(items) {
  const total = items.reduce((s, x) => s + x.w, 0);
  let r = rnd() * total;
  for (const x of items) if ((r -= x.w) < 0) return x;
  return items[items.length - 1];
}

// Real GPU models: memory (GB), compute capability, FP32 TFLOPS, memory
// bandwidth (GB/s), a market price range per GPU-hour (USD), GPU counts seen,
// and a weight (how common it is on a marketplace).
const GPUS = [
  { name: 'RTX 4090', ram: 24, cc: 890, tf: 82.6, bw: 1008, p: [0.28, 0.70], n: [1, 2, 4, 8], w: 22 },
  { name: 'RTX 3090', ram: 24, cc: 860, tf: 35.6, bw: 936, p: [0.15, 0.35], n: [1, 2, 4, 8], w: 14 },
  { name: 'RTX 3080', ram: 10, cc: 860, tf: 29.8, bw: 760, p: [0.08, 0.20], n: [1, 2, 4], w: 5 },
  { name: 'RTX 4080', ram: 16, cc: 890, tf: 48.7, bw: 717, p: [0.18, 0.40], n: [1, 2, 4], w: 5 },
  { name: 'RTX 4070 Ti', ram: 12, cc: 890, tf: 40.1, bw: 504, p: [0.10, 0.25], n: [1, 2], w: 3 },
  { name: 'RTX A6000', ram: 48, cc: 860, tf: 38.7, bw: 768, p: [0.40, 0.80], n: [1, 2, 4, 8], w: 6 },
  { name: 'RTX 6000Ada', ram: 48, cc: 890, tf: 91.1, bw: 960, p: [0.70, 1.20], n: [1, 2, 4, 8], w: 4 },
  { name: 'A40', ram: 48, cc: 860, tf: 37.4, bw: 696, p: [0.35, 0.70], n: [1, 2, 4, 8], w: 3 },
  { name: 'L40S', ram: 48, cc: 890, tf: 91.6, bw: 864, p: [0.70, 1.30], n: [1, 2, 4, 8], w: 4 },
  { name: 'A100 PCIE', ram: 40, cc: 800, tf: 19.5, bw: 1555, p: [0.60, 1.20], n: [1, 2, 4, 8], w: 3 },
  { name: 'A100 SXM4 80GB', ram: 80, cc: 800, tf: 19.5, bw: 2039, p: [0.90, 1.80], n: [1, 2, 4, 8], w: 5 },
  { name: 'H100 PCIE', ram: 80, cc: 900, tf: 51.2, bw: 2000, p: [1.60, 2.60], n: [1, 2, 4, 8], w: 3 },
  { name: 'H100 SXM 80GB', ram: 80, cc: 900, tf: 66.9, bw: 3350, p: [1.80, 3.20], n: [8], w: 5 },
  { name: 'H200', ram: 141, cc: 900, tf: 66.9, bw: 4800, p: [2.80, 4.20], n: [8], w: 2 },
  { name: 'Tesla V100', ram: 16, cc: 700, tf: 15.7, bw: 900, p: [0.10, 0.30], n: [1, 2, 4, 8], w: 3 },
  { name: 'Tesla T4', ram: 16, cc: 750, tf: 8.1, bw: 320, p: [0.05, 0.15], n: [1, 2, 4], w: 2 },
];
// ~40 countries, weighted roughly as GPU marketplaces look.
const COUNTRIES = [
  ['US', 20], ['CA', 4], ['DE', 6], ['FR', 3], ['GB', 4], ['NL', 3], ['SE', 2], ['NO', 2], ['FI', 2], ['PL', 2],
  ['CZ', 1], ['ES', 2], ['IT', 2], ['PT', 1], ['RO', 1], ['BG', 1], ['UA', 1], ['CH', 1], ['AT', 1], ['BE', 1],
  ['DK', 1], ['IE', 1], ['EE', 1], ['LT', 1], ['JP', 2], ['KR', 2], ['TW', 2], ['SG', 2], ['HK', 1], ['CN', 3],
  ['IN', 2], ['VN', 2], ['TH', 1], ['AU', 2], ['NZ', 1], ['BR', 2], ['AR', 1], ['CL', 1], ['MX', 1], ['ZA', 1],
  ['IS', 1], ['TR', 1],
].map(([c, w]) => ({ c, w }));
const CUDA = [11.8, 12.0, 12.1, 12.2, 12.4, 12.6];
const DRIVERS = ['525.147.05', '535.183.01', '545.29.06', '550.54.15', '550.127.05', '560.35.03'];

function machineSpec() {
  const g = weighted(GPUS);
  const n = pick(g.n);
  const dc = g.name.startsWith('H') || g.name.startsWith('A100') ? rnd() < 0.9 : rnd() < 0.3;
  const coresPerGpu = pick([4, 8, 12, 16, 24]);
  const s = {
    gpu_name: g.name,
    num_gpus: n,
    gpu_ram: g.ram,
    cpu_cores: coresPerGpu * n,
    cpu_ram: pick([32, 64, 128]) * n,
    disk_space: pick([250, 500, 1000, 2000, 4000]) * Math.max(1, n / 2),
    inet_up: pick([100, 500, 1000, 2500, 10000]),
    inet_down: pick([200, 1000, 2500, 10000]),
    geolocation: weighted(COUNTRIES).c,
    datacenter: dc,
    gpu_arch: 'nvidia',
    compute_cap: g.cc,
    cuda_vers: pick(CUDA),
    driver_version: pick(DRIVERS),
    gpu_mem_bw: g.bw,
    pcie_bw: pick([6.2, 12.5, 24.3, 25.1, 50.2]),
    pci_gen: pick([3, 4, 5]),
    total_flops: Math.round(g.tf * n * 10) / 10,
    dlperf: Math.round(g.tf * n * (0.8 + rnd() * 0.4) * 10) / 10,
    disk_bw: Math.round(500 + rnd() * 6000),
  };
  // Price: uniform in the model's range, whole cents; datacenters a bit dearer.
  const [lo, hi] = g.p;
  let cents = Math.round((lo + rnd() * (hi - lo)) * (dc ? 1.1 : 1) * 100);
  if (cents < 1) cents = 1;
  const price = money(BigInt(cents) * 10000n);
  // Most list per GPU (min_chunk 1); some only in pairs or whole.
  const mc = rnd();
  const minChunk = n === 1 ? 1 : mc < 0.6 ? 1 : mc < 0.85 && n % 2 === 0 ? 2 : n;
  return { spec: s, price, minChunk };
}

const t0 = Date.now();
const providers = [];
for (let i = 0; i < PROVIDERS; i += 8) {
  const batch = [];
  for (let j = i; j < Math.min(PROVIDERS, i + 8); j++) batch.push(account(url, Wallet.createRandom()));
  providers.push(...(await Promise.all(batch)));
}
const plans = [];
for (let i = 0; i < MACHINES; i++) plans.push({ provider: providers[Math.floor(rnd() * providers.length)], ...machineSpec() });

let next = 0;
let offers = 0;
async function worker() {
  while (next < plans.length) {
    const p = plans[next++];
    const m = await apiOk(url, 'POST', '/v1/machines', p.spec, p.provider.token);
    await apiOk(url, 'PUT', `/v1/machines/${m.id}/offer`, { price_gpu: p.price, min_chunk: p.minChunk }, p.provider.token);
    offers += Math.floor(p.spec.num_gpus / p.minChunk);
  }
}
await Promise.all(Array.from({ length: 16 }, worker));
console.log(JSON.stringify({ machines: MACHINES, providers: PROVIDERS, offers_expected: offers, seconds: (Date.now() - t0) / 1000 }));
