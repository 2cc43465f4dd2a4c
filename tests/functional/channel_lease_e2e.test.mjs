// Leases paid by payment channel, end to end with every real part (issue 6):
// anvil with TestToken and PaymentChannels, a non-dev broker with
// `--channels`, a real `grid agent --chain-rpc` (simulated GPUs, the process
// runtime) whose machine key is the payee, and the renter's real CLI —
// `grid leases create --pay channel` opens the channel, `grid pay` signs the
// vouchers. Every amount is checked on chain with ethers, against the
// broker's lease record and its audit.
//
//  1. A 3-minute lease at a known price ($36/h, 60 s vouchers): the
//     provider's on-chain gain equals the vouchers redeemed, the renter's
//     refund equals deposit − that, the broker's token balance is unchanged,
//     and the broker charged exactly that.
//  2. The renter vanishes (`grid pay` killed): the workload stops within one
//     interval + grace of what the vouchers paid for, and the provider is
//     paid the last voucher: its unpaid running time is at most the grace.
//  3. The provider vanishes (its agent killed): the renter gets everything
//     not redeemed back through the challenge window; it paid at most one
//     interval beyond what it used.
//
// Needs root (the process runtime's namespaces), as CI has.
// Run: GRID_BIN=$PWD/build/grid node --test --test-concurrency=1 tests/functional/channel_lease_e2e.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { getAddress } from 'ethers';
import { grid, gridJson, spawnGrid, waitFor, micros, sleep, auditDb, account, apiOk, processesWith } from './lib.mjs';
import { balanceOf } from './chain.mjs';
import { channelsWorld, channelsAgent } from './channels_world.mjs';

const root = process.getuid && process.getuid() === 0;
const ZERO = '0x0000000000000000000000000000000000000000';
const PER_SECOND = 10_000n; // micro-USD: the machine rents at $36/h

// The channels world (channels_world.mjs), its agent (a high redeem
// threshold: it closes with the best voucher rather than redeeming each),
// and the renter's key file for the CLI.
async function world(t, { interval, hostGrace = '60' }) {
  const w = await channelsWorld(t, { interval, hostGrace });
  Object.assign(w, await channelsAgent(t, w, { price: '36', args: ['--grace', '500', '--channel-redeem-threshold', '100'] }));
  w.renterKey = path.join(w.dir, 'renter.key');
  const imported = await grid(w.dir, ['keys', 'import', '--out', w.renterKey], { input: w.renterW.privateKey + '\n' });
  assert.equal(imported.code, 0, imported.stderr);
  w.cli = (args, opts = {}) => grid(w.dir, args, { key: w.renterKey, broker: w.broker.url, ...opts });
  return w;
}

// `grid pay` as a daemon, killed by PID at the end.
const startPay = (t, w) => spawnGrid(t, w.dir, w.broker.url, ['--key', w.renterKey, 'pay', '--interval-check', '1']);

async function createLease(w, deposit) {
  const r = await w.cli(['--json', 'leases', 'create', String(w.offerId), '--image', 'host', '--pay', 'channel',
    '--deposit', deposit, '--', 'sh', '-c', 'sleep 3600']);
  assert.equal(r.code, 0, r.stderr);
  const lease = JSON.parse(r.stdout);
  assert.equal(lease.payment, 'channel', r.stdout);
  assert.equal(getAddress(lease.channel.payee), w.payee.address, 'the channel pays the host\'s agent');
  return lease;
}

