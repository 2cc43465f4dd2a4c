// contracts/PaymentChannels.sol on a real anvil (issue 6): every path of the
// contract — open, topUp, redeem, close, refund, startClose/finishClose —
// and every way a voucher must fail: replayed, of another channel, of another
// deployment, of another chain id, high s, bad v or length, over the deposit,
// signed by the wrong key. Vouchers are signed with ethers' signTypedData (a
// stock wallet), and one committed voucher comes from our C++ signer (see
// below). Gas of open, topUp, redeem and close is printed as diagnostics.
//
// One anvil for the whole file: the token, the contract and balances are set
// up once, each test starts from that state (evm_snapshot before, evm_revert
// after), so tests are independent and fast.
//
// The C++ voucher: tests/vectors/voucher_vectors.json holds a voucher for the
// channel the renter opens first on a fresh chain set up as here (token and
// contract deployed by dev account 0 at nonces 0 and 1). Signing is
// deterministic (RFC 6979, low s) in ethers and in our C++ alike, so the
// voucher's signature is byte for byte what crypto::SignVoucher produces for
// it, and src/crypto/voucher_test.cc asserts that equality. Redeeming the
// committed signature here therefore shows a C++-signed voucher accepted by
// the contract, without a C++ binary in this test. Regenerate the vector with
// `node tests/vectors/voucher_vectors.mjs > tests/vectors/voucher_vectors.json`.
import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import {
  AbiCoder, Contract, ContractFactory, Signature, TypedDataEncoder, Wallet, getAddress, getBytes, hexlify, keccak256,
  toBeHex, zeroPadValue, concat, verifyTypedData, id as keccakText, MaxUint256,
} from 'ethers';
import { startAnvil, deployToken, mintTo, balanceOf } from './chain.mjs';
import { loadArtifact } from '../../scripts/compile-contracts.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const VECTORS = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests/vectors/voucher_vectors.json'), 'utf8'));

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n; // secp256k1 order
const WINDOW = 3600;
const DEPOSIT = 10_000_000n; // 10 tokens (6 decimals)
const TYPES = { Voucher: [{ name: 'channelId', type: 'bytes32' }, { name: 'cumulativeAmount', type: 'uint256' }] };
const abi = AbiCoder.defaultAbiCoder();

// ---------------------------------------------------------------- the world

let anvil, token, channels, deployer, renter, provider, stranger, renter2, snap;
const cleanups = [];
const gas = {}; // name -> gasUsed, printed by the last test

before(async () => {
  anvil = await startAnvil({ after: (fn) => cleanups.push(fn) });
  [deployer, renter, provider, stranger, renter2] = anvil.accounts;
  token = await deployToken(anvil); // deployer nonce 0
  channels = await deployChannels(); // deployer nonce 1
  for (const w of [renter, renter2]) {
    await mintTo(token, w.address, 1_000_000_000n);
    await (await token.connect(w).approve(channels.target, MaxUint256)).wait();
  }
  snap = await anvil.snapshot();
});
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});
// Every test starts from the state `before` set up.
afterEach(async () => {
  assert.equal(await anvil.revert(snap), true, 'snapshot reverted');
  snap = await anvil.snapshot();
});
beforeEach(() => {});

async function deployChannels(from = deployer) {
  const { abi: a, bytecode } = loadArtifact('PaymentChannels');
  const c = await new ContractFactory(a, bytecode, from).deploy();
  await c.waitForDeployment();
  return c;
}

const now = async () => (await anvil.provider.getBlock('latest')).timestamp;
const domainOf = (contract = channels, chainId = anvil.chainId) => ({
  name: 'GridmarketChannels', version: '1', chainId, verifyingContract: contract.target ?? contract,
});
// An ethers wallet's voucher (65 bytes hex, low s, v 27/28).
const sign = (wallet, id, cumulative, domain = domainOf()) =>
  wallet.signTypedData(domain, TYPES, { channelId: id, cumulativeAmount: BigInt(cumulative) });

// Sends a transaction and returns its receipt (fails the test on revert).
async function send(promise) {
  const tx = await promise;
  const r = await tx.wait();
  assert.equal(r.status, 1);
  return r;
}

// Expects a revert with the contract's custom error `name`.
async function reverts(promise, name, contract = channels) {
  await assert.rejects(promise, (e) => {
    const data = e.data ?? e.info?.error?.data ?? e.error?.data;
    const got = e.revert?.name ?? (data ? contract.interface.parseError(data)?.name : undefined);
    assert.equal(got, name, `expected ${name}, got ${got ?? e.shortMessage ?? e.message}`);
    return true;
  });
}

// Expects a transaction sent with a fixed gasLimit (so it is mined even
// though it fails, in a block whose timestamp the test chose) to fail with
// `name`: the receipt says it failed, and replaying the call on that block
// (its timestamp, the state around it) gives the error.
async function revertsMined(promise, name) {
  const tx = await promise;
  const receipt = await tx.wait().then(
    () => assert.fail(`expected ${name}, the transaction succeeded`),
    (e) => e.receipt,
  );
  assert.equal(receipt?.status, 0, 'mined and failed');
  await reverts(anvil.provider.call({ from: tx.from, to: tx.to, data: tx.data, blockTag: receipt.blockNumber }), name);
}

