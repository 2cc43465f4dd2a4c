// Ethereum transactions: legacy with EIP-155 replay protection and EIP-1559
// (type 0x02) — building, signing, the network ("raw") encoding, the
// transaction hash, and decoding a raw signed transaction back with its
// sender recovered.
//
// Contract:
// - SignTransaction signs SigningHash(tx) with RFC 6979 (deterministic) and
//   low s (EIP-2). Legacy transactions are always signed with EIP-155
//   (v = 35 + 2·chain_id + parity); a chain id of 0 is refused.
// - DecodeSignedTransaction accepts exactly the canonical encodings of the two
//   supported types (strict RLP, integers without leading zeros, y parity 0/1,
//   low s), plus pre-EIP-155 legacy transactions (v = 27/28, chain_id 0), so
//   any transaction a node would accept can be read back. Other typed
//   transactions (0x01, 0x03, ...) are InvalidArgument "unsupported type".
// - SignedTransaction::raw is what eth_sendRawTransaction takes; hash is
//   keccak256(raw), the hash nodes report.
// Pure functions on values; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "chain/rlp.h"
#include "chain/u256.h"
#include "core/status.h"
#include "crypto/keccak.h"
#include "crypto/keys.h"

namespace grid::chain {

enum class TxType : uint8_t { kLegacy = 0, kEip1559 = 2 };

struct AccessTuple {
  crypto::Address address;
  std::vector<crypto::Hash32> storage_keys;
  friend bool operator==(const AccessTuple&, const AccessTuple&) = default;
};

// One struct for both types; fields of the other type must stay zero/empty
// (SignTransaction checks).
struct Transaction {
  TxType type = TxType::kEip1559;
  uint64_t chain_id = 0;
  uint64_t nonce = 0;
  U256 gas_price;                 // legacy only
  U256 max_priority_fee_per_gas;  // EIP-1559 only
  U256 max_fee_per_gas;           // EIP-1559 only
  uint64_t gas_limit = 0;
  std::optional<crypto::Address> to;  // nullopt: contract creation
  U256 value;
  Bytes data;
  std::vector<AccessTuple> access_list;  // EIP-1559 only

  friend bool operator==(const Transaction&, const Transaction&) = default;
};

// The bytes whose keccak256 is signed: EIP-155's rlp([nonce, gasPrice, gas,
// to, value, data, chainId, 0, 0]) (6 fields when chain_id is 0), or
// 0x02 ‖ rlp([chainId, nonce, maxPriorityFee, maxFee, gas, to, value, data,
// accessList]).
Bytes UnsignedEncoding(const Transaction& tx);
crypto::Hash32 SigningHash(const Transaction& tx);

struct SignedTransaction {
  Transaction tx;
  uint8_t y_parity = 0;  // 0 or 1: the recovery id
  crypto::Hash32 r{};
  crypto::Hash32 s{};
  crypto::Address from;  // the signer, recovered or from the key
  Bytes raw;             // network encoding
  crypto::Hash32 hash{}; // keccak256(raw)
};

// InvalidArgument for a transaction that cannot be signed as given (legacy
// with chain id 0, fields of the other type set, chain id too large).
Result<SignedTransaction> SignTransaction(const Transaction& tx, const crypto::PrivateKey& key);

// Decodes and verifies a raw signed transaction (see the contract).
Result<SignedTransaction> DecodeSignedTransaction(std::span<const uint8_t> raw);

}  // namespace grid::chain
