// A real local EVM chain for Gridmarket's functional tests: anvil (npm
// @foundry-rs/anvil, pinned by package-lock.json) on 127.0.0.1 with port 0,
// and TestToken (contracts/TestToken.sol, 6 decimals) compiled with solc-js.
//
//   const anvil = await startAnvil(t);                // killed by PID when t ends
//   const token = await deployToken(anvil);           // ethers Contract, minter = accounts[0]
//   await mintTo(token, alice.address, 5_000_000n);   // 5.000000 tokens
//
// The node keeps its state in a file of its own temp dir: stop() (SIGTERM)
// dumps it and restart() starts a new anvil on the same port from it, so a
// test can take the chain down and bring it back without losing blocks or
// balances. kill() is a crash: nothing is dumped past the last dumpState().
// evm_snapshot ids do not survive a restart.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { once } from 'node:events';
import { ContractFactory, Contract, JsonRpcProvider, Network, Wallet, getAddress, toQuantity } from 'ethers';
import { loadArtifact } from '../../scripts/compile-contracts.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');

// The platform binary itself, not node_modules/.bin/anvil: that is a node
// wrapper (bin.mjs), and a SIGKILL sent to its PID would orphan the node.
export const ANVIL_BIN =
  process.env.ANVIL_BIN ||
  [
    path.join(ROOT, `node_modules/@foundry-rs/anvil-${process.platform}-${process.arch === 'x64' ? 'amd64' : process.arch}/bin/anvil`),
    path.join(ROOT, 'node_modules/.bin/anvil'),
  ].find((p) => fs.existsSync(p)) ||
  'anvil';

// anvil's default mnemonic ("test test ... junk"), m/44'/60'/0'/0/i: the
// well-known dev keys, each funded with 10,000 ETH at genesis. Never use them
// anywhere but a local chain.
export const DEV_KEYS = [
  '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80',
  '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d',
  '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a',
  '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6',
  '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a',
  '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba',
  '0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e',
  '0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356',
  '0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97',
  '0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6',
];
export const DEFAULT_CHAIN_ID = 31337;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const live = new Set();
process.on('exit', () => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
});

