#!/usr/bin/env node
// bench/deposits_bench.mjs: a burst of on-chain deposits over a few blocks
// (issue 4: "a burst of 1,000 deposits over a few blocks — credited per
// second, and the watcher's lag behind the chain head; goal: keeps up with
// anvil's rate; state the figures").
//
// Setup: anvil (npm @foundry-rs/anvil, 127.0.0.1, port 0, via
// tests/functional/chain.mjs), TestToken deployed (automine during setup
// only), S senders (dev accounts 2..9, then random wallets funded with
// anvil_setBalance) each minted enough tokens; the REAL broker binary:
//   grid broker --db TMP/b.db --listen 127.0.0.1:0 --dev --chain-rpc URL
//     --token ADDR --treasury-key TMP/treasury.key (0600, DEV_KEYS[1])
//     --confirmations 1 --chain-poll 0.05
// started before any deposit (a new broker scans from "now"), its URL read
// from its "listening on" line, killed by PID at the end. Then automine is
// switched off (evm_setAutomine false: blocks only when we mine them) and the
// block gas limit set so that B blocks hold the burst (evm_setBlockGasLimit,
// from the gas one deposit uses).
// Each round:
//   1. N ERC-20 transfers to the treasury (N/S per sender, explicit nonces,
//      signed locally, sent as eth_sendRawTransaction batches, nothing
//      awaited per transaction); waits until txpool_status shows N pending.
//   2. A sampler polls GET /v1/admin/chain every ~10 ms (head, scanned_to,
//      lag_blocks, deposits_credited) for the whole round.
//   3. evm_mine until the pool is empty (B blocks): anvil's own rate =
//      N / (time from the first evm_mine call to the last one returning).
//   4. Waits until deposits_credited has grown by N.
//   Measured: credited/s end to end = N / (first evm_mine -> all credited);
//   the tail = last block mined -> all credited, and the deposits still
//   uncredited when the last block was mined / tail (credited/s after the
//   last block); the watcher's lag: the real chain head (what we mined) -
//   scanned_to, max over the samples, and per block the time from its
//   evm_mine returning to the first sample showing it scanned (credited);
//   also the broker's own lag_blocks (it is set after each scan, when the
//   watcher has just caught up, so it reads 0 unless one scan is capped at
//   2,000 blocks).
//   Exactly once: after 2 more empty blocks and 0.5 s, deposits_credited
//   grew by exactly N, and the sum of the senders' available balances (SIWE
//   login as each sender, GET /v1/wallet/balance) equals everything they
//   sent so far, to the micro; the treasury's on-chain balance grew by the
//   same. A wrong count or total exits 1.
// Printed: per round and medians, the ratio credited/s / anvil's inclusion
// rate, and the machine line (nproc, CPU model).
//
// Usage: node bench/deposits_bench.mjs [--grid build/grid] [--deposits 1000]
//          [--blocks 4] [--senders 10] [--rounds 3] [--poll 0.05]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { Interface, Wallet, getAddress, toQuantity } from 'ethers';
import { startAnvil, deployToken, mintTo, DEV_KEYS, balanceOf } from '../tests/functional/chain.mjs';
import { cliEnv, loginWithEthers, apiOk, micros } from '../tests/functional/lib.mjs';

const ROOT = path.resolve(import.meta.dirname, '..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now() / 1000;
const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  const n = v.length;
  return n === 0 ? NaN : n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
};
const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : String(x));

