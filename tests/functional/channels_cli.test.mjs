// `grid channels …` end to end (issue 6): a real anvil, TestToken (6
// decimals), contracts/PaymentChannels.sol, and a non-dev broker started with
// `--channels ADDR` that tells the CLI where the chain and the contract are
// (GET /v1/channels/config). The renter and the provider are anvil dev
// accounts imported into grid key files; every transaction is sent by the
// CLI, and every effect is checked independently with ethers (the stock
// wallet): channels(id), balanceOf, the Opened event, verifyTypedData of the
// CLI's vouchers, and vouchers signed by ethers redeemed by the CLI.
//
// Each test has its own chain, contract and broker (the challenge-window and
// refund tests move the chain's clock forward, which must not leak).
//
// The broker's treasury (dev account 1) is never touched by channels: its
// token balance is the same at the end of every test as at the start.
//
// Run: GRID_BIN=$PWD/build/grid node --test --test-concurrency=1 tests/functional/channels_cli.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ContractFactory, getAddress, verifyTypedData, id as keccakText } from 'ethers';
import { tempDir, startBroker, grid, gridJson, api, micros, assertApiError } from './lib.mjs';
import { startAnvil, deployToken, mintTo, balanceOf } from './chain.mjs';
import { loadArtifact } from '../../scripts/compile-contracts.mjs';

const DEPOSIT = 10_000_000n; // 10 tokens (6 decimals)
const WINDOW = 3600; // the contract's CHALLENGE_WINDOW
const TYPES = { Voucher: [{ name: 'channelId', type: 'bytes32' }, { name: 'cumulativeAmount', type: 'uint256' }] };
const HEX32 = /^0x[0-9a-fA-F]{64}$/;
const SIG65 = /^0x[0-9a-fA-F]{130}$/;

const same = (a, b, msg) => assert.equal(getAddress(a), getAddress(b), msg);
// RFC 3339 -> unix seconds.
const unix = (s) => {
  assert.equal(typeof s, 'string', `an RFC 3339 time: ${s}`);
  assert.match(s, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/, `RFC 3339: ${s}`);
  const ms = Date.parse(s);
  assert.ok(Number.isFinite(ms), `parses: ${s}`);
  return Math.floor(ms / 1000);
};

