// Helpers for Gridmarket's functional tests: they start the real `grid`
// binary (GRID_BIN) on 127.0.0.1, drive it through the CLI and the HTTP API,
// and use ethers as the stock wallet.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { Wallet, getAddress } from 'ethers';

export const GRID_BIN = process.env.GRID_BIN || path.resolve(import.meta.dirname, '../../build/grid');
export const SANITIZED = !!process.env.GRID_SANITIZED;
// Time allowances scale with a slow (sanitized) binary.
export const SLOW = SANITIZED ? 3 : 1;
export const PASSWORD = 'pw';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- money
// Money crosses the API as decimal strings with up to 6 decimals; tests
// compute in integer micros (BigInt) so nothing is lost to floating point.
export function micros(s) {
  if (typeof s !== 'string' || !/^-?\d+(\.\d{1,6})?$/.test(s)) throw new Error(`not a money string: ${s}`);
  const neg = s.startsWith('-');
  const [i, f = ''] = (neg ? s.slice(1) : s).split('.');
  const v = BigInt(i) * 1000000n + BigInt((f + '000000').slice(0, 6));
  return neg ? -v : v;
}
export function money(m) {
  m = BigInt(m);
  const neg = m < 0n;
  if (neg) m = -m;
  const s = `${m / 1000000n}.${String(m % 1000000n).padStart(6, '0')}`;
  return neg ? '-' + s : s;
}

// ---------------------------------------------------------------- temp dirs

// A fresh temp dir for one test, removed afterwards (kept on failure if
// GRID_KEEP_TMP is set).
export async function tempDir(t, prefix = 'grid-ft-') {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  await fsp.mkdir(path.join(dir, 'home'), { recursive: true });
  // node:test runs after-hooks in the order they were registered, so this
  // one runs before the hooks that kill the test's broker and agents, which
  // may still be writing here: retry, and never throw (a throwing hook would
  // skip those kills and leave the file hanging on live children); whatever
  // is left goes when the process exits.
  t.after(async () => {
    if (process.env.GRID_KEEP_TMP) return;
    try {
      await fsp.rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
    } catch {
      process.once('exit', () => {
        try {
          fs.rmSync(dir, { recursive: true, force: true });
        } catch {}
      });
    }
  });
  return dir;
}

export function cliEnv(dir, extra = {}) {
  const env = { ...process.env };
  delete env.GRID_KEY;
  delete env.GRID_BROKER;
  delete env.GRID_DB;
  return {
    ...env,
    GRID_HOME: path.join(dir, 'home'),
    GRID_KEY_PASSWORD: PASSWORD,
    GRID_SCRYPT_N: '1024',
    ...extra,
  };
}

// ---------------------------------------------------------------- processes

const live = new Set();
process.on('exit', () => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
});

// Starts `grid broker` on 127.0.0.1:0 and waits for its "listening" line.
// Killed by PID when the test ends.
export async function startBroker(t, opts = {}) {
  const { dev = true, tick = '60', feeBps = 0, db, extraArgs = [], dir } = opts;
  if (!db) throw new Error('startBroker: db required');
  const args = ['broker', '--db', db, '--listen', '127.0.0.1:0', '--tick', String(tick), '--fee-bps', String(feeBps)];
  if (dev) args.push('--dev');
  args.push(...extraArgs);
  const proc = spawn(GRID_BIN, args, {
    env: cliEnv(dir || path.dirname(db)),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc.pid);
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 1 << 20) stderr = stderr.slice(-(1 << 19));
  });
  const exited = once(proc, 'exit').then(([code, signal]) => {
    live.delete(proc.pid);
    return { code, signal };
  });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`broker did not start in time; stderr:\n${stderr}`)), 20000 * SLOW);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/grid broker listening on (http:\/\/127\.0\.0\.1:\d+)\n/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`broker exited (code ${code}, signal ${signal}) before listening; stderr:\n${stderr}`));
    });
  });
  const broker = {
    url,
    pid: proc.pid,
    proc,
    exited,
    get stderr() {
      return stderr;
    },
    // Sends a signal by PID and waits for the exit.
    async kill(signal = 'SIGTERM') {
      if (live.has(proc.pid)) {
        try {
          process.kill(proc.pid, signal);
        } catch {}
      }
      return exited;
    },
  };
  t.after(async () => {
    if (live.has(proc.pid)) await broker.kill('SIGKILL');
  });
  return broker;
}

