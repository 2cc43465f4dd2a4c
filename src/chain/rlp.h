// RLP (Recursive Length Prefix), the serialization of Ethereum transactions.
//
// Contract:
// - The encoders produce canonical RLP: the shortest length prefixes, a
//   single byte below 0x80 as itself, integers as minimal big-endian bytes
//   (zero is the empty string).
// - RlpDecode is strict, because it reads raw transactions from outside: it
//   accepts only canonical encodings (no long form for short payloads, no
//   leading zeros in lengths, no single byte < 0x80 wrapped as a string),
//   requires the input to be exactly one item with no trailing bytes, checks
//   every length against what is left, and limits nesting to kMaxRlpDepth.
//   So RlpEncode(RlpDecode(x)) == x for every x it accepts. Errors are
//   InvalidArgument naming the offset.
// - The integer readers (RlpItem::AsUint64/AsU256) also reject leading zero
//   bytes, as Ethereum clients do for transaction fields.
// Pure functions on values; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "chain/u256.h"
#include "core/status.h"
#include "crypto/keys.h"

namespace grid::chain {

using Bytes = std::vector<uint8_t>;

inline constexpr int kMaxRlpDepth = 16;

// One decoded item: either a byte string or a list of items.
struct RlpItem {
  bool is_list = false;
  Bytes bytes;                // the string, when !is_list
  std::vector<RlpItem> items; // the elements, when is_list

  static RlpItem String(Bytes b) { return RlpItem{false, std::move(b), {}}; }
  static RlpItem List(std::vector<RlpItem> items) { return RlpItem{true, {}, std::move(items)}; }

  // Typed readers; InvalidArgument naming `what` on a wrong shape.
  Result<uint64_t> AsUint64(std::string_view what) const;
  Result<U256> AsU256(std::string_view what) const;
  // Exactly 20 bytes.
  Result<crypto::Address> AsAddress(std::string_view what) const;
  // Exactly 32 bytes.
  Result<crypto::Hash32> AsHash32(std::string_view what) const;

  friend bool operator==(const RlpItem&, const RlpItem&) = default;
};

// Encoders: each returns one complete RLP item.
Bytes RlpEncodeBytes(std::span<const uint8_t> bytes);
Bytes RlpEncodeUint(uint64_t v);
Bytes RlpEncodeU256(const U256& v);
// Wraps already-encoded items (concatenated) in a list header.
Bytes RlpEncodeList(std::span<const Bytes> encoded_items);
Bytes RlpEncode(const RlpItem& item);

// Decodes exactly one item spanning all of `data` (see the contract above).
Result<RlpItem> RlpDecode(std::span<const uint8_t> data);

}  // namespace grid::chain
