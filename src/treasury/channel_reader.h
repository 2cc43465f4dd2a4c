// ChainChannelReader: the broker's ChannelReader (broker/channel_reader.h)
// over a node's JSON-RPC — channels(id) for a channel's state and a
// transaction receipt's Closed event for its final payout.
//
// Thread safety: safe from several threads (the Chain is).
#pragma once

#include <memory>

#include "broker/channel_reader.h"
#include "chain/chain.h"

namespace grid::treasury {

class ChainChannelReader final : public broker::ChannelReader {
 public:
  ChainChannelReader(std::unique_ptr<chain::Chain> chain, const crypto::Address& contract,
                     const crypto::Address& token, uint64_t chain_id);

  const std::string& contract() const override { return contract_hex_; }
  const std::string& token() const override { return token_hex_; }
  uint64_t chain_id() const override { return chain_id_; }
  Result<broker::OnChainChannel> Read(const std::string& channel_id) override;
  Result<std::optional<Micros>> FindClose(const std::string& tx_hash, const std::string& channel_id) override;

 private:
  std::unique_ptr<chain::Chain> chain_;
  const crypto::Address contract_;
  const std::string contract_hex_, token_hex_;
  const uint64_t chain_id_;
};

}  // namespace grid::treasury
