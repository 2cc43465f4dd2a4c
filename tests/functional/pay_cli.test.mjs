// The renter's side of leases paid by channel (issue 6): `grid pay` and
// `grid leases create --pay channel`, the real CLI against a scripted broker
// (an HTTP server in this process that speaks the API of docs/channels.md,
// "The lease flow", and records every request) and, for the channel itself,
// a real anvil with TestToken and PaymentChannels. The scripted broker lets
// each test put the CLI in one situation (a voucher already accepted, a
// deposit used up, a broker error) and check exactly what it sends; every
// voucher it posts is checked with ethers (verifyTypedData) as the contract
// would, and every channel it opens is read back from the contract.
//
// Run: GRID_BIN=$PWD/build/grid node --test --test-concurrency=1 tests/functional/pay_cli.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { ContractFactory, Wallet, getAddress, verifyTypedData } from 'ethers';
import {
  tempDir, grid, cliEnv, GRID_BIN, SLOW, micros, money, sleep, provideMachineCli, waitFor, signOrder,
} from './lib.mjs';
import { startAnvil, deployToken, mintTo, balanceOf } from './chain.mjs';
import { loadArtifact } from '../../scripts/compile-contracts.mjs';
import { channelsWorld, channelsAgent } from './channels_world.mjs';

const CHAIN_ID = 31337;
const CONTRACT = '0x00000000000000000000000000000000000000cc';
const TYPES = { Voucher: [{ name: 'channelId', type: 'bytes32' }, { name: 'cumulativeAmount', type: 'uint256' }] };
const CHANNEL_ID = '0x' + '00'.repeat(31) + '2a';
const HEX32 = /^0x[0-9a-f]{64}$/;

// ---------------------------------------------------------------- the scripted broker

