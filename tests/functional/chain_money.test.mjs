// On-chain money end to end (issue 4): a real anvil, a real ERC-20 (6
// decimals), `grid broker --chain-rpc`. Deposits made with ethers.js (the
// other side is a stock wallet, not our code) and with `grid wallet deposit`
// are credited after K confirmations, exactly once; withdrawals arrive on
// chain (checked with ethers); a broker kill -9 right after sending a
// withdrawal does not send it twice; the node stopped and restarted during
// deposits loses and doubles nothing; evm_snapshot/evm_revert fakes a
// reorganisation below K (nothing credited) and beyond K (an alert).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Wallet } from 'ethers';
import {
  SLOW, tempDir, startBroker, grid, gridJson, newKey, api, apiOk, account, sleep, assertApiError, waitFor, PASSWORD,
} from './lib.mjs';
import { startAnvil, deployToken, mintTo, balanceOf, transferToken, transferLogs } from './chain.mjs';

const K = 2;

// anvil + token + a broker whose treasury is dev account 1.
async function world(t, { bumpAfter = '30' } = {}) {
  const dir = await tempDir(t);
  const anvil = await startAnvil(t);
  const token = await deployToken(anvil);
  const treasury = anvil.accounts[1];
  const keyFile = path.join(dir, 'treasury.key');
  fs.writeFileSync(keyFile, treasury.privateKey + '\n', { mode: 0o600 });
  const db = path.join(dir, 'b.db');
  const admin = Wallet.createRandom();
  const args = ['--chain-rpc', anvil.url, '--token', token.target, '--treasury-key', keyFile,
    '--confirmations', String(K), '--chain-poll', '0.1', '--bump-after', bumpAfter,
    '--withdraw-min', '1', '--withdraw-daily-limit', '100', '--admin', admin.address.toLowerCase()];
  const start = () => startBroker(t, { db, dir, dev: false, extraArgs: args });
  const broker = await start();
  return { dir, anvil, token, treasury, keyFile, db, admin, broker, start, args };
}

const balanceApi = async (url, who) => apiOk(url, 'GET', '/v1/wallet/balance', undefined, who.token);
async function untilAvailable(url, who, want, ms = 15000 * SLOW) {
  let last;
  await waitFor(`available ${want}`, async () => {
    last = (await balanceApi(url, who)).available;
    return last === want;
  }, ms).catch((e) => { throw new Error(`${e.message}; last ${last}`); });
}

