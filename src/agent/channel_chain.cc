#include "agent/channel_chain.h"

#include "chain/channel_client.h"
#include "crypto/voucher.h"

namespace grid::agent {
namespace channels = chain::channels;

namespace {

chain::U256 Units(Micros m) { return chain::U256(static_cast<uint64_t>(m)); }

// Sends through chain::ChannelClient (nonces, gas, simulation first, the
// receipt wait); reads straight from the node, whose client is thread-safe,
// so that the loop's reads neither queue behind a receipt wait nor share the
// single-threaded ChannelClient with the worker.
class RpcChannelChain : public ChannelChain {
 public:
  RpcChannelChain(std::unique_ptr<chain::Chain> node, const crypto::PrivateKey& key, const crypto::Address& contract,
                  uint64_t chain_id, int64_t tx_timeout_ms)
      : node_(std::move(node)),
        contract_(contract),
        writer_(*node_, key, contract,
                chain::ChannelClientOptions{.chain_id = chain_id, .poll_ms = 500, .timeout_ms = tx_timeout_ms}) {}

  Result<channels::ChannelState> Get(const channels::ChannelId& id) override {
    GRID_ASSIGN_OR_RETURN(chain::Bytes data,
                          node_->Call(chain::CallRequest{std::nullopt, contract_, channels::EncodeChannelsCall(id), {}}));
    return channels::DecodeChannelsResult(data);
  }
  Status Redeem(const channels::ChannelId& id, Micros cumulative, const crypto::Signature& sig) override {
    return writer_.Send(channels::EncodeRedeem(id, Units(cumulative), sig)).status();
  }
  Result<crypto::Hash32> Close(const channels::ChannelId& id, Micros cumulative,
                               const std::optional<crypto::Signature>& sig) override {
    std::span<const uint8_t> bytes;
    if (sig) bytes = *sig;
    GRID_ASSIGN_OR_RETURN(chain::Receipt r, writer_.Send(channels::EncodeClose(id, Units(cumulative), bytes)));
    return r.tx_hash;
  }
  Result<uint64_t> ChainTimeS() override {
    GRID_ASSIGN_OR_RETURN(uint64_t head, node_->BlockNumber());
    GRID_ASSIGN_OR_RETURN(chain::BlockHeader block, node_->GetBlock(head));
    return block.timestamp;
  }