// An HTTP server answering the API the CLI uses. `handler(req, body)` returns
// [status, json] or undefined (404). Sign-in always succeeds for `address`.
async function scriptedBroker(t, address, handler) {
  const requests = [];
  const server = http.createServer((req, res) => {
    let data = '';
    req.on('data', (c) => (data += c));
    req.on('end', async () => {
      const body = data ? JSON.parse(data) : null;
      requests.push({ method: req.method, path: req.url, body, raw: data, at: Date.now() });
      let out;
      if (req.method === 'POST' && req.url === '/v1/auth/nonce')
        out = [200, { domain: '127.0.0.1', uri: 'http://127.0.0.1', chain_id: CHAIN_ID, nonce: 'n0nce0123456789ab' }];
      else if (req.method === 'POST' && req.url === '/v1/auth/login')
        out = [200, { token: 'tok', address: address.toLowerCase(), expires_at: '2099-01-01T00:00:00Z' }];
      else out = await handler(req, body);
      if (!out) out = [404, { error: { code: 'not_found', message: `no route ${req.method} ${req.url}` } }];
      res.writeHead(out[0], { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(out[1]));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => server.close(r)));
  const url = `http://127.0.0.1:${server.address().port}`;
  // What the CLI did beyond signing in.
  const calls = () => requests.filter((r) => !r.path.startsWith('/v1/auth/'));
  return { url, requests, calls };
}

const apiError = (status, code, message) => [status, { error: { code, message } }];

// A running channel lease as the broker shows it (api::EncodeLease), with
// the order `renter` (a wallet) signed: `grid pay` checks it.
async function channelLease({ id = 7, renter, signer, startMs, intervalMs = 60_000, price = '3.600000', deposit = '10.000000',
  margin = '0.060000', voucher = null, expiryS, state = 'running', contract = CONTRACT, signedPrice = price } = {}) {
  const wallet = renter.wallet ?? renter;
  const order = { offer_id: 1001, gpus: 1, price_per_hour: signedPrice, nonce: String(id), expiry: 1_900_000_000 };
  order.signature = await signOrder(wallet, CHAIN_ID,
    { offerId: order.offer_id, gpus: 1, pricePerHourMicros: micros(signedPrice), nonce: order.nonce, expiry: order.expiry });
  return {
    id, state, renter: wallet.address.toLowerCase(), provider: '0x00000000000000000000000000000000000000bb', order,
    machine_id: 1, offer_id: 1, gpus: [0], num_gpus: 1, price_per_hour: price, fee_bps: 0, charged: '0.000000',
    payment: 'channel',
    channel: {
      id: CHANNEL_ID, contract, chain_id: CHAIN_ID, token: '0x00000000000000000000000000000000000000dd',
      signer: signer.toLowerCase(), payee: '0x00000000000000000000000000000000000000ee',
      deposit, margin, expiry_s: expiryS ?? Math.floor(Date.now() / 1000) + 86_400,
      interval_ms: intervalMs, grace_ms: intervalMs, expiry_margin_ms: 300_000,
      start_ms: startMs, length_ms: 0, voucher, paid_through: null, due: null, redeemed: '0.000000', closed: false,
    },
  };
}

// The schedule (market/channel_policy.h): interval k's voucher pays through
// its end, floor(price × (k+1)·I / 3,600,000).
const scheduled = (priceMicros, intervalMs, k) => (priceMicros * BigInt((k + 1) * intervalMs)) / 3_600_000n;

async function renterKey(dir, name, wallet = Wallet.createRandom()) {
  const file = path.join(dir, `${name}.key`);
  const r = await grid(dir, ['keys', 'import', '--out', file], { input: wallet.privateKey + '\n' });
  assert.equal(r.code, 0, r.stderr);
  return { wallet, address: wallet.address, key: file };
}

// The voucher posts the CLI made, each checked as the contract would check
// it: the wire form exactly, and signed by `signer` for this channel,
// chain and contract.
function postedVouchers(broker, leaseId, signer, contract = CONTRACT) {
  return broker.calls()
    .filter((r) => r.method === 'POST' && r.path === `/v1/leases/${leaseId}/vouchers`)
    .map((r) => {
      assert.deepEqual(Object.keys(r.body), ['channel_id', 'cumulative', 'signature'], r.raw);
      assert.match(r.raw, /^\{"channel_id":"0x[0-9a-f]{64}","cumulative":"[1-9][0-9]*","signature":"0x[0-9a-f]{130}"\}$/, 'the canonical wire form');
      assert.equal(r.body.channel_id, CHANNEL_ID);
      const who = verifyTypedData({ name: 'GridmarketChannels', version: '1', chainId: CHAIN_ID, verifyingContract: contract },
        TYPES, { channelId: r.body.channel_id, cumulativeAmount: BigInt(r.body.cumulative) }, r.body.signature);
      assert.equal(getAddress(who), getAddress(signer), 'signed by the channel\'s signer');
      return { amount: BigInt(r.body.cumulative), at: r.at };
    });
}

// A broker holding `leases` (GET /v1/leases, GET /v1/leases/{id}) that
// accepts vouchers as the real one would record them, unless `onVoucher`
// answers otherwise.
async function leaseBroker(t, renter, leases, { onVoucher } = {}) {
  return scriptedBroker(t, renter.address, async (req, body) => {
    if (req.method === 'GET' && req.url === '/v1/channels/config')
      return [200, { contract: CONTRACT, token: '0x00000000000000000000000000000000000000dd', chain_id: CHAIN_ID, rpc_url: '', decimals: 6, interval_ms: leases.find((l) => l.channel)?.channel.interval_ms ?? 60_000 }];
    if (req.method === 'GET' && req.url === '/v1/leases') return [200, { leases }];
    const one = req.url.match(/^\/v1\/leases\/(\d+)(\/vouchers)?$/);
    const lease = one && leases.find((l) => l.id === Number(one[1]));
    if (!lease) return undefined;
    if (req.method === 'GET' && !one[2]) return [200, lease];
    if (req.method === 'POST' && one[2]) {
      const custom = onVoucher?.(lease, body);
      if (custom) return custom;
      lease.channel.voucher = { amount: money(BigInt(body.cumulative)), signature: body.signature, accepted_at: new Date().toISOString() };
      return [200, lease];
    }
    return undefined;
  });
}

// ---------------------------------------------------------------- grid pay

test('grid pay --once signs the voucher due now, for exactly the schedule\'s amount', async (t) => {
  const dir = await tempDir(t);
  const renter = await renterKey(dir, 'renter');
  // Started 150 s ago: interval 2 is due, paying through 3 minutes at 3.60/h.
  const lease = await channelLease({ renter: renter, signer: renter.address, startMs: Date.now() - 150_000 });
  const broker = await leaseBroker(t, renter, [lease]);
  const r = await grid(dir, ['pay', '--once'], { key: renter.key, broker: broker.url });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^lease 7: signed interval 2, 0\.180000 paid in total$/m);
  const posted = postedVouchers(broker, 7, renter.address);
  assert.deepEqual(posted.map((v) => v.amount), [180_000n]);
  assert.equal(posted[0].amount, scheduled(3_600_000n, 60_000, 2));

  // Run again: the broker holds that voucher now, so nothing more is signed.
  const again = await grid(dir, ['pay', '--once', '--json'], { key: renter.key, broker: broker.url });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, '');
  assert.equal(postedVouchers(broker, 7, renter.address).length, 1, 'no second voucher for the same interval');
});

test('grid pay --json prints one JSON line per voucher; other people\'s and escrow leases are left alone', async (t) => {
  const dir = await tempDir(t);
  const renter = await renterKey(dir, 'renter');
  const other = Wallet.createRandom();
  const start = Date.now() - 30_000;
  const mine = await channelLease({ id: 3, renter: renter, signer: renter.address, startMs: start });
  // A lease we provide (the listing carries both sides) and an escrow lease.
  const provided = await channelLease({ id: 4, renter: other, signer: other.address, startMs: start });
  const escrow = { ...(await channelLease({ id: 5, renter: renter, signer: renter.address, startMs: start })), payment: 'escrow', channel: null };
  const pending = await channelLease({ id: 6, renter: renter, signer: renter.address, startMs: 0, state: 'pending' });
  const broker = await leaseBroker(t, renter, [mine, provided, escrow, pending]);
  const r = await grid(dir, ['pay', '--once', '--json'], { key: renter.key, broker: broker.url });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines, [{ lease: 3, channel: CHANNEL_ID, interval: 0, amount: '0.060000' }]);
  assert.deepEqual(broker.calls().filter((c) => c.method === 'POST').map((c) => c.path), ['/v1/leases/3/vouchers']);
});

