// The broker's payment-channel settings (GET /v1/channels/config, issue 6)
// and the check that a node serves them: whoever talks to the channel
// contract (`grid channels …`, `grid agent --chain-rpc`) reads the config
// from the broker, then makes sure its own node is on the same chain and the
// token counts in micro-USD before it trusts a single amount.
//
// Contract:
// - ParseChannelsConfig is strict: contract and token are addresses,
//   chain_id a positive integer, decimals 6 (amounts everywhere here are
//   micro-USD); rpc_url is kept as given (may be empty). InvalidArgument
//   naming the field.
// - CheckChannelsNode asks `node` for its chain id and the token's
//   decimals(): Conflict when they differ from the config (a wrong node or
//   token: a configuration error, not worth retrying), Unavailable when the
//   node cannot answer (retry).
// Thread safety: pure functions; CheckChannelsNode as safe as `node`.
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "chain/chain.h"
#include "core/status.h"
#include "crypto/keys.h"

namespace grid::chain {

struct ChannelsConfig {
  crypto::Address contract;  // the PaymentChannels deployment
  crypto::Address token;     // the stablecoin channels are paid in
  uint64_t chain_id = 0;
  std::string rpc_url;       // the broker's node (a hint: use your own)
};

Result<ChannelsConfig> ParseChannelsConfig(const boost::json::value& v);

// `node_url` only names the node in messages.
Status CheckChannelsNode(Chain& node, const ChannelsConfig& config, std::string_view node_url);

}  // namespace grid::chain
