// Money: int64 micro-USD (1e-6, the unit of USDC), with checked arithmetic.
//
// Never a float, not even on the wire: amounts travel as decimal strings with
// at most six decimals ("2.100000"). Every operation that could overflow
// reports it instead of wrapping. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace grid {

using Micros = int64_t;  // micro-USD

// 128-bit intermediates for exact products of money and time. (__extension__
// keeps -Wpedantic quiet about the GCC/Clang builtin type.)
__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 UInt128;

inline constexpr Micros kMicrosPerUnit = 1'000'000;
inline constexpr int64_t kMsPerHour = 3'600'000;

// Parses "2", "2.1", "2.100000", "0.000001" (digits[.digits]). Rejects "+",
// ".5", "5." and a "-" sign unless
// allow_negative, more than six decimals, exponents, spaces, and values that do
// not fit in int64 micro-units. `what` names the field in the error message.
Result<Micros> ParseMoney(std::string_view text, std::string_view what = "amount",
                          bool allow_negative = false);

// "2.100000", "-0.000001". Always six decimals.
std::string FormatMoney(Micros amount);
// The same characters written to buf (at least kMaxMoneyChars bytes, no
// terminator); returns the end. For encoders that build one big string.
inline constexpr size_t kMaxMoneyChars = 28;
char* FormatMoneyTo(char* buf, Micros amount);

// Checked arithmetic: nullopt on overflow.
std::optional<Micros> CheckedAdd(Micros a, Micros b);
std::optional<Micros> CheckedSub(Micros a, Micros b);
std::optional<Micros> CheckedMul(Micros a, int64_t b);

// floor(a * b / d) computed exactly in 128 bits; nullopt on overflow or d <= 0.
// a and b must be non-negative.
std::optional<Micros> MulDivFloor(int64_t a, int64_t b, int64_t d);

// The accrual rule of GUIDE.md §3: what a lease at `price_per_hour` has cost
// after `elapsed_ms` of running. Cumulative, so rounding never drifts.
std::optional<Micros> AccruedCharge(Micros price_per_hour, int64_t elapsed_ms);

// The operator's cut of a cumulative charge, at `fee_bps` basis points,
// computed the same cumulative way.
std::optional<Micros> FeeOf(Micros charged, int64_t fee_bps);

}  // namespace grid