test('grid pay signs nothing for a lease whose price is not the one the renter signed', async (t) => {
  const dir = await tempDir(t);
  const renter = await renterKey(dir, 'renter');
  // The broker's record says $7.20/h; the renter signed $3.60/h.
  const lease = await channelLease({ renter, signer: renter.address, startMs: Date.now() - 150_000, price: '7.200000', signedPrice: '3.600000' });
  const broker = await leaseBroker(t, renter, [lease]);
  const r = await grid(dir, ['pay', '--once'], { key: renter.key, broker: broker.url });
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /7\.200000\/h, but you signed 3\.600000\/h/);
  assert.equal(postedVouchers(broker, 7, renter.address).length, 0, 'nothing signed');
});

test('grid pay refuses a key that is not the channel\'s signer; --signer-key signs with the session key', async (t) => {
  const dir = await tempDir(t);
  const renter = await renterKey(dir, 'renter');
  const session = await renterKey(dir, 'session');
  const lease = await channelLease({ renter: renter, signer: session.address, startMs: Date.now() - 70_000 });
  const broker = await leaseBroker(t, renter, [lease]);

  const wrong = await grid(dir, ['pay', '--once'], { key: renter.key, broker: broker.url });
  assert.equal(wrong.code, 1, wrong.stderr);
  assert.match(wrong.stderr, /^grid pay: lease 7: its channel's vouchers are signed by 0x[0-9a-f]{40}, not by this key \(0x[0-9a-f]{40}\); give that key with --signer-key$/m);
  assert.ok(wrong.stderr.includes(session.address.toLowerCase()), wrong.stderr);
  assert.equal(broker.calls().filter((c) => c.method === 'POST').length, 0, 'nothing signed with the wrong key');

  const right = await grid(dir, ['pay', '--once', '--signer-key', session.key], { key: renter.key, broker: broker.url });
  assert.equal(right.code, 0, right.stderr);
  assert.deepEqual(postedVouchers(broker, 7, session.address).map((v) => v.amount), [120_000n]);
});

test('grid pay --lease ID: only that lease; a lease of someone else is refused', async (t) => {
  const dir = await tempDir(t);
  const renter = await renterKey(dir, 'renter');
  const other = Wallet.createRandom();
  const start = Date.now() - 10_000;
  const a = await channelLease({ id: 1, renter: renter, signer: renter.address, startMs: start });
  const b = await channelLease({ id: 2, renter: renter, signer: renter.address, startMs: start });
  const c = await channelLease({ id: 9, renter: other, signer: other.address, startMs: start });
  const broker = await leaseBroker(t, renter, [a, b, c]);
  const r = await grid(dir, ['pay', '--once', '--lease', '2'], { key: renter.key, broker: broker.url });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(broker.calls().filter((x) => x.method === 'POST').map((x) => x.path), ['/v1/leases/2/vouchers']);
  const theirs = await grid(dir, ['pay', '--once', '--lease', '9'], { key: renter.key, broker: broker.url });
  assert.equal(theirs.code, 1);
  assert.match(theirs.stderr, /lease 9 is rented by 0x[0-9a-f]{40}, not by you/);
  // The daemon for one lease stops by itself once that lease has ended.
  b.state = 'ended';
  const done = await grid(dir, ['pay', '--lease', '2'], { key: renter.key, broker: broker.url, timeoutMs: 10_000 });
  assert.equal(done.code, 0, done.stderr);
  assert.match(done.stdout, /lease 2 has ended: nothing more to pay/);
});

test('grid pay signs nothing the deposit cannot cover, and says to top up', async (t) => {
  const dir = await tempDir(t);
  const renter = await renterKey(dir, 'renter');
  // 0.66 deposit, 0.06 margin: ten minutes; the eleventh is due.
  const lease = await channelLease({ renter: renter, signer: renter.address, startMs: Date.now() - 10 * 60_000 - 5_000,
    deposit: '0.660000', voucher: { amount: '0.600000', signature: '0x' + '11'.repeat(65), accepted_at: new Date().toISOString() } });
  const broker = await leaseBroker(t, renter, [lease]);
  const r = await grid(dir, ['pay', '--once'], { key: renter.key, broker: broker.url });
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /lease 7: interval 10 is due \(0\.660000 in total\), but .*over the deposit.*top/);
  assert.ok(r.stderr.includes(`grid channels top-up ${CHANNEL_ID}`), r.stderr);
  assert.equal(broker.calls().filter((c) => c.method === 'POST').length, 0);
});

