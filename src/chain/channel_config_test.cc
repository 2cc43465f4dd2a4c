// The broker's channels config and the node check shared by `grid channels`
// and `grid agent --chain-rpc`.
#include "chain/channel_config.h"

#include <gtest/gtest.h>

#include "chain/sim_chain.h"

namespace grid::chain {
namespace {

namespace json = boost::json;

const char* kToken = "0x5FbDB2315678afecb367f032d93F642f64180aa3";

json::value Config() {
  return json::object{{"contract", "0x5FC8d32690cc91D4c39d9d3abcBD16989F875707"},
                      {"token", kToken},
                      {"chain_id", 31337},
                      {"rpc_url", "http://127.0.0.1:8545"},
                      {"decimals", 6}};
}

TEST(ChannelConfig, ParsesTheBrokersAnswer) {
  auto c = ParseChannelsConfig(Config());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->chain_id, 31337u);
  EXPECT_EQ(c->contract.ToChecksumHex(), "0x5FC8d32690cc91D4c39d9d3abcBD16989F875707");
  EXPECT_EQ(c->token.ToChecksumHex(), kToken);
  EXPECT_EQ(c->rpc_url, "http://127.0.0.1:8545");
}

TEST(ChannelConfig, RefusesWhatItCannotUse) {
  auto with = [](const char* key, json::value v) {
    json::value c = Config();
    c.as_object()[key] = std::move(v);
    return ParseChannelsConfig(c).status();
  };
  EXPECT_NE(with("contract", "0x12").message().find("address"), std::string::npos);
  EXPECT_NE(with("token", nullptr).message().find("token"), std::string::npos);
  EXPECT_NE(with("chain_id", 0).message().find("chain_id"), std::string::npos);
  EXPECT_NE(with("chain_id", "31337").message().find("chain_id"), std::string::npos);
  EXPECT_NE(with("decimals", 18).message().find("decimals"), std::string::npos);
  EXPECT_FALSE(ParseChannelsConfig(json::array{}).ok());
  json::value no_rpc = Config();
  no_rpc.as_object().erase("rpc_url");
  EXPECT_TRUE(ParseChannelsConfig(no_rpc).ok()) << "the node is the caller's own choice";
}

TEST(ChannelConfig, ChecksTheNodesChainAndTheTokensDecimals) {
  auto cfg = ParseChannelsConfig(Config()).value();
  SimChainOptions o;
  o.chain_id = 31337;
  o.token = cfg.token;
  SimChain good(o);
  EXPECT_TRUE(CheckChannelsNode(good, cfg, "http://node").ok());

  o.chain_id = 1;
  SimChain other_chain(o);
  Status s = CheckChannelsNode(other_chain, cfg, "http://node");
  EXPECT_EQ(s.code(), Code::kConflict);
  EXPECT_NE(s.message().find("http://node is chain 1"), std::string::npos) << s.message();

  o.chain_id = 31337;
  o.token_decimals = 18;
  SimChain wide(o);
  EXPECT_EQ(CheckChannelsNode(wide, cfg, "http://node").code(), Code::kConflict);

  SimChain down(SimChainOptions{.chain_id = 31337, .token = cfg.token});
  down.SetDown(true);
  EXPECT_EQ(CheckChannelsNode(down, cfg, "http://node").code(), Code::kUnavailable) << "worth a retry";
}

}  // namespace
}  // namespace grid::chain
