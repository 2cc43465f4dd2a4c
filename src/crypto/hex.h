// Hexadecimal encoding of byte strings, as Ethereum tools write them.
//
// Contract: HexEncode writes lowercase digits, with a "0x" prefix unless told
// otherwise. HexDecode accepts an optional "0x"/"0X" prefix and digits of
// either case; it rejects odd lengths and non-hex characters with an
// InvalidArgument that names the offending position. Both are pure functions,
// safe to call from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grid::crypto {

// "0x" + two lowercase hex digits per byte (no prefix when prefix is false).
std::string HexEncode(std::span<const uint8_t> bytes, bool prefix = true);

// Decodes hex text, with or without a "0x" prefix. An empty string (or a bare
// "0x") decodes to no bytes.
Result<std::vector<uint8_t>> HexDecode(std::string_view text);

// Decodes into exactly out.size() bytes; the error names `what` (for example
// "private key") and the expected digit count.
Status HexDecodeExact(std::string_view text, std::span<uint8_t> out, std::string_view what);

// The value of one hex digit, or -1 when c is not a hex digit.
int HexDigitValue(char c);

}  // namespace grid::crypto