test('grid pay: "already accepted" counts as paid; other broker errors fail --once and are reported', async (t) => {
  const dir = await tempDir(t);
  const renter = await renterKey(dir, 'renter');
  const start = Date.now() - 5_000;
  const dup = await channelLease({ id: 1, renter: renter, signer: renter.address, startMs: start });
  const refused = await channelLease({ id: 2, renter: renter, signer: renter.address, startMs: start });
  const broker = await leaseBroker(t, renter, [dup, refused], {
    onVoucher: (lease) => lease.id === 1 ? apiError(409, 'conflict', 'voucher: 0.060000 was already accepted')
      : apiError(503, 'unavailable', 'the chain is not answering'),
  });
  const r = await grid(dir, ['pay', '--once'], { key: renter.key, broker: broker.url });
  assert.equal(r.code, 1);
  assert.doesNotMatch(r.stderr, /lease 1/, 'a duplicate is not an error');
  assert.match(r.stderr, /grid pay: lease 2: the chain is not answering/);
  assert.match(r.stderr, /1 lease\(s\) could not be paid/);
});

test('grid pay (daemon) signs each interval as it comes, never ahead, and exits 0 on SIGTERM', async (t) => {
  const dir = await tempDir(t);
  const renter = await renterKey(dir, 'renter');
  const intervalMs = 2_000;
  const start = Date.now() - 500;
  const lease = await channelLease({ renter: renter, signer: renter.address, startMs: start, intervalMs, margin: '0.002000' });
  const broker = await leaseBroker(t, renter, [lease]);
  const child = spawn(GRID_BIN, ['--key', renter.key, 'pay', '--interval-check', '1'],
    { env: cliEnv(dir, { GRID_BROKER: broker.url }), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  t.after(() => { try { child.kill('SIGKILL'); } catch {} });
  await sleep(5_500 * SLOW);
  child.kill('SIGTERM');
  const { code, signal } = await exited;
  assert.equal(signal, null, stderr);
  assert.equal(code, 0, stderr);
  const posted = postedVouchers(broker, 7, renter.address);
  assert.ok(posted.length >= 3, `a voucher per interval: ${JSON.stringify(posted.map((p) => String(p.amount)))}\n${stderr}`);
  for (let i = 0; i < posted.length; ++i) {
    const { amount, at } = posted[i];
    if (i > 0) assert.ok(amount > posted[i - 1].amount, 'amounts only grow');
    // Never ahead: at most the voucher of the interval the broker's clock is in.
    const k = Math.floor((at - start) / intervalMs);
    assert.ok(amount <= scheduled(3_600_000n, intervalMs, k), `${amount} at interval ${k}`);
    assert.equal(amount % 2_000n, 0n, 'on the schedule');
  }
  assert.equal(stdout.trim().split('\n').length, posted.length, stdout);
});

// ---------------------------------------------------------------- grid leases create --pay channel

const OFFER = (payee) => ({ id: 12, machine_id: 1, num_gpus: 1, dph_per_gpu: '3.600000', channel_payee: payee });

test('leases create --pay channel refuses an offer whose host takes no channel payments, before touching the chain', async (t) => {
  const dir = await tempDir(t);
  const renter = await renterKey(dir, 'renter');
  const broker = await scriptedBroker(t, renter.address, async (req) => {
    if (req.method === 'GET' && req.url === '/v1/offers/12') return [200, OFFER(null)];
    return undefined;
  });
  const r = await grid(dir, ['leases', 'create', '12', '--image', 'host', '--pay', 'channel'], { key: renter.key, broker: broker.url });
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /offer 12: its host does not accept payment by channel/);
  assert.deepEqual(broker.calls().map((c) => `${c.method} ${c.path}`), ['GET /v1/offers/12']);

  // Options that only make sense with a channel are refused without one.
  const stray = await grid(dir, ['leases', 'create', '12', '--image', 'host', '--deposit', '5'], { key: renter.key, broker: broker.url });
  assert.equal(stray.code, 1);
  assert.match(stray.stderr, /go with --pay channel/);
});

// anvil + TestToken + PaymentChannels, and a scripted broker publishing them.
async function chainWorld(t, { leaseAnswer } = {}) {
  const dir = await tempDir(t);
  const anvil = await startAnvil(t);
  const [deployer, , renterW, payeeW] = anvil.accounts;
  const token = await deployToken(anvil);
  const { abi, bytecode } = loadArtifact('PaymentChannels');
  const channels = await new ContractFactory(abi, bytecode, deployer).deploy();
  await channels.waitForDeployment();
  await mintTo(token, renterW.address, 100_000_000n);
  const renter = await renterKey(dir, 'renter', renterW);
  const broker = await scriptedBroker(t, renter.address, async (req, body) => {
    if (req.method === 'GET' && req.url === '/v1/offers/12') return [200, OFFER(payeeW.address)];
    if (req.method === 'GET' && req.url === '/v1/channels/config')
      return [200, { contract: channels.target, token: token.target, chain_id: CHAIN_ID, rpc_url: anvil.url, decimals: 6, interval_ms: 60000 }];
    if (req.method === 'POST' && req.url === '/v1/leases') return leaseAnswer(body);
    return undefined;
  });
  return { dir, anvil, token, channels, renter, payee: payeeW, broker };
}

test('leases create --pay channel opens a channel to the payee and creates the lease on it', async (t) => {
  const w = await chainWorld(t, {
    leaseAnswer: (body) => [200, { id: 4, state: 'pending', renter: 'x', payment: 'channel', channel: { id: body.pay.channel } }],
  });
  const session = await renterKey(w.dir, 'session');
  const before = await w.anvil.provider.getBlock('latest');
  const r = await grid(w.dir, ['leases', 'create', '12', '--image', 'host', '--pay', 'channel', '--signer-key', session.key,
    '--channel-expiry', '2h', '--', 'python3', 'train.py'], { key: w.renter.key, broker: w.broker.url });
  assert.equal(r.code, 0, r.stderr);
  const post = w.broker.calls().find((c) => c.method === 'POST' && c.path === '/v1/leases');
  assert.ok(post, 'the lease was requested');
  const id = post.body.pay.channel;
  assert.match(id, HEX32);
  assert.deepEqual(Object.keys(post.body.pay), ['channel']);
  // The usual body is unchanged: the order is signed as before.
  assert.equal(post.body.offer_id, 12);
  assert.deepEqual(post.body.command, ['python3', 'train.py']);
  assert.equal(post.body.order.price_per_hour, '3.600000');
  assert.match(post.body.order.signature, /^0x[0-9a-f]{130}$/);
  // The channel on chain: from the renter to the offer's payee, the default
  // deposit (an hour + a minute's margin at 3.60/h), the session key signs,
  // refundable two hours from when it was opened.
  const c = await w.channels.channels(id);
  assert.equal(getAddress(c.renter), getAddress(w.renter.address));
  assert.equal(getAddress(c.provider), getAddress(w.payee.address));
  assert.equal(getAddress(c.token), getAddress(w.token.target));
  assert.equal(getAddress(await w.channels.signerOf(id)), getAddress(session.address));
  assert.equal(BigInt(c.deposit), 3_660_000n);
  assert.equal(BigInt(c.paid), 0n);
  const expiry = Number(c.expiry);
  assert.ok(expiry >= before.timestamp + 7200 && expiry <= before.timestamp + 7200 + 60, `expiry ${expiry} vs ${before.timestamp}`);
  assert.equal(await balanceOf(w.token, w.renter.address), 100_000_000n - 3_660_000n);
  assert.ok(r.stdout.includes(`paid by channel ${id}`), r.stdout);
  assert.match(r.stdout, /run `grid pay`/);
});

test('leases create --pay channel: a deposit below the broker\'s minimum is refused before anything is sent', async (t) => {
  const w = await chainWorld(t, { leaseAnswer: () => [200, {}] });
  const r = await grid(w.dir, ['leases', 'create', '12', '--image', 'host', '--pay', 'channel', '--deposit', '0.5'],
    { key: w.renter.key, broker: w.broker.url });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--deposit 0\.500000 is below what the broker requires: 0\.660000/);
  assert.equal(await w.channels.nextNonce(), 1n, 'no channel opened');
  const short = await grid(w.dir, ['leases', 'create', '12', '--image', 'host', '--pay', 'channel', '--channel-expiry', '10m'],
    { key: w.renter.key, broker: w.broker.url });
  assert.equal(short.code, 1);
  assert.match(short.stderr, /--channel-expiry: the broker needs the channel open at least 15 minutes/);
  assert.equal(await w.channels.nextNonce(), 1n, 'no channel opened');
});

