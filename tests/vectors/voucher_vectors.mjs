// Payment-channel voucher vectors (issue 6) from ethers.js 6.17.0 (npm,
// pinned in package-lock.json), a wallet library independent of our C++.
// Run from the repository root:
//   node tests/vectors/voucher_vectors.mjs > tests/vectors/voucher_vectors.json
// src/crypto/voucher_test.cc and tests/functional/channels_contract.test.mjs
// read the JSON file itself (no constants to copy).
//
// A voucher is the EIP-712 typed data Voucher(bytes32 channelId,uint256
// cumulativeAmount) in the domain {name "GridmarketChannels", version "1",
// chainId, verifyingContract} (contracts/PaymentChannels.sol). Signatures are
// ethers' Wallet.signTypedData: RFC 6979, low s, v 27/28. Because our C++
// signer is deterministic in the same way (libsecp256k1, RFC 6979), its
// signature of the same voucher is byte for byte the same, and
// src/crypto/voucher_test.cc asserts exactly that. The "anvil" case is a
// channel that tests/functional/channels_contract.test.mjs opens on a fresh
// anvil (token and contract deployed by dev account 0 at nonces 0 and 1,
// renter dev account 1, provider dev account 2, the contract's first channel:
// nonce 1):
// that test redeems the committed signature on the real contract, so a
// voucher our C++ signs is shown accepted on chain.
import { AbiCoder, TypedDataEncoder, Wallet, getCreateAddress, keccak256, id as keccakText } from 'ethers';

const KEY = '0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318';
const wallet = new Wallet(KEY);
const types = { Voucher: [{ name: 'channelId', type: 'bytes32' }, { name: 'cumulativeAmount', type: 'uint256' }] };
const domainOf = (chainId, contract) => ({ name: 'GridmarketChannels', version: '1', chainId, verifyingContract: contract });

async function voucherCase(name, chainId, contract, channelId, cumulative) {
  const domain = domainOf(chainId, contract);
  const value = { channelId, cumulativeAmount: BigInt(cumulative) };
  const signature = await wallet.signTypedData(domain, types, value);
  return {
    name,
    chain_id: chainId,
    contract,
    channel_id: channelId,
    cumulative: String(cumulative),
    domain_separator: TypedDataEncoder.hashDomain(domain),
    struct_hash: TypedDataEncoder.hashStruct('Voucher', types, value),
    digest: TypedDataEncoder.hash(domain, types, value),
    signature,
    wire: JSON.stringify({ channel_id: channelId, cumulative: String(cumulative), signature }),
  };
}

// The fresh-anvil channel of the functional test.
const DEV = [
  '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80',
  '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d',
  '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a',
].map((k) => new Wallet(k).address);
const token = getCreateAddress({ from: DEV[0], nonce: 0 });
const contract = getCreateAddress({ from: DEV[0], nonce: 1 });
const anvilChannel = keccak256(
  AbiCoder.defaultAbiCoder().encode(
    ['address', 'address', 'address', 'uint256', 'uint256', 'address'],
    [DEV[1], DEV[2], token, 1, 31337, contract],
  ),
);

const out = {
  generator: 'node tests/vectors/voucher_vectors.mjs (ethers 6.17.0)',
  key: KEY,
  signer: wallet.address,
  domain_type_hash: keccakText('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)'),
  voucher_type_hash: keccakText('Voucher(bytes32 channelId,uint256 cumulativeAmount)'),
  anvil: { deployer: DEV[0], renter: DEV[1], provider: DEV[2], token, contract, nonce: 1, deposit: '10000000' },
  cases: [
    await voucherCase('anvil', 31337, contract, anvilChannel, 1234567n),
    await voucherCase('zero', 31337, contract, anvilChannel, 0n),
    await voucherCase('one, chain 1', 1, '0x00000000000000000000000000000000DeaDBeef', keccakText('channel a'), 1n),
    await voucherCase('uint64 max, chain 8453', 8453, '0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC', keccakText('channel b'), 18446744073709551615n),
    await voucherCase('high byte id, chain 2^53-1', Number.MAX_SAFE_INTEGER, contract, '0x' + 'ff'.repeat(32), 5000000n),
  ],
};
process.stdout.write(JSON.stringify(out, null, 1) + '\n');