const show = async (w, id) => {
  const r = await w.cli(['--json', 'leases', 'show', String(id)]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
};
const closedOnChain = async (w, id) => (await w.channels.channels(id)).provider === ZERO;
// What a failure message needs: the lease as the broker has it and every
// process's own words.
async function context(w, pay, leaseId) {
  let lease = '';
  if (leaseId) {
    const r = await w.cli(['--json', 'leases', 'show', String(leaseId)]);
    lease = r.stdout;
  }
  return `\nlease: ${lease}\nagent:\n${w.agent.stderr}\npay:\n${pay ? pay.stdout + pay.stderr : ''}\nbroker:\n${w.broker.stderr.slice(-4000)}`;
}
const explain = (w, pay, leaseId) => async (e) => { throw new Error(e.message + await context(w, pay, leaseId)); };

test('a 3-minute lease paid by channel: the provider gains the vouchers, the renter the rest, the broker nothing', { skip: !root && 'needs root', timeout: 600_000 }, async (t) => {
  const w = await world(t, { interval: '60' });
  const renter0 = await balanceOf(w.token, w.renterW.address);
  const lease = await createLease(w, '7');
  const channelId = lease.channel.id;
  assert.equal(await balanceOf(w.token, w.renterW.address), renter0 - 7_000_000n, 'the deposit is locked in the contract');
  const pay = startPay(t, w);
  const running = await waitFor('the lease to run', async () => {
    const l = await show(w, lease.id);
    return l.state === 'running' && l;
  }).catch(explain(w, pay, lease.id));
  const start = running.channel.start_ms;

  // One interval ahead: by the start of the third minute, three minutes are paid.
  await waitFor('the third voucher ($1.80)', async () => (await show(w, lease.id)).channel.voucher?.amount === '1.800000',
    200_000).catch(explain(w, pay, lease.id));
  assert.match(pay.stdout, /^lease \d+: signed interval 0, 0\.600000 paid in total$/m, pay.stdout);
  assert.match(pay.stdout, /^lease \d+: signed interval 2, 1\.800000 paid in total$/m, pay.stdout);
  // The renter's part ends at 3 minutes: no fourth voucher, then the stop.
  process.kill(pay.proc.pid, 'SIGTERM');
  assert.deepEqual(await pay.exited, { code: 0, signal: null }, pay.stderr);
  const wait = start + 180_500 - Date.now();
  if (wait > 0) await sleep(wait);
  const stopped = await w.cli(['leases', 'stop', String(lease.id)]);
  assert.equal(stopped.code, 0, stopped.stderr);

  // The agent closes the channel with the best voucher.
  await waitFor('the channel closed on chain', () => closedOnChain(w, channelId), 60_000)
    .catch(explain(w, pay, lease.id));
  const gain = await balanceOf(w.token, w.payee.address);
  assert.equal(gain, 1_800_000n, 'the provider gained exactly the vouchers: 3 minutes at $36/h');
  assert.equal(await balanceOf(w.token, w.renterW.address), renter0 - gain, 'the renter got deposit - that back');
  assert.equal(await balanceOf(w.token, w.channels.target), 0n, 'the contract holds nothing');
  assert.equal(await balanceOf(w.token, w.treasury.address), w.treasuryBefore, 'the broker\'s treasury is untouched');

  const final = await waitFor('the broker to record the close', async () => {
    const l = await show(w, lease.id);
    return l.channel.closed && l;
  });
  assert.equal(final.state, 'ended');
  assert.equal(final.channel.voucher.amount, '1.800000');
  assert.equal(micros(final.channel.redeemed), gain, 'the broker recorded what the chain paid');
  assert.equal(micros(final.charged), gain, 'charged: the 3 minutes the vouchers paid for, to the micro-dollar');
  assert.equal(final.held, '0.000000');
  assert.equal(final.fee, '0.000000');
  // The renter's history shows the three vouchers (the ledger's record).
  const history = await gridJson(w.dir, ['wallet', 'history'], { key: w.renterKey, broker: w.broker.url });
  const vouchers = history.entries.filter((x) => String(x.id).startsWith(`lease:${lease.id}:voucher:`));
  assert.equal(vouchers.length, 3, JSON.stringify(history));
  assert.equal(vouchers.reduce((s, x) => s + micros(x.amount), 0n), gain);
  const audit = await auditDb(w.dir, w.db);
  assert.equal(audit.code, 0, JSON.stringify(audit.report));
});

test('the renter vanishes: the workload stops within an interval + grace and the provider keeps the last voucher', { skip: !root && 'needs root', timeout: 300_000 }, async (t) => {
  const w = await world(t, { interval: '4' });
  const renter0 = await balanceOf(w.token, w.renterW.address);
  const lease = await createLease(w, '7');
  const pay = startPay(t, w);
  await waitFor('two vouchers', async () => micros((await show(w, lease.id)).channel.voucher?.amount ?? '0') >= 80_000n, 30_000)
    .catch(explain(w, pay, lease.id));
  process.kill(pay.proc.pid, 'SIGKILL'); // the renter's machine is gone
  await pay.exited;
  const best = micros((await show(w, lease.id)).channel.voucher.amount);

  const ended = await waitFor('the lease to end', async () => {
    const l = await show(w, lease.id);
    return l.state === 'ended' && l;
  }, 60_000).catch(explain(w, pay, lease.id));
  const paidThroughMs = Date.parse(ended.channel.paid_through);
  const ranMs = Date.parse(ended.ended_at) - ended.channel.start_ms;
  const unpaidMs = Date.parse(ended.ended_at) - paidThroughMs;
  assert.ok(unpaidMs <= 4_000 + 2_000, `stopped within the grace (4 s) of what was paid, + 2 s of ticks: ${unpaidMs} ms`);
  assert.ok(ranMs >= paidThroughMs - ended.channel.start_ms, 'not stopped before what was paid ran out');
  assert.equal(micros(ended.channel.voucher.amount), best);
  assert.ok(micros(ended.charged) <= best, 'charged no more than the vouchers pay');

  await waitFor('the channel closed on chain', () => closedOnChain(w, ended.channel.id), 60_000)
    .catch(explain(w, pay, lease.id));
  assert.equal(await balanceOf(w.token, w.payee.address), best, 'the provider has the last voucher');
  assert.equal(await balanceOf(w.token, w.renterW.address), renter0 - best, 'the renter the rest');
  // The provider's loss: running time nobody paid for, at most the grace.
  const unpaidValue = BigInt(Math.max(0, unpaidMs)) * PER_SECOND / 1000n;
  assert.ok(unpaidValue <= 4n * PER_SECOND + 2n * PER_SECOND, `provider's loss ${unpaidValue} µUSD`);
  assert.equal(await balanceOf(w.token, w.treasury.address), w.treasuryBefore);
});

test('the provider vanishes: the renter gets everything not redeemed back through the challenge window', { skip: !root && 'needs root', timeout: 300_000 }, async (t) => {
  // The broker's usual 60 s host grace: the lease is not ended at once, but
  // the broker takes no voucher for a host it has not heard from for an
  // interval, so the renter stops paying all the same.
  const w = await world(t, { interval: '4' });
  const renter0 = await balanceOf(w.token, w.renterW.address);
  const lease = await createLease(w, '7');
  const channelId = lease.channel.id;
  const pay = startPay(t, w);
  const running = await waitFor('two vouchers', async () => {
    const l = await show(w, lease.id);
    return micros(l.channel.voucher?.amount ?? '0') >= 80_000n && l;
  }, 30_000).catch(explain(w, pay, lease.id));
  const lastBeat = Date.now();
  process.kill(w.agent.proc.pid, 'SIGKILL'); // the host is gone, its key with it
  await w.agent.exited;
  // Its workload outlives it (as an agent restart would find it) and holds
  // the agent's output pipes: it goes at the end, or this file never exits.
  t.after(() => {
    for (const pid of processesWith(w.stateDir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
  });

  // The broker refuses further vouchers, so the lease runs out of them and
  // ends (or, later, its host is declared lost).
  const ended = await waitFor('the lease to end', async () => {
    const l = await show(w, lease.id);
    return l.state === 'ended' && l;
  }, 90_000);
  assert.ok(['insufficient_funds', 'host_lost'].includes(ended.end_reason), JSON.stringify(ended));
  const signed = micros(ended.channel.voucher.amount);
  // What the renter signed covers at most one interval beyond the host's
  // last sign of life (the renter is one interval ahead, never more).
  const usedMs = BigInt(lastBeat - running.channel.start_ms);
  assert.ok(signed <= (usedMs + 4_000n + 1_000n) * PER_SECOND / 1000n, `signed ${signed} µUSD for ${usedMs} ms used`);

  // The renter closes: start-close, the hour's window, finish-close.
  const sc = await w.cli(['--json', 'channels', 'start-close', channelId]);
  assert.equal(sc.code, 0, sc.stderr);
  await w.anvil.rpc('evm_increaseTime', [3601]);
  await w.anvil.rpc('evm_mine', []);
  const fc = await w.cli(['--json', 'channels', 'finish-close', channelId]);
  assert.equal(fc.code, 0, fc.stderr);
  assert.ok(await closedOnChain(w, channelId));
  const redeemed = await balanceOf(w.token, w.payee.address);
  assert.equal(await balanceOf(w.token, w.renterW.address), renter0 - redeemed, 'deposit - redeemed is back');
  assert.ok(redeemed <= signed, 'the provider got no more than the renter signed');
  assert.equal(await balanceOf(w.token, w.channels.target), 0n);
  assert.equal(await balanceOf(w.token, w.treasury.address), w.treasuryBefore);
  // The broker learns of the close from anyone (here the renter), with
  // the closing transaction for the final payout.
  const { token } = await account(w.broker.url, w.renterW);
  const synced = await apiOk(w.broker.url, 'POST', `/v1/leases/${lease.id}/channel/sync`,
    { close_tx: JSON.parse(fc.stdout).tx_hash }, token);
  assert.equal(synced.channel.closed, true);
  assert.equal(micros(synced.channel.redeemed), redeemed);
  const audit = await auditDb(w.dir, w.db);
  assert.equal(audit.code, 0, JSON.stringify(audit.report));
});