// A failed command: a non-zero exit (not a signal), a message on stderr that
// matches `re`, nothing on stdout that looks like success, and no crash.
function assertFails(r, re, what) {
  const ctx = `${what}: code ${r.code} signal ${r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
  assert.equal(r.signal, null, `no signal; ${ctx}`);
  assert.notEqual(r.code, 0, `non-zero exit; ${ctx}`);
  assert.ok(r.code > 0 && r.code < 128, `an ordinary exit status; ${ctx}`);
  assert.ok(r.stderr.trim().length > 0, `a message on stderr; ${ctx}`);
  assert.doesNotMatch(r.stderr, /terminate called|Segmentation|Aborted|AddressSanitizer|UndefinedBehaviorSanitizer|core dumped/, ctx);
  if (re) assert.match(r.stderr, re, ctx);
}

// anvil + TestToken + PaymentChannels + a non-dev broker with --channels, and
// the renter's and the provider's grid key files.
async function world(t, { renterTokens = 100_000_000n } = {}) {
  const dir = await tempDir(t);
  const anvil = await startAnvil(t);
  const [deployer, treasury, renterW, providerW] = anvil.accounts;
  const token = await deployToken(anvil);
  const { abi, bytecode } = loadArtifact('PaymentChannels');
  const channels = await new ContractFactory(abi, bytecode, deployer).deploy();
  await channels.waitForDeployment();
  await mintTo(token, renterW.address, renterTokens);

  const keyFile = path.join(dir, 'treasury.key');
  fs.writeFileSync(keyFile, treasury.privateKey + '\n', { mode: 0o600 });
  const db = path.join(dir, 'b.db');
  const args = ['--chain-rpc', anvil.url, '--token', token.target, '--treasury-key', keyFile,
    '--confirmations', '1', '--chain-poll', '0.1', '--channels', channels.target];
  const broker = await startBroker(t, { db, dir, dev: false, extraArgs: args });

  const importKey = async (name, wallet) => {
    const file = path.join(dir, `${name}.key`);
    const r = await grid(dir, ['keys', 'import', '--out', file], { input: wallet.privateKey + '\n' });
    assert.equal(r.code, 0, r.stderr);
    return file;
  };
  const renter = { wallet: renterW, address: renterW.address, key: await importKey('renter', renterW) };
  const provider = { wallet: providerW, address: providerW.address, key: await importKey('provider', providerW) };
  const treasuryBefore = await balanceOf(token, treasury.address);

  const cli = (who, args, opts = {}) => grid(dir, args, { key: who.key, broker: broker.url, ...opts });
  const cliJson = (who, args) => gridJson(dir, args, { key: who.key, broker: broker.url });
  const bal = (who) => balanceOf(token, who.address ?? who);
  const state = async (id) => {
    const c = await channels.channels(id);
    return { renter: c.renter, expiry: c.expiry, closeAt: c.closeAt, provider: c.provider, deposit: c.deposit, token: c.token, paid: c.paid, signer: c.signer };
  };
  const domain = async () => {
    const d = await channels.eip712Domain();
    return { name: d.name, version: d.version, chainId: d.chainId, verifyingContract: d.verifyingContract };
  };
  const ethersVoucher = async (wallet, id, cumulative) =>
    wallet.signTypedData(await domain(), TYPES, { channelId: id, cumulativeAmount: BigInt(cumulative) });
  // The receipt of a transaction the CLI reported: mined, successful, sent by `from` to the contract.
  const receiptOf = async (hash, from) => {
    assert.match(hash, HEX32, `tx_hash: ${hash}`);
    const r = await anvil.provider.getTransactionReceipt(hash);
    assert.ok(r, `receipt of ${hash}`);
    assert.equal(r.status, 1, `${hash} succeeded`);
    same(r.from, from.address, 'sent from the key\'s address');
    same(r.to, channels.target, 'sent to the channel contract');
    return r;
  };
  // Opens a channel from the renter with the CLI; returns the JSON and the id.
  const open = async (amount = '10', hours = 2) => {
    const o = await cliJson(renter, ['channels', 'open', provider.address, amount, '--hours', String(hours)]);
    assert.match(o.channel, HEX32, JSON.stringify(o));
    return o;
  };
  const treasuryUnchanged = async () =>
    assert.equal(await balanceOf(token, treasury.address), treasuryBefore, 'the broker\'s treasury is untouched by channels');
  return {
    dir, anvil, token, channels, broker, treasury, renter, provider, cli, cliJson, bal, state, domain, ethersVoucher, receiptOf, open, treasuryUnchanged,
  };
}

// ---------------------------------------------------------------- config

test('GET /v1/channels/config names the chain, the token and the contract; 409 on a broker without --channels', async (t) => {
  const w = await world(t);
  const r = await api(w.broker.url, 'GET', '/v1/channels/config');
  assert.equal(r.status, 200, r.text);
  assert.equal(String(r.body.rpc_url).replace(/\/$/, ''), w.anvil.url);
  assert.equal(r.body.chain_id, 31337);
  same(r.body.token, w.token.target);
  same(r.body.contract, w.channels.target);

  // A dev broker without a chain: no channels. The endpoint says so with a
  // JSON error, and the CLI fails cleanly.
  const dir = await tempDir(t);
  const plain = await startBroker(t, { db: path.join(dir, 'p.db'), dir });
  assertApiError(assert, await api(plain.url, 'GET', '/v1/channels/config'), 409);
  const show = await grid(dir, ['channels', 'show', '0x' + '11'.repeat(32)], { key: w.renter.key, broker: plain.url });
  assertFails(show, /channel/i, 'channels show on a broker without --channels');
  await w.treasuryUnchanged();
});

// ---------------------------------------------------------------- open, vouchers, redeem, close

test('open, show, vouchers from the CLI and from ethers, redeem, stale and over-claimed vouchers, close by the provider', async (t) => {
  const w = await world(t);
  const { renter, provider, channels, token } = w;
  const r0 = await w.bal(renter);
  const p0 = await w.bal(provider);

  // open: approve + open from the renter's key.
  const t0 = (await w.anvil.provider.getBlock('latest')).timestamp;
  const o = await w.open('10', 2);
  const id = o.channel;
  same(o.renter, renter.address);
  same(o.provider, provider.address);
  same(o.token, token.target);
  same(o.signer, renter.address, 'the default signer is the renter');
  assert.equal(micros(o.deposit), DEPOSIT, `deposit ${o.deposit}`);
  const expiry = unix(o.expiry);
  assert.ok(Math.abs(expiry - (t0 + 2 * 3600)) <= 120, `expiry about 2 hours from now: ${o.expiry}`);
  const openReceipt = await w.receiptOf(o.tx_hash, renter);
  const opened = openReceipt.logs
    .filter((l) => getAddress(l.address) === getAddress(channels.target))
    .map((l) => channels.interface.parseLog(l))
    .find((l) => l?.name === 'Opened');
  assert.ok(opened, 'an Opened event in the open transaction');
  assert.equal(opened.args.id, id, 'the id the CLI reports is the one Opened carries');
  assert.equal(opened.args.deposit, DEPOSIT);

  // ethers sees the channel.
  const s = await w.state(id);
  assert.equal(s.deposit, DEPOSIT);
  same(s.renter, renter.address);
  same(s.provider, provider.address);
  same(s.token, token.target);
  assert.equal(s.paid, 0n);
  assert.equal(s.closeAt, 0n);
  assert.equal(Number(s.expiry), expiry, 'the expiry the CLI reports is the one on chain');
  same(await channels.signerOf(id), renter.address);
  assert.equal(await w.bal(renter), r0 - DEPOSIT, 'the deposit left the renter');
  assert.equal(await w.bal(channels.target), DEPOSIT, 'and is held by the contract');

  // show
  const shown = await w.cliJson(renter, ['channels', 'show', id]);
  assert.equal(shown.channel, id);
  assert.equal(shown.open, true);
  same(shown.renter, renter.address);
  same(shown.provider, provider.address);
  same(shown.token, token.target);
  same(shown.signer, renter.address);
  assert.equal(micros(shown.deposit), DEPOSIT);
  assert.equal(micros(shown.paid), 0n);
  assert.equal(unix(shown.expiry), expiry);
  assert.equal(shown.close_at, null, 'no close pending');
  // Anyone can look (the provider's key too).
  assert.equal((await w.cliJson(provider, ['channels', 'show', id])).open, true);

  // A voucher from the CLI verifies in ethers with the contract's own domain.
  const v25 = await w.cliJson(renter, ['channels', 'voucher', id, '2.5']);
  assert.equal(v25.channel, id);
  assert.equal(micros(v25.amount), 2_500_000n);
  assert.match(v25.signature, SIG65, 'a 65-byte signature');
  const domain = await w.domain();
  assert.equal(domain.chainId, 31337n);
  same(domain.verifyingContract, channels.target);
  same(verifyTypedData(domain, TYPES, { channelId: id, cumulativeAmount: 2_500_000n }, v25.signature), renter.address,
    'the CLI voucher recovers to the renter');
  assert.equal(v25.signature.toLowerCase(), (await w.ethersVoucher(renter.wallet, id, 2_500_000n)).toLowerCase(),
    'deterministic (RFC 6979, low s): byte for byte what ethers signs');
  // Plain output is the signature alone.
  const plainV = await w.cli(renter, ['channels', 'voucher', id, '2.5']);
  assert.equal(plainV.code, 0, plainV.stderr);
  assert.equal(plainV.stdout.trim().toLowerCase(), v25.signature.toLowerCase());

  // The provider redeems it: exactly 2.5 arrives.
  const red = await w.cliJson(provider, ['channels', 'redeem', id, '2.5', v25.signature]);
  assert.equal(red.channel, id);
  await w.receiptOf(red.tx_hash, provider);
  assert.equal(micros(red.paid), 2_500_000n, `paid ${red.paid}`);
  assert.equal(await w.bal(provider), p0 + 2_500_000n);
  assert.equal((await w.state(id)).paid, 2_500_000n);

  // A voucher signed by ethers (a stock wallet) for 4 is redeemed by the CLI: 1.5 more.
  const v4 = await w.ethersVoucher(renter.wallet, id, 4_000_000n);
  const red4 = await w.cliJson(provider, ['channels', 'redeem', id, '4', v4]);
  await w.receiptOf(red4.tx_hash, provider);
  assert.equal(micros(red4.paid), 4_000_000n, `paid is everything paid so far (as in show): ${red4.paid}`);
  assert.equal(await w.bal(provider), p0 + 4_000_000n);
  assert.equal(micros((await w.cliJson(provider, ['channels', 'show', id])).paid), 4_000_000n);

  // The 2.5 voucher again: stale. Nothing moves.
  assertFails(await w.cli(provider, ['channels', 'redeem', id, '2.5', v25.signature]), /StaleVoucher/, 'a stale voucher');
  // Over the deposit (signed by ethers for 11): refused.
  const v11 = await w.ethersVoucher(renter.wallet, id, 11_000_000n);
  assertFails(await w.cli(provider, ['channels', 'redeem', id, '11', v11]), /OverClaim/, 'a voucher over the deposit');
  // A voucher signed by someone else (the provider itself): the contract's
  // BadSignature, or the CLI's own check naming the signer, before sending.
  const forged = await w.ethersVoucher(provider.wallet, id, 5_000_000n);
  assertFails(await w.cli(provider, ['channels', 'redeem', id, '5', forged]), /BadSignature|signer/, 'a voucher by the wrong key');
  assert.equal(await w.bal(provider), p0 + 4_000_000n, 'nothing paid by the failures');
  assert.equal((await w.state(id)).paid, 4_000_000n);

  // Only the provider closes.
  assertFails(await w.cli(renter, ['channels', 'close', id, '--as-paid']), /NotProvider/, 'close by the renter');
  assertFails(await w.cli(provider, ['channels', 'close', id]), /--as-paid/, 'a close without a voucher must say so');
  // A contract pinned by the user that the broker does not name is refused
  // before anything is signed or sent.
  const other = '0x000000000000000000000000000000000000dEaD';
  assertFails(await w.cli(renter, ['channels', '--contract', other, 'voucher', id, '1']), /pinned/, 'a pinned contract');
  assertFails(await w.cli(renter, ['channels', 'open', provider.address, '1'], { env: { GRID_CHANNELS_CONTRACT: other } }),
    /pinned/, 'a pinned contract through the environment');
  assert.equal((await w.cliJson(renter, ['channels', '--contract', w.channels.target, 'show', id])).open, true);
  assert.equal((await w.state(id)).deposit, DEPOSIT, 'still open');

  // The provider closes with a CLI voucher for 5: 1 more to the provider, 5 back to the renter.
  const v5 = await w.cliJson(renter, ['channels', 'voucher', id, '5']);
  const rBefore = await w.bal(renter);
  const closed = await w.cliJson(provider, ['channels', 'close', id, '5', v5.signature]);
  assert.equal(closed.channel, id);
  await w.receiptOf(closed.tx_hash, provider);
  assert.equal(await w.bal(renter), rBefore + DEPOSIT - 5_000_000n, 'the renter gets deposit - 5 back');
  assert.equal(await w.bal(renter), r0 - 5_000_000n);
  assert.equal(await w.bal(provider), p0 + 5_000_000n, 'the provider got 5 in all');
  assert.equal(await w.bal(channels.target), 0n, 'the contract holds nothing');
  assert.equal((await w.state(id)).renter, getAddress('0x' + '00'.repeat(20)), 'deleted on chain');

  const after = await w.cliJson(renter, ['channels', 'show', id]);
  assert.equal(after.channel, id);
  assert.equal(after.open, false);
  // A closed channel takes no more vouchers.
  const v6 = await w.ethersVoucher(renter.wallet, id, 6_000_000n);
  // (the contract's NoSuchChannel, or the CLI's own look at the channel first)
  assertFails(await w.cli(provider, ['channels', 'redeem', id, '6', v6]), /NoSuchChannel|not open/, 'redeem on a closed channel');

  await w.treasuryUnchanged();
  assert.equal(w.broker.proc.exitCode, null, 'the broker still runs');
});

// ---------------------------------------------------------------- the renter's close

test('start-close, finish-close refused inside the challenge window, accepted after it: the renter gets everything back', async (t) => {
  const w = await world(t);
  const { renter, provider } = w;
  const r0 = await w.bal(renter);
  const o = await w.open('10', 24);
  const id = o.channel;
  assert.equal(await w.bal(renter), r0 - DEPOSIT);

  // finish-close before start-close: nothing to finish.
  assertFails(await w.cli(renter, ['channels', 'finish-close', id]), /CloseNotStarted/, 'finish-close before start-close');
  // Only the renter starts a close.
  assertFails(await w.cli(provider, ['channels', 'start-close', id]), /NotRenter/, 'start-close by the provider');

  const sc = await w.cliJson(renter, ['channels', 'start-close', id]);
  assert.equal(sc.channel, id);
  const scReceipt = await w.receiptOf(sc.tx_hash, renter);
  const mined = (await w.anvil.provider.getBlock(scReceipt.blockNumber)).timestamp;
  const closeAt = unix(sc.close_at);
  assert.equal(closeAt, mined + WINDOW, 'close_at is the block time + the challenge window');
  assert.equal(Number((await w.state(id)).closeAt), closeAt);
  const shown = await w.cliJson(renter, ['channels', 'show', id]);
  assert.equal(shown.open, true);
  assert.equal(unix(shown.close_at), closeAt, 'show reports the pending close');

  assertFails(await w.cli(renter, ['channels', 'start-close', id]), /CloseAlreadyStarted/, 'a second start-close');
  assertFails(await w.cli(renter, ['channels', 'finish-close', id]), /ChallengeWindowOpen/, 'finish-close inside the window');
  assert.equal(await w.bal(renter), r0 - DEPOSIT, 'nothing refunded yet');

  await w.anvil.rpc('evm_increaseTime', [WINDOW + 1]);
  await w.anvil.rpc('evm_mine', []);
  const fc = await w.cliJson(renter, ['channels', 'finish-close', id]);
  assert.equal(fc.channel, id);
  await w.receiptOf(fc.tx_hash, renter);
  assert.equal(await w.bal(renter), r0, 'the renter gets everything back');
  assert.equal(await w.bal(w.channels.target), 0n);
  assert.equal((await w.cliJson(renter, ['channels', 'show', id])).open, false);

  await w.treasuryUnchanged();
});

// ---------------------------------------------------------------- refund at expiry

test('refund: refused before the expiry, pays back everything not redeemed after it', async (t) => {
  const w = await world(t);
  const { renter, provider } = w;
  const r0 = await w.bal(renter);
  const p0 = await w.bal(provider);
  const o = await w.open('10', 1);
  const id = o.channel;
  const expiry = unix(o.expiry);
  assert.equal(Number((await w.state(id)).expiry), expiry);

  // Some of it is redeemed first: the refund is the rest.
  const v = await w.cliJson(renter, ['channels', 'voucher', id, '1.25']);
  await w.cliJson(provider, ['channels', 'redeem', id, '1.25', v.signature]);
  assert.equal(await w.bal(provider), p0 + 1_250_000n);

  assertFails(await w.cli(renter, ['channels', 'refund', id]), /NotExpired/, 'refund before the expiry');
  assertFails(await w.cli(provider, ['channels', 'refund', id]), /NotRenter|NotExpired/, 'refund by the provider');
  assert.equal(await w.bal(renter), r0 - DEPOSIT);

  const head = (await w.anvil.provider.getBlock('latest')).timestamp;
  await w.anvil.rpc('evm_increaseTime', [Math.max(0, expiry - head) + 1]);
  await w.anvil.rpc('evm_mine', []);
  const rf = await w.cliJson(renter, ['channels', 'refund', id]);
  assert.equal(rf.channel, id);
  await w.receiptOf(rf.tx_hash, renter);
  assert.equal(await w.bal(renter), r0 - 1_250_000n, 'deposit - redeemed comes back');
  assert.equal(await w.bal(w.channels.target), 0n);
  assert.equal((await w.cliJson(renter, ['channels', 'show', id])).open, false);

  await w.treasuryUnchanged();
});

// ---------------------------------------------------------------- top-up

test('top-up: adds to the deposit and moves the expiry later; nothing to do and a provider top-up are refused', async (t) => {
  const w = await world(t);
  const { renter, provider } = w;
  const r0 = await w.bal(renter);
  const o = await w.open('10', 1);
  const id = o.channel;
  const before = await w.state(id);
  const head = (await w.anvil.provider.getBlock('latest')).timestamp;
  const up = await w.cliJson(renter, ['channels', 'top-up', id, '2.5', '--hours', '3']);
  assert.equal(up.channel, id);
  assert.equal(micros(up.deposit), 12_500_000n);
  await w.receiptOf(up.tx_hash, renter);
  const after = await w.state(id);
  assert.equal(after.deposit, 12_500_000n);
  assert.ok(Number(after.expiry) >= head + 3 * 3600 && Number(after.expiry) <= head + 3 * 3600 + 60, 'expiry ~3 h ahead');
  assert.ok(Number(after.expiry) > Number(before.expiry));
  assert.equal(await w.bal(renter), r0 - 12_500_000n);
  // Only the expiry: amount 0 with --hours.
  const later = await w.cliJson(renter, ['channels', 'top-up', id, '0', '--hours', '5']);
  assert.equal(micros(later.deposit), 12_500_000n);
  assert.ok(Number((await w.state(id)).expiry) >= head + 5 * 3600);
  assertFails(await w.cli(renter, ['channels', 'top-up', id, '0']), /nothing to do/, 'amount 0 and no --hours');
  assertFails(await w.cli(provider, ['channels', 'top-up', id, '1']), /NotRenter|ERC20|insufficient|holds/i, 'top-up by the provider');
  assert.equal((await w.state(id)).deposit, 12_500_000n);
  await w.treasuryUnchanged();
});

// ---------------------------------------------------------------- bad input

test('bad input: malformed ids, amounts and signatures fail cleanly; unknown ids show as not open', async (t) => {
  const w = await world(t);
  const { renter, provider } = w;
  const o = await w.open('10', 2);
  const id = o.channel;
  const good = (await w.cliJson(renter, ['channels', 'voucher', id, '1'])).signature;
  const r0 = await w.bal(renter);
  const p0 = await w.bal(provider);

  // Malformed channel ids, everywhere an id is taken.
  for (const bad of ['0x1234', 'nothex', '0x' + 'zz'.repeat(32), '0x' + '11'.repeat(33)]) {
    assertFails(await w.cli(renter, ['channels', 'show', bad]), /channel|id/i, `show ${JSON.stringify(bad)}`);
    assertFails(await w.cli(renter, ['channels', 'voucher', bad, '1']), /channel|id/i, `voucher ${JSON.stringify(bad)}`);
    assertFails(await w.cli(provider, ['channels', 'redeem', bad, '1', good]), /channel|id/i, `redeem ${JSON.stringify(bad)}`);
  }
  assertFails(await w.cli(renter, ['channels', 'refund', '0x1234']), /channel|id/i, 'refund with a short id');
  assertFails(await w.cli(renter, ['channels', 'start-close', '0x1234']), /channel|id/i, 'start-close with a short id');
  assertFails(await w.cli(renter, ['channels', 'finish-close', '0x1234']), /channel|id/i, 'finish-close with a short id');
  assertFails(await w.cli(provider, ['channels', 'close', '0x1234']), /channel|id/i, 'close with a short id');

  // Malformed amounts.
  for (const bad of ['abc', '1.0000001', '1e6', '0x10', '1,5']) {
    assertFails(await w.cli(renter, ['channels', 'voucher', id, bad]), /amount/i, `voucher amount ${JSON.stringify(bad)}`);
  }
  // "-1" may be taken for an option by the argument parser: any clean failure will do.
  assertFails(await w.cli(renter, ['channels', 'voucher', id, '-1']), null, 'voucher amount -1');
  assertFails(await w.cli(provider, ['channels', 'redeem', id, 'abc', good]), /amount/i, 'redeem amount abc');
  assertFails(await w.cli(renter, ['channels', 'open', provider.address, 'abc']), /amount/i, 'open amount abc');
  assertFails(await w.cli(renter, ['channels', 'open', '0x1234', '1']), /provider|address/i, 'open to a malformed provider');

  // Signatures: 64 bytes, not hex, 66 bytes.
  const sig64 = good.slice(0, 2 + 128);
  assertFails(await w.cli(provider, ['channels', 'redeem', id, '1', sig64]), /signature|BadSignatureLength/i, 'a 64-byte signature');
  assertFails(await w.cli(provider, ['channels', 'redeem', id, '1', 'nothex']), /signature/i, 'a signature that is not hex');
  assertFails(await w.cli(provider, ['channels', 'redeem', id, '1', good + '00']), /signature|BadSignatureLength/i, 'a 66-byte signature');
  assertFails(await w.cli(provider, ['channels', 'close', id, '1', sig64]), /signature|BadSignatureLength/i, 'close with a 64-byte signature');
  // An amount without a signature to close with.
  assertFails(await w.cli(provider, ['channels', 'close', id, '1']), null, 'close with an amount and no signature');

  // Missing arguments.
  assertFails(await w.cli(renter, ['channels', 'voucher', id]), null, 'voucher without an amount');
  assertFails(await w.cli(provider, ['channels', 'redeem', id, '1']), null, 'redeem without a signature');

  // A well-formed id of no channel: show says it is not open.
  const none = keccakText('no such channel');
  const shown = await w.cliJson(renter, ['channels', 'show', none]);
  assert.equal(shown.channel, none);
  assert.equal(shown.open, false);
  assertFails(await w.cli(renter, ['channels', 'refund', none]), /NoSuchChannel/, 'refund of no channel');

  // Nothing moved, the channel is intact, the broker still runs.
  assert.equal(await w.bal(renter), r0);
  assert.equal(await w.bal(provider), p0);
  const s = await w.state(id);
  assert.equal(s.deposit, DEPOSIT);
  assert.equal(s.paid, 0n);
  assert.equal(w.broker.proc.exitCode, null, 'the broker still runs');
  assert.equal((await api(w.broker.url, 'GET', '/healthz')).status, 200);
  await w.treasuryUnchanged();
});