test('deposits with ethers and the CLI, withdrawals to chain, audit, bad input', async (t) => {
  const w = await world(t);
  const url = w.broker.url;
  const renterWallet = w.anvil.accounts[2];
  await mintTo(w.token, renterWallet.address, 100_000_000n);
  const renter = await account(url, renterWallet);

  // The deposit address names the treasury, the token, the chain and K.
  const where = await apiOk(url, 'GET', '/v1/wallet/deposit-address', undefined, renter.token);
  assert.equal(where.treasury.toLowerCase(), w.treasury.address.toLowerCase());
  assert.equal(where.token.toLowerCase(), w.token.target.toLowerCase());
  assert.equal(where.chain_id, 31337);
  assert.equal(where.confirmations, K);

  // A stock wallet deposits: nothing before K confirmations, then exactly the amount.
  const before = await w.anvil.blockNumber();
  await transferToken(w.token, renterWallet, w.treasury.address, 30_000_000n);  // automine: 1 confirmation
  await sleep(600);
  assert.equal((await balanceApi(url, renter)).available, '0.000000', 'not credited at 1 of 2 confirmations');
  await w.anvil.mine(1);
  await untilAvailable(url, renter, '30.000000');
  assert.ok((await w.anvil.blockNumber()) >= before + 2);
  await w.anvil.mine(5);
  await sleep(500);
  assert.equal((await balanceApi(url, renter)).available, '30.000000', 'credited once');

  // An address with no account yet: its first deposit creates it.
  const stranger = w.anvil.accounts[3];
  await mintTo(w.token, stranger.address, 7_000_000n);
  await transferToken(w.token, stranger, w.treasury.address, 7_000_000n);
  await w.anvil.mine(1);
  const strangerAcct = await account(url, stranger);
  await untilAvailable(url, strangerAcct, '7.000000');

  // `grid wallet deposit` from a grid key: sends, waits for K confirmations
  // (blocks are mined meanwhile), reports the credit.
  const k = await newKey(w.dir, 'cli');
  const cliWallet = await Wallet.fromEncryptedJson(fs.readFileSync(k.key, 'utf8'), PASSWORD);
  await w.anvil.setBalance(cliWallet.address, 10n ** 18n);
  await mintTo(w.token, cliWallet.address, 20_000_000n);
  const cb = { key: k.key, broker: url };
  const addr = await gridJson(w.dir, ['wallet', 'deposit-address'], cb);
  assert.equal(addr.treasury, where.treasury);
  let mining = true;
  const miner = (async () => { while (mining) { await sleep(300); await w.anvil.mine(1); } })();
  const dep = await grid(w.dir, ['wallet', 'deposit', '12.5'], cb);
  mining = false;
  await miner;
  assert.equal(dep.code, 0, dep.stderr);
  assert.match(dep.stdout, /credited 12\.500000 \(tx 0x[0-9a-f]{64}\); available 12\.500000/);
  assert.match(dep.stderr, /confirmations/);
  const tooMuch = await grid(w.dir, ['wallet', 'deposit', '1000'], cb);
  assert.equal(tooMuch.code, 1);
  assert.match(tooMuch.stderr, /holds 7500000 base units/);

  // Withdrawals: bad input first, nothing changes.
  const post = (body, who = renter) => api(url, 'POST', '/v1/wallet/withdrawals', body, who.token);
  assertApiError(assert, await post({ amount: '0.5' }), 400, { match: /minimum withdrawal is 1\.000000/ });
  assertApiError(assert, await post({ amount: '31' }), 402, { match: /more than you can withdraw/ });
  assertApiError(assert, await post({ amount: '2', to: '0x1234' }), 400, { match: /to:/ });
  assertApiError(assert, await post({ amount: 2 }), 400, { match: /amount/ });
  assertApiError(assert, await post({ amount: '2', extra: 1 }), 400, { match: /extra: unknown field/ });
  assertApiError(assert, await post({ amount: '101' }), 400, { match: /daily limit/ });
  assert.equal((await balanceApi(url, renter)).available, '30.000000');

  // A withdrawal to another address, confirmed on chain; checked with ethers.
  const dest = Wallet.createRandom().address;
  const wd = await apiOk(url, 'POST', '/v1/wallet/withdrawals', { amount: '10', to: dest }, renter.token);
  assert.equal(wd.state, 'requested');
  assert.equal((await balanceApi(url, renter)).available, '20.000000');
  await waitFor('the withdrawal to be sent', async () => {
    const l = await apiOk(url, 'GET', '/v1/wallet/withdrawals', undefined, renter.token);
    return l.withdrawals[0].state === 'sent';
  });
  await w.anvil.mine(K);
  const done = await waitFor('the withdrawal to confirm', async () => {
    const l = await apiOk(url, 'GET', '/v1/wallet/withdrawals', undefined, renter.token);
    return l.withdrawals[0].state === 'confirmed' && l.withdrawals[0];
  });
  assert.match(done.mined_tx, /^0x[0-9a-f]{64}$/);
  assert.equal(await balanceOf(w.token, dest), 10_000_000n);
  const bal = await balanceApi(url, renter);
  assert.equal(bal.available, '20.000000');
  assert.equal(bal.held, '0.000000');

  // `grid wallet withdraw --wait` to the key's own address.
  let mining2 = true;
  const miner2 = (async () => { while (mining2) { await sleep(300); await w.anvil.mine(1); } })();
  const cw = await gridJson(w.dir, ['wallet', 'withdraw', '2.5', '--wait'], cb);
  mining2 = false;
  await miner2;
  assert.equal(cw.state, 'confirmed');
  assert.equal(await balanceOf(w.token, cliWallet.address), 7_500_000n + 2_500_000n);
  const list = await grid(w.dir, ['wallet', 'withdrawals'], cb);
  assert.match(list.stdout, /confirmed\s+2\.500000/);

  // The audit covers the chain: the treasury holds deposits − withdrawals.
  const adminAcct = await account(url, w.admin);
  const audit = await apiOk(url, 'GET', '/v1/admin/audit', undefined, adminAcct.token);
  assert.equal(audit.ok, true, JSON.stringify(audit.failures));
  assert.ok(audit.checks.some((c) => /chain: treasury holds 37\.000000 on chain/.test(c)), JSON.stringify(audit.checks));
  assert.equal(await balanceOf(w.token, w.treasury.address), 37_000_000n);  // 30 + 7 + 12.5 − 10 − 2.5
  const status = await apiOk(url, 'GET', '/v1/admin/chain', undefined, adminAcct.token);
  assert.equal(status.alert, null);
  assert.ok(status.deposits_credited >= 3);
  assertApiError(assert, await api(url, 'GET', '/v1/admin/chain', undefined, renter.token), 403);

  // `grid admin audit --chain`, through the broker and offline on the database.
  const adminKey = path.join(w.dir, 'admin.key');
  const imp = await grid(w.dir, ['keys', 'import', '--out', adminKey], { input: w.admin.privateKey });
  assert.equal(imp.code, 0, imp.stderr);
  const online = await grid(w.dir, ['admin', 'audit', '--chain'], { key: adminKey, broker: url });
  assert.equal(online.code, 0, online.stdout + online.stderr);
  assert.match(online.stdout, /ok {4}chain: treasury holds 37\.000000 on chain/);
  await w.broker.kill('SIGTERM');
  const offline = await grid(w.dir, ['admin', 'audit', '--db', w.db, '--chain', '--chain-rpc', w.anvil.url,
    '--token', w.token.target, '--treasury', w.treasury.address]);
  assert.equal(offline.code, 0, offline.stdout + offline.stderr);
  assert.match(offline.stdout, /chain: treasury holds 37\.000000 on chain/);
  const missing = await grid(w.dir, ['admin', 'audit', '--db', w.db, '--chain']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /needs --chain-rpc, --token and --treasury/);
});

