// Keccak-256, the hash Ethereum uses everywhere (addresses, EIP-191, EIP-712,
// keystore MACs). Not NIST SHA3-256: the padding differs.
//
// Contract: pure functions, safe from any thread, never fail.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace grid::crypto {

using Hash32 = std::array<uint8_t, 32>;

Hash32 Keccak256(std::span<const uint8_t> data);
Hash32 Keccak256(std::string_view data);

// Incremental hashing for data that comes in pieces (EIP-712 encodings).
class Keccak256Hasher {
 public:
  Keccak256Hasher();
  ~Keccak256Hasher();
  Keccak256Hasher(const Keccak256Hasher&) = delete;
  Keccak256Hasher& operator=(const Keccak256Hasher&) = delete;

  Keccak256Hasher& Update(std::span<const uint8_t> data);
  Keccak256Hasher& Update(std::string_view data);
  // Returns the digest and resets the hasher for reuse.
  Hash32 Finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grid::crypto
