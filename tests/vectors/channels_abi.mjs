// ABI vectors for contracts/PaymentChannels.sol (issue 6) from ethers.js
// 6.17.0 (npm, pinned in package-lock.json), an ABI encoder independent of
// our C++: calldata of every state-changing entry point and of the
// channels(id) view, the return data of channels(id), one Opened event log,
// the 4-byte selectors of every function, the topic of every event, and the
// selector of every custom error (what a revert's data starts with).
//
// Regenerate from the repository root:
//   node tests/vectors/channels_abi.mjs
// It writes tests/vectors/channels_abi.json (2-space indent) and prints
// nothing else. The ABI comes from the compiled artifact
// (build/contracts/PaymentChannels.json, compiled from contracts/ by
// scripts/compile-contracts.mjs when out of date) plus ERC-20
// approve(address,uint256). Every input is fixed below, so the output only
// changes when the contract's ABI (or ethers) does.
//
// Conventions in the JSON: addresses are EIP-55 checksummed, bytes and
// bytes32 values are lower-case 0x-hex, integers are decimal strings (uint96
// and uint256 values do not fit a JSON number), calldata and return data are
// lower-case 0x-hex.
import fs from 'node:fs';
import path from 'node:path';
import { Interface, Wallet, getAddress, id as keccakText, keccak256, toUtf8Bytes } from 'ethers';
import { loadArtifact } from '../../scripts/compile-contracts.mjs';

const OUT = path.join(import.meta.dirname, 'channels_abi.json');
const { abi } = loadArtifact('PaymentChannels');
const iface = new Interface(abi);
const erc20 = new Interface(['function approve(address spender, uint256 amount) returns (bool)']);

// ---------------------------------------------------------------- fixed inputs

// Made-up but valid addresses (checksummed here, so a typo cannot slip in).
const A = {
  contract: getAddress('0x5fc8d32690cc91d4c39d9d3abcbd16989f875707'),
  renter: getAddress('0x70997970c51812dc3a010c7d01b50e0d17dc79c8'),
  provider: getAddress('0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc'),
  token: getAddress('0x5fbdb2315678afecb367f032d93f642f64180aa3'),
  signer: getAddress('0x90f79bf6eb2c4f870365e785982e1f101e93b906'),
  zero: '0x0000000000000000000000000000000000000000',
};
const ID = keccakText('gridmarket channel vector 1'); // a bytes32 channel id
const ID_HIGH = '0x' + 'ff'.repeat(32);
const ID_ZERO = '0x' + '00'.repeat(32);
const UINT96_MAX = (1n << 96n) - 1n; // 79228162514264337593543950335
const UINT64_MAX = (1n << 64n) - 1n;
const UINT48_MAX = (1n << 48n) - 1n;
const UINT256_MAX = (1n << 256n) - 1n;
const DEPOSIT = 10_000_000n; // 10.000000 of a 6-decimal token
const EXPIRY = 1798761600n; // 2027-01-01T00:00:00Z

// A real 65-byte voucher signature (r ‖ s ‖ v, v 27/28): ethers'
// deterministic (RFC 6979) signature of Voucher(ID, 2500000) in the domain of
// A.contract on chain 31337, by a fixed key. Only its bytes matter here.
const SIG_KEY = '0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318';
const sigWallet = new Wallet(SIG_KEY);
const VOUCHER_TYPES = { Voucher: [{ name: 'channelId', type: 'bytes32' }, { name: 'cumulativeAmount', type: 'uint256' }] };
const SIG = await sigWallet.signTypedData(
  { name: 'GridmarketChannels', version: '1', chainId: 31337, verifyingContract: A.contract },
  VOUCHER_TYPES,
  { channelId: ID, cumulativeAmount: 2_500_000n },
);
if ((SIG.length - 2) / 2 !== 65) throw new Error('signature is not 65 bytes');

// ---------------------------------------------------------------- helpers

// JSON-friendly copy of a value: BigInt -> decimal string, arrays kept.
const plain = (v) => (typeof v === 'bigint' ? v.toString() : Array.isArray(v) ? v.map(plain) : v);

function signatureOf(fragment) {
  return fragment.format('sighash');
}

