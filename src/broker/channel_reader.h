// ChannelReader: what the broker reads of payment channels on chain (issue
// 6, docs/channels.md) — the one narrow interface between the broker and the
// PaymentChannels contract. Implementations: treasury::ChainChannelReader
// (JSON-RPC to the node the broker's treasury uses) and the in-memory fake of
// broker_test.
//
// Contract:
// - Read() is the channel as the contract holds it now; `exists` is false for
//   an id never opened or already closed. Unavailable when the node cannot be
//   reached (the caller answers 503 and the client retries).
// - FindClose() looks in one transaction's receipt for the contract's Closed
//   event of that channel (close, refund and finishClose emit it): what the
//   provider was paid in all. nullopt when the transaction is unknown, not
//   mined or closed another channel.
// - Amounts are the token's base units, which are micro-USD for the 6-decimal
//   tokens the broker accepts; an amount beyond int64 reads as INT64_MAX.
// - Addresses are lowercase 0x hex.
// Thread safety: implementations are safe to call from several threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/money.h"
#include "core/status.h"

namespace grid::broker {

struct OnChainChannel {
  bool exists = false;
  std::string renter, provider, token;
  std::string signer;      // whose vouchers pay (the renter unless a session key was named)
  Micros deposit = 0;      // everything deposited
  Micros paid = 0;         // everything paid to the provider so far
  int64_t expiry_s = 0;    // from then on the renter may refund
  int64_t close_at_s = 0;  // 0, or when a renter's close may finish
};

class ChannelReader {
 public:
  virtual ~ChannelReader() = default;
  virtual const std::string& contract() const = 0;  // lowercase 0x address
  virtual const std::string& token() const = 0;     // the token channels must hold
  virtual uint64_t chain_id() const = 0;
  // `channel_id`: 0x + 64 lowercase hex.
  virtual Result<OnChainChannel> Read(const std::string& channel_id) = 0;
  // `tx_hash`: 0x + 64 lowercase hex. The Closed event's `paid`.
  virtual Result<std::optional<Micros>> FindClose(const std::string& tx_hash, const std::string& channel_id) = 0;
};

}  // namespace grid::broker
