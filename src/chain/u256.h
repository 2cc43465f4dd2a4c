// U256: the unsigned 256-bit integers of the EVM (token amounts, gas prices,
// transaction values), with only what the chain layer needs: conversion to
// and from big-endian bytes, 0x-hex JSON-RPC quantities and decimal text,
// comparison, and arithmetic that reports overflow instead of wrapping.
//
// Contract: a value type; every function is pure and thread-safe. Nothing
// here wraps silently: overflow and underflow come back as nullopt, and text
// that is not a canonical number is an InvalidArgument naming the problem.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grid::chain {

class U256 {
 public:
  constexpr U256() = default;
  constexpr U256(uint64_t v) : limbs_{v, 0, 0, 0} {}  // NOLINT(implicit): literals

  // At most 32 bytes, big-endian, leading zeros allowed; InvalidArgument when
  // longer.
  static Result<U256> FromBigEndian(std::span<const uint8_t> bytes);
  // An Ethereum JSON-RPC quantity: "0x" followed by 1..64 hex digits. Leading
  // zeros are tolerated (some nodes pad) as long as the value fits.
  static Result<U256> FromQuantity(std::string_view hex);
  // Decimal digits only, no sign, no spaces; must fit in 256 bits.
  static Result<U256> FromDecimal(std::string_view text);
  static constexpr U256 Max() {
    U256 v;
    v.limbs_ = {~uint64_t{0}, ~uint64_t{0}, ~uint64_t{0}, ~uint64_t{0}};
    return v;
  }

  // 32 bytes, big-endian (ABI words, storage keys).
  std::array<uint8_t, 32> ToBigEndian32() const;
  // Minimal big-endian bytes: no leading zero byte, empty for zero (RLP).
  std::vector<uint8_t> ToMinimalBigEndian() const;
  // "0x0", "0x1a": the canonical JSON-RPC quantity.
  std::string ToQuantity() const;
  std::string ToDecimal() const;

  bool IsZero() const { return limbs_[0] == 0 && limbs_[1] == 0 && limbs_[2] == 0 && limbs_[3] == 0; }
  // The value when it fits; nullopt otherwise.
  std::optional<uint64_t> ToUint64() const;
  // InvalidArgument naming `what` when the value is above INT64_MAX (amounts
  // entering the ledger's Micros).
  Result<int64_t> ToInt64(std::string_view what = "value") const;

  // Checked arithmetic: nullopt on overflow (or underflow for Sub).
  static std::optional<U256> Add(const U256& a, const U256& b);
  static std::optional<U256> Sub(const U256& a, const U256& b);
  static std::optional<U256> MulSmall(const U256& a, uint64_t m);
  // Floor division by a non-zero small divisor (nullopt for 0).
  static std::optional<U256> DivSmall(const U256& a, uint64_t d);

  friend bool operator==(const U256&, const U256&) = default;
  friend std::strong_ordering operator<=>(const U256& a, const U256& b) {
    for (int i = 3; i >= 0; --i) {
      if (a.limbs_[i] != b.limbs_[i]) return a.limbs_[i] <=> b.limbs_[i];
    }
    return std::strong_ordering::equal;
  }

 private:
  std::array<uint64_t, 4> limbs_{};  // little-endian: limbs_[0] is the lowest
};

}  // namespace grid::chain
