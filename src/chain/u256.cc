#include "chain/u256.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "crypto/hex.h"

namespace grid::chain {

namespace {
__extension__ typedef unsigned __int128 U128;  // quiet under -Wpedantic
}  // namespace

Result<U256> U256::FromBigEndian(std::span<const uint8_t> bytes) {
  if (bytes.size() > 32) return InvalidArgument("integer longer than 32 bytes");
  U256 v;
  for (size_t i = 0; i < bytes.size(); ++i) {
    size_t bit_pos = (bytes.size() - 1 - i) * 8;
    v.limbs_[bit_pos / 64] |= uint64_t{bytes[i]} << (bit_pos % 64);
  }
  return v;
}

Result<U256> U256::FromQuantity(std::string_view hex) {
  if (hex.size() < 3 || hex[0] != '0' || (hex[1] != 'x' && hex[1] != 'X')) {
    return InvalidArgument("quantity must be 0x followed by hex digits, got \"" +
                           std::string(hex.substr(0, 80)) + "\"");
  }
  std::string_view digits = hex.substr(2);
  while (digits.size() > 1 && digits[0] == '0') digits.remove_prefix(1);
  if (digits.size() > 64) return InvalidArgument("quantity does not fit in 256 bits");
  U256 v;
  for (size_t i = 0; i < digits.size(); ++i) {
    int d = crypto::HexDigitValue(digits[i]);
    if (d < 0) return InvalidArgument("quantity has a non-hex digit: \"" + std::string(hex.substr(0, 80)) + "\"");
    size_t bit_pos = (digits.size() - 1 - i) * 4;
    v.limbs_[bit_pos / 64] |= uint64_t(d) << (bit_pos % 64);
  }
  return v;
}

Result<U256> U256::FromDecimal(std::string_view text) {
  if (text.empty()) return InvalidArgument("empty decimal number");
  U256 v;
  for (char c : text) {
    if (c < '0' || c > '9') return InvalidArgument("decimal number has a non-digit");
    auto m = MulSmall(v, 10);
    if (!m) return InvalidArgument("decimal number does not fit in 256 bits");
    auto a = Add(*m, U256(uint64_t(c - '0')));
    if (!a) return InvalidArgument("decimal number does not fit in 256 bits");
    v = *a;
  }
  return v;
}

std::array<uint8_t, 32> U256::ToBigEndian32() const {
  std::array<uint8_t, 32> out{};
  for (int i = 0; i < 32; ++i) {
    size_t bit_pos = size_t(31 - i) * 8;
    out[i] = uint8_t(limbs_[bit_pos / 64] >> (bit_pos % 64));
  }
  return out;
}

std::vector<uint8_t> U256::ToMinimalBigEndian() const {
  std::array<uint8_t, 32> full = ToBigEndian32();
  auto first = std::find_if(full.begin(), full.end(), [](uint8_t b) { return b != 0; });
  return std::vector<uint8_t>(first, full.end());
}

std::string U256::ToQuantity() const {
  std::string hex = crypto::HexEncode(ToBigEndian32(), /*prefix=*/false);
  size_t nz = hex.find_first_not_of('0');
  return "0x" + (nz == std::string::npos ? std::string("0") : hex.substr(nz));
}

std::string U256::ToDecimal() const {
  if (IsZero()) return "0";
  std::string out;
  U256 v = *this;
  while (!v.IsZero()) {
    // Long division by 10 from the top limb down, in 128-bit steps.
    U128 rem = 0;
    for (int i = 3; i >= 0; --i) {
      U128 cur = (rem << 64) | v.limbs_[i];
      v.limbs_[i] = uint64_t(cur / 10);
      rem = cur % 10;
    }
    out.push_back(char('0' + int(rem)));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::optional<uint64_t> U256::ToUint64() const {
  if (limbs_[1] || limbs_[2] || limbs_[3]) return std::nullopt;
  return limbs_[0];
}

Result<int64_t> U256::ToInt64(std::string_view what) const {
  auto v = ToUint64();
  if (!v || *v > uint64_t(std::numeric_limits<int64_t>::max())) {
    return InvalidArgument(std::string(what) + " " + ToDecimal() + " does not fit in int64");
  }
  return int64_t(*v);
}

std::optional<U256> U256::Add(const U256& a, const U256& b) {
  U256 r;
  U128 carry = 0;
  for (int i = 0; i < 4; ++i) {
    U128 s = U128(a.limbs_[i]) + b.limbs_[i] + carry;
    r.limbs_[i] = uint64_t(s);
    carry = s >> 64;
  }
  if (carry) return std::nullopt;
  return r;
}

std::optional<U256> U256::Sub(const U256& a, const U256& b) {
  if (a < b) return std::nullopt;
  U256 r;
  uint64_t borrow = 0;
  for (int i = 0; i < 4; ++i) {
    uint64_t x = a.limbs_[i], y = b.limbs_[i];
    uint64_t d = x - y - borrow;
    borrow = (x < y || (x == y && borrow)) ? 1 : 0;
    r.limbs_[i] = d;
  }
  return r;
}

std::optional<U256> U256::MulSmall(const U256& a, uint64_t m) {
  U256 r;
  U128 carry = 0;
  for (int i = 0; i < 4; ++i) {
    U128 p = U128(a.limbs_[i]) * m + carry;
    r.limbs_[i] = uint64_t(p);
    carry = p >> 64;
  }
  if (carry) return std::nullopt;
  return r;
}

std::optional<U256> U256::DivSmall(const U256& a, uint64_t d) {
  if (d == 0) return std::nullopt;
  U256 r;
  U128 rem = 0;
  for (int i = 3; i >= 0; --i) {
    U128 cur = (rem << 64) | a.limbs_[i];
    r.limbs_[i] = uint64_t(cur / d);
    rem = cur % d;
  }
  return r;
}

}  // namespace grid::chain