// Runs the CLI. Returns {code, stdout, stderr}; never throws on a non-zero exit.
export function grid(dir, args, { key, input, broker, env = {}, timeoutMs = 30000 * SLOW } = {}) {
  const full = [];
  if (key) full.push('--key', key);
  return new Promise((resolve) => {
    const child = execFile(
      GRID_BIN,
      [...full, ...args],
      { env: cliEnv(dir, { ...(broker ? { GRID_BROKER: broker } : {}), ...env }), timeout: timeoutMs, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        let code = 0;
        if (err) code = typeof err.code === 'number' ? err.code : err.signal ? 128 : 1;
        resolve({ code, stdout, stderr, signal: err?.signal ?? null });
      },
    );
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

// Runs the CLI and parses its --json output; throws with stderr on failure.
export async function gridJson(dir, args, opts = {}) {
  const r = await grid(dir, ['--json', ...args], opts);
  if (r.code !== 0) throw new Error(`grid ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

// ---------------------------------------------------------------- HTTP

// fetch wrapper: returns {status, body (parsed JSON or text), text, headers}.
export async function api(url, method, p, body, token, { raw = false, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined) {
    payload = raw ? body : JSON.stringify(body);
    if (!('content-type' in h)) h['content-type'] = 'application/json';
  }
  const res = await fetch(url + p, { method, headers: h, body: payload });
  const text = await res.text();
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, body: parsed, text, headers: res.headers };
}

// Like api() but insists on a 2xx answer.
export async function apiOk(url, method, p, body, token) {
  const r = await api(url, method, p, body, token);
  if (r.status < 200 || r.status > 299) throw new Error(`${method} ${p} -> ${r.status} ${r.text}`);
  return r.body;
}

// ---------------------------------------------------------------- SIWE

export function siweMessage({ domain, address, statement = 'Sign in to Gridmarket.', uri, chainId, nonce, issuedAt, expirationTime }) {
  let m =
    `${domain} wants you to sign in with your Ethereum account:\n${getAddress(address)}\n\n${statement}\n\n` +
    `URI: ${uri}\nVersion: 1\nChain ID: ${chainId}\nNonce: ${nonce}\nIssued At: ${issuedAt ?? new Date().toISOString()}`;
  if (expirationTime) m += `\nExpiration Time: ${expirationTime}`;
  return m;
}

export async function nonceInfo(url) {
  return apiOk(url, 'POST', '/v1/auth/nonce');
}

// Signs in with an ethers wallet; returns the token (and the whole answer as .session).
export async function loginWithEthers(url, wallet, overrides = {}) {
  const n = await nonceInfo(url);
  const message = siweMessage({
    domain: n.domain,
    address: wallet.address,
    uri: n.uri,
    chainId: n.chain_id,
    nonce: n.nonce,
    ...overrides,
  });
  const signature = await wallet.signMessage(message);
  const r = await api(url, 'POST', '/v1/auth/login', { message, signature });
  if (r.status !== 200) throw new Error(`login failed: ${r.status} ${r.text}`);
  return r.body.token;
}

// ---------------------------------------------------------------- EIP-712 orders

export const ORDER_TYPES = {
  LeaseOrder: [
    { name: 'offerId', type: 'uint256' },
    { name: 'gpus', type: 'uint256' },
    { name: 'pricePerHour', type: 'uint256' },
    { name: 'nonce', type: 'uint256' },
    { name: 'expiry', type: 'uint256' },
  ],
};

// pricePerHourMicros: integer micros (number, bigint or string).
export async function signOrder(wallet, chainId, { offerId, gpus, pricePerHourMicros, nonce, expiry }) {
  return wallet.signTypedData({ name: 'Gridmarket', version: '1', chainId }, ORDER_TYPES, {
    offerId: BigInt(offerId),
    gpus: BigInt(gpus),
    pricePerHour: BigInt(pricePerHourMicros),
    nonce: BigInt(nonce),
    expiry: BigInt(expiry),
  });
}

let nonceCounter = BigInt(Date.now()) * 1000n;
export const freshNonce = () => String(++nonceCounter);

// Builds the POST /v1/leases body with an ethers-signed order.
export async function leaseBody(wallet, chainId, { offerId, gpus, pricePerHourMicros, nonce = freshNonce(), expiry, image = 'host', env = [], command = [] }) {
  expiry ??= Math.floor(Date.now() / 1000) + 600;
  const signature = await signOrder(wallet, chainId, { offerId, gpus, pricePerHourMicros, nonce, expiry });
  return {
    offer_id: offerId,
    gpus,
    image,
    env,
    command,
    order: { offer_id: offerId, gpus, price_per_hour: money(pricePerHourMicros), nonce: String(nonce), expiry, signature },
  };
}

// ---------------------------------------------------------------- accounts and machines

// A random ethers wallet, logged in: {wallet, address (lower-case), token}.
export async function account(url, wallet = Wallet.createRandom()) {
  const token = await loginWithEthers(url, wallet);
  return { wallet, address: wallet.address.toLowerCase(), token };
}

export async function faucet(url, acct, amount, key = undefined) {
  return apiOk(url, 'POST', '/v1/wallet/faucet', { amount, ...(key ? { idempotency_key: key } : {}) }, acct.token);
}

export function spec(over = {}) {
  return {
    gpu_name: 'RTX 4090',
    num_gpus: 8,
    gpu_ram: 24,
    cpu_cores: 64,
    cpu_ram: 256,
    disk_space: 2000,
    inet_up: 1000,
    inet_down: 1000,
    geolocation: 'US',
    datacenter: true,
    ...over,
  };
}

// Registers a machine and lists it over HTTP; returns the machine JSON.
export async function provideMachine(url, provider, { price = '2.10', minChunk, endDate, ...specOver } = {}) {
  const m = await apiOk(url, 'POST', '/v1/machines', spec(specOver), provider.token);
  const body = { price_gpu: price };
  if (minChunk !== undefined) body.min_chunk = minChunk;
  if (endDate !== undefined) body.end_date = endDate;
  return apiOk(url, 'PUT', `/v1/machines/${m.id}/offer`, body, provider.token);
}

// The same through the CLI: writes a spec file, registers, lists. Returns the machine JSON.
export async function provideMachineCli(dir, broker, key, { price = '2.10', minChunk, ...specOver } = {}) {
  const f = path.join(dir, `spec-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(f, JSON.stringify(spec(specOver)));
  const m = await gridJson(dir, ['machines', 'register', '--spec', f], { key, broker });
  const args = ['machines', 'list-offer', String(m.id), '--price-gpu', price];
  if (minChunk !== undefined) args.push('--min-chunk', String(minChunk));
  return gridJson(dir, args, { key, broker });
}

// A CLI key file: returns {key (path), address (checksummed)}.
export async function newKey(dir, name) {
  const key = path.join(dir, `${name}.json`);
  const r = await gridJson(dir, ['keys', 'new', '--out', key]);
  return { key, address: r.address };
}

// Runs the offline audit on a (stopped) broker's database; returns {code, report}.
export async function auditDb(dir, db) {
  const r = await grid(dir, ['--json', 'admin', 'audit', '--db', db]);
  let report = null;
  try {
    report = JSON.parse(r.stdout);
  } catch {}
  return { ...r, report };
}

export function assertApiError(assert, r, status, { code, match } = {}) {
  assert.equal(r.status, status, `expected HTTP ${status}, got ${r.status}: ${r.text}`);
  assert.equal(typeof r.body, 'object', `error body is JSON: ${r.text}`);
  assert.ok(r.body.error && typeof r.body.error.code === 'string' && typeof r.body.error.message === 'string',
    `error body has {error:{code,message}}: ${r.text}`);
  if (code) assert.equal(r.body.error.code, code, r.text);
  if (match) assert.match(r.body.error.message, match);
}

// --- agents

// Starts `grid ARGS` in the background (the broker URL first), collecting
// its output; killed by PID at the end of the test.
export function spawnGrid(t, dir, broker, args) {
  const proc = spawn(GRID_BIN, ['--broker', broker, ...args], { env: cliEnv(dir), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  proc.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  const p = { proc, exited, alive: true, get stderr() { return err; }, get stdout() { return out; } };
  exited.then(() => (p.alive = false));
  t.after(async () => {
    if (p.alive) {
      process.kill(proc.pid, 'SIGKILL');
      await exited;
    }
  });
  return p;
}

// Starts `grid agent` and waits for its "enrolled" line; killed by PID at the end.
export async function startAgent(t, dir, broker, args) {
  const p = spawnGrid(t, dir, broker, ['agent', ...args]);
  const deadline = Date.now() + 20000 * SLOW;
  while (!/enrolled/.test(p.stdout)) {
    if (!p.alive) throw new Error(`agent exited before enrolling:\n${p.stderr}`);
    if (Date.now() > deadline) throw new Error(`agent did not enroll in time:\n${p.stdout}\n${p.stderr}`);
    await sleep(50);
  }
  return p;
}

export async function waitFor(what, fn, ms = 15000 * SLOW) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

// Pids of processes whose command line contains `marker`.
export function processesWith(marker) {
  const pids = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker)) pids.push(Number(p));
    } catch {}
  }
  return pids;
}
