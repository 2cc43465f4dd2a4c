// `grid agent --chain-rpc` and leases paid by payment channel (issue 6), the
// agent's side: a real anvil with TestToken and PaymentChannels, a non-dev
// broker started with `--channels`, and a real agent (simulated GPUs, the
// process runtime) whose machine key is the channels' payee.
//
// - Start-up: against a broker without channels the agent enrolls without
//   announcing them; a node on another chain than the broker's stops it.
// - The lease flow: the renter opens a channel to the agent's address,
//   creates a lease on it and posts vouchers; the agent runs the workload,
//   redeems past its threshold, and when the renter stops the lease closes
//   the channel on chain (checked with ethers: the channel is gone, the
//   payee got exactly the best voucher, the renter the rest) and asks the
//   broker to sync. After kill -9 and a lease stopped meanwhile, the
//   restarted agent still closes the channel from its voucher book.
//
// Needs root (the process runtime's namespaces), as CI has.
// Run: GRID_BIN=$PWD/build/grid node --test --test-concurrency=1 tests/functional/agent_channels.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { getAddress } from 'ethers';
import {
  tempDir, startBroker, gridJson, apiOk, account, nonceInfo, leaseBody, startAgent, waitFor, newKey, money,
} from './lib.mjs';
import { startAnvil, balanceOf } from './chain.mjs';
import { channelsWorld, channelsAgent } from './channels_world.mjs';

const root = process.getuid && process.getuid() === 0;
const TYPES = { Voucher: [{ name: 'channelId', type: 'bytes32' }, { name: 'cumulativeAmount', type: 'uint256' }] };
const PRICE = 36_000_000n; // $36/h for 1 GPU: 600,000 µUSD per 60 s interval
const DEPOSIT = 10_000_000n;

// The channels world (channels_world.mjs) and a provider's join token.
async function world(t, opts = {}) {
  const w = await channelsWorld(t, opts);
  const { token: joinToken } = await gridJson(w.dir, ['provider', 'join-token', 'create', '--ttl', '1h'], { key: w.prov.key, broker: w.broker.url });
  return { ...w, joinToken };
}

test('against a broker without channels the agent enrolls and takes escrow leases only', { skip: !root && 'needs root' }, async (t) => {
  const dir = await tempDir(t);
  fs.chmodSync(dir, 0o711);
  const anvil = await startAnvil(t);
  const broker = await startBroker(t, { db: path.join(dir, 'b.db'), dir });
  const prov = await newKey(dir, 'prov');
  const { token } = await gridJson(dir, ['provider', 'join-token', 'create'], { key: prov.key, broker: broker.url });
  const agent = await startAgent(t, dir, broker.url, ['--join-token', token, '--state-dir', path.join(dir, 'agent'),
    '--simulate-gpus', '1xRTX-4090', '--geolocation', 'DE', '--chain-rpc', anvil.url]);
  assert.match(agent.stderr, /takes no channel payments/);
  assert.doesNotMatch(agent.stderr, /channel payments on/);
});

