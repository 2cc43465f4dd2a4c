// EIP-712 typed-data hashing for Gridmarket's signed lease orders.
//
// The domain is EIP712Domain(string name,string version,uint256 chainId) with
// name "Gridmarket" and version "1"; there is no verifyingContract because
// orders are verified by the broker, not on chain. The order type is
//   LeaseOrder(uint256 offerId,uint256 gpus,uint256 pricePerHour,
//              uint256 nonce,uint256 expiry)
// (one line, no spaces after commas). A wallet signs it with
// eth_signTypedData_v4 / ethers' signTypedData using the same names; values
// may be passed as decimal strings or numbers. Checked against ethers 6.17
// TypedDataEncoder in eip712_test.cc.
//
// Contract: pure, thread-safe, never fail. price_per_hour_micros and
// expiry_unix_s must be non-negative (ValidateLeaseOrder checks); a negative
// value is encoded as its 256-bit two's complement, which no wallet would
// produce for a small uint256, so it cannot collide with a valid order.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "core/status.h"
#include "crypto/keccak.h"

namespace grid::crypto {

inline constexpr std::string_view kEip712DomainName = "Gridmarket";
inline constexpr std::string_view kEip712DomainVersion = "1";
inline constexpr std::string_view kEip712DomainType =
    "EIP712Domain(string name,string version,uint256 chainId)";
inline constexpr std::string_view kLeaseOrderType =
    "LeaseOrder(uint256 offerId,uint256 gpus,uint256 pricePerHour,uint256 nonce,uint256 expiry)";

struct LeaseOrder {
  uint64_t offer_id = 0;
  uint32_t gpus = 0;
  int64_t price_per_hour_micros = 0;  // micro-USD per hour; the "pricePerHour" field
  uint64_t nonce = 0;                 // chosen by the renter; replay protection
  int64_t expiry_unix_s = 0;          // the order may not be accepted after this
};

// One 32-byte EIP-712 word: a uint256 holding v, big-endian (also used by
// the payment-channel vouchers, crypto/voucher.h).
std::array<uint8_t, 32> Eip712Uint(uint64_t v);

// InvalidArgument when a signed field is negative or gpus is zero.
Status ValidateLeaseOrder(const LeaseOrder& order);

// hashStruct(EIP712Domain{name: "Gridmarket", version: "1", chainId}).
Hash32 DomainSeparator(uint64_t chain_id);

// hashStruct(order) = keccak256(typeHash ‖ enc(offerId) ‖ … ‖ enc(expiry)).
Hash32 LeaseOrderStructHash(const LeaseOrder& order);

// keccak256("\x19\x01" ‖ DomainSeparator(chain_id) ‖ LeaseOrderStructHash(order)):
// the digest to pass to SignDigest / RecoverSigner.
Hash32 LeaseOrderDigest(const LeaseOrder& order, uint64_t chain_id);

}  // namespace grid::crypto