function parseArgs(argv) {
  const o = { grid: path.join(ROOT, 'build/grid'), deposits: 1000, blocks: 4, senders: 10, rounds: 3, poll: '0.05' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--grid') o.grid = path.resolve(v());
    else if (a === '--deposits') o.deposits = Number(v());
    else if (a === '--blocks') o.blocks = Number(v());
    else if (a === '--senders') o.senders = Number(v());
    else if (a === '--rounds') o.rounds = Number(v());
    else if (a === '--poll') o.poll = v();
    else {
      console.error('usage: node bench/deposits_bench.mjs [--grid build/grid] [--deposits 1000] [--blocks 4] [--senders 10] [--rounds 3] [--poll 0.05]');
      process.exit(2);
    }
  }
  for (const k of ['deposits', 'blocks', 'senders', 'rounds'])
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new Error(`--${k}: a positive integer`);
  if (o.deposits % o.senders !== 0) throw new Error('--deposits must be a multiple of --senders');
  return o;
}

function machineLine() {
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m) || [, 'unknown'])[1];
  return `nproc=${os.availableParallelism()} cpu="${cpu}" load=${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`;
}

// The broker binary as a child; killed by PID at the end.
async function startGridBroker(gridBin, dir, extraArgs) {
  const args = ['broker', '--db', path.join(dir, 'b.db'), '--listen', '127.0.0.1:0', '--dev', ...extraArgs];
  const proc = spawn(gridBin, args, { env: cliEnv(dir), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (d) => {
    stderr += d;
    if (stderr.length > 1 << 20) stderr = stderr.slice(-(1 << 19));
  });
  const exited = once(proc, 'exit');
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`broker did not start in 20 s; stderr:\n${stderr}`)), 20000);
    proc.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      const m = out.match(/grid broker listening on (http:\/\/127\.0\.0\.1:\d+)\n/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on('error', (e) => reject(new Error(`cannot run ${gridBin}: ${e.message}`)));
    exited.then(([code, signal]) => {
      clearTimeout(timer);
      reject(new Error(`broker exited (code ${code}, signal ${signal}) before listening; stderr:\n${stderr}`));
    });
  });
  return { url, proc, exited, get stderr() { return stderr; } };
}

