#include "crypto/hex.h"

#include <string>

namespace grid::crypto {

namespace {
constexpr char kDigits[] = "0123456789abcdef";

std::string_view StripPrefix(std::string_view text) {
  if (text.size() >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    text.remove_prefix(2);
  }
  return text;
}

Status DecodeInto(std::string_view digits, uint8_t* out) {
  for (size_t i = 0; i < digits.size(); i += 2) {
    int hi = HexDigitValue(digits[i]);
    int lo = HexDigitValue(digits[i + 1]);
    if (hi < 0 || lo < 0) {
      size_t bad = hi < 0 ? i : i + 1;
      return InvalidArgument("invalid hex digit at position " + std::to_string(bad));
    }
    out[i / 2] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return Status::Ok();
}
}  // namespace

int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string HexEncode(std::span<const uint8_t> bytes, bool prefix) {
  std::string out;
  out.reserve(bytes.size() * 2 + 2);
  if (prefix) out += "0x";
  for (uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

Result<std::vector<uint8_t>> HexDecode(std::string_view text) {
  std::string_view digits = StripPrefix(text);
  if (digits.size() % 2 != 0) {
    return InvalidArgument("hex string has an odd number of digits (" +
                           std::to_string(digits.size()) + ")");
  }
  std::vector<uint8_t> out(digits.size() / 2);
  GRID_RETURN_IF_ERROR(DecodeInto(digits, out.data()));
  return out;
}

Status HexDecodeExact(std::string_view text, std::span<uint8_t> out, std::string_view what) {
  std::string_view digits = StripPrefix(text);
  if (digits.size() != out.size() * 2) {
    return InvalidArgument(std::string(what) + ": expected " + std::to_string(out.size() * 2) +
                           " hex digits, got " + std::to_string(digits.size()));
  }
  Status s = DecodeInto(digits, out.data());
  if (!s.ok()) return InvalidArgument(std::string(what) + ": " + s.message());
  return Status::Ok();
}

}  // namespace grid::crypto
