#!/usr/bin/env node
// Deploys contracts/PaymentChannels.sol (compiled with the pinned solc-js by
// scripts/compile-contracts.mjs) to an EVM chain, for an operator who wants
// to offer payment channels: `grid broker … --channels ADDRESS`. The contract
// has no owner, no admin key and no constructor arguments: whoever deploys it
// has no power over it, and one deployment serves every broker on the chain.
//
//   GRID_DEPLOYER_KEY=0x… node scripts/deploy-channels.mjs --rpc https://… [--chain-id N]
//
// The deployer key pays the gas (about 1.2M gas). Prints the contract's
// address on stdout (and what it did on stderr); exits non-zero, saying why,
// when the node is unreachable, the chain id differs from --chain-id, or the
// key cannot pay.
import { ContractFactory, JsonRpcProvider, Wallet } from 'ethers';
import { compileContracts, loadArtifact } from './compile-contracts.mjs';

function usage(msg) {
  process.stderr.write(`deploy-channels: ${msg}\nusage: GRID_DEPLOYER_KEY=0x… deploy-channels.mjs --rpc URL [--chain-id N]\n`);
  process.exit(2);
}

let rpc = null;
let chainId = null;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const val = () => (i + 1 < argv.length ? argv[++i] : usage(`${argv[i]} needs a value`));
  if (argv[i] === '--rpc') rpc = val();
  else if (argv[i] === '--chain-id') chainId = BigInt(val());
  else usage(`unknown argument ${argv[i]}`);
}
if (!rpc) usage('--rpc is required');
const key = process.env.GRID_DEPLOYER_KEY;
if (!key || !/^(0x)?[0-9a-fA-F]{64}$/.test(key)) usage('GRID_DEPLOYER_KEY must hold the deployer\'s private key (64 hex digits)');

try {
  await compileContracts({ quiet: true });
  const provider = new JsonRpcProvider(rpc);
  const network = await provider.getNetwork();
  if (chainId !== null && network.chainId !== chainId)
    throw new Error(`the node at ${rpc} is chain ${network.chainId}, not ${chainId}`);
  const wallet = new Wallet(key, provider);
  const { abi, bytecode } = loadArtifact('PaymentChannels');
  process.stderr.write(`deploying PaymentChannels from ${wallet.address} on chain ${network.chainId}\n`);
  const contract = await new ContractFactory(abi, bytecode, wallet).deploy();
  const receipt = await contract.deploymentTransaction().wait();
  const domain = await contract.eip712Domain();
  process.stderr.write(`deployed in block ${receipt.blockNumber} (tx ${receipt.hash}, ${receipt.gasUsed} gas); ` +
    `EIP-712 domain "${domain.name}" v${domain.version}, chain ${domain.chainId}\n`);
  process.stdout.write(`${contract.target}\n`);
  provider.destroy();
} catch (e) {
  process.stderr.write(`deploy-channels: ${e.shortMessage || e.message || e}\n`);
  process.exit(1);
}
