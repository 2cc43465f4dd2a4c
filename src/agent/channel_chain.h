// ChannelChain: the provider agent's narrow view of the PaymentChannels
// contract (issue 6, docs/channels.md): read a channel, redeem a voucher,
// close a channel, and the chain's clock. Two implementations:
// NewRpcChannelChain (chain::ChannelClient over any EVM node, signing with
// the agent's key, which is the channels' provider) and FakeChannelChain (in
// memory, the contract's rules, fault hooks; for unit tests).
//
// Contract:
// - Redeem and Close return once the transaction is mined (or failed).
//   Conflict: the contract refuses it (its error by name: "StaleVoucher",
//   "NotProvider", …) or it was mined and reverted. Unavailable: the node
//   could not be reached, or the transaction was not mined in time (it may
//   still be: callers re-read the channel before concluding anything).
//   InsufficientFunds: the agent's address cannot pay the gas.
// - Close with `sig` nullopt and cumulative 0 closes "as paid": nothing more
//   is paid, the rest of the deposit goes back to the renter. It returns the
//   mined transaction's hash, which the broker reads the final payout from.
// - Amounts are token base units: micro-USD for the 6-decimal stablecoin.
// Thread safety: Get and ChainTimeS may be called from any thread at any
// time, also while Redeem or Close run (the agent reads from its loop and
// from its worker, and sends from the worker); Redeem and Close are never
// called concurrently with each other.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chain/chain.h"
#include "chain/channels.h"
#include "core/money.h"
#include "core/status.h"
#include "crypto/keys.h"

namespace grid::agent {

class ChannelChain {
 public:
  virtual ~ChannelChain() = default;
  // The channel as the contract holds it now (exists == false once closed).
  virtual Result<chain::channels::ChannelState> Get(const chain::channels::ChannelId& id) = 0;
  virtual Status Redeem(const chain::channels::ChannelId& id, Micros cumulative, const crypto::Signature& sig) = 0;
  virtual Result<crypto::Hash32> Close(const chain::channels::ChannelId& id, Micros cumulative,
                                      const std::optional<crypto::Signature>& sig) = 0;
  // The latest block's timestamp: the clock the contract compares expiries with.
  virtual Result<uint64_t> ChainTimeS() = 0;
};

// Over a node: `node` is owned; transactions are signed with `key` (the
// agent's address pays their gas) and waited for up to `tx_timeout_ms`.
std::unique_ptr<ChannelChain> NewRpcChannelChain(std::unique_ptr<chain::Chain> node, const crypto::PrivateKey& key,
                                                 const crypto::Address& contract, uint64_t chain_id,
                                                 int64_t tx_timeout_ms);

// In memory, with the contract's checks in its order (NoSuchChannel,
// NotProvider, OverClaim, StaleVoucher, BadSignature against the channel's
// signer for this chain and contract), every call recorded.
class FakeChannelChain : public ChannelChain {
 public:
  // `sender`: whose transactions these are (the agent's address).
  FakeChannelChain(uint64_t chain_id, crypto::Address contract, crypto::Address sender);

  Result<chain::channels::ChannelState> Get(const chain::channels::ChannelId& id) override;
  Status Redeem(const chain::channels::ChannelId& id, Micros cumulative, const crypto::Signature& sig) override;
  // The hash of the n-th transaction the fake mined (n from 1).
  static crypto::Hash32 TxHash(int n);
  Result<crypto::Hash32> Close(const chain::channels::ChannelId& id, Micros cumulative,
                               const std::optional<crypto::Signature>& sig) override;
  Result<uint64_t> ChainTimeS() override;

  // Test controls.
  void Put(const chain::channels::ChannelId& id, const chain::channels::ChannelState& state);
  void SetTimeS(uint64_t t);
  // Every call fails with Unavailable (the node is down) while `down`.
  void SetDown(bool down);
  // The next `n` Redeem/Close calls are applied (mined) but answer
  // Unavailable, as when the receipt did not come in time.
  void LoseNextReceipts(int n);
  // While held, Redeem and Close wait (a transaction not mined yet).
  void HoldSends(bool hold);
  struct Sent {
    std::string kind;  // "redeem" or "close"
    chain::channels::ChannelId id{};
    Micros cumulative = 0;
    bool with_signature = false;
    bool applied = false;
  };
  std::vector<Sent> sent() const;
  // What a closed channel paid its provider in total (nullopt: not closed here).
  std::optional<Micros> ClosedPaid(const chain::channels::ChannelId& id) const;

 private:
  Status CheckClaim(const chain::channels::ChannelState& c, const chain::channels::ChannelId& id, Micros cumulative,
                    const crypto::Signature& sig) const;

  const uint64_t chain_id_;
  const crypto::Address contract_, sender_;
  void WaitWhileHeld();

  mutable std::mutex mu_;
  std::condition_variable released_;
  bool held_ = false;
  std::map<chain::channels::ChannelId, chain::channels::ChannelState> channels_;
  std::map<chain::channels::ChannelId, Micros> closed_paid_;
  std::vector<Sent> sent_;
  uint64_t time_s_ = 1'790'000'000;
  bool down_ = false;
  int lose_receipts_ = 0;
};

}  // namespace grid::agent