 private:
  std::unique_ptr<chain::Chain> node_;
  const crypto::Address contract_;
  chain::ChannelClient writer_;
};

}  // namespace

std::unique_ptr<ChannelChain> NewRpcChannelChain(std::unique_ptr<chain::Chain> node, const crypto::PrivateKey& key,
                                                 const crypto::Address& contract, uint64_t chain_id,
                                                 int64_t tx_timeout_ms) {
  return std::make_unique<RpcChannelChain>(std::move(node), key, contract, chain_id, tx_timeout_ms);
}

FakeChannelChain::FakeChannelChain(uint64_t chain_id, crypto::Address contract, crypto::Address sender)
    : chain_id_(chain_id), contract_(contract), sender_(sender) {}

Result<channels::ChannelState> FakeChannelChain::Get(const channels::ChannelId& id) {
  std::lock_guard lock(mu_);
  if (down_) return Unavailable("fake chain: down");
  auto it = channels_.find(id);
  return it == channels_.end() ? channels::ChannelState{} : it->second;
}

Result<uint64_t> FakeChannelChain::ChainTimeS() {
  std::lock_guard lock(mu_);
  if (down_) return Unavailable("fake chain: down");
  return time_s_;
}

Status FakeChannelChain::CheckClaim(const channels::ChannelState& c, const channels::ChannelId& id, Micros cumulative,
                                    const crypto::Signature& sig) const {
  if (c.deposit < Units(cumulative)) return Conflict("reverted: OverClaim");
  if (Units(cumulative) <= c.paid) return Conflict("reverted: StaleVoucher");
  if (!crypto::VerifyVoucher(chain_id_, contract_, id, static_cast<uint64_t>(cumulative), sig, c.signer).ok())
    return Conflict("reverted: BadSignature");
  return Status::Ok();
}

void FakeChannelChain::WaitWhileHeld() {
  std::unique_lock lock(mu_);
  released_.wait(lock, [&] { return !held_; });
}

Status FakeChannelChain::Redeem(const channels::ChannelId& id, Micros cumulative, const crypto::Signature& sig) {
  WaitWhileHeld();
  std::lock_guard lock(mu_);
  Sent s{"redeem", id, cumulative, true, false};
  if (down_) {
    sent_.push_back(s);
    return Unavailable("fake chain: down");
  }
  auto it = channels_.find(id);
  Status ok = it == channels_.end() ? Conflict("reverted: NoSuchChannel") : CheckClaim(it->second, id, cumulative, sig);
  if (ok.ok()) {
    it->second.paid = Units(cumulative);
    s.applied = true;
  }
  sent_.push_back(s);
  if (ok.ok() && lose_receipts_ > 0) {
    --lose_receipts_;
    return Unavailable("fake chain: not mined within the timeout (it may still be)");
  }
  return ok;
}

crypto::Hash32 FakeChannelChain::TxHash(int n) {
  return crypto::Keccak256("fake tx " + std::to_string(n));
}

Result<crypto::Hash32> FakeChannelChain::Close(const channels::ChannelId& id, Micros cumulative,
                                               const std::optional<crypto::Signature>& sig) {
  WaitWhileHeld();
  std::lock_guard lock(mu_);
  Sent s{"close", id, cumulative, sig.has_value(), false};
  if (down_) {
    sent_.push_back(s);
    return Unavailable("fake chain: down");
  }
  auto it = channels_.find(id);
  Status ok;
  if (it == channels_.end()) ok = Conflict("reverted: NoSuchChannel");
  else if (it->second.provider != sender_) ok = Conflict("reverted: NotProvider");
  else if (sig) ok = CheckClaim(it->second, id, cumulative, *sig);
  else if (cumulative != 0) ok = Conflict("reverted: BadSignatureLength");
  if (ok.ok()) {
    Micros paid = sig ? cumulative : static_cast<Micros>(it->second.paid.ToUint64().value_or(0));
    closed_paid_[id] = paid;
    channels_.erase(it);
    s.applied = true;
  }
  sent_.push_back(s);
  if (ok.ok() && lose_receipts_ > 0) {
    --lose_receipts_;
    return Unavailable("fake chain: not mined within the timeout (it may still be)");
  }
  if (!ok.ok()) return ok;
  return TxHash(static_cast<int>(sent_.size()));
}

void FakeChannelChain::Put(const channels::ChannelId& id, const channels::ChannelState& state) {
  std::lock_guard lock(mu_);
  channels_[id] = state;
}
void FakeChannelChain::SetTimeS(uint64_t t) {
  std::lock_guard lock(mu_);
  time_s_ = t;
}
void FakeChannelChain::SetDown(bool down) {
  std::lock_guard lock(mu_);
  down_ = down;
}
void FakeChannelChain::HoldSends(bool hold) {
  std::lock_guard lock(mu_);
  held_ = hold;
  released_.notify_all();
}
void FakeChannelChain::LoseNextReceipts(int n) {
  std::lock_guard lock(mu_);
  lose_receipts_ = n;
}
std::vector<FakeChannelChain::Sent> FakeChannelChain::sent() const {
  std::lock_guard lock(mu_);
  return sent_;
}
std::optional<Micros> FakeChannelChain::ClosedPaid(const channels::ChannelId& id) const {
  std::lock_guard lock(mu_);
  auto it = closed_paid_.find(id);
  if (it == closed_paid_.end()) return std::nullopt;
  return it->second;
}

}  // namespace grid::agent
