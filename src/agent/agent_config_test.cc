// The agent's config file: the payment-channel keys (issue 6).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/agent.h"

namespace grid::agent {
namespace {

class AgentConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("agent_config_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".json"))
                .string();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  Status Load(const std::string& text, AgentOptions* o) {
    std::ofstream(path_) << text;
    return LoadAgentConfig(path_, o);
  }
  std::string path_;
};

TEST_F(AgentConfigTest, ReadsTheChannelKeys) {
  AgentOptions o;
  EXPECT_EQ(o.chain_rpc, "") << "no channels unless asked for";
  EXPECT_EQ(o.channel_redeem_threshold, "5.00");
  ASSERT_TRUE(Load(R"({"chain_rpc": "http://127.0.0.1:8545", "channel_redeem_threshold": "0.25"})", &o).ok());
  EXPECT_EQ(o.chain_rpc, "http://127.0.0.1:8545");
  EXPECT_EQ(o.channel_redeem_threshold, "0.25");
}

TEST_F(AgentConfigTest, RefusesABadThreshold) {
  AgentOptions o;
  for (const char* bad : {R"({"channel_redeem_threshold": "0"})", R"({"channel_redeem_threshold": "-1"})",
                          R"({"channel_redeem_threshold": "five"})", R"({"channel_redeem_threshold": 5})",
                          R"({"chain_rpc": 8545})"}) {
    Status s = Load(bad, &o);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_EQ(o.channel_redeem_threshold, "5.00") << "unchanged by a refused file";
  EXPECT_NE(Load(R"({"channel_redeem_treshold": "1"})", &o).message().find("unknown key"), std::string::npos);
}

}  // namespace
}  // namespace grid::agent
