// PaymentChannels' ABI against ethers.js 6.17.0: every call, return value and
// event of tests/vectors/channels_abi.json (written by
// `node tests/vectors/channels_abi.mjs` from the compiled contract's ABI) is
// read here, so a regenerated file is what gets tested.
#include "chain/channels.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "crypto/hex.h"

namespace grid::chain::channels {
namespace {

namespace json = boost::json;

json::value Vectors() {
  std::filesystem::path p;
  if (const char* src = std::getenv("GRID_SOURCE_DIR")) p = std::filesystem::path(src) / "tests/vectors/channels_abi.json";
  // This file is src/chain/channels_test.cc in the source tree.
  if (p.empty() || !std::filesystem::exists(p))
    p = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "tests/vectors/channels_abi.json";
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

std::string S(const json::value& v, std::string_view key) { return std::string(v.at(key).as_string()); }
crypto::Address A(const json::value& v, std::string_view key) { return crypto::ParseAddress(S(v, key)).value(); }
U256 U(const json::value& v, std::string_view key) { return U256::FromDecimal(S(v, key)).value(); }
uint64_t U64(const json::value& v, std::string_view key) { return *U(v, key).ToUint64(); }
crypto::Hash32 H(std::string_view hex) {
  crypto::Hash32 h{};
  EXPECT_TRUE(crypto::HexDecodeExact(hex, h, "hash").ok()) << hex;
  return h;
}
std::vector<uint8_t> B(std::string_view hex) { return crypto::HexDecode(hex).value(); }

TEST(ChannelsAbi, CallsEncodeAsEthersDoes) {
  json::value v = Vectors();
  int checked = 0;
  for (const json::value& c : v.at("calls").as_array()) {
    const std::string fn = S(c, "function");
    const json::value& in = c.at("inputs");
    std::vector<uint8_t> got;
    if (fn == "approve(address,uint256)") got = EncodeApprove(A(in, "spender"), U(in, "amount"));
    else if (fn == "open(address,address,uint256,uint64,address)")
      got = EncodeOpen(A(in, "provider"), A(in, "token"), U(in, "amount"), U64(in, "expiry"), A(in, "signer"));
    else if (fn == "topUp(bytes32,uint256,uint64)")
      got = EncodeTopUp(H(S(in, "id")), U(in, "amount"), U64(in, "newExpiry"));
    else if (fn == "redeem(bytes32,uint256,bytes)") got = EncodeRedeem(H(S(in, "id")), U(in, "cumulative"), B(S(in, "sig")));
    else if (fn == "close(bytes32,uint256,bytes)") got = EncodeClose(H(S(in, "id")), U(in, "cumulative"), B(S(in, "sig")));
    else if (fn == "refund(bytes32)") got = EncodeRefund(H(S(in, "id")));
    else if (fn == "startClose(bytes32)") got = EncodeStartClose(H(S(in, "id")));
    else if (fn == "finishClose(bytes32)") got = EncodeFinishClose(H(S(in, "id")));
    else if (fn == "channels(bytes32)") got = EncodeChannelsCall(H(S(in, "id")));
    else continue;  // views we do not call
    EXPECT_EQ(crypto::HexEncode(got), S(c, "calldata")) << S(c, "description");
    ++checked;
  }
  EXPECT_GE(checked, 17);
}

TEST(ChannelsAbi, ChannelsResultDecodes) {
  json::value v = Vectors();
  int checked = 0;
  for (const json::value& c : v.at("channels_results").as_array()) {
    SCOPED_TRACE(S(c, "description"));
    const json::value& f = c.at("fields");
    Result<ChannelState> st = DecodeChannelsResult(B(S(c, "return_data")));
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    EXPECT_EQ(st->exists, A(f, "renter") != crypto::Address{});
    EXPECT_EQ(st->renter, A(f, "renter"));
    EXPECT_EQ(st->provider, A(f, "provider"));
    EXPECT_EQ(st->token, A(f, "token"));
    // A zero signer means the renter signs (signerOf()).
    crypto::Address signer = A(f, "signer");
    EXPECT_EQ(st->signer, signer == crypto::Address{} ? st->renter : signer);
    EXPECT_EQ(st->deposit, U(f, "deposit"));
    EXPECT_EQ(st->paid, U(f, "paid"));
    EXPECT_EQ(st->expiry_s, U64(f, "expiry"));
    EXPECT_EQ(st->close_at_s, U64(f, "closeAt"));
    ++checked;

    // Strictness: a wrong length, and a non-zero byte above a narrow field.
    std::vector<uint8_t> data = B(S(c, "return_data"));
    EXPECT_FALSE(DecodeChannelsResult(std::span(data).first(data.size() - 1)).ok());
    std::vector<uint8_t> longer = data;
    longer.push_back(0);
    EXPECT_FALSE(DecodeChannelsResult(longer).ok());
    std::vector<uint8_t> wide = data;
    wide[32 + 25] = 1;  // expiry word, above uint48
    EXPECT_FALSE(DecodeChannelsResult(wide).ok());
    std::vector<uint8_t> deposit = data;
    deposit[4 * 32 + 19] = 1;  // deposit word, above uint96
    EXPECT_FALSE(DecodeChannelsResult(deposit).ok());
    std::vector<uint8_t> address = data;
    address[0] = 1;  // renter word, high bytes
    EXPECT_FALSE(DecodeChannelsResult(address).ok());
  }
  EXPECT_GE(checked, 2);
  // A deleted channel is all zero.
  Result<ChannelState> none = DecodeChannelsResult(std::vector<uint8_t>(256, 0));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->exists);
}

TEST(ChannelsAbi, OpenedEventDecodes) {
  json::value v = Vectors();
  const json::value& e = v.at("opened_event");
  EXPECT_EQ(crypto::HexEncode(OpenedEventTopic()), S(e, "topic0"));
  std::vector<crypto::Hash32> topics;
  for (const json::value& t : e.at("topics").as_array()) topics.push_back(H(t.as_string()));
  std::vector<uint8_t> data = B(S(e, "data"));
  Result<OpenedEvent> got = DecodeOpenedLog(topics, data);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  const json::value& d = e.at("decoded");
  EXPECT_EQ(got->id, H(S(d, "id")));
  EXPECT_EQ(got->renter, A(d, "renter"));
  EXPECT_EQ(got->provider, A(d, "provider"));
  EXPECT_EQ(got->token, A(d, "token"));
  EXPECT_EQ(got->signer, A(d, "signer"));
  EXPECT_EQ(got->deposit, U(d, "deposit"));
  EXPECT_EQ(got->expiry_s, U64(d, "expiry"));
  EXPECT_FALSE(DecodeOpenedLog(std::span(topics).first(3), data).ok());
  EXPECT_FALSE(DecodeOpenedLog(topics, std::span(data).first(96)).ok());
  std::vector<crypto::Hash32> other = topics;
  other[0][0] ^= 1;
  EXPECT_FALSE(DecodeOpenedLog(other, data).ok());
}

TEST(ChannelsAbi, CustomErrorsByName) {
  json::value v = Vectors();
  int checked = 0;
  for (const json::value& e : v.at("errors").as_array()) {
    std::vector<uint8_t> sel = B(S(e, "selector"));
    auto name = ErrorName(sel);
    ASSERT_TRUE(name.has_value()) << S(e, "signature");
    EXPECT_EQ(*name, S(e, "name"));
    EXPECT_EQ(NameCustomErrors("eth_estimateGas reverted: custom error " + S(e, "selector")),
              "eth_estimateGas reverted: " + S(e, "name"));
    ++checked;
  }
  EXPECT_EQ(checked, 21);
  EXPECT_FALSE(ErrorName(B("0x08c379a0")).has_value());  // Error(string)
  // Longer data is not one of these errors; other text is left alone.
  EXPECT_EQ(NameCustomErrors("custom error 0x5cd5d23300"), "custom error 0x5cd5d23300");
  EXPECT_EQ(NameCustomErrors("custom error 0x5cd5"), "custom error 0x5cd5");
  EXPECT_EQ(NameCustomErrors("no reason given"), "no reason given");
}

}  // namespace
}  // namespace grid::chain::channels