// Opens a channel; returns {id, receipt}.
async function open({ from = renter, to = provider, tok = token, amount = DEPOSIT, expiryIn = 86400, signer = from.address, on = channels } = {}) {
  const expiry = (await now()) + expiryIn;
  const r = await send(on.connect(from).open(to.address ?? to, tok.target ?? tok, amount, expiry, signer.address ?? signer));
  const ev = r.logs.map((l) => { try { return on.interface.parseLog(l); } catch { return null; } }).find((l) => l?.name === 'Opened');
  assert.ok(ev, 'Opened event');
  return { id: ev.args.id, receipt: r, expiry, event: ev };
}

const state = async (id) => {
  const c = await channels.channels(id);
  return { renter: c.renter, expiry: c.expiry, closeAt: c.closeAt, provider: c.provider, deposit: c.deposit, token: c.token, paid: c.paid, signer: c.signer };
};
const ZERO = '0x0000000000000000000000000000000000000000';
const bal = (who) => balanceOf(token, who.address ?? who);

// ---------------------------------------------------------------- the domain

test('eip712Domain (EIP-5267), domain separator, type hash and digest match ethers', async () => {
  const d = await channels.eip712Domain();
  assert.equal(d.fields, '0x0f');
  assert.equal(d.name, 'GridmarketChannels');
  assert.equal(d.version, '1');
  assert.equal(d.chainId, 31337n);
  assert.equal(d.verifyingContract, channels.target);
  assert.equal(d.salt, '0x' + '00'.repeat(32));
  assert.deepEqual([...d.extensions], []);
  // A wallet that only knows the contract builds the same typed data from it.
  const domain = { name: d.name, version: d.version, chainId: d.chainId, verifyingContract: d.verifyingContract };
  assert.equal(await channels.domainSeparator(), TypedDataEncoder.hashDomain(domain));
  assert.equal(await channels.VOUCHER_TYPEHASH(), keccakText('Voucher(bytes32 channelId,uint256 cumulativeAmount)'));
  assert.equal(await channels.VOUCHER_TYPEHASH(), VECTORS.voucher_type_hash);
  assert.equal(await channels.CHALLENGE_WINDOW(), BigInt(WINDOW));
  for (const [id, cum] of [[keccakText('x'), 0n], ['0x' + 'ff'.repeat(32), 123456789n], [keccakText('y'), MaxUint256]]) {
    assert.equal(await channels.voucherDigest(id, cum), TypedDataEncoder.hash(domain, TYPES, { channelId: id, cumulativeAmount: cum }));
  }
  // The committed vector's contract is this deployment.
  assert.equal(channels.target, VECTORS.anvil.contract);
  assert.equal(token.target, VECTORS.anvil.token);
  const v = VECTORS.cases[0];
  assert.equal(await channels.domainSeparator(), v.domain_separator);
  assert.equal(await channels.voucherDigest(v.channel_id, BigInt(v.cumulative)), v.digest);
});

// ---------------------------------------------------------------- open

test('open: predictable unique ids, the event, packed state, the deposit pulled', async (t) => {
  const predicted = await channels.nextChannelId(renter.address, provider.address, token.target);
  const expectId = (nonce) => keccak256(abi.encode(['address', 'address', 'address', 'uint256', 'uint256', 'address'],
    [renter.address, provider.address, token.target, nonce, 31337, channels.target]));
  assert.equal(predicted, expectId(1)); // the contract-wide nonce starts at 1
  const before = await bal(renter);
  const a = await open();
  gas['open (first channel)'] = a.receipt.gasUsed;
  assert.equal(a.id, predicted);
  assert.equal(a.event.args.renter, renter.address);
  assert.equal(a.event.args.provider, provider.address);
  assert.equal(a.event.args.token, token.target);
  assert.equal(a.event.args.signer, renter.address);
  assert.equal(a.event.args.deposit, DEPOSIT);
  assert.equal(a.event.args.expiry, BigInt(a.expiry));
  assert.deepEqual(await state(a.id), {
    renter: renter.address, expiry: BigInt(a.expiry), closeAt: 0n, provider: provider.address,
    deposit: DEPOSIT, token: token.target, paid: 0n, signer: ZERO, // the renter signs: slot 3 stays empty
  });
  assert.equal(await channels.signerOf(a.id), renter.address);
  assert.equal(await bal(renter), before - DEPOSIT);
  assert.equal(await bal(channels.target), DEPOSIT);
  assert.equal(await channels.nextNonce(), 2n);

  // Same renter, provider and token again: a new id (the nonce), both live.
  const b = await open();
  gas['open (a later channel)'] = b.receipt.gasUsed;
  assert.equal(b.id, expectId(2));
  assert.notEqual(a.id, b.id);
  // Another renter's channel to the same provider: another id.
  const c = await open({ from: renter2 });
  assert.notEqual(c.id, a.id);
  assert.equal(await channels.nextNonce(), 4n);
  assert.equal(await channels.signerOf(keccakText('nope')), ZERO);
  assert.equal(await bal(channels.target), 3n * DEPOSIT);
  t.diagnostic(`open gas: first ${a.receipt.gasUsed}, later ${b.receipt.gasUsed}`);
});

