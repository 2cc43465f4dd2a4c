// Ethereum accounts: addresses, secp256k1 private keys, recoverable ECDSA
// signatures over 32-byte digests.
//
// Contract:
// - An Address is 20 bytes; text forms are EIP-55 mixed case or lowercase,
//   both with "0x".
// - A PrivateKey always holds a valid secp256k1 secret (0 < k < n) when it
//   comes from one of the functions here.
// - SignDigest is deterministic (RFC 6979) and always produces low-s
//   signatures with v = 27 or 28, as Ethereum wallets do.
// - RecoverSigner accepts v in {0, 1, 27, 28}, rejects high-s signatures
//   (EIP-2) and anything that is not 65 bytes, with InvalidArgument errors that
//   say what was wrong.
// Thread safety: every function is safe to call concurrently. They share one
// process-wide secp256k1 context, created (and randomized) on first use;
// libsecp256k1 only reads it after that.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"
#include "crypto/keccak.h"

namespace grid::crypto {

struct Address {
  std::array<uint8_t, 20> bytes{};

  // EIP-55 mixed-case checksum form, "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf".
  std::string ToChecksumHex() const;
  // "0x" + 40 lowercase hex digits.
  std::string ToLowerHex() const;

  friend bool operator==(const Address&, const Address&) = default;
  friend auto operator<=>(const Address&, const Address&) = default;
};

// Accepts "0x" + 40 hex digits. All-lowercase and all-uppercase digits are
// taken as they are; mixed case must match the EIP-55 checksum exactly.
Result<Address> ParseAddress(std::string_view text);

// True when `text` is exactly the EIP-55 checksummed form of some address.
bool IsChecksummedAddress(std::string_view text);

struct PrivateKey {
  std::array<uint8_t, 32> bytes{};
};

// A fresh key from OpenSSL's CSPRNG (RAND_bytes), retried until it is a valid
// secret. Unavailable when the CSPRNG fails.
Result<PrivateKey> GeneratePrivateKey();

// Exactly 64 hex digits, optional "0x", surrounding whitespace (as in a key
// file ending with a newline) ignored. Rejects 0 and values >= n.
Result<PrivateKey> PrivateKeyFromHex(std::string_view hex);

// Validates 32 raw bytes as a secret key.
Result<PrivateKey> PrivateKeyFromBytes(std::span<const uint8_t> bytes);

// The account of a key: last 20 bytes of keccak256(uncompressed pubkey[1..]).
Address AddressOf(const PrivateKey& key);

// r (32) ‖ s (32) ‖ v (1), v = 27 or 28.
using Signature = std::array<uint8_t, 65>;

// Deterministic (RFC 6979), low-s recoverable signature of a 32-byte digest.
// The digest must already be hashed (EIP-191 or EIP-712); it is not hashed
// again.
Result<Signature> SignDigest(const PrivateKey& key, const Hash32& digest);

// The address whose key signed `digest`. Errors (all InvalidArgument): length
// not 65, v not in {0,1,27,28}, r or s zero or out of range, s in the upper
// half of the order (EIP-2), no point recoverable.
Result<Address> RecoverSigner(const Hash32& digest, std::span<const uint8_t> sig65);

// "0x" + 130 hex digits (the prefix is optional); the v byte is not checked
// here, RecoverSigner does that.
Result<Signature> ParseSignature(std::string_view hex);

}  // namespace grid::crypto