// JSON-RPC batch straight to anvil (one HTTP request for many calls).
async function rpcBatch(url, calls) {
  const body = calls.map(([method, params], id) => ({ jsonrpc: '2.0', id, method, params }));
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const out = await res.json();
  for (const r of out) if (r.error) throw new Error(`${calls[r.id][0]}: ${JSON.stringify(r.error)}`);
  return out.sort((a, b) => a.id - b.id).map((r) => r.result);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(o.grid)) throw new Error(`${o.grid} not found (build it, or pass --grid PATH)`);
  console.log(`machine: ${machineLine()}`);
  console.log(`grid: ${o.grid}`);
  console.log(`burst: ${o.deposits} deposits from ${o.senders} senders into ${o.blocks} blocks, ${o.rounds} rounds; broker --confirmations 1 --chain-poll ${o.poll}`);

  const cleanups = [];
  const t = { after: (fn) => cleanups.push(fn) };  // chain.mjs's startAnvil wants a node:test-like `t`
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'grid-bench-dep-'));
  await fsp.mkdir(path.join(dir, 'home'));
  let broker = null;
  let failed = false;
  try {
    const anvil = await startAnvil(t, {});
    const token = await deployToken(anvil);
    const treasury = anvil.accounts[1];
    const keyFile = path.join(dir, 'treasury.key');
    fs.writeFileSync(keyFile, DEV_KEYS[1] + '\n', { mode: 0o600 });

    // Senders: dev accounts 2..9, then random wallets with ether.
    const senders = [];
    for (let i = 0; i < o.senders; i++) {
      if (2 + i < DEV_KEYS.length) senders.push(anvil.accounts[2 + i]);
      else {
        const w = Wallet.createRandom().connect(anvil.provider);
        await anvil.setBalance(w.address, 10n ** 21n);
        senders.push(w);
      }
    }
    const perSender = o.deposits / o.senders;
    const amountOf = (round, k) => 1_000_000n + BigInt(round * 7 + (k % 13));  // micros; varied, never 0
    let needPerSender = 0n;
    for (let r = 0; r < o.rounds + 1; r++) for (let k = 0; k < perSender; k++) needPerSender += amountOf(r, k);
    for (const s of senders) await mintTo(token, s.address, needPerSender + 10_000_000n);

    const iface = token.interface;
    const txGas = 80_000n;
    const feeData = { maxFeePerGas: 50n * 10n ** 9n, maxPriorityFeePerGas: 10n ** 9n };

    // Two deposits with automine, before the broker starts (not counted): the
    // second one's gas is what a deposit costs (the first one also makes the
    // treasury's balance slot non-zero, 20,000 gas more). Amounts of the same
    // size as the burst's (calldata gas depends on the non-zero bytes).
    await (await token.connect(senders[0]).transfer(treasury.address, amountOf(0, 0))).wait();
    const probe = await (await token.connect(senders[1 % senders.length]).transfer(treasury.address, amountOf(0, 0))).wait();
    const gasPerDeposit = BigInt(probe.gasUsed);

    broker = await startGridBroker(o.grid, dir, [
      '--chain-rpc', anvil.url, '--token', token.target, '--treasury-key', keyFile,
      '--confirmations', '1', '--chain-poll', o.poll,
    ]);
    const url = broker.url;
    const admin = await loginWithEthers(url, Wallet.createRandom());  // --dev: every account is an admin
    const chainStatus = () => apiOk(url, 'GET', '/v1/admin/chain', undefined, admin);
    // Wait for the watcher's first poll (it records where it starts).
    for (let i = 0; ; i++) {
      const s = await chainStatus();
      if (s.head > 0 && s.scanned_to >= s.head - 1) break;
      if (i > 400) throw new Error(`the watcher does not start: ${JSON.stringify(s)}`);
      await sleep(25);
    }
    const senderTokens = [];
    for (const s of senders) senderTokens.push(await loginWithEthers(url, s));

    // From here on: blocks only when we mine them; B blocks per burst.
    await anvil.rpc('evm_setAutomine', [false]);
    const perBlock = Math.ceil(o.deposits / o.blocks);
    // anvil packs while used + tx.gasLimit <= block gas limit.
    const blockGas = BigInt(perBlock - 1) * gasPerDeposit + txGas + gasPerDeposit / 2n;
    await anvil.rpc('evm_setBlockGasLimit', [toQuantity(blockGas)]);
    console.log(`deposit gas ${gasPerDeposit}, tx gas limit ${txGas}, block gas limit ${blockGas} (${perBlock} deposits per block)`);
    console.log(`broker ${url} (pid ${broker.proc.pid}), anvil ${anvil.url} (pid ${anvil.pid}), token ${token.target}, treasury ${treasury.address}`);

    const nonces = [];
    for (const s of senders) nonces.push(await anvil.provider.getTransactionCount(s.address, 'latest'));
    let sentTotal = 0n;  // micros the senders deposited in the timed rounds
    const treasuryStart = await balanceOf(token, treasury.address);
    const base = await chainStatus();
    let creditedBase = base.deposits_credited;

    const rows = [];
    for (let round = 0; round < o.rounds; round++) {
      // 1. Sign and send the burst; nothing is mined.
      const tSign0 = now();
      const raws = [];
      for (let k = 0; k < perSender; k++) {
        for (let si = 0; si < senders.length; si++) {
          const amount = amountOf(round, k);
          sentTotal += amount;
          raws.push(
            senders[si].signTransaction({
              type: 2, chainId: anvil.chainId, nonce: nonces[si]++, to: token.target, value: 0n,
              data: iface.encodeFunctionData('transfer', [treasury.address, amount]), gasLimit: txGas, ...feeData,
            }),
          );
        }
      }
      const signed = await Promise.all(raws);
      const tSend0 = now();
      for (let i = 0; i < signed.length; i += 100)
        await rpcBatch(anvil.url, signed.slice(i, i + 100).map((r) => ['eth_sendRawTransaction', [r]]));
      for (let i = 0; ; i++) {
        const p = await anvil.rpc('txpool_status', []);
        if (Number(p.pending) + Number(p.queued) >= o.deposits) break;
        if (i > 400) throw new Error(`pool holds ${JSON.stringify(p)}, want ${o.deposits}`);
        await sleep(25);
      }
      const tSent = now();

      // 2. The sampler.
      const startHead = await anvil.blockNumber();
      let realHead = startHead;
      const samples = [];
      // One look at the broker's chain status, recorded (the sampler and the
      // wait for the last credit both go through here).
      const look = async () => {
        const headAtAsk = realHead;
        const s = await chainStatus();
        samples.push({ t: now(), lag: s.lag_blocks, scannedTo: s.scanned_to, behind: Math.max(0, Math.max(headAtAsk, s.head) - s.scanned_to), credited: s.deposits_credited - creditedBase });
        return s;
      };
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          await look();
          await sleep(10);
        }
      })();

      // 3. Mine until the pool is empty.
      const tMine0 = now();
      const blockTimes = [];
      const minedAt = [];  // [block number, time evm_mine returned]
      for (let b = 0; b < 4 * o.blocks + 10; b++) {
        const tb = now();
        await anvil.rpc('evm_mine', []);
        realHead++;
        minedAt.push([realHead, now()]);
        blockTimes.push(now() - tb);
        const p = await anvil.rpc('txpool_status', []);
        if (Number(p.pending) + Number(p.queued) === 0) break;
      }
      const tMined = now();
      const atMined = (await look()).deposits_credited - creditedBase;

      // 4. Until all are credited.
      let credited = atMined;
      for (let i = 0; credited < o.deposits; i++) {
        if (i > 6000) throw new Error(`only ${credited} of ${o.deposits} deposits credited after 60 s`);
        await sleep(2);
        credited = (await look()).deposits_credited - creditedBase;
      }
      const tDone = now();
      sampling = false;
      await sampler;

      // Exactly once: more blocks, a pause, the same count; balances sum.
      await anvil.rpc('evm_mine', []);
      await anvil.rpc('evm_mine', []);
      realHead += 2;
      await sleep(500);
      const after = await chainStatus();
      const count = after.deposits_credited - creditedBase;
      const nBlocks = realHead - 2 - startHead;
      const perBlockCounts = [];
      for (let b = startHead + 1; b <= startHead + nBlocks; b++) {
        const blk = await anvil.rpc('eth_getBlockByNumber', [toQuantity(b), false]);
        perBlockCounts.push(blk.transactions.length);
      }
      let sum = 0n;
      for (const tok of senderTokens) sum += micros((await apiOk(url, 'GET', '/v1/wallet/balance', undefined, tok)).available);
      const onChain = (await balanceOf(token, treasury.address)) - treasuryStart;
      const ok = count === o.deposits && sum === sentTotal && onChain === sentTotal && after.alert === null;
      if (!ok) failed = true;
      creditedBase = after.deposits_credited;

      const mineS = tMined - tMine0;
      // Per block: time from evm_mine returning to the first look that shows
      // it scanned (its deposits credited).
      const blockLagMs = minedAt.map(([n, tm]) => {
        const seen = samples.find((x) => x.t >= tm && x.scannedTo >= n);
        return seen ? (seen.t - tm) * 1000 : NaN;
      });
      const row = {
        anvilRate: o.deposits / mineS,
        mineS,
        blocks: nBlocks,
        perBlockCounts,
        endToEndRate: o.deposits / (tDone - tMine0),
        tailS: tDone - tMined,
        atMined,
        tailRate: atMined < o.deposits ? (o.deposits - atMined) / (tDone - tMined) : Infinity,
        maxLag: Math.max(0, ...samples.map((s) => s.lag)),
        blockLagMs,
        maxBlockLagMs: Math.max(...blockLagMs),
        maxBehind: Math.max(0, ...samples.map((s) => s.behind)),
        samples: samples.length,
        sendS: tSent - tSend0,
        signS: tSend0 - tSign0,
        count,
        sum,
        onChain,
        ok,
      };
      rows.push(row);
      console.log(
        `round ${round + 1}: signed ${o.deposits} in ${row.signS.toFixed(2)} s, sent in ${row.sendS.toFixed(2)} s; ` +
          `anvil mined ${nBlocks} blocks [${perBlockCounts.join(' ')}] in ${(mineS * 1000).toFixed(0)} ms = ${fmt(row.anvilRate)} deposits/s; ` +
          `credited: all ${fmt((tDone - tMine0) * 1000)} ms after the first evm_mine = ${fmt(row.endToEndRate)}/s, ` +
          `${row.atMined} already when the last block was mined, the rest ${fmt(row.tailS * 1000)} ms later` +
          (Number.isFinite(row.tailRate) ? ` (${fmt(row.tailRate)}/s)` : '') +
          `; lag: max ${row.maxBehind} blocks behind the real head, broker's lag_blocks max ${row.maxLag} (${row.samples} samples), ` +
          `block mined -> scanned [${blockLagMs.map((x) => x.toFixed(0)).join(' ')}] ms; ` +
          `count ${count}/${o.deposits}, balances ${sum} = sent ${sentTotal} micros, treasury +${onChain}: ${ok ? 'ok' : 'WRONG'}`,
      );
      if (!ok) console.log(`  chain status after: ${JSON.stringify(after)}`);
    }

    const m = (k) => median(rows.map((r) => r[k]));
    const ratios = rows.map((r) => r.endToEndRate / r.anvilRate);
    console.log('');
    console.log(`anvil inclusion rate (evm_mine, ${o.blocks} blocks):  median ${fmt(m('anvilRate'))} deposits/s (${fmt(m('mineS') * 1000)} ms for ${o.deposits})`);
    console.log(`broker credited/s, first evm_mine -> all credited:    median ${fmt(m('endToEndRate'))}/s`);
    console.log(`  tail: last block mined -> all credited:          median ${fmt(m('tailS') * 1000)} ms (${fmt(median(rows.map((r) => r.atMined)))} of ${o.deposits} credited by then; after it ${fmt(median(rows.map((r) => r.tailRate)))}/s)`);
    console.log(`watcher lag, max per round:                          real head - scanned_to ${rows.map((r) => r.maxBehind).join(' ')} blocks; broker's lag_blocks ${rows.map((r) => r.maxLag).join(' ')}`);
    console.log(`  block mined -> scanned and credited:             median ${fmt(median(rows.flatMap((r) => r.blockLagMs)))} ms, max ${fmt(Math.max(...rows.map((r) => r.maxBlockLagMs)))} ms (over ${rows.reduce((a, r) => a + r.blockLagMs.length, 0)} blocks)`);
    console.log(`ratio credited/s / anvil's inclusion rate: ${(m('endToEndRate') / m('anvilRate')).toFixed(3)} (median/median), ${median(ratios).toFixed(3)} (median of per-round ratios: ${ratios.map((x) => x.toFixed(3)).join(' ')})`);
    console.log(`exactly once: ${rows.every((r) => r.ok) ? `ok in every round (${o.rounds * o.deposits} deposits, ${sentTotal} micros)` : 'WRONG (see above)'}`);
  } catch (e) {
    failed = true;
    console.error(`bench_deposits: ${e.stack || e.message}`);
    if (broker) console.error(`broker stderr (tail):\n${broker.stderr.slice(-4000)}`);
  } finally {
    if (broker && broker.proc.exitCode === null && broker.proc.signalCode === null) {
      try {
        process.kill(broker.proc.pid, 'SIGKILL');
      } catch {}
      await broker.exited;
    }
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
    await fsp.rm(dir, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
}

main();