test('open: bad arguments revert with their errors and move nothing', async () => {
  const t0 = await now();
  const c = channels.connect(renter);
  await reverts(c.open(ZERO, token.target, 1, t0 + 100, renter.address), 'ZeroAddress');
  await reverts(c.open(provider.address, ZERO, 1, t0 + 100, renter.address), 'ZeroAddress');
  await reverts(c.open(provider.address, token.target, 1, t0 + 100, ZERO), 'ZeroAddress');
  await reverts(c.open(provider.address, token.target, 0, t0 + 100, renter.address), 'ZeroAmount');
  await reverts(c.open(provider.address, token.target, 2n ** 96n, t0 + 100, renter.address), 'AmountTooLarge');
  await reverts(c.open(provider.address, token.target, 1, t0, renter.address), 'BadExpiry');
  await reverts(c.open(provider.address, token.target, 1, 2n ** 48n, renter.address), 'BadExpiry');
  // No allowance / not enough balance: the token refuses, we say TransferFailed.
  await reverts(channels.connect(stranger).open(provider.address, token.target, 1, t0 + 100, stranger.address), 'TransferFailed');
  await reverts(c.open(provider.address, token.target, 2n ** 95n, t0 + 100, renter.address), 'TransferFailed');
  // A "token" without code.
  await reverts(c.open(provider.address, stranger.address, 1, t0 + 100, renter.address), 'TransferFailed');
  assert.equal(await channels.nextNonce(), 1n);
  assert.equal(await bal(channels.target), 0n);
});

// ---------------------------------------------------------------- redeem

test('redeem: anyone submits, the provider is paid the difference, replays and over-claims fail', async (t) => {
  const { id } = await open();
  const p0 = await bal(provider);
  const v1 = await sign(renter, id, 1_000_000n);
  // A stranger (a watchtower, the broker) submits; the provider is paid.
  const r1 = await send(channels.connect(stranger).redeem(id, 1_000_000n, v1));
  gas['redeem (first: provider balance 0 -> non-zero)'] = r1.gasUsed;
  assert.equal(await bal(provider), p0 + 1_000_000n);
  assert.equal(await bal(stranger), 0n);
  const ev = channels.interface.parseLog(r1.logs.find((l) => l.address === channels.target));
  assert.deepEqual([ev.name, ev.args.id, ev.args.cumulative, ev.args.payout], ['Redeemed', id, 1_000_000n, 1_000_000n]);
  assert.equal((await state(id)).paid, 1_000_000n);

  // The same voucher again, and an older (lower) one: nothing to pay.
  await reverts(channels.connect(provider).redeem(id, 1_000_000n, v1), 'StaleVoucher');
  const v05 = await sign(renter, id, 500_000n);
  await reverts(channels.connect(provider).redeem(id, 500_000n, v05), 'StaleVoucher');
  // A signature for one amount does not pay another.
  await reverts(channels.connect(provider).redeem(id, 2_000_000n, v1), 'BadSignature');

  const v3 = await sign(renter, id, 3_000_000n);
  const r3 = await send(channels.connect(provider).redeem(id, 3_000_000n, v3));
  gas['redeem (later)'] = r3.gasUsed;
  assert.equal(await bal(provider), p0 + 3_000_000n);
  await reverts(channels.connect(provider).redeem(id, 3_000_000n, v3), 'StaleVoucher');

  // Over the deposit: refused even though the renter signed it.
  const over = await sign(renter, id, DEPOSIT + 1n);
  await reverts(channels.connect(provider).redeem(id, DEPOSIT + 1n, over), 'OverClaim');
  // Exactly the deposit: fine; the channel stays open with nothing left.
  const all = await sign(renter, id, DEPOSIT);
  await send(channels.connect(provider).redeem(id, DEPOSIT, all));
  assert.equal(await bal(provider), p0 + DEPOSIT);
  assert.equal(await bal(channels.target), 0n);
  assert.equal((await state(id)).renter, renter.address, 'still open');
  t.diagnostic(`redeem gas: first ${r1.gasUsed}, later ${r3.gasUsed}`);
});

