#!/usr/bin/env node
// Starts a local chain for the demo: anvil on 127.0.0.1 (a free port) with
// TestToken (6 decimals) and PaymentChannels deployed by dev account 0, optionally mints to some
// addresses, then prints KEY=VALUE lines for bash to eval and exits; anvil
// keeps running (its output and state in --dir) until the caller kills it:
//
//   eval "$(node scripts/chain-demo-env.mjs --dir "$TMP/chain" --mint 0xAbc…:100000000)"
//   trap 'kill $ANVIL_PID' EXIT
//
// Prints ANVIL_URL, ANVIL_PID, ANVIL_LOG, CHAIN_ID, TOKEN (the token's address),
// TOKEN_DECIMALS=6, CHANNELS (a PaymentChannels deployment), DEV_ADDR_0..9 and DEV_KEY_0..9 (anvil's well-known dev
// keys: local chains only). Amounts to --mint are in micro-units (1 token =
// 1000000). --block-time SECONDS for interval mining (default: a block per
// transaction). Everything it says besides those lines goes to stderr.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContractFactory, JsonRpcProvider, Network, Wallet, getAddress } from 'ethers';
import { ANVIL_BIN, DEV_KEYS, DEFAULT_CHAIN_ID } from '../tests/functional/chain.mjs';
import { loadArtifact } from './compile-contracts.mjs';

function usage(msg) {
  process.stderr.write(`chain-demo-env: ${msg}\nusage: chain-demo-env.mjs [--dir DIR] [--chain-id N] [--block-time S] [--mint ADDRESS:MICROS]...\n`);
  process.exit(2);
}

const opts = { dir: null, chainId: DEFAULT_CHAIN_ID, blockTime: null, mints: [] };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const val = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
  if (a === '--dir') opts.dir = val();
  else if (a === '--chain-id') opts.chainId = Number(val());
  else if (a === '--block-time') opts.blockTime = val();
  else if (a === '--mint') {
    const m = /^(0x[0-9a-fA-F]{40}):(\d+)$/.exec(val());
    if (!m) usage('--mint takes ADDRESS:MICROS');
    opts.mints.push([getAddress(m[1]), BigInt(m[2])]);
  } else usage(`unknown argument ${a}`);
}

const dir = opts.dir || fs.mkdtempSync(path.join(os.tmpdir(), 'grid-chain-'));
fs.mkdirSync(dir, { recursive: true });
const logFile = path.join(dir, 'anvil.log');
const logFd = fs.openSync(logFile, 'w');
const args = ['--host', '127.0.0.1', '--port', '0', '--chain-id', String(opts.chainId), '--state', path.join(dir, 'state.json')];
if (opts.blockTime) args.push('--block-time', String(opts.blockTime));
// Its output goes to the log file, never to our stdout: `$(...)` would wait
// for anvil to close the pipe.
const child = spawn(ANVIL_BIN, args, { stdio: ['ignore', logFd, logFd] });
fs.closeSync(logFd);
child.unref();
let failed = false;
child.on('exit', (code, signal) => {
  if (!failed) {
    process.stderr.write(`chain-demo-env: anvil exited (code ${code}, signal ${signal}); see ${logFile}\n`);
    process.exit(1);
  }
});

function fail(e) {
  failed = true;
  process.stderr.write(`chain-demo-env: ${e.message || e}\n`);
  try {
    process.kill(child.pid, 'SIGKILL');
  } catch {}
  process.exit(1);
}

try {
  let port = null;
  const deadline = Date.now() + 20000;
  while (port === null) {
    const m = /Listening on 127\.0\.0\.1:(\d+)/.exec(fs.readFileSync(logFile, 'utf8'));
    if (m) port = Number(m[1]);
    else if (Date.now() > deadline) throw new Error(`anvil did not start; see ${logFile}`);
    else await new Promise((r) => setTimeout(r, 20));
  }
  const url = `http://127.0.0.1:${port}`;
  const network = Network.from(opts.chainId);
  const provider = new JsonRpcProvider(url, network, { staticNetwork: network, cacheTimeout: -1, pollingInterval: 100 });
  const deployer = new Wallet(DEV_KEYS[0], provider);
  const { abi, bytecode } = loadArtifact('TestToken');
  const token = await new ContractFactory(abi, bytecode, deployer).deploy('Test USD Coin', 'tUSDC');
  await token.waitForDeployment();
  for (const [to, amount] of opts.mints) await (await token.mint(to, amount)).wait();
  const pc = loadArtifact('PaymentChannels');
  const channels = await new ContractFactory(pc.abi, pc.bytecode, deployer).deploy();
  await channels.waitForDeployment();
  provider.destroy();

  const out = [
    `ANVIL_URL=${url}`,
    `ANVIL_PID=${child.pid}`,
    `ANVIL_LOG=${logFile}`,
    `CHAIN_ID=${opts.chainId}`,
    `TOKEN=${token.target}`,
    `TOKEN_DECIMALS=6`,
    `CHANNELS=${channels.target}`,
  ];
  DEV_KEYS.forEach((k, i) => out.push(`DEV_ADDR_${i}=${new Wallet(k).address}`, `DEV_KEY_${i}=${k}`));
  process.stdout.write(out.join('\n') + '\n');
  failed = true; // from here on anvil's exit is the caller's business
  process.exit(0);
} catch (e) {
  fail(e);
}
