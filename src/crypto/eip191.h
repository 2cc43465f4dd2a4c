// EIP-191 version 0x45 ("personal_sign"): the digest wallets sign for a plain
// text message such as a SIWE login.
//
// Contract: pure, thread-safe, never fails. The length is the byte length of
// `message` (UTF-8 bytes, not characters), written in decimal.
#pragma once

#include <string_view>

#include "crypto/keccak.h"

namespace grid::crypto {

// keccak256("\x19Ethereum Signed Message:\n" + decimal(len) + message)
Hash32 PersonalMessageHash(std::string_view message);

}  // namespace grid::crypto
