#include "treasury/channel_reader.h"

#include "chain/channels.h"
#include "crypto/hex.h"

namespace grid::treasury {

namespace {

// Token base units as micro-USD; beyond int64 reads as INT64_MAX (no real
// deposit comes near it, and the cap only ever understates a channel).
Micros Clamp(const chain::U256& v) {
  auto n = v.ToUint64();
  if (!n || *n > static_cast<uint64_t>(INT64_MAX)) return INT64_MAX;
  return static_cast<Micros>(*n);
}

Result<crypto::Hash32> ParseHash(const std::string& hex, std::string_view what) {
  crypto::Hash32 h{};
  GRID_RETURN_IF_ERROR(crypto::HexDecodeExact(hex, h, what));
  return h;
}

}  // namespace

ChainChannelReader::ChainChannelReader(std::unique_ptr<chain::Chain> chain, const crypto::Address& contract,
                                       const crypto::Address& token, uint64_t chain_id)
    : chain_(std::move(chain)),
      contract_(contract),
      contract_hex_(contract.ToLowerHex()),
      token_hex_(token.ToLowerHex()),
      chain_id_(chain_id) {}

Result<broker::OnChainChannel> ChainChannelReader::Read(const std::string& channel_id) {
  GRID_ASSIGN_OR_RETURN(crypto::Hash32 id, ParseHash(channel_id, "channel id"));
  GRID_ASSIGN_OR_RETURN(chain::Bytes answer,
                        chain_->Call(chain::CallRequest{std::nullopt, contract_, chain::channels::EncodeChannelsCall(id), {}}));
  auto state = chain::channels::DecodeChannelsResult(answer);
  if (!state.ok()) return Unavailable("channels(" + channel_id + "): " + state.status().message());
  broker::OnChainChannel c;
  c.exists = state->exists;
  c.renter = state->renter.ToLowerHex();
  c.provider = state->provider.ToLowerHex();
  c.token = state->token.ToLowerHex();
  c.signer = state->signer.ToLowerHex();
  c.deposit = Clamp(state->deposit);
  c.paid = Clamp(state->paid);
  c.expiry_s = static_cast<int64_t>(state->expiry_s);      // uint48 on chain
  c.close_at_s = static_cast<int64_t>(state->close_at_s);  // uint48 on chain
  return c;
}

Result<std::optional<Micros>> ChainChannelReader::FindClose(const std::string& tx_hash,
                                                            const std::string& channel_id) {
  GRID_ASSIGN_OR_RETURN(crypto::Hash32 tx, ParseHash(tx_hash, "transaction hash"));
  GRID_ASSIGN_OR_RETURN(crypto::Hash32 id, ParseHash(channel_id, "channel id"));
  GRID_ASSIGN_OR_RETURN(std::optional<chain::Receipt> receipt, chain_->GetTransactionReceipt(tx));
  if (!receipt || !receipt->success) return std::optional<Micros>();
  for (const chain::Log& log : receipt->logs) {
    if (log.address != contract_ || log.topics.size() != 2 || log.topics[0] != chain::channels::ClosedEventTopic() ||
        log.topics[1] != id)
      continue;
    auto closed = chain::channels::DecodeClosedLog(log.topics, log.data);
    if (!closed.ok()) return Unavailable("Closed event of " + tx_hash + ": " + closed.status().message());
    return std::optional<Micros>(Clamp(closed->paid));
  }
  return std::optional<Micros>();
}

}  // namespace grid::treasury