test('an agent whose node is on another chain than the broker\'s refuses to start', { skip: !root && 'needs root' }, async (t) => {
  const w = await world(t);
  const other = await startAnvil(t, { chainId: 1337 });
  const agent = await startAgent(t, w.dir, w.broker.url, ['--join-token', w.joinToken, '--state-dir', path.join(w.dir, 'agent'),
    '--simulate-gpus', '1xRTX-4090', '--geolocation', 'DE', '--chain-rpc', other.url]).catch((e) => e);
  assert.ok(agent instanceof Error, 'the agent must not enroll');
  assert.match(agent.message, /--chain-rpc: the node at .* is chain 1337, the broker's channels are on chain 31337/);
});

// A world with an agent taking channel payments, a listed machine, a
// channel from the renter to the agent's address and a lease on it, running.
async function runningLease(t, { threshold = '0.50', ...worldOpts } = {}) {
  const w = await channelsWorld(t, worldOpts);
  const { agent, agentArgs, stateDir, payee, machine } = await channelsAgent(t, w, {
    price: money(PRICE), args: ['--grace', '500', '--channel-redeem-threshold', threshold],
  });
  assert.match(agent.stderr, /channel payments on/);
  assert.match(agent.stderr, new RegExp(`payee ${payee.address}`));

  // The renter opens a channel to the agent's address, with ethers.
  const renter = await account(w.broker.url, w.renterW);
  const chRenter = w.channels.connect(w.renterW);
  await (await w.token.connect(w.renterW).approve(w.channels.target, DEPOSIT)).wait();
  const expiry = (await w.anvil.provider.getBlock('latest')).timestamp + 7200;
  const rc = await (await chRenter.open(payee.address, w.token.target, DEPOSIT, expiry, w.renterW.address)).wait();
  const channelId = rc.logs.map((l) => { try { return w.channels.interface.parseLog(l); } catch { return null; } })
    .find((e) => e && e.name === 'Opened').args.id;

  const { chain_id } = await nonceInfo(w.broker.url);
  const body = await leaseBody(w.renterW, chain_id, {
    offerId: machine.id * 1000 + 1, gpus: 1, pricePerHourMicros: PRICE, command: ['sh', '-c', 'sleep 3600'],
  });
  body.pay = { channel: channelId };
  const lease = await apiOk(w.broker.url, 'POST', '/v1/leases', body, renter.token);
  assert.equal(lease.payment, 'channel');
  const running = await waitFor('the lease to run', async () => {
    const l = await apiOk(w.broker.url, 'GET', `/v1/leases/${lease.id}`, undefined, renter.token);
    return l.state === 'running' && l.channel.start_ms > 0 && l;
  }).catch((e) => { throw new Error(`${e.message}\nagent:\n${agent.stderr}`); });
  const d = await w.channels.eip712Domain();
  const domain = { name: d.name, version: d.version, chainId: d.chainId, verifyingContract: d.verifyingContract };
  // The renter signs a voucher (with ethers) and posts it to the broker.
  const pay = async (amount) => {
    const signature = await w.renterW.signTypedData(domain, TYPES, { channelId, cumulativeAmount: amount });
    await apiOk(w.broker.url, 'POST', `/v1/leases/${lease.id}/vouchers`,
      { channel_id: channelId, cumulative: String(amount), signature }, renter.token);
  };
  const view = () => apiOk(w.broker.url, 'GET', `/v1/leases/${lease.id}`, undefined, renter.token);
  const bookFile = path.join(stateDir, 'vouchers', `voucher-${lease.id}.jsonl`);
  return { w, stateDir, agentArgs, agent, payee, renter, channelId, lease, running, pay, view, bookFile };
}

// The whole flow; `restart`: kill -9 the agent before the lease ends.
async function leaseFlow(t, { restart }) {
  const r = await runningLease(t);
  const { w, payee, renter, channelId, lease, running, bookFile } = r;
  let { agent } = r;

  // The first voucher (interval 0).
  const due = running.channel.due ?? (await r.view()).channel.due;
  const amount = BigInt(Math.round(Number(due.amount) * 1e6));
  assert.equal(amount, 600_000n, JSON.stringify(due));
  await r.pay(amount);

  // The agent books it (on disk) and, past its $0.50 threshold, redeems it.
  await waitFor('the voucher in the agent\'s book', () => fs.existsSync(bookFile) && fs.readFileSync(bookFile, 'utf8').includes('"voucher":"0.600000"'));
  await waitFor('the redeem on chain', async () => (await w.channels.channels(channelId)).paid === amount)
    .catch((e) => { throw new Error(`${e.message}\nagent:\n${agent.stderr}`); });
  assert.equal(await balanceOf(w.token, payee.address), amount, 'the payee got the voucher');
  await waitFor('the broker to record the redeem', async () =>
    (await apiOk(w.broker.url, 'GET', `/v1/leases/${lease.id}`, undefined, renter.token)).channel.redeemed === '0.600000');

  const renterBefore = await balanceOf(w.token, w.renterW.address);
  if (restart) {
    process.kill(agent.proc.pid, 'SIGKILL');
    await agent.exited;
  }
  await apiOk(w.broker.url, 'POST', `/v1/leases/${lease.id}/stop`, {}, renter.token);
  if (restart) agent = await startAgent(t, w.dir, w.broker.url, r.agentArgs);

  // The lease is over: the channel is closed "as paid" (the best voucher was
  // redeemed), the rest of the deposit back with the renter, the book file gone.
  await waitFor('the channel closed on chain', async () => (await w.channels.channels(channelId)).provider === '0x0000000000000000000000000000000000000000')
    .catch((e) => { throw new Error(`${e.message}\nagent:\n${agent.stderr}`); });
  assert.equal(await balanceOf(w.token, payee.address), amount, 'the payee has exactly the best voucher');
  assert.equal(await balanceOf(w.token, w.renterW.address), renterBefore + DEPOSIT - amount, 'the renter has the rest');
  await waitFor('the book file removed', () => !fs.existsSync(bookFile));
  await waitFor('the broker to record the close', async () =>
    (await apiOk(w.broker.url, 'GET', `/v1/leases/${lease.id}`, undefined, renter.token)).channel.closed === true);
  assert.equal(getAddress((await apiOk(w.broker.url, 'GET', `/v1/leases/${lease.id}`, undefined, renter.token)).channel.payee), payee.address);
}

test('a channel lease: the agent checks, books, redeems and closes', { skip: !root && 'needs root' }, async (t) => {
  await leaseFlow(t, { restart: false });
});

test('a channel lease stopped while its agent was down is closed after the restart', { skip: !root && 'needs root' }, async (t) => {
  await leaseFlow(t, { restart: true });
});

test('when the renter\'s vouchers stop, the agent stops the workload and closes with the best voucher', { skip: !root && 'needs root' }, async (t) => {
  // 2 s intervals ($36/h: 20,000 µUSD each); the broker settles only every
  // 60 s, so the stop is the agent's own decision, from its voucher book.
  const r = await runningLease(t, { tick: '60', interval: '2', threshold: '5.00' });
  const { w, payee, channelId } = r;
  // Intervals 0 and 1 (the renter may be one ahead): paid through 4 s.
  await r.pay(20_000n);
  await r.pay(40_000n);
  await waitFor('both vouchers in the agent\'s book', () => fs.existsSync(r.bookFile) && fs.readFileSync(r.bookFile, 'utf8').includes('"voucher":"0.040000"'));
  const renterBefore = await balanceOf(w.token, w.renterW.address);
  // Then nothing: one interval of grace later the agent stops the workload.
  const ended = await waitFor('the lease ended by the agent', async () => {
    const l = await r.view();
    return l.state === 'ended' && l;
  }).catch((e) => { throw new Error(`${e.message}\nagent:\n${r.agent.stderr}`); });
  assert.match(ended.message, /vouchers stopped/, JSON.stringify(ended));
  const ranMs = Date.parse(ended.ended_at) - ended.channel.start_ms;
  assert.ok(ranMs >= 6000, `stopped after paid-through (4 s) + grace (2 s), not before: ${ranMs} ms`);
  assert.match(r.agent.stderr, /stopping lease-\d+: the renter's vouchers stopped/);
  // Closed with the best voucher: the payee has exactly it, the renter the rest.
  await waitFor('the channel closed on chain', async () => (await w.channels.channels(channelId)).provider === '0x0000000000000000000000000000000000000000')
    .catch((e) => { throw new Error(`${e.message}\nagent:\n${r.agent.stderr}`); });
  assert.equal(await balanceOf(w.token, payee.address), 40_000n);
  assert.equal(await balanceOf(w.token, w.renterW.address), renterBefore + DEPOSIT - 40_000n);
  await waitFor('the broker to record the close', async () => (await r.view()).channel.closed === true);
});
