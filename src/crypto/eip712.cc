#include "crypto/eip712.h"

#include <array>

namespace grid::crypto {

namespace {

using Word = std::array<uint8_t, 32>;

Word EncodeUint(uint64_t v) { return Eip712Uint(v); }

// Two's-complement sign extension to 256 bits (see the header's contract).
Word EncodeInt(int64_t v) {
  Word w = EncodeUint(static_cast<uint64_t>(v));
  if (v < 0) std::fill(w.begin(), w.begin() + 24, 0xff);
  return w;
}

}  // namespace

std::array<uint8_t, 32> Eip712Uint(uint64_t v) {
  std::array<uint8_t, 32> w{};
  for (int i = 0; i < 8; ++i) w[31 - i] = static_cast<uint8_t>(v >> (8 * i));
  return w;
}

Status ValidateLeaseOrder(const LeaseOrder& order) {
  if (order.gpus == 0) return InvalidArgument("lease order: gpus must be at least 1");
  if (order.price_per_hour_micros < 0) {
    return InvalidArgument("lease order: pricePerHour must not be negative");
  }
  if (order.expiry_unix_s < 0) return InvalidArgument("lease order: expiry must not be negative");
  return Status::Ok();
}

Hash32 DomainSeparator(uint64_t chain_id) {
  Keccak256Hasher h;
  h.Update(Keccak256(kEip712DomainType));
  h.Update(Keccak256(kEip712DomainName));
  h.Update(Keccak256(kEip712DomainVersion));
  h.Update(EncodeUint(chain_id));
  return h.Finish();
}

Hash32 LeaseOrderStructHash(const LeaseOrder& order) {
  Keccak256Hasher h;
  h.Update(Keccak256(kLeaseOrderType));
  h.Update(EncodeUint(order.offer_id));
  h.Update(EncodeUint(order.gpus));
  h.Update(EncodeInt(order.price_per_hour_micros));
  h.Update(EncodeUint(order.nonce));
  h.Update(EncodeInt(order.expiry_unix_s));
  return h.Finish();
}

Hash32 LeaseOrderDigest(const LeaseOrder& order, uint64_t chain_id) {
  Keccak256Hasher h;
  h.Update(std::string_view("\x19\x01", 2));
  h.Update(DomainSeparator(chain_id));
  h.Update(LeaseOrderStructHash(order));
  return h.Finish();
}

}  // namespace grid::crypto