// A calldata vector: the function's signature and selector, its named inputs,
// and ethers' encoding.
function call(ifc, name, inputs, description) {
  const fragment = ifc.getFunction(name, Object.values(inputs));
  const data = ifc.encodeFunctionData(fragment, Object.values(inputs));
  // Decodes back to the same values (a sanity check on the fixed inputs).
  const back = ifc.decodeFunctionData(fragment, data);
  Object.values(inputs).forEach((v, i) => {
    if (String(back[i]).toLowerCase() !== String(v).toLowerCase()) throw new Error(`${name}: input ${i} does not round-trip`);
  });
  return {
    description,
    function: signatureOf(fragment),
    selector: fragment.selector,
    inputs: Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, plain(v)])),
    calldata: data,
  };
}

// ---------------------------------------------------------------- calldata

const calls = [
  call(erc20, 'approve', { spender: A.contract, amount: DEPOSIT }, 'ERC-20 approve of the channel contract for a 10.000000 deposit'),
  call(erc20, 'approve', { spender: A.contract, amount: UINT256_MAX }, 'ERC-20 approve of the maximum (uint256 max)'),
  call(erc20, 'approve', { spender: A.contract, amount: 0n }, 'ERC-20 approve of 0 (revokes)'),
  call(iface, 'open', { provider: A.provider, token: A.token, amount: DEPOSIT, expiry: EXPIRY, signer: A.renter },
    'open: 10.000000, expiry 2027-01-01T00:00:00Z, the renter signs its own vouchers'),
  call(iface, 'open', { provider: A.provider, token: A.token, amount: UINT96_MAX, expiry: UINT48_MAX, signer: A.signer },
    'open: the largest deposit the contract stores (uint96 max) and expiry (uint48 max), a session key signs'),
  call(iface, 'open', { provider: A.provider, token: A.token, amount: 0n, expiry: 0n, signer: A.zero },
    'open: all zero amount, expiry and signer (the contract reverts ZeroAddress; the encoding is still defined)'),
  call(iface, 'topUp', { id: ID, amount: 5_000_000n, newExpiry: EXPIRY + 3600n }, 'topUp: 5.000000 more, expiry one hour later'),
  call(iface, 'topUp', { id: ID, amount: 0n, newExpiry: UINT64_MAX }, 'topUp: amount 0 (expiry only), expiry uint64 max'),
  call(iface, 'topUp', { id: ID_HIGH, amount: UINT96_MAX, newExpiry: EXPIRY }, 'topUp: all-ff id, uint96 max amount'),
  call(iface, 'redeem', { id: ID, cumulative: 2_500_000n, sig: SIG }, 'redeem: cumulative 2.500000 with a 65-byte signature'),
  call(iface, 'redeem', { id: ID, cumulative: UINT96_MAX, sig: SIG }, 'redeem: cumulative uint96 max, same signature bytes'),
  call(iface, 'close', { id: ID, cumulative: 2_500_000n, sig: SIG }, 'close: with a voucher for 2.500000 (65-byte signature)'),
  call(iface, 'close', { id: ID, cumulative: 0n, sig: '0x' }, 'close: cumulative 0 and an empty signature (ends without a new payment)'),
  call(iface, 'refund', { id: ID }, 'refund'),
  call(iface, 'refund', { id: ID_ZERO }, 'refund: the zero id'),
  call(iface, 'startClose', { id: ID }, 'startClose'),
  call(iface, 'finishClose', { id: ID }, 'finishClose'),
  call(iface, 'channels', { id: ID }, 'channels(id): the public mapping getter (eth_call)'),
  call(iface, 'channels', { id: ID_HIGH }, 'channels(id): an all-ff id'),
  call(iface, 'nextChannelId', { renter: A.renter, provider: A.provider, token: A.token }, 'nextChannelId(renter, provider, token) view'),
  call(iface, 'voucherDigest', { id: ID, cumulative: 2_500_000n }, 'voucherDigest(id, cumulative) view'),
  call(iface, 'signerOf', { id: ID }, 'signerOf(id) view'),
  call(iface, 'eip712Domain', {}, 'eip712Domain() view (EIP-5267)'),
  call(iface, 'domainSeparator', {}, 'domainSeparator() view'),
  call(iface, 'nextNonce', {}, 'nextNonce() view'),
];

// ---------------------------------------------------------------- channels(id) return data

const channelsFn = iface.getFunction('channels');
function channelResult(description, fields) {
  const values = channelsFn.outputs.map((o) => fields[o.name]);
  const data = iface.encodeFunctionResult(channelsFn, values);
  const back = iface.decodeFunctionResult(channelsFn, data);
  channelsFn.outputs.forEach((o, i) => {
    if (String(back[i]).toLowerCase() !== String(values[i]).toLowerCase()) throw new Error(`channels result: ${o.name} does not round-trip`);
  });
  return {
    description,
    function: signatureOf(channelsFn),
    outputs: channelsFn.outputs.map((o) => `${o.type} ${o.name}`),
    fields: Object.fromEntries(channelsFn.outputs.map((o) => [o.name, plain(fields[o.name])])),
    return_data: data,
  };
}

