#include "core/clock.h"

#include <gtest/gtest.h>

namespace grid {
namespace {

TEST(Time, FormatTimeToWritesWhatFormatTimeDoes) {
  // Each value against ParseTime's round trip and the digits themselves.
  char buf[kMaxTimeChars];
  EXPECT_EQ(std::string(buf, FormatTimeTo(buf, 1'798'675'200'123)), "2026-12-31T00:00:00.123Z");
  EXPECT_EQ(std::string(buf, FormatTimeTo(buf, 253'402'300'799'999)), "9999-12-31T23:59:59.999Z");
  EXPECT_EQ(std::string(buf, FormatTimeTo(buf, 253'402'300'800'000)), "10000-01-01T00:00:00.000Z");
  EXPECT_EQ(std::string(buf, FormatTimeTo(buf, -62'167'219'200'000)), "0000-01-01T00:00:00.000Z");
  EXPECT_EQ(std::string(buf, FormatTimeTo(buf, -62'167'219'200'001)), "-001-12-31T23:59:59.999Z");
  EXPECT_EQ(std::string(buf, FormatTimeTo(buf, -1)), "1969-12-31T23:59:59.999Z");
  // The extremes of int64 (times from outside): no overflow, a whole text.
  EXPECT_EQ(std::string(buf, FormatTimeTo(buf, INT64_MIN)).back(), 'Z');
  EXPECT_EQ(std::string(buf, FormatTimeTo(buf, -9'223'372'036'851'421'393)).back(), 'Z');
  EXPECT_EQ(std::string(buf, FormatTimeTo(buf, INT64_MAX)).back(), 'Z');
  uint64_t x = 88172645463325252ULL;
  for (int i = 0; i < 10000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const UnixMs t = static_cast<UnixMs>(x % 253'402'300'800'000ULL);
    const std::string s = FormatTime(t);
    UnixMs back = 0;
    ASSERT_TRUE(ParseTime(s, &back)) << s;
    ASSERT_EQ(back, t) << s;
    ASSERT_EQ(std::string(buf, FormatTimeTo(buf, t)), s);
  }
}

TEST(Time, FormatsAndParsesRfc3339) {
  EXPECT_EQ(FormatTime(0), "1970-01-01T00:00:00.000Z");
  UnixMs t = 0;
  ASSERT_TRUE(ParseTime("2026-11-29T15:33:38.123Z", &t));
  EXPECT_EQ(FormatTime(t), "2026-11-29T15:33:38.123Z");
  ASSERT_TRUE(ParseTime("2027-06-30", &t));
  EXPECT_EQ(FormatTime(t), "2027-06-30T00:00:00.000Z");
  ASSERT_TRUE(ParseTime("2026-11-29T17:33:38+02:00", &t));
  EXPECT_EQ(FormatTime(t), "2026-11-29T15:33:38.000Z");
  for (const char* bad : {"", "2026-13-01", "2026-11-29T15:33", "2026-11-29T15:33:38", "2026-11-29Tx",
                          "2026-11-29T15:33:38Zjunk", "20261129"}) {
    EXPECT_FALSE(ParseTime(bad, &t)) << bad;
  }
}

}  // namespace
}  // namespace grid
