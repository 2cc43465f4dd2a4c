// The world every test of leases paid by payment channel starts from: a
// fresh anvil with TestToken (6 decimals) and PaymentChannels, a non-dev
// broker with `--channels`, a provider's key, and — when asked — a real
// `grid agent --chain-rpc` (simulated GPU, the process runtime) whose
// machine key is the channels' payee, with its one-GPU machine listed.
import fs from 'node:fs';
import path from 'node:path';
import { ContractFactory, Wallet, parseEther } from 'ethers';
import { tempDir, startBroker, gridJson, newKey, startAgent } from './lib.mjs';
import { startAnvil, deployToken, mintTo, balanceOf } from './chain.mjs';
import { loadArtifact } from '../../scripts/compile-contracts.mjs';

// `tick`: the broker's settlement period (it ends unpaid leases at its
// ticks); `interval`: seconds per voucher; `hostGrace`: seconds a lease
// survives its host being offline. The renter (anvil account 2) holds
// `renterTokens` micro-USD of the token.
export async function channelsWorld(t, { tick = '0.5', interval = '60', hostGrace = '60', renterTokens = 100_000_000n } = {}) {
  const dir = await tempDir(t);
  fs.chmodSync(dir, 0o711); // workloads run as unprivileged uids below the agent's state dir
  const anvil = await startAnvil(t);
  const [deployer, treasury, renterW] = anvil.accounts;
  const token = await deployToken(anvil);
  const { abi, bytecode } = loadArtifact('PaymentChannels');
  const channels = await new ContractFactory(abi, bytecode, deployer).deploy();
  await channels.waitForDeployment();
  await mintTo(token, renterW.address, renterTokens);
  const keyFile = path.join(dir, 'treasury.key');
  fs.writeFileSync(keyFile, treasury.privateKey + '\n', { mode: 0o600 });
  const db = path.join(dir, 'b.db');
  const broker = await startBroker(t, {
    db, dir, dev: false, tick,
    extraArgs: ['--heartbeat', '0.5', '--host-grace', hostGrace, '--channel-interval', interval, '--chain-rpc', anvil.url,
      '--token', token.target, '--treasury-key', keyFile, '--confirmations', '1', '--chain-poll', '0.1',
      '--channels', channels.target],
  });
  const prov = await newKey(dir, 'prov');
  const treasuryBefore = await balanceOf(token, treasury.address);
  return { dir, db, anvil, token, channels, broker, treasury, treasuryBefore, renterW, prov };
}

// Starts an agent taking channel payments on `w` (extra agent flags in
// `args`), gives its address gas for redeem and close, and lists its machine
// at `price` USD per GPU-hour. `agentArgs` restarts it (it is enrolled).
export async function channelsAgent(t, w, { price = '36', args = [] } = {}) {
  const { token: joinToken } = await gridJson(w.dir, ['provider', 'join-token', 'create', '--ttl', '1h'], { key: w.prov.key, broker: w.broker.url });
  const stateDir = path.join(w.dir, 'agent');
  const agentArgs = ['--state-dir', stateDir, '--simulate-gpus', '1xRTX-4090', '--geolocation', 'DE', '--chain-rpc', w.anvil.url, ...args];
  const agent = await startAgent(t, w.dir, w.broker.url, ['--join-token', joinToken, ...agentArgs]);
  const payee = new Wallet('0x' + fs.readFileSync(path.join(stateDir, 'machine.key'), 'utf8').trim().replace(/^0x/, ''), w.anvil.provider);
  await w.anvil.setBalance(payee.address, parseEther('1'));
  const [machine] = (await gridJson(w.dir, ['machines', 'list'], { key: w.prov.key, broker: w.broker.url })).machines;
  await gridJson(w.dir, ['machines', 'list-offer', String(machine.id), '--price-gpu', price], { key: w.prov.key, broker: w.broker.url });
  return { agent, agentArgs, stateDir, payee, joinToken, machine, offerId: machine.id * 1000 + 1 };
}
