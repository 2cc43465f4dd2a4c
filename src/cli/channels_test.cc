// The pure pieces of `grid leases create --pay channel`: the payee, the
// deposit and the expiry it opens the channel with.
#include "cli/channels.h"

#include <gtest/gtest.h>

#include "market/channel_policy.h"

namespace grid::cli {
namespace {

namespace json = boost::json;

TEST(ChannelLease, PayeeComesFromTheOffer) {
  auto a = ChannelPayeeOf(json::object{{"id", 4}, {"channel_payee", "0x00000000000000000000000000000000000000ee"}});
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->ToLowerHex(), "0x00000000000000000000000000000000000000ee");
}

TEST(ChannelLease, HostWithoutChannelPaymentsIsRefusedClearly) {
  for (const json::value& offer : {json::value(json::object{{"id", 4}, {"channel_payee", nullptr}}),
                                   json::value(json::object{{"id", 4}})}) {
    auto a = ChannelPayeeOf(offer);
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.status().code(), Code::kConflict);
    EXPECT_NE(a.status().message().find("offer 4"), std::string::npos) << a.status().message();
    EXPECT_NE(a.status().message().find("does not accept payment by channel"), std::string::npos);
  }
  EXPECT_EQ(ChannelPayeeOf(json::object{{"id", 4}, {"channel_payee", "0x12"}}).status().code(), Code::kInvalidArgument);
}

TEST(ChannelLease, DefaultDepositIsAnHourPlusTheMargin) {
  // 3.60/h: a minute (the margin) costs 0.06, an hour 3.60.
  auto d = ChannelLeaseDeposit(3'600'000, 60'000, std::nullopt);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(*d, 3'660'000);
  // The same rule as the market's.
  EXPECT_EQ(*d, *market::DepositFor(3'600'000, 3'600'000, *market::ChannelMargin(3'600'000, 60'000)));
}

TEST(ChannelLease, AskedDepositMustCoverWhatTheBrokerRequires) {
  // Ten minutes (0.60) plus the margin (0.06).
  EXPECT_EQ(*ChannelLeaseDeposit(3'600'000, 60'000, Micros{660'000}), 660'000);
  EXPECT_EQ(*ChannelLeaseDeposit(3'600'000, 60'000, Micros{25'000'000}), 25'000'000);
  auto low = ChannelLeaseDeposit(3'600'000, 60'000, Micros{659'999});
  ASSERT_FALSE(low.ok());
  EXPECT_EQ(low.status().code(), Code::kInvalidArgument);
  EXPECT_NE(low.status().message().find("0.660000"), std::string::npos) << low.status().message();
  EXPECT_FALSE(ChannelLeaseDeposit(0, 60'000, std::nullopt).ok());
}

TEST(ChannelLease, TheMarginIsTheBrokersVoucherInterval) {
  // A broker with 5-minute vouchers: the margin is 0.30 at 3.60/h.
  EXPECT_EQ(*ChannelLeaseDeposit(3'600'000, 300'000, std::nullopt), 3'900'000);
  EXPECT_FALSE(ChannelLeaseDeposit(3'600'000, 300'000, Micros{899'999}).ok());
  EXPECT_EQ(VoucherIntervalMs(json::object{{"interval_ms", 300'000}}), 300'000);
  EXPECT_EQ(VoucherIntervalMs(json::object{{"contract", "0x"}}), 60'000) << "an older broker";
  EXPECT_EQ(VoucherIntervalMs(json::object{{"interval_ms", "60"}}), 60'000);
  EXPECT_EQ(VoucherIntervalMs(json::object{{"interval_ms", -5}}), 60'000);
}

TEST(ChannelLease, ExpiryMustCarryTenMinutesAndTheRedeemMargin) {
  EXPECT_TRUE(CheckLeaseChannelExpiry(15 * 60).ok());
  EXPECT_TRUE(CheckLeaseChannelExpiry(kLeaseChannelDefaultExpiryS).ok());
  EXPECT_FALSE(CheckLeaseChannelExpiry(15 * 60 - 1).ok());
}

TEST(ChannelLease, Durations) {
  EXPECT_EQ(*ParseDurationS("24h", "x"), 86'400);
  EXPECT_EQ(*ParseDurationS("90m", "x"), 5'400);
  EXPECT_EQ(*ParseDurationS("3600s", "x"), 3'600);
  EXPECT_EQ(*ParseDurationS("2d", "x"), 172'800);
  for (const char* bad : {"", "h", "10", "1.5h", "-1h", "+1h", "0h", "10x", " 1h", "1h ", "1H", "99999999999999d"}) {
    auto r = ParseDurationS(bad, "--channel-expiry");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("--channel-expiry"), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace grid::cli