// Spawns one anvil process and waits for "Listening on 127.0.0.1:PORT".
async function spawnAnvil(args, timeoutMs) {
  const proc = spawn(ANVIL_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc.pid);
  let log = ''; // stdout + stderr, the last 256 KiB (anvil logs every RPC method)
  const append = (d) => {
    log += d;
    if (log.length > 1 << 19) log = log.slice(-(1 << 18));
  };
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', append);
  const exited = once(proc, 'exit').then(([code, signal]) => {
    live.delete(proc.pid);
    return { code, signal };
  });
  const port = await new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => {
      try {
        process.kill(proc.pid, 'SIGKILL');
      } catch {}
      reject(new Error(`anvil did not start in ${timeoutMs} ms; output:\n${log}`));
    }, timeoutMs);
    proc.stdout.on('data', (d) => {
      append(d);
      if (seen === null) return;
      seen += d;
      const m = seen.match(/Listening on 127\.0\.0\.1:(\d+)/);
      if (m) {
        seen = null;
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${ANVIL_BIN}: ${e.message} (run npm ci)`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`anvil exited (code ${code}, signal ${signal}) before listening; output:\n${log}`));
    });
  });
  return { proc, port, exited, log: () => log };
}

// Starts anvil on 127.0.0.1:0 and waits until it listens; it is killed by PID
// when the test ends (and its temp dir removed unless GRID_KEEP_TMP is set).
//   blockTime: seconds between blocks (interval mining); default: a block per transaction
//   noMining: mine only on mine(n)
//   chainId: default 31337; hardfork: default anvil's latest (TestToken is
//     compiled for cancun: an older hardfork such as paris cannot deploy it)
//   stateIntervalS: also dump the state every N seconds (so a kill() loses at most that)
//   args: more anvil arguments
// Returns {url, port, pid, chainId, provider, accounts, stateFile, rpc(), stop(),
// restart(), kill(), dumpState(), snapshot(), revert(), mine(), reorg(),
// rollback(), blockNumber(), increaseTime(), setBalance(), running, log}.
export async function startAnvil(t, opts = {}) {
  const { blockTime, noMining = false, chainId = DEFAULT_CHAIN_ID, hardfork, stateIntervalS, args: extra = [], timeoutMs = 20000 } = opts;
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'grid-anvil-'));
  const stateFile = path.join(dir, 'state.json');
  const baseArgs = ['--host', '127.0.0.1', '--chain-id', String(chainId), '--state', stateFile];
  if (blockTime != null) baseArgs.push('--block-time', String(blockTime));
  if (noMining) baseArgs.push('--no-mining');
  if (hardfork) baseArgs.push('--hardfork', hardfork);
  if (stateIntervalS != null) baseArgs.push('--state-interval', String(stateIntervalS));
  baseArgs.push(...extra);

  let node = await spawnAnvil([...baseArgs, '--port', '0'], timeoutMs);
  const port = node.port;
  const url = `http://127.0.0.1:${port}`;
  // No request cache (a read right after a revert must not see the old
  // answer), no batching, quick polling for tx.wait() on interval mining.
  const network = Network.from(chainId);
  const provider = new JsonRpcProvider(url, network, { staticNetwork: network, cacheTimeout: -1, batchMaxCount: 1, pollingInterval: 50 });
  const accounts = DEV_KEYS.map((k) => new Wallet(k, provider));

  const anvil = {
    url,
    port,
    chainId,
    provider,
    accounts,
    stateFile,
    dir,
    get pid() {
      return node.proc.pid;
    },
    get running() {
      return live.has(node.proc.pid);
    },
    // The node's recent output (for failure messages).
    get log() {
      return node.log();
    },
    rpc: (method, params = []) => provider.send(method, params),

    // SIGTERM: anvil dumps its state to stateFile and exits.
    async stop() {
      if (!live.has(node.proc.pid)) return node.exited;
      try {
        process.kill(node.proc.pid, 'SIGTERM');
      } catch {}
      const timer = setTimeout(() => {
        try {
          process.kill(node.proc.pid, 'SIGKILL');
        } catch {}
      }, 10000);
      const r = await node.exited;
      clearTimeout(timer);
      return r;
    },
    // A crash: nothing is dumped (past the last dumpState() or state interval).
    async kill(signal = 'SIGKILL') {
      if (live.has(node.proc.pid)) {
        try {
          process.kill(node.proc.pid, signal);
        } catch {}
      }
      return node.exited;
    },
    // Stops the node if it runs (gracefully), then starts a new one on the
    // same port from stateFile: same blocks, balances, contracts and nonces.
    async restart() {
      await anvil.stop();
      node = await spawnAnvil([...baseArgs, '--port', String(port)], timeoutMs);
      return anvil;
    },
    // Writes the current state to stateFile now (a checkpoint a later
    // kill() + restart() comes back to).
    async dumpState() {
      const hex = await provider.send('anvil_dumpState', []);
      const raw = Buffer.from(hex.replace(/^0x/, ''), 'hex');
      const json = raw[0] === 0x1f && raw[1] === 0x8b ? zlib.gunzipSync(raw) : raw;
      const tmp = `${stateFile}.tmp`;
      await fsp.writeFile(tmp, json);
      await fsp.rename(tmp, stateFile);
    },
    snapshot: () => provider.send('evm_snapshot', []),
    // Returns true when the snapshot existed; a snapshot is used up by its revert.
    revert: (id) => provider.send('evm_revert', [id]),
    mine: (n = 1) => provider.send('anvil_mine', [toQuantity(n)]),
    // Replaces the last `depth` blocks with new ones at the same heights (new
    // hashes); their transactions are dropped, not re-queued, unless given
    // again as [[txRequest, blockOffset], ...] (anvil_reorg). For deposit
    // watchers: a deposit that was seen and then reorged away.
    reorg: (depth, txBlockPairs = []) => provider.send('anvil_reorg', [depth, txBlockPairs]),
    // Removes the last `depth` blocks (the head moves back).
    rollback: (depth = 1) => provider.send('anvil_rollback', [depth]),
    blockNumber: async () => Number(await provider.send('eth_blockNumber', [])),
    // Moves the chain's clock forward and mines a block with the new time.
    async increaseTime(seconds) {
      await provider.send('evm_increaseTime', [toQuantity(seconds)]);
      await provider.send('evm_mine', []);
    },
    setBalance: (address, wei) => provider.send('anvil_setBalance', [getAddress(address), toQuantity(BigInt(wei))]),
  };
  t.after(async () => {
    provider.destroy();
    await anvil.kill('SIGKILL');
    if (!process.env.GRID_KEEP_TMP) await fsp.rm(dir, { recursive: true, force: true });
  });
  return anvil;
}

// ---------------------------------------------------------------- the token

// Deploys TestToken (compiling contracts/ first when needed) and returns it
// as an ethers Contract connected to the deployer, the only account that can
// mint. Its address: token.target.
export async function deployToken(anvil, { deployer = anvil.accounts[0], name = 'Test USD Coin', symbol = 'tUSDC' } = {}) {
  const { abi, bytecode } = loadArtifact('TestToken');
  const factory = new ContractFactory(abi, bytecode, deployer);
  const token = await factory.deploy(name, symbol);
  await token.waitForDeployment();
  return token;
}

// An existing TestToken at `address`, connected to `runner` (a Wallet or the provider).
export function tokenAt(address, runner) {
  return new Contract(address, loadArtifact('TestToken').abi, runner);
}

// Mints amountMicros (6 decimals: 1 token = 1,000,000) to `address` and waits
// for the receipt. `token` must be connected to its deployer.
export async function mintTo(token, address, amountMicros) {
  const tx = await token.mint(getAddress(address), BigInt(amountMicros));
  return tx.wait();
}

// Sends amountMicros from the wallet `from` to `to`; returns the receipt.
export async function transferToken(token, from, to, amountMicros) {
  const tx = await token.connect(from).transfer(getAddress(to), BigInt(amountMicros));
  return tx.wait();
}

export async function balanceOf(token, address) {
  return BigInt(await token.balanceOf(getAddress(address)));
}

// Transfer logs of the token, oldest first, as plain objects:
// {from, to, value (BigInt), blockNumber, blockHash, txHash, logIndex}.
// from/to filter on the indexed topics (null: any).
export async function transferLogs(token, { from = null, to = null, fromBlock = 0, toBlock = 'latest' } = {}) {
  const filter = token.filters.Transfer(from && getAddress(from), to && getAddress(to));
  const logs = await token.queryFilter(filter, fromBlock, toBlock);
  return logs.map((l) => ({
    from: l.args[0],
    to: l.args[1],
    value: BigInt(l.args[2]),
    blockNumber: l.blockNumber,
    blockHash: l.blockHash,
    txHash: l.transactionHash,
    logIndex: l.index,
  }));
}

// ---------------------------------------------------------------- confirmations

// Waits until the chain's head is at least `number` (interval mining, or
// blocks mined by someone else).
export async function waitForBlock(anvil, number, { timeoutMs = 20000 } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const n = await anvil.blockNumber();
    if (n >= number) return n;
    if (Date.now() > end) throw new Error(`chain at block ${n}, block ${number} not reached in ${timeoutMs} ms`);
    await sleep(25);
  }
}

// Waits until the transaction has `confirmations` confirmations (1 = in the
// head block) and returns its receipt. With mine: true (the default) it mines
// the missing blocks at once instead of waiting for them.
export async function waitConfirmations(anvil, txOrHash, confirmations, { mine = true, timeoutMs = 20000 } = {}) {
  const hash = typeof txOrHash === 'string' ? txOrHash : txOrHash.hash;
  const receipt = await anvil.provider.waitForTransaction(hash, 1, timeoutMs);
  if (!receipt) throw new Error(`transaction ${hash} not mined in ${timeoutMs} ms`);
  if (receipt.status !== 1) throw new Error(`transaction ${hash} reverted`);
  const target = receipt.blockNumber + confirmations - 1;
  const head = await anvil.blockNumber();
  if (mine && head < target) await anvil.mine(target - head);
  await waitForBlock(anvil, target, { timeoutMs });
  return receipt;
}
