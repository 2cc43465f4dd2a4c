// The channel lease schedule and the agent's checks (channel_policy.h).
#include "market/channel_policy.h"

#include <gtest/gtest.h>

#include <random>

#include "market/billing.h"

namespace grid::market {
namespace {

constexpr UnixMs kStart = 1'790'000'000'000;

// $2.00/h in 60 s intervals: 33,333 micro-USD per interval, rounded as the
// ledger rounds (cumulatively).
ChannelTerms Terms() {
  ChannelTerms t;
  t.price_per_hour = 2'000'000;
  t.interval_ms = 60'000;
  t.start_ms = kStart;
  t.deposit = 1'000'000;
  t.margin = 33'334;
  t.channel_expiry_ms = kStart + 24 * 3'600'000;
  t.expiry_margin_ms = 3'600'000;
  t.grace_ms = 10'000;
  return t;
}

TEST(ChannelPolicy, ScheduleIsTheLedgersRounding) {
  ChannelTerms t = Terms();
  EXPECT_EQ(VoucherAmount(t, 0).value(), 33'333);
  EXPECT_EQ(VoucherAmount(t, 1).value(), 66'666);
  EXPECT_EQ(VoucherAmount(t, 2).value(), 100'000);
  for (int64_t k = 0; k < 500; ++k)
    EXPECT_EQ(VoucherAmount(t, k).value(), AccruedCharge(t.price_per_hour, (k + 1) * t.interval_ms).value()) << k;
  EXPECT_FALSE(VoucherAmount(t, -1).ok());
  // An end date caps the schedule at the whole lease's cost.
  t.length_ms = 90'000;
  EXPECT_EQ(VoucherAmount(t, 1).value(), 50'000);
  EXPECT_EQ(VoucherAmount(t, 7).value(), 50'000);
}

TEST(ChannelPolicy, DueIndexAndDeposit) {
  ChannelTerms t = Terms();
  EXPECT_EQ(DueIndex(t, kStart - 5), 0);
  EXPECT_EQ(DueIndex(t, kStart), 0);
  EXPECT_EQ(DueIndex(t, kStart + 59'999), 0);
  EXPECT_EQ(DueIndex(t, kStart + 60'000), 1);
  EXPECT_EQ(DepositFor(2'000'000, 600'000, 33'334).value(), 333'333 + 33'334);
  EXPECT_FALSE(DepositFor(0, 600'000, 0).ok());
  EXPECT_FALSE(DepositFor(2'000'000, 600'000, -1).ok());
}

TEST(ChannelPolicy, AgentAcceptsOnlyTheScheduleOneIntervalAhead) {
  ChannelTerms t = Terms();
  EXPECT_EQ(CheckVoucherAmount(t, 0, 33'333, kStart).value(), 0);
  EXPECT_EQ(CheckVoucherAmount(t, 33'333, 66'666, kStart).value(), 1);  // the next one, early
  auto ahead = CheckVoucherAmount(t, 66'666, 100'000, kStart);           // two ahead
  EXPECT_EQ(ahead.status().code(), Code::kInvalidArgument);
  EXPECT_NE(ahead.status().message().find("more than one ahead"), std::string::npos);
  EXPECT_EQ(CheckVoucherAmount(t, 66'666, 100'000, kStart + 60'000).value(), 2);
  // Not an amount of the schedule: names the two neighbours.
  auto off = CheckVoucherAmount(t, 0, 33'334, kStart);
  EXPECT_EQ(off.status().code(), Code::kInvalidArgument);
  EXPECT_NE(off.status().message().find("0.033333 or 0.066666"), std::string::npos) << off.status().message();
  EXPECT_FALSE(CheckVoucherAmount(t, 0, 1, kStart).ok());
  // Amounts only grow; the same one again is a duplicate.
  EXPECT_EQ(CheckVoucherAmount(t, 66'666, 66'666, kStart).status().code(), Code::kConflict);
  EXPECT_EQ(CheckVoucherAmount(t, 66'666, 33'333, kStart).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CheckVoucherAmount(t, 0, 0, kStart).status().code(), Code::kInvalidArgument);
  // At most deposit - margin: 966,666 is the deposit less the margin.
  const int64_t k_max = 28;  // VoucherAmount(28) = 966,666
  ASSERT_EQ(VoucherAmount(t, k_max).value(), 966'666);
  EXPECT_TRUE(CheckVoucherAmount(t, 0, 966'666, kStart + k_max * 60'000).ok());
  auto over = CheckVoucherAmount(t, 0, VoucherAmount(t, k_max + 1).value(), kStart + (k_max + 1) * 60'000);
  EXPECT_NE(over.status().message().find("over the deposit"), std::string::npos) << over.status().message();
  // The channel must outlive the paid interval by the expiry margin.
  t.channel_expiry_ms = kStart + 3'600'000 + 120'000;
  EXPECT_TRUE(CheckVoucherAmount(t, 0, 66'666, kStart).ok());  // pays through +120 s: exactly at the limit
  EXPECT_EQ(CheckVoucherAmount(t, 66'666, 100'000, kStart + 60'000).status().code(), Code::kConflict);
  // Bad terms are named.
  t.deposit = t.margin;
  EXPECT_NE(CheckVoucherAmount(t, 0, 33'333, kStart).status().message().find("must exceed the margin"),
            std::string::npos);
}

TEST(ChannelPolicy, EndDateCapsTheLastVoucher) {
  ChannelTerms t = Terms();
  t.length_ms = 90'000;  // 1.5 intervals: 50,000 in all
  EXPECT_EQ(CheckVoucherAmount(t, 33'333, 50'000, kStart).value(), 1);
  EXPECT_NE(CheckVoucherAmount(t, 50'000, 66'666, kStart + 60'000).status().message().find("whole lease"),
            std::string::npos);
  EXPECT_EQ(PaidThrough(t, 50'000), kStart + 90'000);  // the end date, though 50,000 would pay 1 ms more
}

TEST(ChannelPolicy, StopsWhenTheVouchersRunOutPlusGrace) {
  ChannelTerms t = Terms();
  EXPECT_EQ(PaidThrough(t, 0), kStart);
  EXPECT_EQ(PaidThrough(t, 66'666), kStart + 120'000);  // floor(2e6 * 120,000 / 3.6e6) = 66,666
  EXPECT_FALSE(MustStop(t, 66'666, kStart + 130'000));
  EXPECT_TRUE(MustStop(t, 66'666, kStart + 130'001));
  EXPECT_FALSE(MustStop(t, 0, kStart + 10'000));
  EXPECT_TRUE(MustStop(t, 0, kStart + 10'001));
}

// The renter signs on schedule, then vanishes at a random interval; the
// agent checks every few hundred ms. It stops the workload within one
// interval plus the grace of the last voucher, and the running time it was
// not paid for is at most the grace. Random prices, intervals and stops.
TEST(ChannelPolicy, RenterVanishingCostsTheProviderAtMostTheGrace) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 300; ++round) {
    ChannelTerms t = Terms();
    t.price_per_hour = std::uniform_int_distribution<int64_t>(1, 50'000'000)(rng);
    t.interval_ms = std::uniform_int_distribution<int64_t>(1'000, 120'000)(rng);
    t.grace_ms = std::uniform_int_distribution<int64_t>(0, 30'000)(rng);
    t.deposit = 1'000'000'000'000;
    t.margin = 0;
    t.channel_expiry_ms = kStart + 1'000LL * 86'400'000;
    const int64_t last = std::uniform_int_distribution<int64_t>(0, 50)(rng);  // last interval signed
    Micros accepted = 0;
    UnixMs stopped = 0;
    for (UnixMs now = kStart; !stopped; now += 250) {
      const int64_t due = DueIndex(t, now);
      if (due <= last) {
        Micros a = VoucherAmount(t, due).value();
        if (a > accepted) {
          auto k = CheckVoucherAmount(t, accepted, a, now);
          ASSERT_TRUE(k.ok()) << k.status().ToString();
          accepted = a;
        }
      }
      if (MustStop(t, accepted, now)) stopped = now;
    }
    SCOPED_TRACE("round " + std::to_string(round));
    EXPECT_LE(stopped, kStart + (last + 1) * t.interval_ms + t.grace_ms + 250);
    const Micros used = AccruedCharge(t.price_per_hour, stopped - kStart).value();
    const Micros grace_cost = AccruedCharge(t.price_per_hour, t.grace_ms + 250).value() + 1;
    EXPECT_LE(used - accepted, grace_cost);
  }
}

TEST(ChannelPolicy, RedeemsPastTheThresholdAndBeforeExpiry) {
  ChannelTerms t = Terms();
  EXPECT_FALSE(ShouldRedeem(t, 0, 0, 100'000, kStart));
  EXPECT_FALSE(ShouldRedeem(t, 66'666, 0, 100'000, kStart));
  EXPECT_TRUE(ShouldRedeem(t, 100'000, 0, 100'000, kStart));
  EXPECT_FALSE(ShouldRedeem(t, 100'000, 100'000, 1, kStart));
  const UnixMs late = t.channel_expiry_ms - t.expiry_margin_ms;
  EXPECT_FALSE(ShouldRedeem(t, 66'666, 0, 100'000, late - 1));
  EXPECT_TRUE(ShouldRedeem(t, 66'666, 0, 100'000, late));
}

}  // namespace
}  // namespace grid::market