test('kill -9 right after a withdrawal is sent: not sent twice; node restart during deposits: nothing lost or doubled', async (t) => {
  const w = await world(t);
  let url = w.broker.url;
  const renterWallet = w.anvil.accounts[2];
  await mintTo(w.token, renterWallet.address, 50_000_000n);
  let renter = await account(url, renterWallet);
  await transferToken(w.token, renterWallet, w.treasury.address, 40_000_000n);
  await w.anvil.mine(K);
  await untilAvailable(url, renter, '40.000000');

  // The withdrawal is signed, stored and sent; the broker dies before it is mined.
  const dest = Wallet.createRandom().address;
  await apiOk(url, 'POST', '/v1/wallet/withdrawals', { amount: '15', to: dest }, renter.token);
  await waitFor('sent', async () => (await apiOk(url, 'GET', '/v1/wallet/withdrawals', undefined, renter.token)).withdrawals[0].state === 'sent');
  await w.broker.kill('SIGKILL');
  await w.anvil.mine(K + 2);
  const b2 = await w.start();
  url = b2.url;
  renter = await account(url, renterWallet);
  await waitFor('confirmed after the restart', async () =>
    (await apiOk(url, 'GET', '/v1/wallet/withdrawals', undefined, renter.token)).withdrawals[0].state === 'confirmed');
  await w.anvil.mine(3);
  await sleep(500);
  const sentTo = await transferLogs(w.token, { from: w.treasury.address, to: dest });
  assert.equal(sentTo.length, 1, 'exactly one transfer to the destination');
  assert.equal(await balanceOf(w.token, dest), 15_000_000n);

  // The node goes down with a deposit 1 block deep, comes back with its state.
  await transferToken(w.token, renterWallet, w.treasury.address, 5_000_000n);
  await w.anvil.stop();
  await sleep(800);  // the broker polls a dead node meanwhile
  await w.anvil.restart();
  await w.anvil.mine(K);
  await untilAvailable(url, renter, '30.000000');  // 40 − 15 + 5
  await w.anvil.mine(3);
  await sleep(500);
  assert.equal((await balanceApi(url, renter)).available, '30.000000');
  const adminAcct = await account(url, w.admin);
  const audit = await apiOk(url, 'GET', '/v1/admin/audit', undefined, adminAcct.token);
  assert.equal(audit.ok, true, JSON.stringify(audit.failures));
});

test('a reorganisation below K credits nothing; beyond K raises an alert', async (t) => {
  const w = await world(t);
  const url = w.broker.url;
  const renterWallet = w.anvil.accounts[2];
  await mintTo(w.token, renterWallet.address, 50_000_000n);
  const renter = await account(url, renterWallet);
  const adminAcct = await account(url, w.admin);

  // Below K: the deposit's block is reverted away before it is 2 deep.
  const snap = await w.anvil.snapshot();
  await transferToken(w.token, renterWallet, w.treasury.address, 9_000_000n);  // 1 confirmation
  await sleep(500);
  await w.anvil.revert(snap);
  await w.anvil.mine(K + 2);
  await sleep(800);
  assert.equal((await balanceApi(url, renter)).available, '0.000000', 'nothing credited from the vanished block');
  assert.equal((await apiOk(url, 'GET', '/v1/admin/chain', undefined, adminAcct.token)).alert, null);

  // Beyond K: credited at K, then the chain is rewound past it.
  const snap2 = await w.anvil.snapshot();
  await transferToken(w.token, renterWallet, w.treasury.address, 4_000_000n);
  await w.anvil.mine(K);
  await untilAvailable(url, renter, '4.000000');
  await w.anvil.revert(snap2);
  await w.anvil.mine(K + 3);
  const status = await waitFor('the alert', async () => {
    const s = await apiOk(url, 'GET', '/v1/admin/chain', undefined, adminAcct.token);
    return s.alert && s;
  });
  assert.match(status.alert, /reorganisation deeper than 2 confirmations/);
  assert.match(w.broker.stderr, /ALERT: chain reorganisation/);
  assert.equal((await balanceApi(url, renter)).available, '4.000000', 'never silently undone');
  const audit = await apiOk(url, 'GET', '/v1/admin/audit', undefined, adminAcct.token);
  assert.equal(audit.ok, false, 'the treasury no longer covers what was credited');
});