test('redeem: a voucher of another channel, of another deployment, of another chain id, of the wrong key', async () => {
  const { id: a } = await open();
  const { id: b } = await open(); // same renter, provider, token, signer
  const pb = await sign(renter, b, 1_000_000n);
  await reverts(channels.connect(provider).redeem(a, 1_000_000n, pb), 'BadSignature');
  await send(channels.connect(provider).redeem(b, 1_000_000n, pb)); // where it belongs

  // Another deployment of the same code: a voucher bound to it does not pay here.
  const other = await deployChannels();
  const forOther = await sign(renter, a, 1_000_000n, domainOf(other));
  await reverts(channels.connect(provider).redeem(a, 1_000_000n, forOther), 'BadSignature');
  // ...and the same channel parameters there give another id.
  assert.notEqual(await other.nextChannelId(renter.address, provider.address, token.target),
    await channels.nextChannelId(renter.address, provider.address, token.target));

  // Another chain id (1, mainnet; and 31338): refused.
  for (const chainId of [1, 31338]) {
    const foreign = await sign(renter, a, 1_000_000n, domainOf(channels, chainId));
    await reverts(channels.connect(provider).redeem(a, 1_000_000n, foreign), 'BadSignature');
  }
  // The provider's own signature, a stranger's: refused.
  await reverts(channels.connect(provider).redeem(a, 1_000_000n, await sign(provider, a, 1_000_000n)), 'BadSignature');
  await reverts(channels.connect(provider).redeem(a, 1_000_000n, await sign(stranger, a, 1_000_000n)), 'BadSignature');
  assert.equal((await state(a)).paid, 0n);
  // An unknown channel.
  await reverts(channels.connect(provider).redeem(keccakText('nope'), 1n, pb), 'NoSuchChannel');
});

test('signatures: high s (malleated), v not 27/28, wrong length, garbage', async () => {
  const { id } = await open();
  const good = await sign(renter, id, 1_000_000n);
  const s = Signature.from(good);
  const highS = toBeHex(N - BigInt(s.s), 32);
  const flippedV = s.v === 27 ? 28 : 27;
  const malleated = concat([s.r, highS, toBeHex(flippedV, 1)]);
  // The malleated signature is otherwise valid: the ecrecover precompile
  // recovers the renter from it.
  const digest = await channels.voucherDigest(id, 1_000_000n);
  const rec = await anvil.provider.call({
    to: '0x0000000000000000000000000000000000000001',
    data: abi.encode(['bytes32', 'uint8', 'bytes32', 'bytes32'], [digest, flippedV, s.r, highS]),
  });
  assert.equal(getAddress('0x' + rec.slice(26)), renter.address);
  await reverts(channels.connect(provider).redeem(id, 1_000_000n, malleated), 'HighS');

  const bytes = getBytes(good);
  for (const v of [0, 1, 29, 255]) {
    const bad = Uint8Array.from(bytes);
    bad[64] = v;
    await reverts(channels.connect(provider).redeem(id, 1_000_000n, bad), 'BadSignatureV');
  }
  await reverts(channels.connect(provider).redeem(id, 1_000_000n, bytes.slice(0, 64)), 'BadSignatureLength');
  await reverts(channels.connect(provider).redeem(id, 1_000_000n, concat([good, '0x00'])), 'BadSignatureLength');
  await reverts(channels.connect(provider).redeem(id, 1_000_000n, '0x'), 'BadSignatureLength');
  // r = 0, or r with no point: ecrecover gives nothing.
  await reverts(channels.connect(provider).redeem(id, 1_000_000n, concat([zeroPadValue('0x', 32), s.s, toBeHex(s.v, 1)])), 'BadSignature');
  await reverts(channels.connect(provider).redeem(id, 1_000_000n, concat(['0x' + 'ff'.repeat(32), s.s, toBeHex(s.v, 1)])), 'BadSignature');
  // The good one still pays.
  await send(channels.connect(provider).redeem(id, 1_000_000n, good));
  assert.equal((await state(id)).paid, 1_000_000n);
});

test('session key: vouchers of a key holding no funds pay, the renter\'s own do not', async () => {
  const session = Wallet.createRandom();
  assert.equal(await anvil.provider.getBalance(session.address), 0n);
  const { id } = await open({ signer: session });
  assert.equal((await state(id)).signer, session.address);
  assert.equal(await channels.signerOf(id), session.address);
  await reverts(channels.connect(provider).redeem(id, 1_000_000n, await sign(renter, id, 1_000_000n)), 'BadSignature');
  const p0 = await bal(provider);
  await send(channels.connect(provider).redeem(id, 1_000_000n, await sign(session, id, 1_000_000n)));
  assert.equal(await bal(provider), p0 + 1_000_000n);
  // The session key can sign, never spend: it sends no transaction, and the
  // renter alone can top up or refund.
  await reverts(channels.connect(provider).topUp(id, 0, (await state(id)).expiry), 'NotRenter');
});

test('ethers signTypedData vouchers verify in ethers and on chain; the committed C++ voucher pays', async () => {
  // The vector's channel: the renter's first channel on this fresh chain.
  const A = VECTORS.anvil;
  assert.equal(renter.address, A.renter);
  assert.equal(provider.address, A.provider);
  const v = VECTORS.cases[0];
  const { id } = await open({ signer: VECTORS.signer, amount: BigInt(A.deposit) });
  assert.equal(id, v.channel_id);
  // The committed signature (C++ SignVoucher == ethers, see the header) pays.
  const value = { channelId: id, cumulativeAmount: BigInt(v.cumulative) };
  assert.equal(verifyTypedData(domainOf(), TYPES, value, v.signature), VECTORS.signer);
  const sessionWallet = new Wallet(VECTORS.key);
  assert.equal(await sessionWallet.signTypedData(domainOf(), TYPES, value), v.signature, 'deterministic signing');
  const p0 = await bal(provider);
  await send(channels.connect(stranger).redeem(id, BigInt(v.cumulative), v.signature));
  assert.equal(await bal(provider), p0 + BigInt(v.cumulative));
  // The wire form carries the same fields.
  assert.deepEqual(JSON.parse(v.wire), { channel_id: id, cumulative: v.cumulative, signature: v.signature });
});