test('leases create --pay channel: when the lease cannot be created, it says how to get the deposit back', async (t) => {
  const w = await chainWorld(t, { leaseAnswer: () => apiError(409, 'not_available', 'offer 12: the GPUs were taken') });
  const r = await grid(w.dir, ['leases', 'create', '12', '--image', 'host', '--pay', 'channel', '--deposit', '5'],
    { key: w.renter.key, broker: w.broker.url });
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /the GPUs were taken/);
  const m = r.stderr.match(/the channel (0x[0-9a-f]{64}) was opened with 5\.000000 but no lease uses it/);
  assert.ok(m, r.stderr);
  assert.ok(r.stderr.includes(`grid channels start-close ${m[1]}`), r.stderr);
  assert.ok(r.stderr.includes(`grid channels finish-close ${m[1]}`), r.stderr);
  assert.ok(r.stderr.includes(`grid channels refund ${m[1]}`), r.stderr);
  assert.equal(BigInt((await w.channels.channels(m[1])).deposit), 5_000_000n, 'the channel is there to be closed');
  // The command it printed works: the renter starts the close.
  const close = await grid(w.dir, ['channels', 'start-close', m[1]], { key: w.renter.key, broker: w.broker.url });
  assert.equal(close.code, 0, close.stderr);
  assert.ok(Number((await w.channels.channels(m[1])).closeAt) > 0, 'close started');
});

