// Generates the expected hex in src/chain/*_test.cc with ethers.js (npm
// ethers@6, pinned in package-lock.json), a wallet library independent of our
// code. Run once from the repository root: node tests/vectors/chain_vectors.js
import { Transaction, Wallet, Interface, toUtf8Bytes, encodeRlp, AbiCoder } from 'ethers';

const out = {};
// EIP-155's own example (the key is 0x46 repeated).
const k46 = '0x' + '46'.repeat(32);
const w46 = new Wallet(k46);
const legacy = Transaction.from({
  type: 0, chainId: 1, nonce: 9, gasPrice: 20000000000n, gasLimit: 21000n,
  to: '0x' + '35'.repeat(20), value: 10n ** 18n, data: '0x',
});
out.eip155_unsigned = legacy.unsignedSerialized;
out.eip155_hash = legacy.unsignedHash;
legacy.signature = w46.signingKey.sign(legacy.unsignedHash);
out.eip155_signed = legacy.serialized;
out.eip155_txhash = legacy.hash;

// An EIP-1559 ERC-20 transfer on anvil's chain id, key 0x...01.
const k1 = '0x' + '00'.repeat(31) + '01';
const w1 = new Wallet(k1);
const erc20 = new Interface([
  'function transfer(address to, uint256 amount) returns (bool)',
  'function balanceOf(address) view returns (uint256)',
  'function decimals() view returns (uint8)',
  'event Transfer(address indexed from, address indexed to, uint256 value)',
]);
const to = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';
const token = '0x5FbDB2315678afecb367f032d93F642f64180aa3';
out.transfer_calldata = erc20.encodeFunctionData('transfer', [to, 123456789n]);
out.balanceof_calldata = erc20.encodeFunctionData('balanceOf', [to]);
out.decimals_calldata = erc20.encodeFunctionData('decimals', []);
out.transfer_topic = erc20.getEvent('Transfer').topicHash;
const t1559 = Transaction.from({
  type: 2, chainId: 31337, nonce: 7, maxPriorityFeePerGas: 1500000000n,
  maxFeePerGas: 30000000000n, gasLimit: 65000n, to: token, value: 0n,
  data: out.transfer_calldata, accessList: [],
});
out.eip1559_unsigned = t1559.unsignedSerialized;
out.eip1559_sighash = t1559.unsignedHash;
t1559.signature = w1.signingKey.sign(t1559.unsignedHash);
out.eip1559_signed = t1559.serialized;
out.eip1559_txhash = t1559.hash;
out.eip1559_from = t1559.from;

// With an access list and a big value (decoder coverage), contract creation legacy.
const tAcl = Transaction.from({
  type: 2, chainId: 1, nonce: 0, maxPriorityFeePerGas: 0n, maxFeePerGas: 1n,
  gasLimit: 100000n, to: to, value: 2n ** 255n + 17n, data: '0xdeadbeef',
  accessList: [{ address: token, storageKeys: ['0x' + '00'.repeat(31) + '01'] }],
});
tAcl.signature = w1.signingKey.sign(tAcl.unsignedHash);
out.acl_signed = tAcl.serialized;
out.acl_txhash = tAcl.hash;
const tCreate = Transaction.from({
  type: 0, chainId: 31337, nonce: 1, gasPrice: 1n, gasLimit: 53000n, to: null, value: 0n, data: '0x6000',
});
tCreate.signature = w1.signingKey.sign(tCreate.unsignedHash);
out.create_signed = tCreate.serialized;
out.create_txhash = tCreate.hash;

// ABI return data and reverts.
const coder = AbiCoder.defaultAbiCoder();
out.revert_error = '0x08c379a0' + coder.encode(['string'], ['ERC20: transfer amount exceeds balance']).slice(2);
out.revert_panic = '0x4e487b71' + coder.encode(['uint256'], [0x11]).slice(2);
out.transfer_log_data = coder.encode(['uint256'], [123456789n]);

// RLP.
out.rlp_nested = encodeRlp([[], [[]], [[], [[]]]]);
out.rlp_long_string = encodeRlp(toUtf8Bytes('Lorem ipsum dolor sit amet, consectetur adipisicing elit'));
console.log(JSON.stringify(out, null, 1));