// ---------------------------------------------------------------- topUp

test('topUp: renter only, adds to the deposit, expiry only grows, not while closing', async (t) => {
  const { id, expiry } = await open();
  const before = await bal(renter);
  const r = await send(channels.connect(renter).topUp(id, 5_000_000n, expiry + 3600));
  gas['topUp'] = r.gasUsed;
  let s = await state(id);
  assert.equal(s.deposit, DEPOSIT + 5_000_000n);
  assert.equal(s.expiry, BigInt(expiry + 3600));
  assert.equal(await bal(renter), before - 5_000_000n);
  const ev = channels.interface.parseLog(r.logs.find((l) => l.address === channels.target));
  assert.deepEqual([ev.name, ev.args.deposit, ev.args.expiry], ['ToppedUp', DEPOSIT + 5_000_000n, BigInt(expiry + 3600)]);

  // A voucher above the old deposit pays now.
  const v = await sign(renter, id, 12_000_000n);
  await send(channels.connect(provider).redeem(id, 12_000_000n, v));

  // Expiry only: amount 0, same or later expiry.
  await send(channels.connect(renter).topUp(id, 0, expiry + 3600));
  await send(channels.connect(renter).topUp(id, 0, expiry + 7200));
  assert.equal((await state(id)).deposit, DEPOSIT + 5_000_000n);
  await reverts(channels.connect(renter).topUp(id, 1, expiry + 7199), 'BadExpiry');
  await reverts(channels.connect(renter).topUp(id, 1, 2n ** 48n), 'BadExpiry');
  await reverts(channels.connect(renter).topUp(id, 2n ** 96n, expiry + 7200), 'AmountTooLarge');
  // Not the renter: not the provider, not the signer, not a stranger.
  await reverts(channels.connect(provider).topUp(id, 1, expiry + 7200), 'NotRenter');
  await reverts(channels.connect(stranger).topUp(id, 1, expiry + 7200), 'NotRenter');
  await reverts(channels.connect(renter).topUp(keccakText('nope'), 1, expiry + 7200), 'NoSuchChannel');
  // While a close is pending the channel takes no more money.
  await send(channels.connect(renter).startClose(id));
  await reverts(channels.connect(renter).topUp(id, 1, expiry + 7200), 'ClosePending');
  s = await state(id);
  assert.equal(s.deposit, DEPOSIT + 5_000_000n);
  t.diagnostic(`topUp gas: ${r.gasUsed}`);
});

// ---------------------------------------------------------------- close

test('close: the provider is paid the difference, the renter gets the rest, the channel is gone', async (t) => {
  const { id } = await open();
  await send(channels.connect(provider).redeem(id, 1_000_000n, await sign(renter, id, 1_000_000n)));
  const r0 = await bal(renter);
  const p0 = await bal(provider);
  const v = await sign(renter, id, 4_000_000n);
  // Only the provider closes: a renter (or anyone) holding an older voucher
  // could otherwise end the channel below what the provider is owed.
  await reverts(channels.connect(renter).close(id, 4_000_000n, v), 'NotProvider');
  await reverts(channels.connect(stranger).close(id, 4_000_000n, v), 'NotProvider');
  await reverts(channels.connect(provider).close(id, DEPOSIT + 1n, await sign(renter, id, DEPOSIT + 1n)), 'OverClaim');
  await reverts(channels.connect(provider).close(id, 1_000_000n, await sign(renter, id, 1_000_000n)), 'StaleVoucher');
  const r = await send(channels.connect(provider).close(id, 4_000_000n, v));
  gas['close (voucher; provider and renter paid)'] = r.gasUsed;
  assert.equal(await bal(provider), p0 + 3_000_000n);
  assert.equal(await bal(renter), r0 + DEPOSIT - 4_000_000n);
  assert.equal(await bal(channels.target), 0n);
  const ev = channels.interface.parseLog(r.logs.find((l) => l.address === channels.target));
  assert.deepEqual([ev.name, ev.args.id, ev.args.paid, ev.args.refund], ['Closed', id, 4_000_000n, DEPOSIT - 4_000_000n]);
  assert.deepEqual(await state(id), {
    renter: ZERO, expiry: 0n, closeAt: 0n, provider: ZERO, deposit: 0n, token: ZERO, paid: 0n, signer: ZERO,
  });
  // Gone: no voucher pays any more, nothing else works on it.
  const later = await sign(renter, id, 5_000_000n);
  await reverts(channels.connect(provider).redeem(id, 5_000_000n, later), 'NoSuchChannel');
  await reverts(channels.connect(provider).close(id, 5_000_000n, later), 'NoSuchChannel');
  await reverts(channels.connect(renter).refund(id), 'NoSuchChannel');
  await reverts(channels.connect(renter).startClose(id), 'NoSuchChannel');
  await reverts(channels.connect(renter).finishClose(id), 'NoSuchChannel');
  // The renter's next channel to the same provider has a new id: old
  // vouchers never pay on it.
  const { id: next } = await open();
  assert.notEqual(next, id);
  await reverts(channels.connect(provider).redeem(next, 4_000_000n, v), 'BadSignature');
  t.diagnostic(`close gas: ${r.gasUsed}`);
});

