// The local-chain harness itself (chain.mjs): anvil on a free loopback port,
// TestToken with 6 decimals, Transfer logs, snapshots, a stop and restart
// that keeps the chain, two nodes at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Wallet } from 'ethers';
import {
  startAnvil,
  deployToken,
  mintTo,
  transferToken,
  balanceOf,
  transferLogs,
  waitConfirmations,
  waitForBlock,
  tokenAt,
  DEV_KEYS,
} from './chain.mjs';

const ZERO = '0x0000000000000000000000000000000000000000';

test('anvil starts on a free loopback port with the dev accounts', async (t) => {
  const t0 = performance.now();
  const anvil = await startAnvil(t);
  t.diagnostic(`anvil started in ${(performance.now() - t0).toFixed(0)} ms on ${anvil.url}`);
  assert.match(anvil.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(anvil.port > 0);
  assert.equal(Number((await anvil.provider.getNetwork()).chainId), 31337);
  assert.equal(Number(await anvil.rpc('eth_chainId')), 31337);
  assert.equal(anvil.accounts.length, DEV_KEYS.length);
  assert.equal(anvil.accounts[0].address, '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266');
  assert.equal(await anvil.provider.getBalance(anvil.accounts[9].address), 10000n * 10n ** 18n);
  assert.equal(await anvil.blockNumber(), 0);
});

test('TestToken: 6 decimals, mint, transfer with its log, allowance, reverts', async (t) => {
  const anvil = await startAnvil(t);
  const [deployer, alice, bob] = anvil.accounts;
  const token = await deployToken(anvil);
  assert.equal(await token.decimals(), 6n);
  assert.equal(await token.symbol(), 'tUSDC');
  assert.equal(await token.minter(), deployer.address);

  const mint = await mintTo(token, alice.address, 5_000_000n);
  assert.equal(mint.status, 1);
  assert.equal(await balanceOf(token, alice.address), 5_000_000n);
  assert.equal(await token.totalSupply(), 5_000_000n);

  // A stock ethers transfer, and the Transfer log a deposit watcher reads.
  const receipt = await transferToken(token, alice, bob.address, 1_250_000n);
  const logs = await transferLogs(token, { to: bob.address });
  assert.equal(logs.length, 1);
  assert.deepEqual(
    { from: logs[0].from, to: logs[0].to, value: logs[0].value, txHash: logs[0].txHash, blockNumber: logs[0].blockNumber },
    { from: alice.address, to: bob.address, value: 1_250_000n, txHash: receipt.hash, blockNumber: receipt.blockNumber },
  );
  const all = await transferLogs(token);
  assert.deepEqual(
    all.map((l) => [l.from, l.to, l.value]),
    [
      [ZERO, alice.address, 5_000_000n],
      [alice.address, bob.address, 1_250_000n],
    ],
  );
  assert.equal(await balanceOf(token, alice.address), 3_750_000n);
  assert.equal(await balanceOf(token, bob.address), 1_250_000n);

  // approve + transferFrom, then the reason strings.
  await (await token.connect(alice).approve(bob.address, 1_000_000n)).wait();
  assert.equal(await token.allowance(alice.address, bob.address), 1_000_000n);
  await (await token.connect(bob).transferFrom(alice.address, bob.address, 400_000n)).wait();
  assert.equal(await token.allowance(alice.address, bob.address), 600_000n);
  await assert.rejects(token.connect(bob).transferFrom(alice.address, bob.address, 600_001n), /insufficient allowance/);
  await assert.rejects(token.connect(bob).transfer(alice.address, 10n ** 12n), /exceeds balance/);
  await assert.rejects(token.connect(alice).mint(alice.address, 1n), /only the deployer/);

  // Confirmations: the transfer's block plus two more.
  const tx = await token.connect(alice).transfer(bob.address, 1n);
  const r = await waitConfirmations(anvil, tx, 3);
  assert.equal(await anvil.blockNumber(), r.blockNumber + 2);
  assert.equal(await tx.confirmations(), 3);

  // The same contract through its address and ABI.
  assert.equal(await balanceOf(tokenAt(token.target, anvil.provider), bob.address), 1_650_001n);
});

test('snapshot/revert and a reorg undo a transfer', async (t) => {
  const anvil = await startAnvil(t);
  const [, alice, bob] = anvil.accounts;
  const token = await deployToken(anvil);
  await mintTo(token, alice.address, 2_000_000n);
  const height = await anvil.blockNumber();
  const id = await anvil.snapshot();
  await transferToken(token, alice, bob.address, 2_000_000n);
  assert.equal(await balanceOf(token, bob.address), 2_000_000n);
  assert.equal(await anvil.revert(id), true);
  assert.equal(await balanceOf(token, bob.address), 0n);
  assert.equal(await balanceOf(token, alice.address), 2_000_000n);
  assert.equal(await anvil.blockNumber(), height);
  assert.deepEqual(await transferLogs(token, { to: bob.address }), []);
  // The chain goes on after the revert (nonces are right).
  await transferToken(token, alice, bob.address, 1n);
  assert.equal(await balanceOf(token, bob.address), 1n);

  // A reorg of depth 1 drops the transfer in the head block: same height, a
  // new hash, no log, no receipt.
  const r = await transferToken(token, alice, bob.address, 2n);
  const before = await anvil.provider.getBlock(r.blockNumber);
  await anvil.reorg(1);
  assert.equal(await anvil.blockNumber(), r.blockNumber);
  assert.notEqual((await anvil.provider.getBlock(r.blockNumber)).hash, before.hash);
  assert.equal(await anvil.provider.getTransactionReceipt(r.hash), null);
  assert.equal(await balanceOf(token, bob.address), 1n);
  assert.equal((await transferLogs(token, { to: bob.address })).length, 1);
});

test('stop and restart keep balances, block height and the port; kill loses what was not dumped', async (t) => {
  const anvil = await startAnvil(t);
  const [, alice, bob] = anvil.accounts;
  const token = await deployToken(anvil);
  await mintTo(token, alice.address, 7_000_000n);
  await transferToken(token, alice, bob.address, 3_000_000n);
  await anvil.mine(5);
  const height = await anvil.blockNumber();
  const head = await anvil.provider.getBlock(height);
  const { url, pid } = anvil;

  await anvil.stop();
  assert.equal(anvil.running, false);
  await assert.rejects(anvil.blockNumber());
  const t0 = performance.now();
  await anvil.restart();
  t.diagnostic(`anvil restarted from its state in ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal(anvil.url, url);
  assert.notEqual(anvil.pid, pid);
  assert.equal(await anvil.blockNumber(), height);
  assert.equal((await anvil.provider.getBlock(height)).hash, head.hash);
  assert.equal(await balanceOf(token, alice.address), 4_000_000n);
  assert.equal(await balanceOf(token, bob.address), 3_000_000n);
  assert.equal((await transferLogs(token)).length, 2);
  // It goes on from there: new blocks, nonces, the deployer can still mint.
  await transferToken(token, bob, alice.address, 1_000_000n);
  await mintTo(token, bob.address, 1n);
  assert.equal(await anvil.blockNumber(), height + 2);

  // A crash after a checkpoint comes back to the checkpoint.
  await anvil.dumpState();
  const checkpoint = await anvil.blockNumber();
  await transferToken(token, alice, bob.address, 5n);
  await anvil.kill();
  await anvil.restart();
  assert.equal(await anvil.blockNumber(), checkpoint);
  assert.equal(await balanceOf(token, bob.address), 2_000_001n);
});

test('two anvils at once, each with its own chain', async (t) => {
  const [a, b] = await Promise.all([startAnvil(t), startAnvil(t, { chainId: 31338, blockTime: 0.5 })]);
  assert.notEqual(a.port, b.port);
  assert.equal(Number(await b.rpc('eth_chainId')), 31338);
  const [ta, tb] = await Promise.all([deployToken(a), deployToken(b)]);
  const who = Wallet.createRandom().address;
  await Promise.all([mintTo(ta, who, 1n), mintTo(tb, who, 2n)]);
  assert.equal(await balanceOf(ta, who), 1n);
  assert.equal(await balanceOf(tb, who), 2n);
  // b mines on its own, twice a second.
  const n = await b.blockNumber();
  await waitForBlock(b, n + 1, { timeoutMs: 5000 });
});
