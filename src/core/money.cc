#include "core/money.h"

#include <charconv>
#include <cstdlib>

namespace grid {

Result<Micros> ParseMoney(std::string_view text, std::string_view what, bool allow_negative) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument(std::string(what) + ": " + std::string(why) + " (got \"" +
                           std::string(text.substr(0, 40)) + "\")");
  };
  if (text.empty()) return bad("empty amount");
  bool negative = false;
  std::string_view s = text;
  if (s.front() == '-') {
    if (!allow_negative) return bad("must not be negative");
    negative = true;
    s.remove_prefix(1);
  }
  if (s.empty()) return bad("not a decimal number");
  size_t dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
  // The wire format is digits[.digits]: no sign, no bare ".5" or "5.".
  if (whole.empty()) return bad("not a decimal number");
  if (dot != std::string_view::npos && frac.empty()) return bad("not a decimal number");
  if (frac.size() > 6) return bad("more than 6 decimal places");
  Int128 value = 0;
  for (char c : whole) {
    if (c < '0' || c > '9') return bad("not a decimal number");
    value = value * 10 + (c - '0');
    if (value > INT64_MAX) return bad("too large");
  }
  value *= kMicrosPerUnit;
  Int128 scale = kMicrosPerUnit / 10;
  for (char c : frac) {
    if (c < '0' || c > '9') return bad("not a decimal number");
    value += (c - '0') * scale;
    scale /= 10;
  }
  if (value > INT64_MAX) return bad("too large");
  auto result = static_cast<Micros>(value);
  return negative ? -result : result;
}

char* FormatMoneyTo(char* p, Micros amount) {
  // Unsigned negation, so INT64_MIN formats correctly.
  const bool negative = amount < 0;
  const uint64_t mag = negative ? 0 - static_cast<uint64_t>(amount) : static_cast<uint64_t>(amount);
  if (negative) *p++ = '-';
  p = std::to_chars(p, p + 20, mag / static_cast<uint64_t>(kMicrosPerUnit)).ptr;
  *p++ = '.';
  uint64_t frac = mag % static_cast<uint64_t>(kMicrosPerUnit);
  for (int i = 5; i >= 0; --i) {
    p[i] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  return p + 6;
}

std::string FormatMoney(Micros amount) {
  char buf[kMaxMoneyChars];
  return std::string(buf, FormatMoneyTo(buf, amount));
}

std::optional<Micros> CheckedAdd(Micros a, Micros b) {
  Micros r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

std::optional<Micros> CheckedSub(Micros a, Micros b) {
  Micros r;
  if (__builtin_sub_overflow(a, b, &r)) return std::nullopt;
  return r;
}

std::optional<Micros> CheckedMul(Micros a, int64_t b) {
  Micros r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

std::optional<Micros> MulDivFloor(int64_t a, int64_t b, int64_t d) {
  if (a < 0 || b < 0 || d <= 0) return std::nullopt;
  Int128 r = static_cast<Int128>(a) * b / d;
  if (r > INT64_MAX) return std::nullopt;
  return static_cast<Micros>(r);
}

std::optional<Micros> AccruedCharge(Micros price_per_hour, int64_t elapsed_ms) {
  return MulDivFloor(price_per_hour, elapsed_ms, kMsPerHour);
}

std::optional<Micros> FeeOf(Micros charged, int64_t fee_bps) {
  if (fee_bps < 0 || fee_bps > 10'000) return std::nullopt;
  return MulDivFloor(charged, fee_bps, 10'000);
}

}  // namespace grid
