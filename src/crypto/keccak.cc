#include "crypto/keccak.h"

#include <cryptopp/keccak.h>

namespace grid::crypto {

struct Keccak256Hasher::Impl {
  CryptoPP::Keccak_256 h;
};

Keccak256Hasher::Keccak256Hasher() : impl_(std::make_unique<Impl>()) {}
Keccak256Hasher::~Keccak256Hasher() = default;

Keccak256Hasher& Keccak256Hasher::Update(std::span<const uint8_t> data) {
  // Crypto++ accepts a null pointer only with a zero length; keep it simple.
  if (!data.empty()) impl_->h.Update(data.data(), data.size());
  return *this;
}

Keccak256Hasher& Keccak256Hasher::Update(std::string_view data) {
  if (!data.empty()) impl_->h.Update(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  return *this;
}

Hash32 Keccak256Hasher::Finish() {
  Hash32 out;
  impl_->h.Final(out.data());  // Final() also restarts the hash.
  return out;
}

Hash32 Keccak256(std::span<const uint8_t> data) {
  CryptoPP::Keccak_256 h;
  if (!data.empty()) h.Update(data.data(), data.size());
  Hash32 out;
  h.Final(out.data());
  return out;
}

Hash32 Keccak256(std::string_view data) {
  return Keccak256(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()),
                                            data.size()));
}

}  // namespace grid::crypto
