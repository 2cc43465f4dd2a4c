#include "chain/channel_config.h"

namespace grid::chain {
namespace json = boost::json;

Result<ChannelsConfig> ParseChannelsConfig(const json::value& v) {
  if (!v.is_object()) return InvalidArgument("channels config: expected a JSON object");
  const json::object& o = v.get_object();
  auto str = [&](std::string_view key) -> Result<std::string> {
    const json::value* x = o.if_contains(key);
    if (!x || !x->is_string()) return InvalidArgument("channels config: " + std::string(key) + ": expected a string");
    return std::string(x->get_string());
  };
  ChannelsConfig c;
  GRID_ASSIGN_OR_RETURN(std::string contract, str("contract"));
  GRID_ASSIGN_OR_RETURN(c.contract, crypto::ParseAddress(contract));
  GRID_ASSIGN_OR_RETURN(std::string token, str("token"));
  GRID_ASSIGN_OR_RETURN(c.token, crypto::ParseAddress(token));
  const json::value* id = o.if_contains("chain_id");
  if (!id || !id->is_int64() || id->get_int64() <= 0)
    return InvalidArgument("channels config: chain_id: expected a positive integer");
  c.chain_id = static_cast<uint64_t>(id->get_int64());
  // Everything downstream (vouchers, the schedule, the ledger) counts in
  // micro-USD: a token of other decimals would misprice every lease.
  const json::value* dec = o.if_contains("decimals");
  if (!dec || !dec->is_int64() || dec->get_int64() != 6)
    return InvalidArgument("channels config: decimals: expected 6 (amounts are micro-USD)");
  if (const json::value* rpc = o.if_contains("rpc_url"); rpc && rpc->is_string()) c.rpc_url = rpc->get_string();
  return c;
}

Status CheckChannelsNode(Chain& node, const ChannelsConfig& config, std::string_view node_url) {
  GRID_ASSIGN_OR_RETURN(uint64_t node_chain, node.ChainId());
  if (node_chain != config.chain_id)
    return Status(Code::kConflict, "the node at " + std::string(node_url) + " is chain " + std::to_string(node_chain) +
                                       ", the broker's channels are on chain " + std::to_string(config.chain_id));
  GRID_ASSIGN_OR_RETURN(uint8_t decimals, Erc20Decimals(node, config.token));
  if (decimals != 6)
    return Status(Code::kConflict, "the token " + config.token.ToChecksumHex() + " has " + std::to_string(decimals) +
                                       " decimals; amounts here are USD with 6");
  return Status::Ok();
}

}  // namespace grid::chain