test('close: without a new voucher (empty signature), and with the whole deposit claimed', async () => {
  const { id } = await open();
  await send(channels.connect(provider).redeem(id, 2_000_000n, await sign(renter, id, 2_000_000n)));
  const r0 = await bal(renter);
  await reverts(channels.connect(provider).close(id, 3_000_000n, '0x'), 'BadSignatureLength');
  await send(channels.connect(provider).close(id, 0, '0x'));
  assert.equal(await bal(renter), r0 + DEPOSIT - 2_000_000n);
  assert.equal((await state(id)).renter, ZERO);

  const { id: b } = await open();
  const p0 = await bal(provider);
  const r1 = await bal(renter);
  await send(channels.connect(provider).close(b, DEPOSIT, await sign(renter, b, DEPOSIT)));
  assert.equal(await bal(provider), p0 + DEPOSIT);
  assert.equal(await bal(renter), r1, 'nothing to refund');
});

// ---------------------------------------------------------------- refund

test('refund: renter only, only from the expiry on, pays back what was not redeemed', async () => {
  const { id, expiry } = await open({ expiryIn: 1000 });
  await send(channels.connect(provider).redeem(id, 1_500_000n, await sign(renter, id, 1_500_000n)));
  await reverts(channels.connect(renter).refund(id), 'NotExpired');
  await reverts(channels.connect(provider).refund(id), 'NotRenter');
  await reverts(channels.connect(stranger).refund(id), 'NotRenter');
  // One second before the expiry: still not.
  await anvil.rpc('evm_setNextBlockTimestamp', [expiry - 1]);
  await revertsMined(channels.connect(renter).refund(id, { gasLimit: 200_000 }), 'NotExpired');
  // From the expiry on: the rest goes back, the channel is gone.
  const r0 = await bal(renter);
  await anvil.rpc('evm_setNextBlockTimestamp', [expiry]);
  const r = await send(channels.connect(renter).refund(id, { gasLimit: 200_000 }));
  gas['refund'] = r.gasUsed;
  assert.equal(await bal(renter), r0 + DEPOSIT - 1_500_000n);
  assert.equal(await bal(channels.target), 0n);
  assert.equal((await state(id)).renter, ZERO);
  await reverts(channels.connect(provider).redeem(id, 2_000_000n, await sign(renter, id, 2_000_000n)), 'NoSuchChannel');
});

test('after the expiry, until the renter refunds, the provider can still redeem what it was signed', async () => {
  const { id } = await open({ expiryIn: 100 });
  await anvil.increaseTime(200);
  const p0 = await bal(provider);
  await send(channels.connect(provider).redeem(id, 1_000_000n, await sign(renter, id, 1_000_000n)));
  assert.equal(await bal(provider), p0 + 1_000_000n);
  const r0 = await bal(renter);
  await send(channels.connect(renter).refund(id));
  assert.equal(await bal(renter), r0 + DEPOSIT - 1_000_000n);
});

// ---------------------------------------------------------------- the challenge window

test('startClose / finishClose: the provider redeems during the window, the renter gets the rest after it', async () => {
  const { id } = await open({ expiryIn: 30 * 86400 });
  await reverts(channels.connect(renter).finishClose(id), 'CloseNotStarted');
  await reverts(channels.connect(provider).startClose(id), 'NotRenter');
  await reverts(channels.connect(stranger).startClose(id), 'NotRenter');
  const r = await send(channels.connect(renter).startClose(id));
  gas['startClose'] = r.gasUsed;
  const t0 = (await anvil.provider.getBlock(r.blockNumber)).timestamp;
  const closeAt = t0 + WINDOW;
  assert.equal((await state(id)).closeAt, BigInt(closeAt));
  const ev = channels.interface.parseLog(r.logs[0]);
  assert.deepEqual([ev.name, ev.args.closeAt], ['CloseStarted', BigInt(closeAt)]);
  await reverts(channels.connect(renter).startClose(id), 'CloseAlreadyStarted');
  await reverts(channels.connect(renter).finishClose(id), 'ChallengeWindowOpen');

  // Within the window the provider (or anyone, with its voucher) redeems.
  await anvil.increaseTime(WINDOW / 2);
  const p0 = await bal(provider);
  await send(channels.connect(stranger).redeem(id, 2_500_000n, await sign(renter, id, 2_500_000n)));
  assert.equal(await bal(provider), p0 + 2_500_000n);
  await reverts(channels.connect(provider).finishClose(id), 'NotRenter');
  // One second before the end: still open.
  await anvil.rpc('evm_setNextBlockTimestamp', [closeAt - 1]);
  await revertsMined(channels.connect(renter).finishClose(id, { gasLimit: 200_000 }), 'ChallengeWindowOpen');
  // At the end: the renter gets everything not redeemed.
  const r0 = await bal(renter);
  await anvil.rpc('evm_setNextBlockTimestamp', [closeAt]);
  const f = await send(channels.connect(renter).finishClose(id, { gasLimit: 200_000 }));
  gas['finishClose'] = f.gasUsed;
  assert.equal(await bal(renter), r0 + DEPOSIT - 2_500_000n);
  assert.equal(await bal(channels.target), 0n);
  assert.equal((await state(id)).renter, ZERO);
  const closed = channels.interface.parseLog(f.logs.find((l) => l.address === channels.target));
  assert.deepEqual([closed.name, closed.args.paid, closed.args.refund], ['Closed', 2_500_000n, DEPOSIT - 2_500_000n]);
  await reverts(channels.connect(provider).redeem(id, 3_000_000n, await sign(renter, id, 3_000_000n)), 'NoSuchChannel');
});

