#include "core/money.h"

#include <gtest/gtest.h>

namespace grid {
namespace {

TEST(Money, ParsesExactDecimals) {
  EXPECT_EQ(ParseMoney("2.5").value(), 2'500'000);
  EXPECT_EQ(ParseMoney("2.100000").value(), 2'100'000);
  EXPECT_EQ(ParseMoney("0.000001").value(), 1);
  EXPECT_EQ(ParseMoney("100").value(), 100'000'000);
  EXPECT_EQ(ParseMoney("-1.5", "x", true).value(), -1'500'000);
}

TEST(Money, RejectsBadAmountsWithReasons) {
  struct Case { const char* text; const char* why; };
  for (auto c : {Case{"", "empty"}, Case{"-1", "negative"}, Case{"1.0000001", "6 decimal"},
                 Case{"1e6", "not a decimal"}, Case{"abc", "not a decimal"}, Case{"1.", "not a decimal"},
                 Case{" 1", "not a decimal"}, Case{".5", "not a decimal"}, Case{"+1", "not a decimal"}, Case{"9223372036854.775808", "too large"},
                 Case{"99999999999999999999999", "too large"}, Case{"-", "negative"}}) {
    auto r = ParseMoney(c.text, "amount");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.why), std::string::npos) << r.status().message();
    EXPECT_EQ(r.status().message().rfind("amount:", 0), 0u);
  }
}

TEST(Money, FormatsSixDecimals) {
  EXPECT_EQ(FormatMoney(2'100'000), "2.100000");
  EXPECT_EQ(FormatMoney(1), "0.000001");
  EXPECT_EQ(FormatMoney(0), "0.000000");
  EXPECT_EQ(FormatMoney(-1), "-0.000001");
  EXPECT_EQ(FormatMoney(INT64_MAX), "9223372036854.775807");
  EXPECT_EQ(FormatMoney(INT64_MIN), "-9223372036854.775808");
  EXPECT_EQ(ParseMoney(FormatMoney(INT64_MAX)).value(), INT64_MAX);
}

TEST(Money, CheckedArithmeticReportsOverflow) {
  EXPECT_FALSE(CheckedAdd(INT64_MAX, 1).has_value());
  EXPECT_FALSE(CheckedSub(INT64_MIN, 1).has_value());
  EXPECT_FALSE(CheckedMul(INT64_MAX / 2 + 1, 2).has_value());
  EXPECT_EQ(CheckedAdd(2, 3).value(), 5);
  EXPECT_FALSE(MulDivFloor(INT64_MAX, 4, 2).has_value());
  EXPECT_EQ(MulDivFloor(INT64_MAX, 4, 4).value(), INT64_MAX);
}

TEST(Money, AccrualIsCumulativeAndNeverDrifts) {
  // $2.10/h billed every second for an hour sums to exactly $2.10, because each
  // step posts charged(t) - charged(t-1) rather than rounding per step.
  const Micros price = 2'100'000;
  Micros posted = 0;
  for (int64_t s = 1; s <= 3600; ++s) {
    Micros target = AccruedCharge(price, s * 1000).value();
    ASSERT_GE(target, posted);
    posted += target - posted;
  }
  EXPECT_EQ(posted, price);
  EXPECT_EQ(AccruedCharge(price, 1000).value(), 583);  // floor(2.1e6/3600)
  EXPECT_EQ(FeeOf(1'000'000, 250).value(), 25'000);
  EXPECT_FALSE(FeeOf(1, 10'001).has_value());
}

}  // namespace
}  // namespace grid