const channelResults = [
  channelResult('an open channel: 10.000000 deposited, 2.500000 paid, no close pending, the renter signs (signer stored as zero)', {
    renter: A.renter, expiry: EXPIRY, closeAt: 0n, provider: A.provider, deposit: DEPOSIT, token: A.token, paid: 2_500_000n, signer: A.zero,
  }),
  channelResult('a channel with a session-key signer, a pending renter close and the largest deposit (uint96 max), nothing paid', {
    renter: A.renter, expiry: UINT48_MAX, closeAt: EXPIRY + 3600n, provider: A.provider, deposit: UINT96_MAX, token: A.token, paid: 0n, signer: A.signer,
  }),
  channelResult('no such channel (deleted or never opened): every field zero', {
    renter: A.zero, expiry: 0n, closeAt: 0n, provider: A.zero, deposit: 0n, token: A.zero, paid: 0n, signer: A.zero,
  }),
];

// ---------------------------------------------------------------- the Opened event

const opened = iface.getEvent('Opened');
const openedValues = { id: ID, renter: A.renter, provider: A.provider, token: A.token, signer: A.signer, deposit: DEPOSIT, expiry: EXPIRY };
const openedLog = iface.encodeEventLog(opened, opened.inputs.map((i) => openedValues[i.name]));
const parsed = iface.parseLog(openedLog);
const openedEvent = {
  description: 'Opened for a 10.000000 deposit with a session-key signer; id, renter and provider are indexed (topics 1-3), the rest is in data',
  event: opened.format('sighash'),
  topic0: opened.topicHash,
  inputs: opened.inputs.map((i) => `${i.type}${i.indexed ? ' indexed' : ''} ${i.name}`),
  topics: openedLog.topics,
  data: openedLog.data,
  decoded: Object.fromEntries(opened.inputs.map((i, k) => [i.name, plain(parsed.args[k])])),
};

// ---------------------------------------------------------------- selectors

const functions = iface.fragments
  .filter((f) => f.type === 'function')
  .map((f) => ({ name: f.name, signature: f.format('sighash'), selector: f.selector, state_mutability: f.stateMutability }))
  .sort((a, b) => a.signature.localeCompare(b.signature));
const events = iface.fragments
  .filter((f) => f.type === 'event')
  .map((f) => ({ name: f.name, signature: f.format('sighash'), topic0: f.topicHash }))
  .sort((a, b) => a.signature.localeCompare(b.signature));
const errors = iface.fragments
  .filter((f) => f.type === 'error')
  .map((f) => ({ name: f.name, signature: f.format('sighash'), selector: f.selector }))
  .sort((a, b) => a.name.localeCompare(b.name));
for (const e of errors) {
  if (keccak256(toUtf8Bytes(e.signature)).slice(0, 10) !== e.selector) throw new Error(`selector of ${e.name}`);
}

const out = {
  generator: 'node tests/vectors/channels_abi.mjs (ethers 6.17.0, ABI from build/contracts/PaymentChannels.json)',
  notes: [
    'addresses checksummed; integers as decimal strings; bytes, calldata and return data as lower-case 0x-hex',
    'uint96 max = 79228162514264337593543950335 (the largest deposit/paid the contract stores)',
    'revert data of a custom error is its 4-byte selector (all errors here take no arguments)',
  ],
  addresses: A,
  constants: {
    channel_id: ID,
    channel_id_high: ID_HIGH,
    deposit: DEPOSIT.toString(),
    expiry: EXPIRY.toString(),
    uint96_max: UINT96_MAX.toString(),
    uint64_max: UINT64_MAX.toString(),
    uint48_max: UINT48_MAX.toString(),
    signature: SIG,
    signature_note: `ethers signTypedData of Voucher(channel_id, 2500000), domain GridmarketChannels/1/chain 31337/${A.contract}, key ${SIG_KEY} (address ${sigWallet.address})`,
  },
  calls,
  channels_results: channelResults,
  opened_event: openedEvent,
  functions,
  events,
  errors,
};

fs.writeFileSync(OUT, JSON.stringify(out, null, 2) + '\n');