// ---------------------------------------------------------------- with the real broker and agent

const root = process.getuid && process.getuid() === 0;

// anvil + token + contract + a real broker with --channels, a provider and a
// renter with tokens; `agent: true` adds a real agent (simulated GPU, the
// process runtime: root) whose machine key is the channels' payee.
async function realWorld(t, { agent = false } = {}) {
  const w = await channelsWorld(t);
  w.renter = await renterKey(w.dir, 'renter', w.renterW);
  if (agent) Object.assign(w, await channelsAgent(t, w, { price: '36' }));
  return w;
}

test('real broker: an offer of a machine registered by hand has no channel_payee, and --pay channel refuses it', async (t) => {
  const w = await realWorld(t);
  const m = await provideMachineCli(w.dir, w.broker.url, w.prov.key, { price: '2.10', num_gpus: 1 });
  const o = await (await fetch(`${w.broker.url}/v1/offers/${m.id * 1000 + 1}`)).json();
  assert.equal(o.machine_id, m.id, JSON.stringify(o));
  assert.equal(o.channel_payee, null, JSON.stringify(o));
  const r = await grid(w.dir, ['leases', 'create', String(o.id), '--image', 'host', '--pay', 'channel'], { key: w.renter.key, broker: w.broker.url });
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, new RegExp(`offer ${o.id}: its host does not accept payment by channel`));
  assert.equal(await w.channels.nextNonce(), 1n, 'no channel opened');
});