test('challenge window: the provider may also close with its last voucher; refund at expiry still works', async () => {
  const { id } = await open();
  await send(channels.connect(renter).startClose(id));
  const p0 = await bal(provider);
  const r0 = await bal(renter);
  await send(channels.connect(provider).close(id, 6_000_000n, await sign(renter, id, 6_000_000n)));
  assert.equal(await bal(provider), p0 + 6_000_000n);
  assert.equal(await bal(renter), r0 + DEPOSIT - 6_000_000n);
  await reverts(channels.connect(renter).finishClose(id), 'NoSuchChannel');

  // A channel whose expiry comes before the window's end: refund at expiry.
  const { id: b, expiry } = await open({ expiryIn: 600 });
  await send(channels.connect(renter).startClose(b));
  await anvil.rpc('evm_setNextBlockTimestamp', [expiry]);
  const r1 = await bal(renter);
  await send(channels.connect(renter).refund(b, { gasLimit: 200_000 }));
  assert.equal(await bal(renter), r1 + DEPOSIT);
});

// ---------------------------------------------------------------- odd tokens

// Tokens that are not TestToken: one that returns nothing from transfer and
// transferFrom (like USDT), one that can return false, take a fee or call
// back into a contract from inside a transfer. Compiled here with solc-js:
// they are test doubles, not contracts of the project.
const ODD_TOKEN_SOURCE = `
pragma solidity 0.8.37;
contract OddToken {
  mapping(address => uint256) public balanceOf;
  mapping(address => mapping(address => uint256)) public allowance;
  bool public returnFalse;
  uint256 public fee;
  address public hookTarget;
  bytes public hookData;
  bytes public hookResult;
  bool public hookOk;
  function mint(address to, uint256 v) external { balanceOf[to] += v; }
  function approve(address s, uint256 v) external { allowance[msg.sender][s] = v; }
  function setReturnFalse(bool b) external { returnFalse = b; }
  function setFee(uint256 f) external { fee = f; }
  function setHook(address t, bytes calldata d) external { hookTarget = t; hookData = d; }
  function transfer(address to, uint256 v) external { _hook(); _move(msg.sender, to, v); _ret(); }
  function transferFrom(address f, address to, uint256 v) external {
    require(allowance[f][msg.sender] >= v, "allowance");
    allowance[f][msg.sender] -= v;
    _hook(); _move(f, to, v); _ret();
  }
  function _move(address f, address to, uint256 v) private {
    require(balanceOf[f] >= v, "balance");
    balanceOf[f] -= v;
    balanceOf[to] += v - fee;
  }
  function _ret() private view { if (returnFalse) assembly { mstore(0, 0) return(0, 32) } }
  // Calls hookTarget once with hookData, records what came back, never reverts.
  function _hook() private {
    address t = hookTarget;
    if (t == address(0)) return;
    hookTarget = address(0);
    (hookOk, hookResult) = t.call(hookData);
  }
}`;

function compileOddToken() {
  const solc = createRequire(import.meta.url)('solc');
  const out = JSON.parse(solc.compile(JSON.stringify({
    language: 'Solidity',
    sources: { 'OddToken.sol': { content: ODD_TOKEN_SOURCE } },
    settings: { optimizer: { enabled: true, runs: 200 }, evmVersion: 'cancun', outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } } },
  })));
  const errors = (out.errors || []).filter((e) => e.severity === 'error');
  if (errors.length) throw new Error(errors.map((e) => e.formattedMessage).join('\n'));
  const c = out.contracts['OddToken.sol'].OddToken;
  return { abi: c.abi, bytecode: '0x' + c.evm.bytecode.object };
}

test('tokens returning nothing work; false, a fee on transfer and reentrant callbacks are refused', async () => {
  const { abi: oddAbi, bytecode } = compileOddToken();
  const odd = await new ContractFactory(oddAbi, bytecode, deployer).deploy();
  await odd.waitForDeployment();
  await send(odd.mint(renter.address, 100_000_000n));
  await send(odd.connect(renter).approve(channels.target, MaxUint256));
  const oddBal = async (w) => BigInt(await odd.balanceOf(w.address ?? w));

  // Returns nothing (USDT style): open, redeem and close all work.
  const { id } = await open({ tok: odd });
  assert.equal(await oddBal(channels.target), DEPOSIT);
  await send(channels.connect(provider).redeem(id, 1_000_000n, await sign(renter, id, 1_000_000n)));
  assert.equal(await oddBal(provider), 1_000_000n);
  await send(channels.connect(provider).close(id, 2_000_000n, await sign(renter, id, 2_000_000n)));
  assert.equal(await oddBal(provider), 2_000_000n);
  assert.equal(await oddBal(channels.target), 0n);

  // Reentrancy: during the transfer to the provider the token calls redeem
  // again with the next voucher. The lock refuses the inner call (the token
  // records Reentrancy()), the outer redeem pays exactly once.
  const { id: b } = await open({ tok: odd });
  const v1 = await sign(renter, b, 1_000_000n);
  const v2 = await sign(renter, b, 2_000_000n);
  await send(odd.setHook(channels.target, channels.interface.encodeFunctionData('redeem', [b, 2_000_000n, v2])));
  await send(channels.connect(provider).redeem(b, 1_000_000n, v1));
  assert.equal(await odd.hookOk(), false);
  assert.equal(channels.interface.parseError(await odd.hookResult())?.name, 'Reentrancy');
  assert.equal(await oddBal(provider), 3_000_000n);
  assert.equal((await state(b)).paid, 1_000_000n);
  // Every entry point is locked, not only redeem.
  await send(odd.setHook(channels.target, channels.interface.encodeFunctionData('startClose', [b])));
  await send(channels.connect(provider).redeem(b, 2_000_000n, v2));
  assert.equal(channels.interface.parseError(await odd.hookResult())?.name, 'Reentrancy');
  assert.equal((await state(b)).closeAt, 0n);

  // Returns false: refused everywhere a transfer happens.
  await send(odd.setReturnFalse(true));
  await reverts(channels.connect(renter).open(provider.address, odd.target, 1, (await now()) + 100, renter.address), 'TransferFailed');
  await reverts(channels.connect(provider).redeem(b, 3_000_000n, await sign(renter, b, 3_000_000n)), 'TransferFailed');
  assert.equal((await state(b)).paid, 2_000_000n, 'nothing changed');
  await send(odd.setReturnFalse(false));

  // A fee on transfer: the contract would hold less than it credits.
  await send(odd.setFee(1n));
  await reverts(channels.connect(renter).open(provider.address, odd.target, DEPOSIT, (await now()) + 100, renter.address), 'DepositMismatch');
  await reverts(channels.connect(renter).topUp(b, 5n, (await state(b)).expiry), 'DepositMismatch');
  assert.equal((await state(b)).deposit, DEPOSIT);
});

// ---------------------------------------------------------------- gas

test('gas of open, topUp, redeem and close (printed)', async (t) => {
  // One renter's life on TestToken, for the record (the other tests fill in
  // the rest of `gas`); the token's own storage writes are part of each figure.
  const a = await open();
  const b = await open();
  const s = await open({ signer: Wallet.createRandom() });
  const tu = await send(channels.connect(renter).topUp(a.id, 1_000_000n, a.expiry + 3600));
  const r1 = await send(channels.connect(provider).redeem(a.id, 1_000_000n, await sign(renter, a.id, 1_000_000n)));
  const r2 = await send(channels.connect(provider).redeem(a.id, 2_000_000n, await sign(renter, a.id, 2_000_000n)));
  const c = await send(channels.connect(provider).close(a.id, 3_000_000n, await sign(renter, a.id, 3_000_000n)));
  const c2 = await send(channels.connect(provider).close(b.id, 0, '0x'));
  const rows = {
    'open (renter signs; the contract\'s first deposit of the token)': a.receipt.gasUsed,
    'open (renter signs; later)': b.receipt.gasUsed,
    'open (session key signs; later)': s.receipt.gasUsed,
    'topUp (amount and expiry)': tu.gasUsed,
    'redeem (provider\'s first payment in the token)': r1.gasUsed,
    'redeem (later)': r2.gasUsed,
    'close (voucher; pays provider and refunds renter)': c.gasUsed,
    'close (no voucher; refunds renter)': c2.gasUsed,
  };
  for (const [k, v] of Object.entries({ ...rows, ...Object.fromEntries(Object.entries(gas).filter(([k]) => /refund|Close/.test(k))) })) {
    t.diagnostic(`gas ${k}: ${v}`);
  }
  // Guards against an accidental regression, far above the measured figures
  // and below the straightforward design's (184k / 80k / 74k).
  assert.ok(a.receipt.gasUsed < 184_000n, `open ${a.receipt.gasUsed}`);
  assert.ok(r1.gasUsed < 80_000n, `redeem ${r1.gasUsed}`);
  assert.ok(c.gasUsed < 74_000n, `close ${c.gasUsed}`);
});