test('real broker and agent: leases create --pay channel, then grid pay signs what the broker accepts', { skip: !root && 'needs root' }, async (t) => {
  const w = await realWorld(t, { agent: true });
  const session = await renterKey(w.dir, 'session');
  const cli = (args, opts = {}) => grid(w.dir, args, { key: w.renter.key, broker: w.broker.url, ...opts });
  const created = await cli(['--json', 'leases', 'create', String(w.offerId), '--image', 'host', '--pay', 'channel',
    '--signer-key', session.key, '--', 'sh', '-c', 'sleep 3600']);
  assert.equal(created.code, 0, created.stderr);
  const lease = JSON.parse(created.stdout);
  assert.equal(lease.payment, 'channel', created.stdout);
  assert.equal(getAddress(lease.channel.payee), w.payee.address);
  assert.equal(getAddress(lease.channel.signer), getAddress(session.address));
  assert.equal(lease.channel.deposit, '36.600000', 'an hour + a minute at $36/h');
  const onChain = await w.channels.channels(lease.channel.id);
  assert.equal(getAddress(onChain.provider), w.payee.address);
  assert.equal(BigInt(onChain.deposit), 36_600_000n);

  const show = async () => JSON.parse((await cli(['--json', 'leases', 'show', String(lease.id)])).stdout);
  await waitFor('the lease to run', async () => (await show()).state === 'running')
    .catch((e) => { throw new Error(`${e.message}\nagent:\n${w.agent.stderr}`); });

  // The renter's own key is not the channel's signer.
  const wrong = await cli(['pay', '--once']);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /--signer-key/);

  const paid = await cli(['pay', '--once', '--signer-key', session.key]);
  assert.equal(paid.code, 0, paid.stderr);
  const line = paid.stdout.match(/^lease (\d+): signed interval (\d+), (\d+\.\d{6}) paid in total$/m);
  assert.ok(line, paid.stdout);
  assert.equal(Number(line[1]), lease.id);
  const after = await show();
  assert.equal(after.channel.voucher?.amount, line[3], JSON.stringify(after.channel));
  assert.equal(micros(line[3]), 600_000n * BigInt(Number(line[2]) + 1), 'the schedule: $0.60 a minute');
  // Nothing more is due in the same interval.
  const again = await cli(['pay', '--once', '--signer-key', session.key]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, '');
  const stopped = await cli(['leases', 'stop', String(lease.id)]);
  assert.equal(stopped.code, 0, stopped.stderr);
});
